//! # qtm-evolve: the evolution engine
//!
//! Breeds strategies by genetic search and reports every champion with the statistics that
//! say whether it is luck. The genome is either a strategy's typed parameters (the ranges,
//! steps and choices its `describe` declares) or, with `--gp`, a rule program in the `.rules`
//! language. Fitness is the real engine's backtest on the training period only; the test
//! period is seen once, by the champion and the baselines. The whole search is deterministic:
//! it depends only on the seed, the configuration and the data (docs/evolution.md).

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(missing_docs)]

pub mod evaluate;
pub mod genome;
pub mod gp;
pub mod rng;
pub mod run;
pub mod search;
pub mod select;
pub mod stats;
