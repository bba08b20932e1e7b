use super::util::{check, expect_tag, read_period, read_usize, tag, write_usize};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Exponential moving average with `alpha = 2 / (period + 1)`.
///
/// It is seeded with the simple mean of the first `period` values and reports `None` until
/// then. Seeding with the first value instead would weight that single bar far more than the
/// classic definition does, and charting packages and published backtests use the SMA seed, so
/// this is what makes our numbers comparable to theirs. After the seed each update is
/// `ema += alpha * (x - ema)`, O(1) with no buffer.
#[derive(Clone, Debug)]
pub struct Ema {
    period: usize,
    alpha: f64,
    seen: usize,
    seed_sum: f64,
    value: Option<f64>,
}

impl Ema {
    /// An EMA over `period` values. A period of 0 is treated as 1 (alpha = 1: the EMA is then
    /// the latest value) so that a bad parameter cannot panic inside the sandbox.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self {
            period,
            alpha: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed_sum: 0.0,
            value: None,
        }
    }

    /// Feed one value; the EMA from the `period`-th value on, `None` before.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        match self.value {
            Some(ema) => self.value = Some(ema + self.alpha * (x - ema)),
            None => {
                self.seed_sum += x;
                self.seen += 1;
                if self.seen == self.period {
                    self.value = Some(self.seed_sum / self.period as f64);
                }
            }
        }
        self.value
    }

    /// The latest EMA, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// Whether the SMA seed has been taken, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.value.is_some()
    }

    /// The period actually used (at least 1).
    pub fn period(&self) -> usize {
        self.period
    }

    /// The smoothing factor, `2 / (period + 1)`, for code that reasons about the EMA's lag.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Forget all input, as if newly constructed.
    pub fn reset(&mut self) {
        *self = Self::new(self.period);
    }
}

impl Snapshot for Ema {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::EMA);
        write_usize(w, self.period);
        write_usize(w, self.seen);
        w.f64(self.seed_sum);
        w.opt_f64(self.value);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::EMA, "Ema")?;
        let period = read_period(r)?;
        let seen = read_usize(r)?;
        let seed_sum = r.f64()?;
        let value = r.opt_f64()?;
        check(
            seen <= period,
            "Ema has seen more seed values than its period",
        )?;
        check(
            value.is_some() == (seen == period),
            "Ema seed count and value disagree",
        )?;
        *self = Self {
            seen,
            seed_sum,
            value,
            ..Self::new(period)
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::check_round_trip;

    #[test]
    fn hand_computed() {
        // alpha = 2/(3+1) = 0.5; seed = (1+2+3)/3 = 2; then 2+0.5*(4-2) = 3, 3+0.5*(5-3) = 4.
        let mut e = Ema::new(3);
        assert_eq!(e.alpha(), 0.5);
        let out: Vec<_> = (1..=5).map(|x| e.update(x as f64)).collect();
        assert_eq!(out, [None, None, Some(2.0), Some(3.0), Some(4.0)]);
        // 4 + 0.5*(0-4) = 2
        assert_eq!(e.update(0.0), Some(2.0));
        assert_eq!(e.value(), Some(2.0));
        e.reset();
        assert!(!e.is_ready());
        assert_eq!(e.update(1.0), None);
    }

    #[test]
    fn period_four() {
        // alpha = 2/5 = 0.4; seed = (2+4+6+8)/4 = 5; 5+0.4*(10-5) = 7; 7+0.4*(2-7) = 5.
        let mut e = Ema::new(4);
        let out: Vec<_> = [2.0, 4.0, 6.0, 8.0, 10.0, 2.0]
            .into_iter()
            .map(|x| e.update(x))
            .collect();
        assert_eq!(out[..3], [None, None, None]);
        assert_eq!(out[3], Some(5.0));
        assert!((out[4].unwrap() - 7.0).abs() < 1e-12);
        assert!((out[5].unwrap() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn period_zero_is_one() {
        let mut e = Ema::new(0);
        assert_eq!(e.period(), 1);
        assert_eq!(e.alpha(), 1.0);
        assert_eq!(e.update(3.0), Some(3.0));
        assert_eq!(e.update(8.0), Some(8.0));
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(Ema::new(12), Ema::new(12), |e, x| e.update(x));
        // Saved mid-seed: 37 values into a 60-bar EMA.
        check_round_trip(Ema::new(60), Ema::new(60), |e, x| e.update(x));
    }
}
