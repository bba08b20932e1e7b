//! Errors of the sandbox and the reasons an instance is disabled.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::gate::GateError;

/// Why an instance was stopped: recorded, broadcast, and shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum TrapReason {
    #[error("fuel exhausted: the call used its whole budget of {0} fuel")]
    OutOfFuel(u64),
    #[error("deadline exceeded: the call ran longer than {0} ms of wall-clock time")]
    Deadline(u64),
    #[error("memory limit: {0}")]
    Memory(String),
    #[error("stack overflow")]
    StackOverflow,
    #[error("the strategy panicked or reached unreachable code")]
    Panic,
    #[error("host limit: {0}")]
    HostLimit(String),
    #[error("trap: {0}")]
    Other(String),
}

/// Everything that can go wrong between the host and a strategy component.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// The upload gate refused the component, for every reason listed.
    // Not a `#[source]`: the message already holds the reasons, and error chains (`{:#}`)
    // would print them twice.
    #[error("component refused: {0}")]
    Gate(GateError),
    /// Linking or describing the component failed.
    #[error("component refused: {0}")]
    Refused(String),
    #[error("compiling the component failed: {0}")]
    Compile(String),
    #[error("instantiating the component failed: {0}")]
    Instantiate(String),
    #[error("the strategy refused its configuration: {0}")]
    Configure(String),
    #[error("the strategy trapped: {0}")]
    Trapped(TrapReason),
    #[error("the instance is disabled: {0}")]
    Disabled(TrapReason),
    #[error("restore failed: {0}")]
    Restore(String),
    #[error("snapshot refused: {0}")]
    Snapshot(String),
    #[error("not supported by this code: {0}")]
    Unsupported(String),
    #[error("the engine could not be set up: {0}")]
    Engine(String),
    #[error("cache: {0}")]
    Cache(String),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<GateError> for SandboxError {
    fn from(e: GateError) -> Self {
        Self::Gate(e)
    }
}
