//! # qtm runtime
//!
//! The host side of qtm: strategies run as fuel-limited WebAssembly components in the
//! [`sandbox`]; everything else (market data, risk, execution, backtest, server) runs natively
//! and talks to them through [`sandbox::StrategyInstance`].
//!
//! Layers, bottom up: [`model`] (plain types) → [`sandbox`] (wasmtime) and [`toolchain`]
//! (building strategy components) → the `qtm` binary's [`cli`].

pub mod cli;
pub mod market;
pub mod metrics;
pub mod model;
pub mod report;
pub mod sandbox;
pub mod toolchain;
