//! Append-only sequences that move to an anonymous temporary file once they outgrow a memory
//! budget, so a backtest over ten years of minute bars keeps a flat memory footprint while its
//! equity curve stays available, exactly, for metrics and output files.
//!
//! Short sequences never touch the disk. The file is unlinked from creation (it has no name), so
//! a crash leaves nothing behind.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufWriter, Write};

use qtm_core::model::EquityPoint;

/// A value with a fixed-size byte form, so a spilled sequence can be read back by position.
pub trait Record: Copy {
    /// Bytes per value.
    const SIZE: usize;
    /// Write exactly [`Self::SIZE`] bytes.
    fn encode(&self, out: &mut [u8]);
    /// Read a value back from exactly [`Self::SIZE`] bytes.
    fn decode(bytes: &[u8]) -> Self;
}

impl Record for EquityPoint {
    const SIZE: usize = 17;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.ts.to_le_bytes());
        out[8..16].copy_from_slice(&self.equity.to_le_bytes());
        out[16] = u8::from(self.in_market);
    }
    fn decode(b: &[u8]) -> Self {
        EquityPoint {
            ts: i64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            equity: f64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            in_market: b[16] != 0,
        }
    }
}

/// Values kept in memory before the sequence moves to disk: 64 Ki points, about 1.5 MiB of
/// equity points, enough for any daily or hourly backtest to stay off the disk.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 16;

/// Bytes read or written per I/O call.
const IO_CHUNK: usize = 1 << 16;

/// An append-only sequence of `T` that spills to a temporary file past a memory limit.
///
/// Reading is by [`iter`](Self::iter), any number of times, each pass from the start. A read
/// error ends the pass early and is kept; [`check`](Self::check) reports it, so a caller that
/// computed something from a pass can tell whether it saw every value.
#[derive(Debug)]
pub struct SpillVec<T: Record> {
    memory: Vec<T>,
    limit: usize,
    disk: Option<Disk>,
    len: usize,
    read_error: Cell<Option<io::ErrorKind>>,
}

#[derive(Debug)]
struct Disk {
    writer: BufWriter<File>,
    /// Values written to the file (the file holds the oldest ones; `memory` the newest).
    values: usize,
}

impl<T: Record> Default for SpillVec<T> {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MEMORY_LIMIT)
    }
}

impl<T: Record> From<Vec<T>> for SpillVec<T> {
    fn from(values: Vec<T>) -> Self {
        SpillVec {
            len: values.len(),
            limit: values.len().max(DEFAULT_MEMORY_LIMIT),
            memory: values,
            disk: None,
            read_error: Cell::new(None),
        }
    }
}

