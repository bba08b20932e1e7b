//! The sandbox: the only module that names wasmtime.
//!
//! It turns a strategy component into a safe [`StrategyInstance`] handle. Every instance has
//! its own `Store` with a fuel budget re-armed before each call, a memory cap, table and instance
//! caps, and an epoch deadline as a wall-clock backstop. Components are checked by a static
//! [`gate`] before anything is compiled, compiled once and cached on disk by content hash, and
//! instantiated from a pre-linked `InstancePre`. A trap disables only the instance that trapped.
//!
//! The rest of the host talks to strategies through [`StrategyInstance`] and answers their
//! requests by implementing [`StrategyHost`].

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod bindings;
mod cache;
pub mod caps;
mod code;
mod config;
mod convert;
mod error;
pub mod gate;
mod host;
mod instance;
mod runner;
mod variants;

pub use bindings::ContractVersion;
pub use code::{Sandbox, StrategyCode};
pub use config::{Limits, SandboxConfig, default_cache_dir};
pub use error::{SandboxError, TrapReason};
pub use host::{DetachedHost, StrategyHost};
pub use instance::{InstanceStats, InstanceStatus, StrategyInstance};
pub use variants::DataVariants;

/// The contract this host implements (`wit/since_v*/strategy.wit`).
pub const CONTRACT_PACKAGE: &str = "qtm:strategy";
/// The latest contract version, the one the guest SDK builds for. Older ones keep running
/// ([`ContractVersion::ALL`]).
pub const CONTRACT_VERSION: &str = "0.2.0";
