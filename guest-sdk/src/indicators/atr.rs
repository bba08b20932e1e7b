use super::util::{check, expect_tag, read_period, read_usize, tag, write_usize};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Average true range, Wilder's definition: how far price typically travels in one bar,
/// gaps included. Used to size positions and place stops in units of current volatility.
///
/// The true range of a bar is the largest of `high - low`, `|high - previous close|` and
/// `|low - previous close|`, so an overnight gap counts as movement; the very first bar has no
/// previous close and uses `high - low`. The first ATR is the simple mean of the first `period`
/// true ranges, then `atr = (atr * (period - 1) + tr) / period`, matching published values.
#[derive(Clone, Debug)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    seen: usize,
    tr_sum: f64,
    atr: Option<f64>,
}

impl Atr {
    /// An ATR over `period` bars (14 is the classic choice). A period of 0 is treated as 1 (the
    /// ATR is then the latest true range) so that a bad parameter cannot panic inside the
    /// sandbox.
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            prev_close: None,
            seen: 0,
            tr_sum: 0.0,
            atr: None,
        }
    }

    /// Feed one bar; the ATR once `period` bars have been seen, `None` before.
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let range = high - low;
        let tr = match self.prev_close.replace(close) {
            None => range,
            Some(pc) => range.max((high - pc).abs()).max((low - pc).abs()),
        };
        let n = self.period as f64;
        match self.atr {
            Some(atr) => self.atr = Some((atr * (n - 1.0) + tr) / n),
            None => {
                self.tr_sum += tr;
                self.seen += 1;
                if self.seen == self.period {
                    self.atr = Some(self.tr_sum / n);
                }
            }
        }
        self.atr
    }

    /// The latest ATR, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<f64> {
        self.atr
    }

    /// Whether `period` bars have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.atr.is_some()
    }

    /// The period actually used (at least 1).
    pub fn period(&self) -> usize {
        self.period
    }

    /// Forget all input, as if newly constructed.
    pub fn reset(&mut self) {
        *self = Self::new(self.period);
    }
}

impl Snapshot for Atr {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::ATR);
        write_usize(w, self.period);
        w.opt_f64(self.prev_close);
        write_usize(w, self.seen);
        w.f64(self.tr_sum);
        w.opt_f64(self.atr);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::ATR, "Atr")?;
        let period = read_period(r)?;
        let prev_close = r.opt_f64()?;
        let seen = read_usize(r)?;
        let tr_sum = r.f64()?;
        let atr = r.opt_f64()?;
        check(
            seen <= period,
            "Atr has seen more seed bars than its period",
        )?;
        check(
            atr.is_some() == (seen == period),
            "Atr seed count and value disagree",
        )?;
        check(
            prev_close.is_some() || seen == 0,
            "Atr counted bars without a previous close",
        )?;
        *self = Self {
            period,
            prev_close,
            seen,
            tr_sum,
            atr,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::{assert_close, check_round_trip};

    #[test]
    fn hand_computed_period_three() {
        // (high, low, close) -> true range:
        // (10, 8, 9)       first bar: 10-8 = 2
        // (10, 9, 9.5)     max(1, |10-9| = 1, |9-9| = 0) = 1
        // (13, 11, 12)     gap up: max(2, |13-9.5| = 3.5, |11-9.5| = 1.5) = 3.5
        //                  -> ATR = (2+1+3.5)/3 = 13/6
        // (12, 7, 8)       max(5, |12-12| = 0, |7-12| = 5) = 5 -> (13/6*2+5)/3 = 28/9
        // (9, 8.5, 9)      gap up from 8: max(0.5, 1, 0.5) = 1 -> (28/9*2+1)/3 = 65/27
        let mut a = Atr::new(3);
        assert_eq!(a.update(10.0, 8.0, 9.0), None);
        assert_eq!(a.update(10.0, 9.0, 9.5), None);
        assert_close(a.update(13.0, 11.0, 12.0).unwrap(), 13.0 / 6.0, 1e-12);
        assert_close(a.update(12.0, 7.0, 8.0).unwrap(), 28.0 / 9.0, 1e-12);
        assert_close(a.update(9.0, 8.5, 9.0).unwrap(), 65.0 / 27.0, 1e-12);
        assert_close(a.value().unwrap(), 2.407_407_407_407_407, 1e-12);
        a.reset();
        assert!(!a.is_ready());
        // After a reset the first bar is again high - low, whatever the old close was.
        assert_eq!(Atr::new(1).update(5.0, 4.0, 4.5), Some(1.0));
    }

    #[test]
    fn period_zero_is_one() {
        let mut a = Atr::new(0);
        assert_eq!(a.period(), 1);
        assert_eq!(a.update(3.0, 1.0, 2.0), Some(2.0));
        // Gap down: max(0.5, |1.5-2| = 0.5, |1-2| = 1) = 1.
        assert_eq!(a.update(1.5, 1.0, 1.2), Some(1.0));
    }

    #[test]
    fn snapshot_round_trip() {
        let feed = |a: &mut Atr, x: f64| a.update(x * 1.01, x * 0.98, x);
        check_round_trip(Atr::new(14), Atr::new(14), feed);
        check_round_trip(Atr::new(40), Atr::new(14), feed);
    }
}
