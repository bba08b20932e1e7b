//! # qtm order management
//!
//! The paper [`exchange`] (fill rules, costs, buying power), account [`portfolio`]s, pre-trade
//! [`risk`] checks per account and the account-wide admission guard ([`oms`]).

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod exchange;
pub mod oms;
pub mod portfolio;
pub mod risk;
