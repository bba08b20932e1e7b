use super::util::{expect_tag, tag};
use super::{RollingStd, Sma};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// One reading of Bollinger bands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BollingerValue {
    /// `middle + k * std_dev`: a close above it is stretched to the upside.
    pub upper: f64,
    /// The simple moving average the bands are centred on.
    pub middle: f64,
    /// `middle - k * std_dev`: a close below it is stretched to the downside.
    pub lower: f64,
    /// The window's population standard deviation, for band width or %b without undoing `k`.
    pub std_dev: f64,
}

/// Bollinger bands: a simple moving average with bands `k` population standard deviations
/// above and below it (20 and 2.0 are the classic choice).
///
/// The deviation comes from [`RollingStd`] (numerically stable on high price levels) and the
/// middle band from an [`Sma`] of the same period, so a strategy that also tracks that SMA sees
/// the same number in both.
#[derive(Clone, Debug)]
pub struct Bollinger {
    std: RollingStd,
    middle: Sma,
    k: f64,
}

impl Bollinger {
    /// Bands over `period` values, `k` standard deviations wide. A period of 0 is treated as 1
    /// (the bands then collapse onto the latest value) so that a bad parameter cannot panic
    /// inside the sandbox. `k` is used as given; a negative `k` swaps the bands.
    pub fn new(period: usize, k: f64) -> Self {
        Self {
            std: RollingStd::new(period),
            middle: Sma::new(period),
            k,
        }
    }

    /// Feed one value; the bands once `period` values have been seen, `None` before.
    pub fn update(&mut self, x: f64) -> Option<BollingerValue> {
        self.std.update(x);
        self.middle.update(x);
        self.value()
    }

    /// The latest bands, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<BollingerValue> {
        let middle = self.middle.value()?;
        let std_dev = self.std.value()?;
        Some(BollingerValue {
            upper: middle + self.k * std_dev,
            middle,
            lower: middle - self.k * std_dev,
            std_dev,
        })
    }

    /// Whether `period` values have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.std.is_ready()
    }

    /// The window length actually used (at least 1).
    pub fn period(&self) -> usize {
        self.std.period()
    }

    /// The band width multiplier given to [`Bollinger::new`].
    pub fn k(&self) -> f64 {
        self.k
    }

    /// Forget all input, as if newly constructed, keeping the allocation.
    pub fn reset(&mut self) {
        self.std.reset();
        self.middle.reset();
    }
}

impl Snapshot for Bollinger {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::BOLLINGER);
        w.f64(self.k);
        self.std.save(w);
        self.middle.save(w);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::BOLLINGER, "Bollinger")?;
        let k = r.f64()?;
        let mut std = self.std.clone();
        std.load(r)?;
        if std.is_sample() {
            return Err(StateError(
                "Bollinger bands over a sample standard deviation".into(),
            ));
        }
        let mut middle = self.middle.clone();
        middle.load(r)?;
        if middle.period() != std.period() {
            return Err(StateError(
                "Bollinger middle and deviation periods differ".into(),
            ));
        }
        *self = Self { std, middle, k };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Sma;
    use crate::indicators::test_util::{assert_close, check_round_trip, prices};

    #[test]
    fn hand_computed_k2_on_five_values() {
        // 1..=5: mean 3, squared deviations 4+1+0+1+4 = 10, variance 10/5 = 2, sd sqrt(2).
        let mut b = Bollinger::new(5, 2.0);
        for x in [1.0, 2.0, 3.0, 4.0] {
            assert_eq!(b.update(x), None);
        }
        let v = b.update(5.0).unwrap();
        assert_eq!(v.middle, 3.0);
        assert_close(v.std_dev, std::f64::consts::SQRT_2, 1e-12);
        assert_close(v.upper, 5.828_427_124_746_19, 1e-12); // 3 + 2*sqrt(2)
        assert_close(v.lower, 0.171_572_875_253_81, 1e-12); // 3 - 2*sqrt(2)
        // Then 11: window 2,3,4,5,11, mean 5, squares 9+4+1+0+36 = 50, variance 10.
        let v = b.update(11.0).unwrap();
        assert_eq!(v.middle, 5.0);
        assert_close(v.upper, 11.324_555_320_336_76, 1e-12); // 5 + 2*sqrt(10)
        assert_close(v.lower, -1.324_555_320_336_759, 1e-12); // 5 - 2*sqrt(10)
        assert_eq!(b.value(), Some(v));
        assert_eq!(b.k(), 2.0);
        b.reset();
        assert!(!b.is_ready());
    }

    #[test]
    fn middle_is_the_sma_bit_for_bit() {
        let mut b = Bollinger::new(20, 2.0);
        let mut s = Sma::new(20);
        for x in prices(3, 2_000, 100.0, 0.02) {
            assert_eq!(b.update(x).map(|v| v.middle), s.update(x));
        }
    }

    #[test]
    fn period_zero_is_one() {
        let mut b = Bollinger::new(0, 2.0);
        assert_eq!(b.period(), 1);
        let v = b.update(4.0).unwrap();
        assert_eq!((v.lower, v.middle, v.upper), (4.0, 4.0, 4.0));
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(Bollinger::new(20, 2.0), Bollinger::new(20, 2.0), |b, x| {
            b.update(x)
        });
        check_round_trip(Bollinger::new(6, 1.5), Bollinger::new(20, 2.0), |b, x| {
            b.update(x)
        });
    }
}
