use super::util::{check, expect_tag, read_period, read_usize, tag, write_usize};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Relative strength index, Wilder's original definition (0 to 100).
///
/// The first average gain and loss are the simple means of the first `period` price changes
/// (so the first value needs `period + 1` prices); after that each is smoothed as
/// `avg = (avg * (period - 1) + x) / period`. Variants seeded differently or smoothed with an
/// EMA disagree with published RSI values for hundreds of bars, which is why this one follows
/// Wilder exactly. `RSI = 100 - 100 / (1 + avg_gain / avg_loss)`, with the division by zero
/// resolved as 100 when only gains occurred and 50 for a perfectly flat window.
#[derive(Clone, Debug)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    seen: usize,
    gain_sum: f64,
    loss_sum: f64,
    /// (average gain, average loss) once seeded.
    avg: Option<(f64, f64)>,
}

impl Rsi {
    /// An RSI over `period` price changes (14 is the classic choice). A period of 0 is treated
    /// as 1 so that a bad parameter cannot panic inside the sandbox.
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            prev: None,
            seen: 0,
            gain_sum: 0.0,
            loss_sum: 0.0,
            avg: None,
        }
    }

    /// Feed one price; the RSI once `period` changes (`period + 1` prices) have been seen.
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let prev = self.prev.replace(x)?;
        let change = x - prev;
        // Written with comparisons (not `max`) so a NaN change propagates instead of vanishing.
        let gain = if change < 0.0 { 0.0 } else { change };
        let loss = if change > 0.0 { 0.0 } else { -change };
        let n = self.period as f64;
        match self.avg {
            Some((g, l)) => {
                self.avg = Some(((g * (n - 1.0) + gain) / n, (l * (n - 1.0) + loss) / n))
            }
            None => {
                self.gain_sum += gain;
                self.loss_sum += loss;
                self.seen += 1;
                if self.seen == self.period {
                    self.avg = Some((self.gain_sum / n, self.loss_sum / n));
                }
            }
        }
        self.value()
    }

    /// The latest RSI, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<f64> {
        let (gain, loss) = self.avg?;
        Some(if loss == 0.0 {
            if gain == 0.0 { 50.0 } else { 100.0 }
        } else {
            100.0 - 100.0 / (1.0 + gain / loss)
        })
    }

    /// Whether the first `period` changes have been averaged, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.avg.is_some()
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

impl Snapshot for Rsi {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::RSI);
        write_usize(w, self.period);
        w.opt_f64(self.prev);
        write_usize(w, self.seen);
        w.f64(self.gain_sum);
        w.f64(self.loss_sum);
        w.opt_f64(self.avg.map(|a| a.0));
        w.opt_f64(self.avg.map(|a| a.1));
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::RSI, "Rsi")?;
        let period = read_period(r)?;
        let prev = r.opt_f64()?;
        let seen = read_usize(r)?;
        let gain_sum = r.f64()?;
        let loss_sum = r.f64()?;
        let avg = match (r.opt_f64()?, r.opt_f64()?) {
            (Some(g), Some(l)) => Some((g, l)),
            (None, None) => None,
            _ => return Err(StateError("Rsi has only one of its two averages".into())),
        };
        check(
            seen <= period,
            "Rsi has seen more seed changes than its period",
        )?;
        check(
            avg.is_some() == (seen == period),
            "Rsi seed count and averages disagree",
        )?;
        check(
            prev.is_some() || seen == 0,
            "Rsi counted changes without a previous price",
        )?;
        *self = Self {
            period,
            prev,
            seen,
            gain_sum,
            loss_sum,
            avg,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::check_round_trip;

    #[test]
    fn hand_computed_period_two() {
        // Prices 1, 2, 3, 2, 4 -> changes +1, +1, -1, +2.
        // Seed after two changes: avg gain (1+1)/2 = 1, avg loss 0 -> RSI 100.
        // Change -1: gain (1*1+0)/2 = 0.5, loss (0*1+1)/2 = 0.5 -> RS 1 -> RSI 50.
        // Change +2: gain (0.5+2)/2 = 1.25, loss (0.5+0)/2 = 0.25 -> RS 5 -> 100 - 100/6.
        let mut r = Rsi::new(2);
        let out: Vec<_> = [1.0, 2.0, 3.0, 2.0, 4.0]
            .into_iter()
            .map(|x| r.update(x))
            .collect();
        assert_eq!(out[..2], [None, None]);
        assert_eq!(out[2], Some(100.0));
        assert_eq!(out[3], Some(50.0));
        assert!((out[4].unwrap() - 83.333_333_333_333_33).abs() < 1e-12);
        assert_eq!(r.value(), out[4]);
        // Change -4 (to 0): gain 1.25/2 = 0.625, loss (0.25+4)/2 = 2.125
        // -> RS 0.625/2.125 = 5/17 -> 100 - 100/(22/17) = 100 - 1700/22 = 22.727272...
        assert!((r.update(0.0).unwrap() - 22.727_272_727_272_73).abs() < 1e-12);
    }

    #[test]
    fn flat_and_falling() {
        let mut flat = Rsi::new(3);
        for _ in 0..3 {
            assert_eq!(flat.update(5.0), None);
        }
        assert_eq!(flat.update(5.0), Some(50.0));
        let mut falling = Rsi::new(3);
        let out: Vec<_> = [9.0, 8.0, 7.0, 6.0]
            .into_iter()
            .map(|x| falling.update(x))
            .collect();
        assert_eq!(out, [None, None, None, Some(0.0)]);
        falling.reset();
        assert!(!falling.is_ready());
        assert_eq!(falling.update(1.0), None);
    }

    #[test]
    fn period_zero_is_one() {
        let mut r = Rsi::new(0);
        assert_eq!(r.period(), 1);
        assert_eq!(r.update(1.0), None);
        assert_eq!(r.update(2.0), Some(100.0));
        assert_eq!(r.update(1.5), Some(0.0));
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(Rsi::new(14), Rsi::new(14), |r, x| r.update(x));
        check_round_trip(Rsi::new(50), Rsi::new(50), |r, x| r.update(x));
    }
}
