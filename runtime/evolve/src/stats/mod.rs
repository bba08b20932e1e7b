//! The statistics that say whether a champion is luck.
//!
//! A search that tries thousands of candidates will find one with a fine backtest by chance
//! alone. Each statistic here answers part of "is it luck?":
//!
//! * [`sharpe()`], [`psr`]: is this one series' Sharpe ratio above a benchmark, given its
//!   length, skew and tails? [`min_trl`]: how long a record would make it so?
//! * [`expected_max_sharpe`], [`dsr`]: the same after paying for the number of trials.
//! * [`effective_trials`], [`cluster_sharpe_variance`]: how many of those trials were really
//!   different, for the deflated Sharpe ratio's N and V.
//! * [`pbo()`], [`pbo_sharpe`]: how often the in-sample winner is below median out of sample.
//! * [`spa()`]: does the best candidate beat a benchmark (e.g. buy-and-hold) beyond data
//!   snooping?
//!
//! Everything is per period and std-only. Every statistic is checked against skfolio, pypbo
//! and arch on the same inputs (reference/make_reference.py writes reference/reference.json;
//! docs/evolution.md, section Statistics, lists formulas, sources and tolerances).
//! Degenerate inputs (empty, constant, NaN) never panic: each function documents the NaN
//! or the value it returns instead.

mod cluster;
mod normal;
mod pbo;
mod sharpe;
mod spa;

#[cfg(test)]
mod reference_tests;

pub use cluster::{
    Clusters, Dendrogram, Linkage, Merge, cluster_sharpe_variance, cluster_sharpes, cluster_trials,
    correlation_distance, effective_trials, effective_trials_at, gap_cluster_count, linkage,
};
pub use normal::{normal_cdf, normal_inv_cdf, normal_sf};
pub use pbo::{Pbo, pbo, pbo_sharpe};
pub use sharpe::{
    EULER_GAMMA, dsr, expected_max_sharpe, kurtosis, min_trl, psr, sharpe, skewness,
    trials_sharpe_variance,
};
pub use spa::{Spa, SpaConfig, spa};
