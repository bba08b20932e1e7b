//! A small, dependency-free binary codec for strategy snapshots.
//!
//! Snapshots carry a strategy's state across a hot swap to new code, so the format must be
//! stable and cheap: values are written little-endian in order, and read back in the same order.
//! Versioning is up to the strategy (write a version number first if the layout may change).

use std::fmt;

/// Why a snapshot could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad snapshot: {}", self.0)
    }
}

impl std::error::Error for StateError {}

impl From<StateError> for String {
    fn from(e: StateError) -> String {
        e.to_string()
    }
}

/// Appends values to a snapshot buffer.
#[derive(Debug, Default, Clone)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Write one `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Write one `bool` as a byte.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }
    /// Write one `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Write one `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Write one `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Write one `f64` (bit-exact, NaN included).
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Write a length-prefixed slice of `f64`.
    pub fn f64s(&mut self, v: &[f64]) -> &mut Self {
        self.u32(v.len() as u32);
        for x in v {
            self.f64(*x);
        }
        self
    }
    /// Write a length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    /// Write a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// Write an optional `f64` (a presence byte, then the value).
    pub fn opt_f64(&mut self, v: Option<f64>) -> &mut Self {
        match v {
            Some(x) => self.u8(1).f64(x),
            None => self.u8(0),
        }
    }
    /// The bytes written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads values back from a snapshot, in the order they were written.
#[derive(Debug, Clone)]
pub struct StateReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> StateReader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                StateError(format!(
                    "needed {n} more bytes at offset {}, snapshot has {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    /// Read one `u8`.
    pub fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    /// Read one `bool`.
    pub fn bool(&mut self) -> Result<bool, StateError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(StateError(format!("expected a bool byte, found {b}"))),
        }
    }
    /// Read one `u32`.
    pub fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Read one `u64`.
    pub fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Read one `i64`.
    pub fn i64(&mut self) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// Read one `f64`.
    pub fn f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    /// Read a length-prefixed slice of `f64`.
    pub fn f64s(&mut self) -> Result<Vec<f64>, StateError> {
        let n = self.u32()? as usize;
        if n > (self.buf.len() - self.pos) / 8 {
            return Err(StateError(format!(
                "f64 list of {n} items exceeds the snapshot"
            )));
        }
        (0..n).map(|_| self.f64()).collect()
    }
    /// Read a length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Read a length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, StateError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| StateError(format!("invalid UTF-8: {e}")))
    }
    /// Read an optional `f64`.
    pub fn opt_f64(&mut self) -> Result<Option<f64>, StateError> {
        Ok(if self.bool()? {
            Some(self.f64()?)
        } else {
            None
        })
    }
    /// Fail unless every byte was read: catches a snapshot from an incompatible layout.
    pub fn expect_end(&self) -> Result<(), StateError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(StateError(format!(
                "{} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

/// State that can be written into and read back from a snapshot.
pub trait Snapshot {
    /// Append this value's state.
    fn save(&self, w: &mut StateWriter);
    /// Replace this value's state with what `save` wrote.
    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let mut w = StateWriter::new();
        w.u8(7)
            .bool(true)
            .u32(9)
            .u64(u64::MAX)
            .i64(-5)
            .f64(f64::NAN)
            .f64s(&[1.5, -2.0]);
        w.str("héllo").opt_f64(None).opt_f64(Some(3.25));
        let buf = w.finish();
        let mut r = StateReader::new(&buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.u32().unwrap(), 9);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        assert!(r.f64().unwrap().is_nan());
        assert_eq!(r.f64s().unwrap(), vec![1.5, -2.0]);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.opt_f64().unwrap(), None);
        assert_eq!(r.opt_f64().unwrap(), Some(3.25));
        r.expect_end().unwrap();
    }

    #[test]
    fn truncated_snapshot_is_an_error_not_a_panic() {
        let mut w = StateWriter::new();
        w.f64(1.0);
        let buf = w.finish();
        let mut r = StateReader::new(&buf[..5]);
        let e = r.f64().unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad snapshot: needed 8 more bytes at offset 0, snapshot has 5"
        );
        let mut r = StateReader::new(&[255, 255, 255, 255]);
        assert!(r.f64s().unwrap_err().0.contains("exceeds the snapshot"));
    }
}
