use super::util::{WindowSum, expect_tag, tag};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Simple moving average: the plain mean of the last `period` values.
///
/// Crossover strategies compare two of these (or one against the price), so the value has to be
/// exact rather than drift with the length of the feed. A plain running sum would accumulate one
/// rounding error per add and per subtract forever, at the scale of the whole sum. Here the
/// running sum is compensated (errors stay at the scale of each change) and, to rule out drift
/// altogether, recomputed exactly from the ring buffer every `period` updates (and as soon as a
/// NaN or infinity leaves the window). That keeps the cost amortised O(1) and makes the value at
/// each recompute exactly the naive mean of the window, oldest value first.
#[derive(Clone, Debug)]
pub struct Sma {
    window: WindowSum,
}

impl Sma {
    /// A moving average over `period` values. A period of 0 is treated as 1 (the average is then
    /// the latest value) so that a bad parameter cannot panic inside the sandbox.
    pub fn new(period: usize) -> Self {
        Self {
            window: WindowSum::new(period),
        }
    }

    /// Feed one value; the mean once `period` values have been seen, `None` before.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        self.window.push(x);
        self.value()
    }

    /// The latest mean, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<f64> {
        self.window.is_full().then(|| self.window.mean())
    }

    /// Whether `period` values have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.window.is_full()
    }

    /// The window length actually used (at least 1).
    pub fn period(&self) -> usize {
        self.window.period()
    }

    /// Forget all input, as if newly constructed, keeping the allocation.
    pub fn reset(&mut self) {
        self.window.reset();
    }
}

impl Snapshot for Sma {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::SMA);
        self.window.save(w);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::SMA, "Sma")?;
        self.window = WindowSum::read(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::{check_round_trip, prices};

    #[test]
    fn hand_computed() {
        let mut s = Sma::new(3);
        let out: Vec<_> = [1.0, 2.0, 3.0, 4.0]
            .into_iter()
            .map(|x| s.update(x))
            .collect();
        // (1+2+3)/3 = 2, (2+3+4)/3 = 3
        assert_eq!(out, [None, None, Some(2.0), Some(3.0)]);
        assert_eq!(s.value(), Some(3.0));
        assert!(s.is_ready());
        // window 3,4,10 -> 17/3; window 4,10,-1 -> 13/3
        assert_eq!(s.update(10.0), Some(17.0 / 3.0));
        assert_eq!(s.update(-1.0), Some(13.0 / 3.0));
        s.reset();
        assert!(!s.is_ready());
        assert_eq!(s.value(), None);
        assert_eq!(s.update(5.0), None);
    }

    #[test]
    fn matches_naive_mean_exactly_at_recompute_points() {
        let p = prices(7, 5_000, 100.0, 0.01);
        let mut s = Sma::new(20);
        for (i, &x) in p.iter().enumerate() {
            let v = s.update(x);
            if i + 1 >= 20 {
                let naive = p[i + 1 - 20..=i].iter().fold(0.0, |a, b| a + b) / 20.0;
                let v = v.unwrap();
                assert!((v - naive).abs() <= 1e-12 * naive, "{v} vs {naive}");
                if (i + 1) % 20 == 0 {
                    assert_eq!(v, naive);
                }
            }
        }
    }

    #[test]
    fn nan_leaves_with_the_window() {
        let mut s = Sma::new(2);
        s.update(1.0);
        assert!(s.update(f64::NAN).unwrap().is_nan());
        assert!(s.update(3.0).unwrap().is_nan());
        assert_eq!(s.update(5.0), Some(4.0));
    }

    #[test]
    fn period_zero_is_one() {
        let mut s = Sma::new(0);
        assert_eq!(s.period(), 1);
        assert_eq!(s.update(4.5), Some(4.5));
        assert_eq!(s.update(-2.0), Some(-2.0));
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(Sma::new(10), Sma::new(10), |s, x| s.update(x));
        // The period travels with the snapshot.
        check_round_trip(Sma::new(7), Sma::new(3), |s, x| s.update(x));
    }
}
