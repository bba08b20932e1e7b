use std::cmp::Ordering;

use super::util::{FixedDeque, check, expect_tag, read_period, tag, write_usize};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// One reading of a Donchian channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DonchianValue {
    /// Highest high of the window: a close above the previous bar's upper is a breakout.
    pub upper: f64,
    /// Lowest low of the window: the classic trailing exit for a long breakout.
    pub lower: f64,
    /// Halfway between upper and lower, a slow trend baseline.
    pub middle: f64,
}

/// Donchian channel: the highest high and lowest low of the last `period` bars, as used by
/// turtle-style breakout systems.
///
/// Rescanning the window each bar would cost O(period); instead two monotonic queues keep
/// only the bars that can still become the extreme (each bar enters and leaves each queue at
/// most once), so an update is O(1) amortised, in buffers allocated at construction. Values
/// are ordered with [`f64::total_cmp`], so even a NaN input cannot corrupt the queues: it
/// ranks above every number for the high side (below for `-NaN`) and leaves with its bar.
#[derive(Clone, Debug)]
pub struct Donchian {
    period: usize,
    /// Bars seen so far; also the index the next bar gets.
    bars: u64,
    /// (bar index, high), highs strictly decreasing from front to back.
    highs: FixedDeque<(u64, f64)>,
    /// (bar index, low), lows strictly increasing from front to back.
    lows: FixedDeque<(u64, f64)>,
}

/// Push bar `t`'s value, first dropping bars that left the window from the front and, from the
/// back, every value that `x` dominates (`keep` is the ordering the back must have relative to
/// `x` to stay).
fn push_extreme(q: &mut FixedDeque<(u64, f64)>, period: usize, t: u64, x: f64, keep: Ordering) {
    while q
        .front()
        .is_some_and(|(i, _)| i.saturating_add(period as u64) <= t)
    {
        q.pop_front();
    }
    while q.back().is_some_and(|(_, v)| v.total_cmp(&x) != keep) {
        q.pop_back();
    }
    q.push_back((t, x));
}

impl Donchian {
    /// A channel over `period` bars (20 and 55 are the turtle choices). A period of 0 is
    /// treated as 1 (the channel is then the latest bar) so that a bad parameter cannot panic
    /// inside the sandbox.
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self {
            period,
            bars: 0,
            highs: FixedDeque::new(period),
            lows: FixedDeque::new(period),
        }
    }

    /// Feed one bar; the channel once `period` bars have been seen, `None` before.
    pub fn update(&mut self, high: f64, low: f64) -> Option<DonchianValue> {
        let t = self.bars;
        self.bars = self.bars.saturating_add(1);
        push_extreme(&mut self.highs, self.period, t, high, Ordering::Greater);
        push_extreme(&mut self.lows, self.period, t, low, Ordering::Less);
        self.value()
    }

    /// The latest channel, without feeding anything; `None` during warm-up.
    pub fn value(&self) -> Option<DonchianValue> {
        if !self.is_ready() {
            return None;
        }
        let (_, upper) = self.highs.front()?;
        let (_, lower) = self.lows.front()?;
        Some(DonchianValue {
            upper,
            lower,
            middle: (upper + lower) * 0.5,
        })
    }

    /// Whether `period` bars have been seen, so `value` is `Some`.
    pub fn is_ready(&self) -> bool {
        self.bars >= self.period as u64
    }

    /// The period actually used (at least 1).
    pub fn period(&self) -> usize {
        self.period
    }

    /// Forget all input, as if newly constructed, keeping the allocation.
    pub fn reset(&mut self) {
        self.bars = 0;
        self.highs.clear();
        self.lows.clear();
    }
}

fn save_queue(w: &mut StateWriter, q: &FixedDeque<(u64, f64)>) {
    q.save_with(w, |w, (i, v)| {
        w.u64(i).f64(v);
    });
}

/// Read a queue and check it can belong to a channel of `period` that has seen `bars` bars:
/// indices strictly increasing, inside the window, values strictly ordered by `order`.
fn read_queue(
    r: &mut StateReader<'_>,
    period: usize,
    bars: u64,
    order: Ordering,
) -> Result<FixedDeque<(u64, f64)>, StateError> {
    let q = FixedDeque::read_with(r, |r| Ok((r.u64()?, r.f64()?)))?;
    check(
        q.capacity() == period,
        "Donchian queue capacity differs from its period",
    )?;
    let oldest = bars.saturating_sub(period as u64);
    let mut prev: Option<(u64, f64)> = None;
    for (i, v) in q.iter() {
        check(
            i >= oldest && i < bars,
            "Donchian queue holds a bar outside the window",
        )?;
        if let Some((pi, pv)) = prev {
            check(
                pi < i && pv.total_cmp(&v) == order,
                "Donchian queue is not monotonic",
            )?;
        }
        prev = Some((i, v));
    }
    check(
        bars == 0 || q.len() > 0,
        "Donchian queue lost the latest bar",
    )?;
    Ok(q)
}

