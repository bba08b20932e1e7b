//! Command output: `qtm … | head` ends quietly instead of panicking.
//!
//! Rust starts programs with SIGPIPE ignored, so a write to a pipe whose reader has gone
//! returns `BrokenPipe`, and `println!` turns that into a panic. Commands print through
//! [`outln!`] instead, which hands a closed stdout back as [`StdoutClosed`]; `cli::main` exits
//! with success on it, since the reader chose to stop reading and the command did its work.
//!
//! Restoring SIGPIPE's default at startup would also do, but it needs `unsafe` FFI, exists only
//! on unix, and lets a write to *any* closed pipe or socket kill the process without cleanup
//! (an SQLite import halfway, `qtm serve` itself). Here only stdout's reader going away ends a
//! command, through the normal error path, and `clippy::print_stdout` keeps `println!` out of
//! the crate.

use std::fmt;
use std::io::{self, Write as _};

/// Stdout's reader went away (`qtm … | head`): the output is no longer wanted.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// `println!` for command output, returning `anyhow::Result<()>` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Write one line to stdout; a closed stdout is [`StdoutClosed`], other failures name stdout.
pub(crate) fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Whether `e` only says that stdout was closed.
pub(crate) fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}
