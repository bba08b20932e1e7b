use super::util::{WindowSum, check, expect_tag, tag};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Standard deviation of the last `period` values: population (divide by n) from
/// [`RollingStd::new`], sample (divide by n - 1) from [`RollingStd::sample`].
///
/// The textbook streaming shortcut, `E[x²] - E[x]²`, cancels catastrophically on prices: at a
/// level of 50 000 with moves of a few ticks it loses every significant digit. This keeps the
/// sum of squared deviations from the window mean (`M2`) instead and updates it Welford-style
/// when a value enters and another leaves (`M2 += (x - old) * (x - mean' + old - mean)`), which
/// only involves differences of nearby numbers. Every `period` updates `M2` (and the window sum)
/// are recomputed exactly with a two-pass over the ring buffer, so rounding cannot build up over
/// a long feed.
///
/// One case is left: a window whose spread collapses far below the size of recent moves (two
/// nearly equal closes right after a jump) makes even the Welford step lose relative accuracy.
/// Each step therefore also accumulates a bound on its rounding error, and when that bound
/// exceeds 1e-11 of `M2` the two-pass recompute happens early. On market data that is rare, so
/// the cost stays amortised O(1), and the result tracks a naive two-pass computation to better
/// than 1e-10 relative.
#[derive(Clone, Debug)]
pub struct RollingStd {
    window: WindowSum,
    m2: f64,
    /// Bound on the rounding error accumulated in `m2` since its last exact recompute.
    m2_err: f64,
    sample: bool,
}

/// Largest accepted relative error bound on `m2` before an early exact recompute.
const M2_REL_TOL: f64 = 1e-11;

impl RollingStd {
    /// Population standard deviation over `period` values, the convention behind Bollinger
    /// bands and most volatility filters. A period of 0 is treated as 1 (the deviation is then
    /// always 0) so that a bad parameter cannot panic inside the sandbox.
    pub fn new(period: usize) -> Self {
        Self {
            window: WindowSum::new(period),
            m2: 0.0,
            m2_err: 0.0,
            sample: false,
        }
    }

    /// Sample standard deviation (Bessel's n - 1), for when the window estimates the spread of
    /// a larger process, as in return-volatility estimates. It is undefined for a single value,
    /// so periods below 2 are treated as 2 rather than panicking or dividing by zero.
    pub fn sample(period: usize) -> Self {
        Self {
            window: WindowSum::new(period.max(2)),
            m2: 0.0,
            m2_err: 0.0,
            sample: true,
        }
    }

    /// Feed one value; the standard deviation once `period` values have been seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let old_mean = if self.window.len() == 0 {
            x
        } else {
            self.window.mean()
        };
        let pushed = self.window.push(x);
        let mean = self.window.mean();
        match pushed.evicted {
            _ if pushed.exact => self.recompute_m2(),
            // Warm-up: the window fills on an exact recompute, which replaces this estimate.
            None => self.m2 += (x - old_mean) * (x - mean),
            Some(old) => {
                let dx = x - old;
                self.m2 += dx * (x - mean + old - old_mean);
                // Each factor is off by a few ulps of its operands, and each mean by an ulp of
                // the level (the compensated window sum keeps the mean from drifting further).
                self.m2_err += 4.0
                    * f64::EPSILON
                    * dx.abs()
                    * ((x - mean).abs() + (old - old_mean).abs() + dx.abs() + mean.abs());
                if self.m2_err > M2_REL_TOL * self.m2 {
                    self.recompute_m2();
                }
            }
        }
        self.value()
    }

    /// Two-pass `M2` around the current mean. The window sum is deliberately left alone so
    /// the mean stays bit-identical to an `Sma`'s; its tiny error only adds `n * error²`.
    fn recompute_m2(&mut self) {
        let mean = self.window.mean();
        self.m2 = self
            .window
            .iter()
            .fold(0.0, |acc, v| acc + (v - mean) * (v - mean));
        self.m2_err = 0.0;
    }

    /// The latest standard deviation, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// The latest variance (the square of `value`), for code that adds or compares variances
    /// and would otherwise square a square root.
    pub fn variance(&self) -> Option<f64> {
        if !self.window.is_full() {
            return None;
        }
        // Rounding can leave M2 a hair below zero for a constant window; never report a
        // negative variance (or a NaN square root). Comparisons keep a genuine NaN visible.
        let m2 = if self.m2 < 0.0 { 0.0 } else { self.m2 };
        let n = self.window.len() as f64;
        Some(m2 / if self.sample { n - 1.0 } else { n })
    }

    /// The window mean, bit-identical to an [`Sma`](super::Sma) of the same period, so bands
    /// built from both line up exactly.
    pub fn mean(&self) -> Option<f64> {
        self.window.is_full().then(|| self.window.mean())
    }

    /// Whether `period` values have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    /// The window length actually used (at least 1; at least 2 for the sample variant).
    pub fn period(&self) -> usize {
        self.window.period()
    }

    /// Whether this divides by n - 1 (built with [`RollingStd::sample`]).
    pub fn is_sample(&self) -> bool {
        self.sample
    }

    /// Forget all input, as if newly constructed, keeping the allocation.
    pub fn reset(&mut self) {
        self.window.reset();
        self.m2 = 0.0;
        self.m2_err = 0.0;
    }
}

