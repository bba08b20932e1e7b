//! # qtm core
//!
//! The plain types every layer shares ([`model`]), what the engine publishes ([`events`]),
//! and the strategy contract as the native layers see it ([`strategy`]). No qtm crate below it.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod calendar;
pub mod config;
pub mod events;
pub mod model;
pub mod strategy;
pub mod vocab;
