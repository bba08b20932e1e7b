//! Hansen's test for Superior Predictive Ability (Hansen, "A Test for Superior Predictive
//! Ability", J. of Business & Economic Statistics 23(4), 2005), with White's Reality Check
//! (Econometrica 68(5), 2000) as its upper p-value: is the best of the candidates really
//! better than a benchmark (e.g. buy-and-hold), given how many candidates were tried?
//!
//! Losses are minus returns, as arch's `SPA` takes losses, so the loss differential of
//! candidate k in period t is d_k,t = L_bench,t − L_k,t = r_k,t − r_bench,t (positive when the
//! candidate did better). The null is that no candidate beats the benchmark in expectation.
//! The statistic is max_k d̄_k; its null distribution comes from the stationary bootstrap
//! (Politis & Romano, JASA 89, 1994) of the rows of d, re-centred three ways:
//!
//! * upper (White's Reality Check): d̄*_k − d̄_k for every k, which treats even clearly worse
//!   candidates as if they were as good as the benchmark, so the p-value is too large;
//! * consistent (Hansen's): d̄*_k − d̄_k·1{d̄_k ≥ −√(ω̂²_k/T·2·ln ln T)}: candidates that are
//!   significantly worse are left out of the null's maximum;
//! * lower: d̄*_k − max(d̄_k, 0).
//!
//! ω̂²_k is the long-run variance of d_k implied by the stationary bootstrap (Politis &
//! Romano's kernel, weights κ_i = (1 − i/T)(1 − q)^i + (i/T)(1 − q)^(T−i), q = 1/mean block).
//!
//! This follows arch 8.0.0 (`arch.bootstrap.SPA`, checked in the reference tests), which
//! uses ω̂ only for the consistent threshold and does not divide the statistic by it, nor
//! floor it at 0. With [`SpaConfig::studentize`] each d_k is divided by its ω̂_k first, which
//! is Hansen's studentized statistic max_k √T·d̄_k/ω̂_k (the √T is common to every term and
//! cancels in the p-value); that variant's reference is arch run on the pre-scaled
//! differentials. Neither floors the statistic at 0 as Hansen's T^SPA does: that changes the
//! p-value only when every candidate is worse than the benchmark, where it is large anyway.

use crate::rng::Rng;

/// How to run the bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaConfig {
    /// Bootstrap replications. The p-values are Monte Carlo estimates with standard error
    /// √(p(1 − p)/reps): 10,000 gives ±0.005 at p = ½.
    pub reps: usize,
    /// Mean block length of the stationary bootstrap (≥ 1; a block continues each period
    /// with probability 1 − 1/mean_block). It should cover the returns' serial dependence;
    /// arch's default is √T.
    pub mean_block: f64,
    /// Seed of the bootstrap's own stream ([`Rng::new`]): same inputs and seed, same
    /// p-values.
    pub seed: u64,
    /// Divide each loss differential by its long-run standard deviation ω̂_k (Hansen's
    /// studentized test), so a volatile candidate cannot dominate the maximum by variance
    /// alone. Off reproduces arch's `SPA`.
    pub studentize: bool,
}

/// The three p-values of the SPA test and what they were computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spa {
    /// Lower bound p-value (re-centred at max(d̄_k, 0)).
    pub lower: f64,
    /// Hansen's consistent p-value: the one to report.
    pub consistent: f64,
    /// Upper bound: White's Reality Check p-value.
    pub upper: f64,
    /// The statistic max_k d̄_k (of the studentized differentials when studentizing).
    pub statistic: f64,
    /// ω̂²_k per candidate, of the differentials the test ran on (≈ 1 when studentizing).
    pub variances: Vec<f64>,
    /// Per candidate: kept in the consistent p-value's null (not significantly worse than
    /// the benchmark).
    pub relevant: Vec<bool>,
}

impl Spa {
    fn undefined() -> Spa {
        Spa {
            lower: f64::NAN,
            consistent: f64::NAN,
            upper: f64::NAN,
            statistic: f64::NAN,
            variances: Vec::new(),
            relevant: Vec::new(),
        }
    }
}