impl Snapshot for RollingStd {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::ROLLING_STD);
        w.bool(self.sample);
        self.window.save(w);
        w.f64(self.m2);
        w.f64(self.m2_err);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::ROLLING_STD, "RollingStd")?;
        let sample = r.bool()?;
        let window = WindowSum::read(r)?;
        let m2 = r.f64()?;
        let m2_err = r.f64()?;
        check(
            !sample || window.period() >= 2,
            "sample RollingStd with a period below 2",
        )?;
        *self = Self {
            window,
            m2,
            m2_err,
            sample,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::{XorShift, assert_close, check_round_trip, prices};

    #[test]
    fn hand_computed_period_four() {
        // Windows of 2, 4, 4, 4, 5, 5, 7, 9 (mean; squared deviations summed; variance = M2/4):
        // [2,4,4,4] 3.5; 2.25+0.25*3 = 3 -> 0.75
        // [4,4,4,5] 4.25; 0.0625*3+0.5625 = 0.75 -> 0.1875
        // [4,4,5,5] 4.5; 0.25*4 = 1 -> 0.25
        // [4,5,5,7] 5.25; 1.5625+0.0625*2+3.0625 = 4.75 -> 1.1875
        // [5,5,7,9] 6.5; 2.25*2+0.25+6.25 = 11 -> 2.75
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut pop = RollingStd::new(4);
        let mut smp = RollingStd::sample(4);
        let m2 = [3.0, 0.75, 1.0, 4.75, 11.0];
        let means = [3.5, 4.25, 4.5, 5.25, 6.5];
        for (i, &x) in xs.iter().enumerate() {
            let (p, s) = (pop.update(x), smp.update(x));
            if i < 3 {
                assert_eq!((p, s), (None, None));
                continue;
            }
            assert_close(p.unwrap(), (m2[i - 3] / 4.0f64).sqrt(), 1e-12);
            assert_close(s.unwrap(), (m2[i - 3] / 3.0f64).sqrt(), 1e-12);
            assert_close(pop.variance().unwrap(), m2[i - 3] / 4.0, 1e-12);
            assert_eq!(pop.mean(), Some(means[i - 3]));
        }
        // The classic example: population std dev of all eight values is exactly 2.
        let mut all = RollingStd::new(8);
        let mut all_sample = RollingStd::sample(8);
        for x in xs {
            all.update(x);
            all_sample.update(x);
        }
        assert_eq!(all.value(), Some(2.0));
        assert_close(all_sample.value().unwrap(), (32.0f64 / 7.0).sqrt(), 1e-12);
        all.reset();
        assert!(!all.is_ready());
    }

    #[test]
    fn constant_window_is_zero_not_nan() {
        let mut s = RollingStd::new(3);
        for _ in 0..10 {
            s.update(0.1 + 0.2);
        }
        assert_eq!(s.value(), Some(0.0));
    }

    fn naive(window: &[f64], sample: bool) -> f64 {
        let n = window.len() as f64;
        let mean = window.iter().fold(0.0, |a, b| a + b) / n;
        let m2 = window.iter().fold(0.0, |a, v| a + (v - mean) * (v - mean));
        (m2 / if sample { n - 1.0 } else { n }).sqrt()
    }

    fn assert_matches_naive(p: &[f64], period: usize, sample: bool) {
        let mut s = if sample {
            RollingStd::sample(period)
        } else {
            RollingStd::new(period)
        };
        for (i, &x) in p.iter().enumerate() {
            let v = s.update(x);
            if i + 1 < period {
                assert_eq!(v, None);
                continue;
            }
            let want = naive(&p[i + 1 - period..=i], sample);
            let got = v.unwrap();
            // A flat window has no scale of its own; measure against the price level then.
            let scale = if want == 0.0 { x.abs() } else { want };
            let rel = (got - want).abs() / scale;
            assert!(
                rel <= 1e-9,
                "period {period} at {i}: {got} vs naive {want} (rel {rel:e})"
            );
        }
    }

    #[test]
    fn matches_naive_two_pass_on_10k_prices() {
        // Random walk around 100 with moves up to 1%.
        let p = prices(0x2545_F491_4F6C_DD1D, 10_000, 100.0, 0.01);
        for period in [2, 3, 20, 100, 1000] {
            assert_matches_naive(&p, period, false);
            assert_matches_naive(&p, period, true);
        }
        // A high price level with tiny moves: where E[x^2] - E[x]^2 would collapse.
        let mut rng = XorShift(99);
        let mut level = 50_000.0;
        let ticks: Vec<f64> = (0..10_000)
            .map(|_| {
                level += ((rng.next_f64() * 11.0).floor() - 5.0) * 0.5;
                level
            })
            .collect();
        for period in [5, 20, 250] {
            assert_matches_naive(&ticks, period, false);
        }
    }

    #[test]
    fn period_zero() {
        let mut s = RollingStd::new(0);
        assert_eq!(s.period(), 1);
        assert_eq!(s.update(3.0), Some(0.0));
        let mut s = RollingStd::sample(0);
        assert_eq!(s.period(), 2);
        assert!(s.is_sample());
        assert_eq!(s.update(1.0), None);
        assert_close(s.update(3.0).unwrap(), 2.0f64.sqrt(), 1e-12);
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(RollingStd::new(20), RollingStd::new(20), |s, x| s.update(x));
        check_round_trip(RollingStd::sample(9), RollingStd::new(20), |s, x| {
            s.update(x)
        });
    }
}
