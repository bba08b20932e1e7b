//! # qtm runtime
//!
//! The host side of qtm: strategies run as fuel-limited WebAssembly components in the
//! [`sandbox`]; everything else (market data, risk, execution, backtest, server) runs natively
//! and talks to them through [`sandbox::StrategyInstance`].
//!
//! Layers, bottom up: [`model`] (plain types) → [`sandbox`] (wasmtime) and [`toolchain`]
//! (building strategy components) → the `qtm` binary's [`cli`].

// `println!`/`eprintln!` panic when their reader has gone (`qtm … | head`); commands print
// through `cli::out`, and the server ignores a closed stdout.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// The layers below the server, each a crate of its own (see docs/architecture.md), under the
// module names the rest of the host and its users know.
pub use qtm_backtest as backtest;
pub use qtm_backtest::{metrics, spill};
pub use qtm_core::{events, model, strategy, vocab};
pub use qtm_engine as engine;
pub use qtm_evolve as evolve;
pub use qtm_import as import;
pub use qtm_live as live;
pub use qtm_market as market;
pub use qtm_oms::{exchange, oms, portfolio, risk};
pub use qtm_report as report;
pub use qtm_sandbox as sandbox;
pub use qtm_server as api;
pub use qtm_store as store;

pub mod cli;
pub mod toolchain;