/// One stationary-bootstrap resample of the periods 0..t, as blocks (start, length): a
/// uniform start, then each period either continues the block (wrapping past the end to 0)
/// or, with probability q, opens a new block at a uniform start, so blocks have geometric
/// length with mean 1/q (arch's scheme, drawn from [`Rng`]).
fn stationary_blocks(rng: &mut Rng, t: usize, q: f64, blocks: &mut Vec<(usize, usize)>) {
    blocks.clear();
    blocks.push((rng.index(t), 1));
    for _ in 1..t {
        if rng.f64() < q {
            blocks.push((rng.index(t), 1));
        } else if let Some(last) = blocks.last_mut() {
            last.1 += 1;
        }
    }
}

/// ω̂² of each column of the row-major t × k matrix `d` (see the module doc).
fn long_run_variances(d: &[f64], t: usize, k: usize, means: &[f64], q: f64) -> Vec<f64> {
    let dm: Vec<f64> = d
        .chunks_exact(k)
        .flat_map(|row| row.iter().zip(means).map(|(x, m)| x - m))
        .collect();
    let tf = t as f64;
    let mut var = vec![0.0; k];
    for row in dm.chunks_exact(k) {
        for (v, x) in var.iter_mut().zip(row) {
            *v += x * x / tf;
        }
    }
    let mut gamma = vec![0.0; k];
    for lag in 1..t {
        let l = lag as f64;
        let kappa = (1.0 - l / tf) * (1.0 - q).powi(lag as i32)
            + (l / tf) * (1.0 - q).powi((t - lag) as i32);
        gamma.iter_mut().for_each(|g| *g = 0.0);
        for s in 0..t - lag {
            let (a, b) = (
                &dm[s * k..(s + 1) * k],
                &dm[(s + lag) * k..(s + lag + 1) * k],
            );
            for ((g, x), y) in gamma.iter_mut().zip(a).zip(b) {
                *g += x * y;
            }
        }
        for (v, g) in var.iter_mut().zip(&gamma) {
            *v += 2.0 * kappa * g / tf;
        }
    }
    var
}

