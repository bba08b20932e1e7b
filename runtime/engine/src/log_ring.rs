//! A strategy's log lines in bounded memory: the newest lines up to a capacity and a count of
//! the older ones let go. A strategy may log on every bar of a million-bar backtest; keeping it
//! all would let any strategy fill the host's memory. A caller who wants every line (`qtm
//! backtest --log-out`) attaches a [`LogSink`], which sees each line as it is written, before
//! the ring may let it go.

use std::collections::VecDeque;
use std::io::{self, Write};

use qtm_core::model::LogLevel;

/// One log line: bar time (Unix seconds), level, text.
pub type LogLine = (i64, LogLevel, String);

/// Log lines kept per account unless configured otherwise (see `EngineConfig::log_lines`).
pub const DEFAULT_LOG_LINES: usize = 1_000;

/// Receives every log line of an account as it is written.
pub trait LogSink: Send {
    /// Take one line.
    fn line(&mut self, line: &LogLine);
    /// Flush what is buffered; returns the first error met while writing, if any.
    fn finish(&mut self) -> io::Result<()>;
}

/// The newest log lines of one account, at most `capacity`, with the number let go.
pub struct LogRing {
    lines: VecDeque<LogLine>,
    capacity: usize,
    dropped: u64,
    sink: Option<Box<dyn LogSink>>,
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogRing")
            .field("lines", &self.lines.len())
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl LogRing {
    /// An empty ring keeping at most `capacity` lines (0 keeps none, and counts every line).
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity,
            dropped: 0,
            sink: None,
        }
    }

    /// Add a line: the sink gets it first; then, when the ring is full, the oldest kept line
    /// is let go and counted.
    pub fn push(&mut self, line: LogLine) {
        if let Some(sink) = self.sink.as_mut() {
            sink.line(&line);
        }
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.lines.len() >= self.capacity {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &LogLine> {
        self.lines.iter()
    }

    /// Number of kept lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Most lines kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lines let go since the ring was made (overflow, or capacity 0); taking lines with
    /// [`LogRing::drain`] does not count.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Take the kept lines, oldest first, leaving the ring empty. The buffer goes with them,
    /// so an account that logged a lot once does not hold its memory for good.
    pub fn drain(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.lines).into()
    }

    /// Receive every line from now on in `sink`; returns the one it replaces.
    pub fn set_sink(&mut self, sink: Box<dyn LogSink>) -> Option<Box<dyn LogSink>> {
        self.sink.replace(sink)
    }

    /// Detach the sink (to finish it).
    pub fn take_sink(&mut self) -> Option<Box<dyn LogSink>> {
        self.sink.take()
    }
}

/// The name of a level as written to log files.
fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// A [`LogSink`] writing one text line per log line: `ts<TAB>level<TAB>message`. Backslashes,
/// line feeds and carriage returns in the message are written as `\\`, `\n` and `\r`, so each
/// log line stays one line of the file. After the first write error it writes nothing more
/// and [`LogSink::finish`] returns that error.
pub struct WriterSink<W: Write + Send> {
    out: W,
    error: Option<io::Error>,
}

impl<W: Write + Send> WriterSink<W> {
    /// A sink writing to `out` (buffer it: one write per line otherwise).
    pub fn new(out: W) -> Self {
        Self { out, error: None }
    }

    fn write(&mut self, (ts, level, message): &LogLine) -> io::Result<()> {
        write!(self.out, "{ts}\t{}\t", level_name(*level))?;
        let mut rest = message.as_str();
        while let Some(i) = rest.find(['\\', '\n', '\r']) {
            self.out.write_all(&rest.as_bytes()[..i])?;
            let escaped: &[u8] = match rest.as_bytes()[i] {
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                _ => b"\\r",
            };
            self.out.write_all(escaped)?;
            rest = &rest[i + 1..];
        }
        self.out.write_all(rest.as_bytes())?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write + Send> LogSink for WriterSink<W> {
    fn line(&mut self, line: &LogLine) {
        if self.error.is_none()
            && let Err(e) = self.write(line)
        {
            self.error = Some(e);
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn line(i: i64) -> LogLine {
        (i, LogLevel::Info, format!("line {i}"))
    }

    #[test]
    fn keeps_the_newest_lines_and_counts_the_rest() {
        let mut ring = LogRing::new(3);
        for i in 0..10 {
            ring.push(line(i));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.dropped(), 7);
        let kept: Vec<i64> = ring.iter().map(|l| l.0).collect();
        assert_eq!(kept, [7, 8, 9]);
        assert_eq!(ring.drain(), vec![line(7), line(8), line(9)]);
        assert!(ring.is_empty());
        // Draining is taking, not dropping; the count goes on.
        ring.push(line(10));
        assert_eq!((ring.len(), ring.dropped()), (1, 7));
    }

    #[test]
    fn under_capacity_nothing_is_dropped_and_zero_keeps_nothing() {
        let mut ring = LogRing::new(5);
        for i in 0..5 {
            ring.push(line(i));
        }
        assert_eq!((ring.len(), ring.dropped(), ring.capacity()), (5, 0, 5));
        let mut none = LogRing::new(0);
        none.push(line(1));
        none.push(line(2));
        assert_eq!((none.len(), none.dropped()), (0, 2));
    }

    /// Collects lines into shared memory, so the test can look after the ring owns it.
    struct Collect(Arc<Mutex<Vec<LogLine>>>);

    impl LogSink for Collect {
        fn line(&mut self, line: &LogLine) {
            self.0.lock().unwrap().push(line.clone());
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_sink_sees_every_line_even_past_capacity() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut ring = LogRing::new(2);
        assert!(ring.set_sink(Box::new(Collect(seen.clone()))).is_none());
        for i in 0..100 {
            ring.push(line(i));
        }
        assert_eq!(
            *seen.lock().unwrap(),
            (0..100).map(line).collect::<Vec<_>>()
        );
        assert_eq!((ring.len(), ring.dropped()), (2, 98));
        assert!(ring.take_sink().is_some());
        ring.push(line(100));
        assert_eq!(
            seen.lock().unwrap().len(),
            100,
            "a detached sink hears nothing"
        );
    }

    #[test]
    fn writer_sink_writes_one_escaped_line_each() {
        let mut sink = WriterSink::new(Vec::new());
        sink.line(&(5, LogLevel::Warn, "a\nb\\c\rd".into()));
        sink.line(&(6, LogLevel::Error, "plain".into()));
        sink.finish().unwrap();
        assert_eq!(
            String::from_utf8(sink.out).unwrap(),
            "5\twarn\ta\\nb\\\\c\\rd\n6\terror\tplain\n"
        );
    }

    /// Accepts `room` bytes, then fails.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.room {
                return Err(io::Error::other("disk full"));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writer_sink_reports_the_first_error_at_finish() {
        let mut sink = WriterSink::new(Full { room: 12 });
        for i in 0..5 {
            sink.line(&line(i));
        }
        let e = sink.finish().unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }
}
