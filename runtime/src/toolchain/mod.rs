//! Building strategy components: scaffold a crate, compile it for `wasm32-unknown-unknown`,
//! and wrap the core module into a component (no WASI imports).

mod build;
mod componentize;
mod scaffold;

pub use build::{BuildOutput, build_strategy};
pub use componentize::componentize;
pub use scaffold::{default_sdk_path, scaffold_strategy};

use thiserror::Error;

/// Why a strategy could not be built.
#[derive(Debug, Error)]
pub enum ToolchainError {
    #[error("{0}")]
    Componentize(String),
    #[error("cargo failed ({status}); its output is above")]
    Cargo { status: String },
    #[error("could not run cargo: {0}")]
    Spawn(std::io::Error),
    #[error("cargo produced no wasm library for {0}; is `crate-type = [\"cdylib\"]` set?")]
    NoArtifact(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}