impl<T: Record> SpillVec<T> {
    /// An empty sequence keeping at most `limit` values in memory (at least one).
    pub fn with_limit(limit: usize) -> Self {
        SpillVec {
            memory: Vec::new(),
            limit: limit.max(1),
            disk: None,
            len: 0,
            read_error: Cell::new(None),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether part of the sequence lives on disk.
    pub fn spilled(&self) -> bool {
        self.disk.is_some()
    }

    /// Append a value. Fails only when the temporary file cannot be created or written; the
    /// value is then kept in memory, so nothing is lost and memory merely grows.
    pub fn push(&mut self, value: T) -> io::Result<()> {
        self.memory.push(value);
        self.len += 1;
        if self.memory.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    /// The last value, if any.
    pub fn last(&self) -> Option<T> {
        match self.memory.last() {
            Some(v) => Some(*v),
            None => self.iter().last(),
        }
    }

    /// Move the in-memory values to the file.
    fn spill(&mut self) -> io::Result<()> {
        if self.disk.is_none() {
            self.disk = Some(Disk {
                writer: BufWriter::with_capacity(IO_CHUNK, tempfile::tempfile()?),
                values: 0,
            });
        }
        let disk = self.disk.as_mut().expect("created above");
        let mut buf = vec![0u8; T::SIZE];
        for v in &self.memory {
            v.encode(&mut buf);
            disk.writer.write_all(&buf)?;
        }
        disk.writer.flush()?;
        disk.values += self.memory.len();
        self.memory.clear();
        Ok(())
    }

    /// Every value, oldest first.
    pub fn iter(&self) -> SpillIter<'_, T> {
        SpillIter {
            vec: self,
            file_pos: 0,
            file_values: self.disk.as_ref().map_or(0, |d| d.values),
            buf: Vec::new(),
            buf_at: 0,
            memory_at: 0,
        }
    }

    /// All values in one `Vec` (for small sequences and tests).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// The first read error any pass met, if one did.
    pub fn check(&self) -> io::Result<()> {
        match self.read_error.get() {
            None => Ok(()),
            Some(kind) => Err(io::Error::new(
                kind,
                "reading back a spilled sequence from its temporary file failed",
            )),
        }
    }
}

/// A pass over a [`SpillVec`]: the file part in large positional reads, then the memory part.
pub struct SpillIter<'a, T: Record> {
    vec: &'a SpillVec<T>,
    /// Values of the file read so far.
    file_pos: usize,
    file_values: usize,
    buf: Vec<u8>,
    buf_at: usize,
    memory_at: usize,
}

impl<T: Record> SpillIter<'_, T> {
    /// Refill `buf` from the file; false at its end or on error (recorded in the vec).
    fn refill(&mut self) -> bool {
        let Some(disk) = &self.vec.disk else {
            return false;
        };
        let remaining = self.file_values - self.file_pos;
        if remaining == 0 {
            return false;
        }
        let take = remaining.min(IO_CHUNK / T::SIZE);
        self.buf.resize(take * T::SIZE, 0);
        let offset = (self.file_pos * T::SIZE) as u64;
        if let Err(e) = read_exact_at(disk.writer.get_ref(), &mut self.buf, offset) {
            self.vec.read_error.set(Some(e.kind()));
            self.file_pos = self.file_values;
            self.memory_at = self.vec.memory.len();
            return false;
        }
        self.file_pos += take;
        self.buf_at = 0;
        true
    }
}

impl<T: Record> Iterator for SpillIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.buf_at < self.buf.len() || self.refill() {
            let v = T::decode(&self.buf[self.buf_at..self.buf_at + T::SIZE]);
            self.buf_at += T::SIZE;
            return Some(v);
        }
        let v = self.vec.memory.get(self.memory_at).copied();
        self.memory_at += 1;
        v
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(i: i64) -> EquityPoint {
        EquityPoint {
            ts: 1_000 + 60 * i,
            equity: 10_000.0 + i as f64 * 0.25,
            in_market: i % 3 == 0,
        }
    }

    #[test]
    fn small_sequences_stay_in_memory() {
        let mut v = SpillVec::with_limit(100);
        for i in 0..99 {
            v.push(point(i)).unwrap();
        }
        assert!(!v.spilled());
        assert_eq!(v.to_vec(), (0..99).map(point).collect::<Vec<_>>());
    }

    #[test]
    fn long_sequences_spill_and_read_back_in_order_any_number_of_times() {
        let mut v = SpillVec::with_limit(1_000);
        let n = 12_345;
        for i in 0..n {
            v.push(point(i)).unwrap();
        }
        assert!(v.spilled());
        assert_eq!(v.len(), n as usize);
        // The memory part holds only the tail past the last spill.
        assert_eq!(v.memory.len(), n as usize % 1_000);
        for _ in 0..2 {
            let back: Vec<EquityPoint> = v.iter().collect();
            assert_eq!(back.len(), n as usize);
            assert!(back.iter().enumerate().all(|(i, p)| *p == point(i as i64)));
        }
        assert_eq!(v.last(), Some(point(n - 1)));
        v.check().unwrap();
    }

    #[test]
    fn exact_multiple_of_the_limit_leaves_memory_empty() {
        let mut v = SpillVec::with_limit(10);
        for i in 0..30 {
            v.push(point(i)).unwrap();
        }
        assert!(v.memory.is_empty());
        assert_eq!(v.last(), Some(point(29)));
        assert_eq!(v.iter().count(), 30);
    }

    #[test]
    fn record_round_trip_keeps_every_bit() {
        let p = EquityPoint {
            ts: -5,
            equity: f64::from_bits(0x7FEF_FFFF_FFFF_FFFF),
            in_market: true,
        };
        let mut buf = [0u8; EquityPoint::SIZE];
        p.encode(&mut buf);
        assert_eq!(EquityPoint::decode(&buf), p);
    }
}
