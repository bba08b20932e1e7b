//! Streaming technical indicators for strategies.
//!
//! A strategy sees one bar at a time and runs under a fuel budget, so every indicator here is
//! incremental: `update` costs O(1) (amortised O(1) for [`Donchian`] and for the periodic exact
//! recomputes of the windowed sums), and all memory is allocated once, in the constructor. Nothing
//! allocates per update.
//!
//! Conventions shared by every indicator:
//!
//! - `new(period)` never panics. A period of 0 is treated as 1, so a bad parameter degrades
//!   into a pass-through indicator instead of trapping the sandboxed instance.
//! - `update` returns `None` until the indicator has seen enough input to produce its classic
//!   value (its warm-up), then `Some(value)` on every call. `value()` repeats the latest output
//!   without feeding anything, `is_ready()` says whether warm-up is over, `reset()` forgets all
//!   input but keeps the allocation.
//! - Every indicator implements [`Snapshot`](crate::state::Snapshot): `save` writes the complete
//!   state, including the period, and `load` replaces the whole indicator with it, so a strategy
//!   that is hot-swapped to new code continues bit-identically. Each snapshot starts with a
//!   one-byte layout tag, so loading the wrong indicator (or a layout from an incompatible SDK)
//!   is an error rather than silent garbage. A failed `load` leaves the indicator unchanged.
//! - Inputs are not validated; feed finite numbers. A NaN or infinity poisons a windowed
//!   indicator only while it is inside the window, and a recursive one ([`Ema`], [`Rsi`],
//!   [`Atr`], [`Macd`]) until `reset`.
//!
//! ```
//! use qtm_guest_sdk::indicators::Sma;
//!
//! let mut fast = Sma::new(2);
//! let mut slow = Sma::new(3);
//! let mut crossed_up = false;
//! for close in [10.0, 10.0, 10.0, 13.0] {
//!     let (f, s) = (fast.update(close), slow.update(close));
//!     if let (Some(f), Some(s)) = (f, s) {
//!         crossed_up = f > s;
//!     }
//! }
//! assert!(crossed_up);
//! assert_eq!(slow.value(), Some(11.0));
//! ```

#![warn(missing_docs)]

mod atr;
mod bollinger;
mod donchian;
mod ema;
mod macd;
mod rolling_mean;
mod rolling_std;
mod rsi;
mod sma;

pub use atr::Atr;
pub use bollinger::{Bollinger, BollingerValue};
pub use donchian::{Donchian, DonchianValue};
pub use ema::Ema;
pub use macd::{Macd, MacdValue};
pub use rolling_mean::RollingMean;
pub use rolling_std::RollingStd;
pub use rsi::Rsi;
pub use sma::Sma;

/// Building blocks shared by the indicators (kept private so the prelude's glob import of this
/// module does not pick them up).
mod util {
    use crate::state::{StateError, StateReader, StateWriter};

    /// Layout tags written as the first byte of each indicator's snapshot.
    pub(super) mod tag {
        pub const SMA: u8 = 0x01;
        pub const EMA: u8 = 0x02;
        pub const RSI: u8 = 0x03;
        pub const MACD: u8 = 0x04;
        pub const BOLLINGER: u8 = 0x05;
        pub const ATR: u8 = 0x06;
        pub const DONCHIAN: u8 = 0x07;
        pub const ROLLING_MEAN: u8 = 0x08;
        pub const ROLLING_STD: u8 = 0x09;
    }

    /// Read the layout tag and fail unless it is `expected`.
    pub(super) fn expect_tag(
        r: &mut StateReader<'_>,
        expected: u8,
        what: &str,
    ) -> Result<(), StateError> {
        let found = r.u8()?;
        if found == expected {
            Ok(())
        } else {
            Err(StateError(format!(
                "expected a {what} snapshot (tag {expected:#04x}), found tag {found:#04x}"
            )))
        }
    }

    /// Write a `usize` portably (wasm32 and 64-bit hosts share snapshots).
    pub(super) fn write_usize(w: &mut StateWriter, v: usize) {
        w.u64(v as u64);
    }

    /// Read a `usize` written by [`write_usize`], refusing values this target cannot hold.
    pub(super) fn read_usize(r: &mut StateReader<'_>) -> Result<usize, StateError> {
        let v = r.u64()?;
        usize::try_from(v).map_err(|_| StateError(format!("count {v} does not fit in usize")))
    }

    /// Read a period, which is never 0 in a state written by `save`.
    pub(super) fn read_period(r: &mut StateReader<'_>) -> Result<usize, StateError> {
        match read_usize(r)? {
            0 => Err(StateError("indicator period is 0".into())),
            p => Ok(p),
        }
    }

    /// Fail with `msg` unless `ok`: the snapshot's fields contradict each other.
    pub(super) fn check(ok: bool, msg: &str) -> Result<(), StateError> {
        if ok {
            Ok(())
        } else {
            Err(StateError(format!("inconsistent indicator state: {msg}")))
        }
    }