impl Snapshot for Donchian {
    fn save(&self, w: &mut StateWriter) {
        w.u8(tag::DONCHIAN);
        write_usize(w, self.period);
        w.u64(self.bars);
        save_queue(w, &self.highs);
        save_queue(w, &self.lows);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        expect_tag(r, tag::DONCHIAN, "Donchian")?;
        let period = read_period(r)?;
        let bars = r.u64()?;
        let highs = read_queue(r, period, bars, Ordering::Greater)?;
        let lows = read_queue(r, period, bars, Ordering::Less)?;
        *self = Self {
            period,
            bars,
            highs,
            lows,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::test_util::{XorShift, check_round_trip};

    fn v(upper: f64, lower: f64, middle: f64) -> Option<DonchianValue> {
        Some(DonchianValue {
            upper,
            lower,
            middle,
        })
    }

    #[test]
    fn hand_computed_period_three() {
        // (high, low) bars and the window of the last three:
        // (5,1) (7,2) (6,3)   -> upper 7, lower 1, middle 4
        // (4,0)               bars 2-4: highs 7,6,4 -> 7; lows 2,3,0 -> 0; middle 3.5
        // (3,2.5)             bars 3-5: highs 6,4,3 -> 6; lows 3,0,2.5 -> 0; middle 3
        // (2,2)               bars 4-6: highs 4,3,2 -> 4; lows 0,2.5,2 -> 0; middle 2
        // (8,5)               bars 5-7: highs 3,2,8 -> 8; lows 2.5,2,5 -> 2; middle 5
        let mut d = Donchian::new(3);
        assert_eq!(d.update(5.0, 1.0), None);
        assert_eq!(d.update(7.0, 2.0), None);
        assert_eq!(d.update(6.0, 3.0), v(7.0, 1.0, 4.0));
        assert_eq!(d.update(4.0, 0.0), v(7.0, 0.0, 3.5));
        assert_eq!(d.update(3.0, 2.5), v(6.0, 0.0, 3.0));
        assert_eq!(d.update(2.0, 2.0), v(4.0, 0.0, 2.0));
        assert_eq!(d.update(8.0, 5.0), v(8.0, 2.0, 5.0));
        assert_eq!(d.value(), v(8.0, 2.0, 5.0));
        d.reset();
        assert!(!d.is_ready());
        assert_eq!(d.value(), None);
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = XorShift(42);
        // Coarse values so ties (equal highs) are common.
        let bars: Vec<(f64, f64)> = (0..3_000)
            .map(|_| {
                let lo = (rng.next_f64() * 20.0).floor();
                (lo + (rng.next_f64() * 5.0).floor(), lo)
            })
            .collect();
        for period in [1, 2, 5, 17] {
            let mut d = Donchian::new(period);
            for (i, &(h, l)) in bars.iter().enumerate() {
                let got = d.update(h, l);
                if i + 1 < period {
                    assert_eq!(got, None);
                    continue;
                }
                let w = &bars[i + 1 - period..=i];
                let upper = w.iter().map(|b| b.0).fold(f64::NEG_INFINITY, f64::max);
                let lower = w.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
                assert_eq!(
                    got,
                    v(upper, lower, (upper + lower) / 2.0),
                    "period {period} bar {i}"
                );
            }
        }
    }

    #[test]
    fn nan_leaves_with_its_bar() {
        let mut d = Donchian::new(2);
        d.update(5.0, 4.0);
        assert!(d.update(f64::NAN, 3.0).unwrap().upper.is_nan());
        assert!(d.update(6.0, 5.0).unwrap().upper.is_nan());
        assert_eq!(d.update(2.0, 1.0), v(6.0, 1.0, 3.5));
    }

    #[test]
    fn period_zero_is_one() {
        let mut d = Donchian::new(0);
        assert_eq!(d.period(), 1);
        assert_eq!(d.update(2.0, 1.0), v(2.0, 1.0, 1.5));
        assert_eq!(d.update(9.0, 8.0), v(9.0, 8.0, 8.5));
    }

    #[test]
    fn snapshot_round_trip() {
        let feed = |d: &mut Donchian, x: f64| d.update(x * 1.01, x * 0.99);
        check_round_trip(Donchian::new(20), Donchian::new(20), feed);
        check_round_trip(Donchian::new(55), Donchian::new(5), feed);
    }
}
