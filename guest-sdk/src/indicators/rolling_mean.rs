use super::util::{WindowSum, expect_tag, tag};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Mean of the last `period` values of any series (volumes, returns, spreads, fill slippage).
///
/// It computes exactly what [`Sma`](super::Sma) computes, with the same drift-free running sum;
/// it exists so that code averaging something other than a price says so, and so that its
/// snapshots are tagged as a different indicator and cannot be swapped with an `Sma`'s by
/// mistake. It additionally exposes the window's sum and fill level, which statistics code
/// wants and price code does not.
#[derive(Clone, Debug)]
pub struct RollingMean {
    window: WindowSum,
}

impl RollingMean {
    /// A mean over `period` values. A period of 0 is treated as 1 (the mean is then the latest
    /// value) so that a bad parameter cannot panic inside the sandbox.
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

    /// The sum of the window once it is full (the running sum, with the same drift guarantee
    /// as the mean).
    pub fn sum(&self) -> Option<f64> {
        self.window.is_full().then(|| self.window.sum())
    }

    /// How many values the window holds so far (reaches `period` at the end of warm-up).
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// Whether nothing has been fed since construction or the last `reset`.
    pub fn is_empty(&self) -> bool {
        self.window.len() == 0
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

impl Snapshot for RollingMean {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::ROLLING_MEAN);
        self.window.save(w);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::ROLLING_MEAN, "RollingMean")?;
        self.window = WindowSum::read(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::check_round_trip;

    #[test]
    fn hand_computed() {
        let mut m = RollingMean::new(2);
        assert!(m.is_empty());
        // (1+3)/2 = 2, (3+5)/2 = 4, (5-9)/2 = -2
        assert_eq!(m.update(1.0), None);
        assert_eq!(m.sum(), None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.update(3.0), Some(2.0));
        assert_eq!(m.update(5.0), Some(4.0));
        assert_eq!(m.sum(), Some(8.0));
        assert_eq!(m.update(-9.0), Some(-2.0));
        assert_eq!(m.len(), 2);
        m.reset();
        assert_eq!(m.value(), None);
        assert!(m.is_empty());
    }

    #[test]
    fn period_zero_is_one() {
        let mut m = RollingMean::new(0);
        assert_eq!(m.period(), 1);
        assert_eq!(m.update(7.0), Some(7.0));
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(RollingMean::new(5), RollingMean::new(5), |m, x| m.update(x));
    }
}