    /// A double-ended queue over a buffer allocated once; pushing onto a full queue evicts the
    /// front. Both the windows (as ring buffers) and Donchian's monotonic queues use it.
    #[derive(Clone, Debug)]
    pub(super) struct FixedDeque<T> {
        slots: Vec<T>,
        head: usize,
        len: usize,
    }

    impl<T: Copy + Default> FixedDeque<T> {
        /// A queue holding at most `capacity` items (at least 1).
        pub fn new(capacity: usize) -> Self {
            Self {
                slots: vec![T::default(); capacity.max(1)],
                head: 0,
                len: 0,
            }
        }

        pub fn capacity(&self) -> usize {
            self.slots.len()
        }

        pub fn len(&self) -> usize {
            self.len
        }

        pub fn is_full(&self) -> bool {
            self.len == self.slots.len()
        }

        /// Physical index of the `i`-th item from the front; `i <= capacity`.
        fn slot(&self, i: usize) -> usize {
            let j = self.head + i;
            if j >= self.slots.len() {
                j - self.slots.len()
            } else {
                j
            }
        }

        pub fn front(&self) -> Option<T> {
            (self.len > 0).then(|| self.slots[self.head])
        }

        pub fn back(&self) -> Option<T> {
            (self.len > 0).then(|| self.slots[self.slot(self.len - 1)])
        }

        /// Append `x`; returns the front item it evicted when the queue was full.
        pub fn push_back(&mut self, x: T) -> Option<T> {
            let evicted = if self.is_full() {
                self.pop_front()
            } else {
                None
            };
            let i = self.slot(self.len);
            self.slots[i] = x;
            self.len += 1;
            evicted
        }

        pub fn pop_front(&mut self) -> Option<T> {
            let x = self.front()?;
            self.head = self.slot(1);
            self.len -= 1;
            Some(x)
        }

        pub fn pop_back(&mut self) -> Option<T> {
            let x = self.back()?;
            self.len -= 1;
            Some(x)
        }

        /// Items from front (oldest) to back (newest).
        pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
            (0..self.len).map(|i| self.slots[self.slot(i)])
        }

        /// Forget every item; the slots are zeroed so a reset queue snapshots like a new one.
        pub fn clear(&mut self) {
            self.slots.fill(T::default());
            self.head = 0;
            self.len = 0;
        }

        /// Write capacity, cursor and every slot (stale ones too, for bit-identical restores).
        pub fn save_with(&self, w: &mut StateWriter, mut put: impl FnMut(&mut StateWriter, T)) {
            write_usize(w, self.slots.len());
            write_usize(w, self.head);
            write_usize(w, self.len);
            for &x in &self.slots {
                put(w, x);
            }
        }

        /// Read what `save_with` wrote. Slots are pushed one by one rather than preallocated,
        /// so a corrupt capacity fails on the short snapshot instead of allocating it.
        pub fn read_with(
            r: &mut StateReader<'_>,
            mut get: impl FnMut(&mut StateReader<'_>) -> Result<T, StateError>,
        ) -> Result<Self, StateError> {
            let capacity = read_period(r)?;
            let head = read_usize(r)?;
            let len = read_usize(r)?;
            check(
                head < capacity && len <= capacity,
                "ring cursor out of range",
            )?;
            let mut slots = Vec::new();
            for _ in 0..capacity {
                slots.push(get(r)?);
            }
            Ok(Self { slots, head, len })
        }
    }

    /// What [`WindowSum::push`] did, for indicators that maintain more than the sum.
    pub(super) struct Pushed {
        /// The value that fell out of the window, once it is full.
        pub evicted: Option<f64>,
        /// Whether the sum was just recomputed exactly from the window.
        pub exact: bool,
    }

    /// A fixed window with a compensated running sum that is recomputed exactly from the
    /// window every `period` pushes, and whenever a non-finite value leaves it.
    ///
    /// A plain running sum rounds on every add and subtract, at the scale of the whole sum, and
    /// the errors accumulate without bound over a long feed: two means that should be equal
    /// drift apart, and a crossover decided by the last bits flips. Neumaier compensation keeps
    /// the per-update error at the scale of the change instead, and recomputing every `period`
    /// pushes bounds what is left to `period` updates' worth while keeping the amortised cost
    /// O(1). At each recompute the sum is exactly the naive sum of the window (oldest to
    /// newest). The recompute also flushes a NaN or infinity the moment it leaves the window
    /// instead of never.
    #[derive(Clone, Debug)]
    pub(super) struct WindowSum {
        ring: FixedDeque<f64>,
        sum: f64,
        /// Neumaier compensation: the low-order part `sum` could not hold.
        comp: f64,
        since_exact: usize,
    }

    impl WindowSum {
        pub fn new(period: usize) -> Self {
            Self {
                ring: FixedDeque::new(period),
                sum: 0.0,
                comp: 0.0,
                since_exact: 0,
            }
        }

        pub fn period(&self) -> usize {
            self.ring.capacity()
        }

        pub fn len(&self) -> usize {
            self.ring.len()
        }

        pub fn is_full(&self) -> bool {
            self.ring.is_full()
        }

