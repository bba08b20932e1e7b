//! The Sharpe ratio and the closed-form statistics built on it: the probabilistic Sharpe
//! ratio, the deflated Sharpe ratio and the minimum track record length.
//!
//! Everything is per period: a Sharpe ratio of daily returns is a daily Sharpe ratio, and a
//! benchmark passed in must be on the same scale. Annualizing would only multiply both sides
//! of every comparison by √periods and would hide which period count T the test uses.

use super::normal::{normal_cdf, normal_inv_cdf};

/// The Euler–Mascheroni constant γ (Bailey & López de Prado's expected-maximum formula).
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// (mean, sample standard deviation with ddof = 1); `None` below two points.
fn mean_std(x: &[f64]) -> Option<(f64, f64)> {
    if x.len() < 2 {
        return None;
    }
    let m = mean(x);
    let ss: f64 = x.iter().map(|v| (v - m) * (v - m)).sum();
    Some((m, (ss / (x.len() - 1) as f64).sqrt()))
}

/// Per-period Sharpe ratio: mean / sample standard deviation (ddof = 1), no risk-free rate
/// and no annualization (pass excess returns if a rate matters).
///
/// Fewer than two points, or zero variance, give 0 rather than NaN or ±∞: a candidate that
/// never traded, or earned a constant, has shown no risk-adjusted edge, and a fitness or a
/// ranking must stay a number. A NaN among the returns gives NaN: it is a bug upstream that a
/// silently dropped point would hide.
pub fn sharpe(returns: &[f64]) -> f64 {
    match mean_std(returns) {
        None => 0.0,
        Some((m, _)) if m.is_nan() => f64::NAN,
        Some((_, 0.0)) => 0.0,
        Some((m, s)) => m / s,
    }
}

/// (skewness γ3, kurtosis γ4) as population moments: m3/m2^1.5 and m4/m2², with the
/// kurtosis not in excess (a normal has 3). These are the moments of Bailey & López de
/// Prado's formulas and skfolio's `skew` / `kurtosis`. `None` when the second moment is at
/// most (ε·mean)² (constant up to rounding, as skfolio decides), the input is empty, or a
/// moment is not finite.
fn moments(x: &[f64]) -> Option<(f64, f64)> {
    if x.is_empty() {
        return None;
    }
    let m = mean(x);
    let mut dev: Vec<f64> = x.iter().map(|v| v - m).collect();
    // The mean itself is rounded; removing the residual offset keeps m3 from picking up a
    // spurious 3·offset·m2 term (skfolio does the same, so the numbers agree to rounding).
    let off = mean(&dev);
    dev.iter_mut().for_each(|d| *d -= off);
    let n = dev.len() as f64;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for d in &dev {
        let d2 = d * d;
        m2 += d2;
        m3 += d2 * d;
        m4 += d2 * d2;
    }
    let (m2, m3, m4) = (m2 / n, m3 / n, m4 / n);
    if m2.is_nan() || m2 <= (f64::EPSILON * m) * (f64::EPSILON * m) {
        return None;
    }
    let (skew, kurt) = (m3 / m2.powf(1.5), m4 / (m2 * m2));
    (skew.is_finite() && kurt.is_finite()).then_some((skew, kurt))
}

/// Sample skewness γ3 = m3 / m2^1.5 (population moments, no small-sample correction, as in
/// the PSR papers). NaN for empty or constant input.
pub fn skewness(returns: &[f64]) -> f64 {
    moments(returns).map_or(f64::NAN, |m| m.0)
}

/// Sample kurtosis γ4 = m4 / m2², not in excess (3 for a normal), population moments. NaN
/// for empty or constant input.
pub fn kurtosis(returns: &[f64]) -> f64 {
    moments(returns).map_or(f64::NAN, |m| m.1)
}

/// What PSR and minTRL need of a series: its Sharpe ratio, length and the variance factor
/// 1 − γ3·SR + (γ4 − 1)/4·SR² of the Sharpe estimator (Mertens 2002; Bailey & López de
/// Prado 2012). `None` when that is undefined: under three points (skfolio's rule: the
/// moments of two points say nothing), NaN in the input, zero variance, or a factor ≤ 0.
fn sharpe_and_factor(returns: &[f64]) -> Option<(f64, f64, usize)> {
    if returns.len() < 3 {
        return None;
    }
    let (m, s) = mean_std(returns)?;
    if s.is_nan() || s <= 0.0 || !m.is_finite() {
        return None;
    }
    let sr = m / s;
    let (g3, g4) = moments(returns)?;
    let factor = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr;
    (factor > 0.0).then_some((sr, factor, returns.len()))
}

