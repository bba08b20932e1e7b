use super::Ema;
use super::util::{expect_tag, tag};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// One MACD reading. A plain value so strategies can keep the previous one to detect crosses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MacdValue {
    /// Fast EMA minus slow EMA: positive while short-term momentum leads.
    pub macd: f64,
    /// EMA of the MACD line; the MACD crossing it is the classic trigger.
    pub signal: f64,
    /// `macd - signal`: its sign change is the signal-line cross, its size the conviction.
    pub histogram: f64,
}

/// Moving average convergence/divergence: the gap between a fast and a slow EMA of the price,
/// plus an EMA of that gap (the signal line).
///
/// All three EMAs are [`Ema`]s, seeded with the SMA of their first values, so the MACD line
/// exists from the `slow`-th price and the first output (with signal and histogram) appears at
/// price `slow + signal - 1`. Nothing is reported before the signal line exists, so every
/// output has all three fields meaningful.
#[derive(Clone, Debug)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
}

impl Macd {
    /// A MACD from three EMA periods (12, 26, 9 is the classic choice). Each period of 0 is
    /// treated as 1 so that a bad parameter cannot panic inside the sandbox. `fast` is not
    /// required to be shorter than `slow`; swapped periods just flip the sign.
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        Self {
            fast: Ema::new(fast),
            slow: Ema::new(slow),
            signal: Ema::new(signal),
        }
    }

    /// Feed one price; MACD, signal and histogram once the signal line is seeded.
    pub fn update(&mut self, x: f64) -> Option<MacdValue> {
        let fast = self.fast.update(x);
        let slow = self.slow.update(x);
        if let (Some(f), Some(s)) = (fast, slow) {
            self.signal.update(f - s);
        }
        self.value()
    }

    /// The latest reading, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<MacdValue> {
        let macd = self.fast.value()? - self.slow.value()?;
        let signal = self.signal.value()?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }

    /// Whether the signal line is seeded, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.signal.is_ready()
    }

    /// The slow period (at least 1): the span that dominates how much history the MACD
    /// reflects. See [`Macd::fast_period`] and [`Macd::signal_period`] for the others.
    pub fn period(&self) -> usize {
        self.slow.period()
    }

    /// The fast EMA's period (at least 1).
    pub fn fast_period(&self) -> usize {
        self.fast.period()
    }

    /// The slow EMA's period (at least 1); same as [`Macd::period`].
    pub fn slow_period(&self) -> usize {
        self.slow.period()
    }

    /// The signal EMA's period (at least 1).
    pub fn signal_period(&self) -> usize {
        self.signal.period()
    }

    /// Forget all input, as if newly constructed.
    pub fn reset(&mut self) {
        self.fast.reset();
        self.slow.reset();
        self.signal.reset();
    }
}

impl Snapshot for Macd {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::MACD);
        self.fast.save(w);
        self.slow.save(w);
        self.signal.save(w);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::MACD, "Macd")?;
        let mut fresh = self.clone();
        fresh.fast.load(r)?;
        fresh.slow.load(r)?;
        fresh.signal.load(r)?;
        *self = fresh;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::{assert_close, check_round_trip};

    #[test]
    fn hand_computed_2_3_2() {
        // Prices 1, 3, 2, 6, 4, 8.
        // Fast EMA(2), alpha 2/3: seed (1+3)/2 = 2; 2; 2+2/3*4 = 14/3; 14/3-4/9 = 38/9;
        //   38/9 + 2/3*(8-38/9) = 182/27.
        // Slow EMA(3), alpha 1/2: seed (1+3+2)/3 = 2; 4; 4; 6.
        // MACD line from price 3: 0, 2/3, 2/9, 20/27.
        // Signal EMA(2): seed (0+2/3)/2 = 1/3; 1/3+2/3*(2/9-1/3) = 7/27;
        //   7/27 + 2/3*(20/27-7/27) = 47/81.
        let mut m = Macd::new(2, 3, 2);
        let out: Vec<_> = [1.0, 3.0, 2.0, 6.0, 4.0, 8.0]
            .into_iter()
            .map(|x| m.update(x))
            .collect();
        assert_eq!(out[..3], [None, None, None]);
        let expect = [
            (2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
            (2.0 / 9.0, 7.0 / 27.0, -1.0 / 27.0),
            (20.0 / 27.0, 47.0 / 81.0, 13.0 / 81.0),
        ];
        for (got, (macd, signal, histogram)) in out[3..].iter().zip(expect) {
            let got = got.unwrap();
            assert_close(got.macd, macd, 1e-12);
            assert_close(got.signal, signal, 1e-12);
            assert_close(got.histogram, histogram, 1e-12);
        }
        assert_eq!(m.value(), out[5]);
        assert!(m.is_ready());
        assert_eq!(
            (m.fast_period(), m.slow_period(), m.signal_period()),
            (2, 3, 2)
        );
        m.reset();
        assert_eq!(m.value(), None);
    }

    #[test]
    fn period_zero_is_one() {
        let mut m = Macd::new(0, 0, 0);
        assert_eq!(m.period(), 1);
        assert_eq!(
            m.update(5.0),
            Some(MacdValue {
                macd: 0.0,
                signal: 0.0,
                histogram: 0.0
            })
        );
    }

    #[test]
    fn snapshot_round_trip() {
        check_round_trip(Macd::new(12, 26, 9), Macd::new(12, 26, 9), |m, x| {
            m.update(x)
        });
        check_round_trip(Macd::new(3, 6, 4), Macd::new(12, 26, 9), |m, x| m.update(x));
    }
}