/// Hansen's SPA test of the `candidates` (one per-period return series each, as long as the
/// `benchmark`'s) against the `benchmark`'s per-period returns. Small p-values say the best
/// candidate beats the benchmark beyond what trying this many candidates explains.
///
/// NaN p-values (and empty vectors) when the test is undefined: fewer than two periods, no
/// candidates, a length mismatch, a non-finite return, `reps` = 0, `mean_block` < 1 or not
/// finite, or, when studentizing, a candidate whose differential has no variance (its
/// studentized mean would be ±∞).
///
/// Cost: O(reps·(T + k·T/mean_block)) for the bootstrap plus O(T²·k) for the variances.
pub fn spa(benchmark: &[f64], candidates: &[Vec<f64>], config: &SpaConfig) -> Spa {
    let (t, k) = (benchmark.len(), candidates.len());
    let valid = t >= 2
        && k > 0
        && candidates.iter().all(|c| c.len() == t)
        && benchmark
            .iter()
            .chain(candidates.iter().flatten())
            .all(|x| x.is_finite())
        && config.reps > 0
        && config.mean_block >= 1.0
        && config.mean_block.is_finite();
    if !valid {
        return Spa::undefined();
    }
    let q = 1.0 / config.mean_block;
    // Row-major t × k: one period's differentials sit together for the prefix sums below.
    let mut d: Vec<f64> = (0..t)
        .flat_map(|s| candidates.iter().map(move |c| c[s] - benchmark[s]))
        .collect();
    let column_means = |d: &[f64]| -> Vec<f64> {
        let mut m = vec![0.0; k];
        for row in d.chunks_exact(k) {
            m.iter_mut().zip(row).for_each(|(a, x)| *a += x);
        }
        m.iter_mut().for_each(|a| *a /= t as f64);
        m
    };
    let mut means = column_means(&d);
    let mut variances = long_run_variances(&d, t, k, &means, q);
    if config.studentize {
        if variances.iter().any(|v| v.is_nan() || *v <= 0.0) {
            return Spa::undefined();
        }
        let sd: Vec<f64> = variances.iter().map(|v| v.sqrt()).collect();
        for row in d.chunks_exact_mut(k) {
            row.iter_mut().zip(&sd).for_each(|(x, s)| *x /= s);
        }
        means = column_means(&d);
        variances = long_run_variances(&d, t, k, &means, q);
    }
    let tf = t as f64;
    let relevant: Vec<bool> = means
        .iter()
        .zip(&variances)
        .map(|(m, v)| *m >= -(v / tf * 2.0 * tf.ln().ln()).sqrt())
        .collect();
    let centres: [Vec<f64>; 3] = [
        means.iter().map(|m| m.max(0.0)).collect(),
        means
            .iter()
            .zip(&relevant)
            .map(|(m, r)| if *r { *m } else { 0.0 })
            .collect(),
        means.clone(),
    ];
    let statistic = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // prefix[s·k + j] = Σ_{u<s} d_u,j: a block's sum is two lookups, so a resample costs
    // O(blocks·k) instead of O(T·k).
    let mut prefix = vec![0.0; (t + 1) * k];
    for s in 0..t {
        for j in 0..k {
            prefix[(s + 1) * k + j] = prefix[s * k + j] + d[s * k + j];
        }
    }
    let span = |j: usize, from: usize, to: usize| prefix[to * k + j] - prefix[from * k + j];
    let mut rng = Rng::new(config.seed);
    let mut blocks = Vec::new();
    let mut acc = vec![0.0; k];
    let mut exceed = [0usize; 3];
    for _ in 0..config.reps {
        stationary_blocks(&mut rng, t, q, &mut blocks);
        for (j, a) in acc.iter_mut().enumerate() {
            *a = blocks
                .iter()
                .map(|&(start, len)| {
                    if start + len <= t {
                        span(j, start, start + len)
                    } else {
                        span(j, start, t) + span(j, 0, start + len - t)
                    }
                })
                .sum();
        }
        for (e, centre) in exceed.iter_mut().zip(&centres) {
            let max = acc
                .iter()
                .zip(centre)
                .map(|(a, c)| a / tf - c)
                .fold(f64::NEG_INFINITY, f64::max);
            if max > statistic {
                *e += 1;
            }
        }
    }
    let p = |e: usize| e as f64 / config.reps as f64;
    Spa {
        lower: p(exceed[0]),
        consistent: p(exceed[1]),
        upper: p(exceed[2]),
        statistic,
        variances,
        relevant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(studentize: bool) -> SpaConfig {
        SpaConfig {
            reps: 500,
            mean_block: 5.0,
            seed: 1,
            studentize,
        }
    }

    #[test]
    fn degenerate_inputs_give_nan() {
        let b = vec![0.01, -0.02, 0.03];
        assert!(spa(&b, &[], &config(false)).consistent.is_nan());
        assert!(
            spa(&b, &[vec![0.1, 0.2]], &config(false))
                .consistent
                .is_nan()
        );
        assert!(
            spa(&[0.1], &[vec![0.2]], &config(false))
                .consistent
                .is_nan()
        );
        assert!(
            spa(&b, &[vec![0.1, f64::NAN, 0.0]], &config(false))
                .consistent
                .is_nan()
        );
        let mut c = config(false);
        c.reps = 0;
        assert!(spa(&b, std::slice::from_ref(&b), &c).consistent.is_nan());
        c.reps = 10;
        c.mean_block = 0.5;
        assert!(spa(&b, std::slice::from_ref(&b), &c).consistent.is_nan());
        // A copy of the benchmark: defined without studentizing, undefined with it.
        assert!(
            spa(&b, std::slice::from_ref(&b), &config(false))
                .consistent
                .is_finite()
        );
        assert!(
            spa(&b, std::slice::from_ref(&b), &config(true))
                .consistent
                .is_nan()
        );
    }

    #[test]
    fn ordering_and_power() {
        let mut rng = Rng::new(11);
        let t = 400;
        let bench: Vec<f64> = (0..t).map(|_| 0.01 * rng.normal()).collect();
        let good: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                (0..t)
                    .map(|s| bench[s] + 0.004 * (i == 0) as u8 as f64 + 0.01 * rng.normal())
                    .collect()
            })
            .collect();
        let r = spa(&bench, &good, &config(false));
        assert!(r.lower <= r.consistent && r.consistent <= r.upper, "{r:?}");
        assert!(r.consistent < 0.05, "{r:?}");
        let bad: Vec<Vec<f64>> = good
            .iter()
            .map(|c| c.iter().zip(&bench).map(|(x, b)| 2.0 * b - x).collect())
            .collect();
        let r = spa(&bench, &bad, &config(true));
        assert!(r.consistent > 0.5, "{r:?}");
        assert_eq!(spa(&bench, &bad, &config(true)), r);
    }
}