/// Probabilistic Sharpe Ratio (Bailey & López de Prado, "The Sharpe Ratio Efficient
/// Frontier", J. of Risk 15(2), 2012): the probability that the true Sharpe ratio exceeds
/// `benchmark_sr`, given T = `returns.len()` observations and their skew and fat tails:
///
/// PSR = Φ( (SR − SR*)·√(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²) ),
///
/// with SR the per-period [`sharpe`], γ3, γ4 the [`skewness`] and [`kurtosis`]. A high SR
/// from a short or crash-prone (negatively skewed, fat-tailed) record gets a low PSR.
///
/// NaN when it is undefined (skfolio's `probabilistic_sharpe_ratio` returns NaN for the same
/// cases): fewer than 3 points, constant or NaN returns, a non-positive variance factor, or
/// a NaN benchmark. Unlike [`sharpe`], a constant series is not 0 here: it is no evidence
/// either way, and a probability of ½ would claim one.
pub fn psr(returns: &[f64], benchmark_sr: f64) -> f64 {
    match sharpe_and_factor(returns) {
        Some((sr, factor, t)) => {
            normal_cdf((sr - benchmark_sr) * ((t - 1) as f64).sqrt() / factor.sqrt())
        }
        None => f64::NAN,
    }
}

/// Expected maximum Sharpe ratio of `n_trials` independent strategies whose true Sharpe
/// ratio is 0 and whose estimated Sharpe ratios have variance `trials_sr_variance` (Bailey &
/// López de Prado, "The Deflated Sharpe Ratio", J. of Portfolio Management 40(5), 2014,
/// from the extreme-value limit of the maximum of N normals):
///
/// E[max SR] ≈ √V·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e))), γ Euler–Mascheroni.
///
/// This is the bar a search's champion must clear just to beat luck. `n_trials` may be
/// fractional (an estimated effective count). One trial, or zero variance, gives 0: there
/// was no selection to correct for (skfolio's `expected_max_sharpe_ratio` does the same; the
/// variance is not even looked at for one trial). NaN for `n_trials` < 1 or not finite, or a
/// negative or non-finite variance.
pub fn expected_max_sharpe(trials_sr_variance: f64, n_trials: f64) -> f64 {
    if !n_trials.is_finite() || n_trials < 1.0 {
        return f64::NAN;
    }
    if n_trials == 1.0 {
        return 0.0;
    }
    if !trials_sr_variance.is_finite() || trials_sr_variance < 0.0 {
        return f64::NAN;
    }
    if trials_sr_variance == 0.0 {
        return 0.0;
    }
    let z1 = normal_inv_cdf(1.0 - 1.0 / n_trials);
    let z2 = normal_inv_cdf(1.0 - 1.0 / (n_trials * std::f64::consts::E));
    trials_sr_variance.sqrt() * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)
}

/// Deflated Sharpe Ratio (Bailey & López de Prado 2014): the [`psr`] of the selected
/// strategy's `returns` against the [`expected_max_sharpe`] of the search that selected it,
/// i.e. the probability that its true Sharpe ratio is positive after paying for the
/// `n_trials` tries. `trials_sr_variance` is the sample variance (ddof = 1) of the trials'
/// per-period Sharpe ratios ([`trials_sharpe_variance`]), or of the cluster representatives'
/// ([`super::cluster_sharpe_variance`]) with `n_trials` the cluster count when trials are
/// correlated. NaN wherever either part is.
pub fn dsr(returns: &[f64], trials_sr_variance: f64, n_trials: f64) -> f64 {
    psr(returns, expected_max_sharpe(trials_sr_variance, n_trials))
}

/// Sample variance (ddof = 1) of the per-period [`sharpe`] ratios of `series` (one return
/// series per trial): the V of [`expected_max_sharpe`] when every trial counts (skfolio's
/// `deflated_sharpe_ratio` uses the same). NaN for fewer than two series.
pub fn trials_sharpe_variance(series: &[Vec<f64>]) -> f64 {
    let srs: Vec<f64> = series.iter().map(|s| sharpe(s)).collect();
    sample_variance(&srs)
}

