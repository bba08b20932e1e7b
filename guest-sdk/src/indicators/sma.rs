use super::util::{check, expect_tag, read_period, read_usize, tag, write_usize};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// Simple moving average: the plain mean of the last `period` values.
///
/// Crossover strategies compare two of these, so the value must not drift with the length of
/// the feed, and it should equal what other backtesters compute (backtrader divides an exactly
/// rounded `fsum` of the window). The running sum is therefore kept exactly, as an unevaluated
/// pair `hi + lo`: each update adds `x - evicted` with error-free transformations (TwoSum), so
/// nothing is ever lost, and the mean is `round(hi + lo) / period`, i.e. the correctly rounded
/// window sum divided by the period. This is exact whenever the values' magnitudes and
/// precisions span under ~100 bits (any price series); the critical path is one add per update,
/// as cheap as a plain running sum. A NaN or infinity poisons the sum only while it is in the
/// window: the sum is rebuilt from the ring when it leaves.
#[derive(Clone, Debug)]
pub struct Sma {
    ring: Vec<f64>,
    /// Next slot to write; the oldest value once the ring is full.
    pos: usize,
    len: usize,
    hi: f64,
    lo: f64,
}

/// `a + b` as a rounded sum and its exact error (Knuth's TwoSum).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

impl Sma {
    /// A moving average over `period` values. A period of 0 is treated as 1 (the average is then
    /// the latest value) so that a bad parameter cannot panic inside the sandbox.
    pub fn new(period: usize) -> Self {
        Self {
            ring: vec![0.0; period.max(1)],
            pos: 0,
            len: 0,
            hi: 0.0,
            lo: 0.0,
        }
    }

    /// Feed one value; the mean once `period` values have been seen, `None` before.
    // Always inlined: in wasm32 an `Option<f64>` comes back through the shadow stack, which
    // costs more than the update itself.
    #[inline(always)]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let period = self.ring.len();
        let old = std::mem::replace(&mut self.ring[self.pos], x);
        self.pos += 1;
        if self.pos == period {
            self.pos = 0;
        }
        if self.len < period {
            self.len += 1;
            self.add(x, 0.0);
        } else if old.is_finite() {
            let (d, de) = two_sum(x, -old);
            self.add(d, de);
        } else {
            self.rebuild();
        }
        self.value()
    }

    #[inline(always)]
    fn add(&mut self, d: f64, de: f64) {
        let (s, e) = two_sum(self.hi, d);
        self.hi = s;
        self.lo += e + de;
    }

    #[cold]
    fn rebuild(&mut self) {
        self.hi = 0.0;
        self.lo = 0.0;
        for i in 0..self.len {
            let x = self.ring[i];
            self.add(x, 0.0);
        }
    }

    /// The latest mean, without feeding anything; `None` during warm-up.
    #[inline(always)]
    pub fn value(&self) -> Option<f64> {
        (self.len == self.ring.len()).then(|| (self.hi + self.lo) / self.ring.len() as f64)
    }

    /// Whether `period` values have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.len == self.ring.len()
    }

    /// The window length actually used (at least 1).
    pub fn period(&self) -> usize {
        self.ring.len()
    }

    /// Forget all input, as if newly constructed, keeping the allocation.
    pub fn reset(&mut self) {
        self.ring.fill(0.0);
        self.pos = 0;
        self.len = 0;
        self.hi = 0.0;
        self.lo = 0.0;
    }
}

impl Snapshot for Sma {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::SMA);
        write_usize(w, self.ring.len());
        write_usize(w, self.pos);
        write_usize(w, self.len);
        for &x in &self.ring {
            w.f64(x);
        }
        w.f64(self.hi).f64(self.lo);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::SMA, "Sma")?;
        let period = read_period(r)?;
        let pos = read_usize(r)?;
        let len = read_usize(r)?;
        check(pos < period && len <= period, "Sma cursor out of range")?;
        let ring = (0..period)
            .map(|_| r.f64())
            .collect::<Result<Vec<_>, _>>()?;
        let (hi, lo) = (r.f64()?, r.f64()?);
        *self = Self {
            ring,
            pos,
            len,
            hi,
            lo,
        };
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

    /// The exactly rounded sum of `xs` (what Python's `math.fsum` returns), by Shewchuk's
    /// algorithm: a list of non-overlapping partials.
    fn fsum(xs: &[f64]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &x in xs {
            let mut x = x;
            let mut i = 0;
            for j in 0..partials.len() {
                let mut y = partials[j];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let hi = x + y;
                let lo = y - (hi - x);
                if lo != 0.0 {
                    partials[i] = lo;
                    i += 1;
                }
                x = hi;
            }
            partials.truncate(i);
            partials.push(x);
        }
        // Round the partials from the top, with Python's half-way correction.
        let mut n = partials.len();
        let mut hi = 0.0;
        if n > 0 {
            n -= 1;
            hi = partials[n];
            let mut lo = 0.0;
            while n > 0 {
                let x = hi;
                n -= 1;
                let y = partials[n];
                hi = x + y;
                let yr = hi - x;
                lo = y - yr;
                if lo != 0.0 {
                    break;
                }
            }
            if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0))
            {
                let y = lo * 2.0;
                let x = hi + y;
                if y == x - hi {
                    hi = x;
                }
            }
        }
        hi
    }

    #[test]
    fn equals_the_exactly_rounded_mean_over_a_long_feed() {
        // Price-like values of several scales; a million updates would show any drift.
        for (seed, level, step) in [(7, 100.0, 0.01), (9, 1.1, 0.0001), (11, 50_000.0, 0.02)] {
            let p = prices(seed, 200_000, level, step);
            for period in [2, 10, 30, 200] {
                let mut s = Sma::new(period);
                for (i, &x) in p.iter().enumerate() {
                    let v = s.update(x);
                    if i + 1 >= period && (i % 97 == 0 || i + 1 == p.len()) {
                        let want = fsum(&p[i + 1 - period..=i]) / period as f64;
                        assert_eq!(v, Some(want), "period {period} at {i}");
                    }
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
