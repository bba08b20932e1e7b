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

pub mod api;
pub mod backtest;
pub mod cli;
pub mod engine;
pub mod events;
pub mod exchange;
pub mod live;
pub mod market;
pub mod metrics;
pub mod model;
pub mod oms;
pub mod portfolio;
pub mod report;
pub mod risk;
pub mod sandbox;
pub mod spill;
pub mod store;
pub mod strategy;
pub mod toolchain;