/// ddof = 1; NaN below two values.
pub(crate) fn sample_variance(x: &[f64]) -> f64 {
    mean_std(x).map_or(f64::NAN, |(_, s)| s * s)
}

/// Minimum Track Record Length (Bailey & López de Prado 2012): how many periods of returns
/// like these it takes before PSR(`benchmark_sr`) reaches `confidence`:
///
/// minTRL = 1 + (1 − γ3·SR + (γ4 − 1)/4·SR²)·(Φ⁻¹(confidence) / (SR − SR*))²,
///
/// in periods (fractional; compare with `returns.len()`). +∞ when SR ≤ SR*: no record length
/// makes a Sharpe ratio at or below the benchmark significantly above it (pypbo's `minTRL`
/// returns the formula's finite, meaningless value there). NaN when PSR is undefined (see
/// [`psr`]) or `confidence` is not strictly between 0 and 1.
pub fn min_trl(returns: &[f64], benchmark_sr: f64, confidence: f64) -> f64 {
    if !(confidence > 0.0 && confidence < 1.0) || benchmark_sr.is_nan() {
        return f64::NAN;
    }
    let Some((sr, factor, _)) = sharpe_and_factor(returns) else {
        return f64::NAN;
    };
    if sr <= benchmark_sr {
        return f64::INFINITY;
    }
    let z = normal_inv_cdf(confidence) / (sr - benchmark_sr);
    1.0 + factor * z * z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(sharpe(&[]), 0.0);
        assert_eq!(sharpe(&[0.01]), 0.0);
        assert_eq!(sharpe(&[0.01, 0.01, 0.01]), 0.0);
        assert!(sharpe(&[0.01, f64::NAN, 0.02]).is_nan());
        assert!(skewness(&[]).is_nan());
        assert!(kurtosis(&[2.0, 2.0]).is_nan());
        assert!(psr(&[0.01, 0.02], 0.0).is_nan());
        assert!(psr(&[0.01; 10], 0.0).is_nan());
        assert!(psr(&[0.01, f64::NAN, 0.02, 0.0], 0.0).is_nan());
        assert!(psr(&[0.01, -0.02, 0.03, 0.0], f64::NAN).is_nan());
        assert!(dsr(&[], 0.1, 10.0).is_nan());
        assert!(min_trl(&[0.01, -0.02, 0.03, 0.0], 0.0, 1.0).is_nan());
        assert!(min_trl(&[0.01, -0.02, 0.03, 0.0], 0.0, f64::NAN).is_nan());
        assert_eq!(
            min_trl(&[-0.01, -0.02, 0.03, 0.0], 0.0, 0.95),
            f64::INFINITY
        );
        assert!(trials_sharpe_variance(&[vec![0.1, 0.2]]).is_nan());
    }

    #[test]
    fn expected_max_edges() {
        assert_eq!(expected_max_sharpe(0.3, 1.0), 0.0);
        assert_eq!(expected_max_sharpe(f64::NAN, 1.0), 0.0);
        assert_eq!(expected_max_sharpe(0.0, 50.0), 0.0);
        assert!(expected_max_sharpe(0.1, 0.5).is_nan());
        assert!(expected_max_sharpe(-0.1, 5.0).is_nan());
        assert!(expected_max_sharpe(0.1, f64::NAN).is_nan());
        assert!(expected_max_sharpe(0.1, f64::INFINITY).is_nan());
        // More trials, higher bar.
        let a = expected_max_sharpe(0.01, 10.0);
        let b = expected_max_sharpe(0.01, 1e6);
        assert!(0.0 < a && a < b, "{a} {b}");
    }

    #[test]
    fn psr_at_its_own_sharpe_is_one_half_and_trl_matches_psr() {
        let r: Vec<f64> = (0..200)
            .map(|i| ((i * 37 % 101) as f64 - 45.0) / 1000.0)
            .collect();
        let sr = sharpe(&r);
        assert!((psr(&r, sr) - 0.5).abs() < 1e-15);
        // At T = minTRL(c) the PSR formula (with T − 1 = minTRL − 1) is exactly c.
        let trl = min_trl(&r, 0.0, 0.9);
        let (_, factor, _) = sharpe_and_factor(&r).unwrap();
        let z = sr * (trl - 1.0).sqrt() / factor.sqrt();
        assert!((normal_cdf(z) - 0.9).abs() < 1e-12);
    }
}
