//! The one error type of market data loading.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The header every bar CSV must start with.
pub const HEADER: &str = "ts,open,high,low,close,volume";

/// Why a bar file could not be read.
///
/// A bad row in a data file is almost always fixed by hand, so the message is shaped like a
/// compiler diagnostic: `path:line: what is wrong`, with the path as the caller gave it and a
/// 1-based line number that an editor can jump to. Callers that need to react to the problem
/// (rather than print it) match on [`kind`](Self::kind).
#[derive(Debug)]
pub struct DataError {
    /// The file as the caller named it (not canonicalised, so the message matches what the user
    /// typed).
    pub path: PathBuf,
    /// 1-based line of the offending row; `None` only when the file could not be opened at all.
    pub line: Option<u64>,
    /// What is wrong.
    pub kind: DataErrorKind,
}

impl DataError {
    /// Build an error located at `path:line`.
    pub fn new(path: impl Into<PathBuf>, line: Option<u64>, kind: DataErrorKind) -> Self {
        DataError {
            path: path.into(),
            line,
            kind,
        }
    }

    /// The file name without its directory, for short messages in tables and logs.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }
}

/// The last path component, lossily as text (the whole path if it has none).
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.kind),
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

// The I/O cause is part of the message already; exposing it as `source()` as well would print it
// twice in `anyhow`'s `{:#}` chains.
impl std::error::Error for DataError {}

/// The problem itself, without its location.
///
/// Floating-point values are shown with `{:?}` so that `102.0` prints as `102.0` (as it appears
/// in the file) and not as `102`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataErrorKind {
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(io::Error),
    /// Reading failed part way through.
    #[error("read error: {0}")]
    Read(io::Error),
    /// The file has no bytes (or only blank lines), so not even a header.
    #[error("file is empty (expected the header \"{HEADER}\")")]
    Empty,
    /// The first line is a data row: the header was left out.
    #[error("missing header: expected \"{HEADER}\", found the data row \"{found}\"")]
    MissingHeader {
        /// The first line, shortened if long.
        found: String,
    },
    /// The first line is some other header (other columns, other order, other names).
    #[error("wrong header: expected \"{HEADER}\", found \"{found}\"")]
    WrongHeader {
        /// The first line, shortened if long.
        found: String,
    },
    /// A line is so long that the file cannot be a bar CSV; reading stops instead of buffering it.
    #[error("line is longer than {max} bytes; not a bar CSV?")]
    LineTooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A row has the wrong number of fields.
    #[error("expected 6 columns ({HEADER}), found {found}")]
    ColumnCount {
        /// How many comma-separated fields the row has.
        found: usize,
    },
    /// The `ts` field is not an integer.
    #[error("ts: cannot parse \"{text}\" as integer unix seconds")]
    BadTimestamp {
        /// The field as written.
        text: String,
    },
    /// A price or the volume is not a number.
    #[error("{field}: cannot parse \"{text}\" as a number")]
    BadNumber {
        /// Column name.
        field: &'static str,
        /// The field as written.
        text: String,
    },
    /// A price or the volume is NaN.
    #[error("{field} is NaN")]
    NaN {
        /// Column name.
        field: &'static str,
    },
    /// A price or the volume is infinite.
    #[error("{field} is infinite ({value:?})")]
    Infinite {
        /// Column name.
        field: &'static str,
        /// `inf` or `-inf`.
        value: f64,
    },
    /// A price is zero or negative.
    #[error("{field} {value:?} is not positive (prices must be > 0)")]
    NonPositivePrice {
        /// Column name.
        field: &'static str,
        /// The price.
        value: f64,
    },
    /// The volume is negative.
    #[error("volume {value:?} is negative")]
    NegativeVolume {
        /// The volume.
        value: f64,
    },
    /// `high` is below `low`, `open` or `close` (`other` names which).
    #[error("high {high:?} is below {other} {value:?}")]
    HighTooLow {
        /// The row's high.
        high: f64,
        /// `"low"`, `"open"` or `"close"`.
        other: &'static str,
        /// That column's value.
        value: f64,
    },
    /// `low` is above `open` or `close` (`other` names which).
    #[error("low {low:?} is above {other} {value:?}")]
    LowTooHigh {
        /// The row's low.
        low: f64,
        /// `"open"` or `"close"`.
        other: &'static str,
        /// That column's value.
        value: f64,
    },
    /// Two rows with the same timestamp.
    #[error("timestamp {ts} is not after the previous row's {prev} (duplicate)")]
    DuplicateTimestamp {
        /// This row's ts.
        ts: i64,
        /// The previous row's ts (equal to `ts`).
        prev: i64,
    },
    /// A row is earlier than the one before it.
    #[error("timestamp goes backwards ({ts} after {prev})")]
    TimestampBackwards {
        /// This row's ts.
        ts: i64,
        /// The previous row's ts (greater than `ts`).
        prev: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line() {
        let e = DataError::new(
            "data/goog_1d.csv",
            Some(17),
            DataErrorKind::HighTooLow {
                high: 101.2,
                other: "low",
                value: 102.0,
            },
        );
        assert_eq!(
            e.to_string(),
            "data/goog_1d.csv:17: high 101.2 is below low 102.0"
        );
        assert_eq!(e.file_name(), "goog_1d.csv");

        let e = DataError::new(
            "nope.csv",
            None,
            DataErrorKind::Open(io::Error::new(io::ErrorKind::NotFound, "gone")),
        );
        assert_eq!(e.to_string(), "nope.csv: cannot open: gone");
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<DataError>();
    }
}