        pub fn push(&mut self, x: f64) -> Pushed {
            let evicted = self.ring.push_back(x);
            self.since_exact += 1;
            let exact =
                self.since_exact >= self.period() || evicted.is_some_and(|o| !o.is_finite());
            if exact {
                self.sum = self.ring.iter().fold(0.0, |acc, v| acc + v);
                self.comp = 0.0;
                self.since_exact = 0;
            } else {
                self.add(match evicted {
                    Some(o) => x - o,
                    None => x,
                });
            }
            Pushed { evicted, exact }
        }

        fn add(&mut self, v: f64) {
            let t = self.sum + v;
            // Past an overflow the compensation is meaningless (inf - inf); the exact recompute
            // when the offending value leaves restores it.
            if t.is_finite() {
                self.comp += if self.sum.abs() >= v.abs() {
                    (self.sum - t) + v
                } else {
                    (v - t) + self.sum
                };
            }
            self.sum = t;
        }

        /// Sum of the values currently in the window.
        pub fn sum(&self) -> f64 {
            self.sum + self.comp
        }

        /// Mean of the values currently in the window (NaN when it is empty).
        pub fn mean(&self) -> f64 {
            self.sum() / self.ring.len() as f64
        }

        /// Values in the window, oldest first.
        pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
            self.ring.iter()
        }

        pub fn reset(&mut self) {
            self.ring.clear();
            self.sum = 0.0;
            self.comp = 0.0;
            self.since_exact = 0;
        }

        pub fn save(&self, w: &mut StateWriter) {
            self.ring.save_with(w, |w, x| {
                w.f64(x);
            });
            w.f64(self.sum).f64(self.comp);
            write_usize(w, self.since_exact);
        }

        pub fn read(r: &mut StateReader<'_>) -> Result<Self, StateError> {
            let ring = FixedDeque::read_with(r, |r| r.f64())?;
            let sum = r.f64()?;
            let comp = r.f64()?;
            let since_exact = read_usize(r)?;
            check(
                since_exact < ring.capacity(),
                "window recompute counter out of range",
            )?;
            Ok(Self {
                ring,
                sum,
                comp,
                since_exact,
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::state::{Snapshot, StateReader, StateWriter};
    use std::fmt::Debug;

    /// Marsaglia's xorshift64: deterministic pseudo-random numbers without a dependency.
    pub struct XorShift(pub u64);

    impl XorShift {
        /// Uniform in [0, 1).
        pub fn next_f64(&mut self) -> f64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            (x >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A price-like random walk: starts at `start`, moves up to ±`step` (relative) per bar.
    pub fn prices(seed: u64, n: usize, start: f64, step: f64) -> Vec<f64> {
        let mut rng = XorShift(seed);
        let mut p = start;
        (0..n)
            .map(|_| {
                p *= 1.0 + step * (2.0 * rng.next_f64() - 1.0);
                p
            })
            .collect()
    }

    fn snapshot<T: Snapshot>(x: &T) -> Vec<u8> {
        let mut w = StateWriter::new();
        x.save(&mut w);
        w.finish()
    }

    /// Feed `a` 37 prices, restore its snapshot into `fresh`, then feed both 50 more and require
    /// identical outputs and byte-identical final snapshots. Also checks that a truncated
    /// snapshot and another indicator's snapshot are rejected without touching the target.
    pub fn check_round_trip<T, O>(mut a: T, mut fresh: T, mut feed: impl FnMut(&mut T, f64) -> O)
    where
        T: Snapshot + Clone + Debug,
        O: PartialEq + Debug,
    {
        let p = prices(0x9E37_79B9_7F4A_7C15, 87, 100.0, 0.02);
        for &x in &p[..37] {
            feed(&mut a, x);
        }
        let saved = snapshot(&a);
        let untouched = snapshot(&fresh);

        let mut broken = fresh.clone();
        assert!(
            broken
                .load(&mut StateReader::new(&saved[..saved.len() - 1]))
                .is_err()
        );
        assert_eq!(
            snapshot(&broken),
            untouched,
            "a failed load must not change the indicator"
        );
        let mut wrong_tag = saved.clone();
        wrong_tag[0] ^= 0xFF;
        assert!(broken.load(&mut StateReader::new(&wrong_tag)).is_err());

        let mut r = StateReader::new(&saved);
        fresh.load(&mut r).unwrap();
        r.expect_end().unwrap();
        assert_eq!(snapshot(&fresh), saved);
        for &x in &p[37..] {
            let (oa, ob) = (feed(&mut a, x), feed(&mut fresh, x));
            assert_eq!(format!("{oa:?}"), format!("{ob:?}"));
            assert_eq!(oa, ob);
        }
        assert_eq!(snapshot(&a), snapshot(&fresh));
    }

    /// Assert `a` and `b` agree to `tol` relative (absolute near zero).
    pub fn assert_close(a: f64, b: f64, tol: f64) {
        let scale = a.abs().max(b.abs()).max(1.0);
        assert!((a - b).abs() <= tol * scale, "{a} != {b} (tolerance {tol})");
    }
}
