//! The index of one account's resting orders on one symbol: which of them a bar can touch.
//!
//! A bar's pass must cost what the bar can change, not what rests: an account with thousands
//! of orders far from the market would otherwise pay for every one of them on every bar,
//! outside the strategy's fuel and deadline. Each resting order is filed under the prices at
//! which a bar makes it act, so a bar finds the orders it reaches with one range look-up per
//! kind of trigger (O(log n + orders reached)).
//!
//! The index only narrows the search: every order a bar can act on is among
//! [`Book::candidates`], and the exchange decides each candidate with the exact rules of
//! [`super::price`]. A candidate on which nothing happens is left exactly as it was, so the
//! index may err on the side of too many candidates, never too few.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;

use qtm_core::model::Bar;

/// A price as an index key, ordered totally.
///
/// `-0.0` is filed as `0.0`: with that, the key order agrees with `<` and `<=` on every pair of
/// prices that are numbers. Prices that are not numbers are never filed (see [`Entry`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Price(f64);

impl Price {
    pub(super) fn new(p: f64) -> Self {
        Price(p + 0.0)
    }
}

impl PartialEq for Price {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Price {}

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Price {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// What about a bar makes an order act, i.e. where it is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    /// Looked at on every bar: market, IOC and FOK orders (they act on their first eligible
    /// bar whatever its prices), and any order whose prices are not numbers or could compare
    /// differently as keys (a trailing stop anchored at zero).
    Always,
    /// Acts when the bar trades at or below the price (`min(open, low) <= price`): buy limits,
    /// sell stops.
    Down(Price),
    /// Acts when the bar trades at or above the price (`max(open, high) >= price`): sell
    /// limits, buy stops.
    Up(Price),
    /// A sell trailing stop: acts when the bar's high passes its anchor (the anchor moves) or
    /// the bar trades down to its level (it triggers).
    TrailSell { anchor: Price, level: Price },
    /// A buy trailing stop: acts when the bar's low passes below its anchor or the bar trades
    /// up to its level.
    TrailBuy { anchor: Price, level: Price },
}

/// One account's resting orders on one symbol, filed by what makes them act.
#[derive(Debug, Clone, Default)]
pub(super) struct Book {
    /// [`Entry::Always`], by id.
    always: BTreeSet<u64>,
    /// [`Entry::Down`] prices and sell trailing stop levels.
    down: BTreeSet<(Price, u64)>,
    /// [`Entry::Up`] prices and buy trailing stop levels.
    up: BTreeSet<(Price, u64)>,
    /// Anchors of sell trailing stops (they move up with the bar's high).
    highs: BTreeSet<(Price, u64)>,
    /// Anchors of buy trailing stops (they move down with the bar's low).
    lows: BTreeSet<(Price, u64)>,
    /// Day orders by the UTC day they were placed: they expire on a later day's bar.
    days: BTreeSet<(i64, u64)>,
    /// Orders that act on every bar once eligible (market orders and any time in force but
    /// GTC), by the step from which they are eligible.
    eager: BTreeSet<(u64, u64)>,
    len: usize,
}

impl Book {
    /// File order `id`. `day`: the day a day order was placed; `eager`: the step from which an
    /// order that acts on every bar is eligible.
    pub(super) fn add(&mut self, id: u64, entry: Entry, day: Option<i64>, eager: Option<u64>) {
        self.file(id, entry);
        if let Some(d) = day {
            self.days.insert((d, id));
        }
        if let Some(s) = eager {
            self.eager.insert((s, id));
        }
        self.len += 1;
    }

    /// Take order `id` out; the arguments are the ones it was filed with.
    pub(super) fn remove(&mut self, id: u64, entry: Entry, day: Option<i64>, eager: Option<u64>) {
        self.unfile(id, entry);
        if let Some(d) = day {
            self.days.remove(&(d, id));
        }
        if let Some(s) = eager {
            self.eager.remove(&(s, id));
        }
        self.len -= 1;
    }

    /// Re-file order `id` after its prices, trigger or anchor changed.
    pub(super) fn refile(&mut self, id: u64, old: Entry, new: Entry) {
        if old != new {
            self.unfile(id, old);
            self.file(id, new);
        }
    }

    /// Whether no order is filed.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest step from which an order that acts on every bar is eligible.
    pub(super) fn eager_from(&self) -> Option<u64> {
        self.eager.first().map(|&(s, _)| s)
    }

    /// Ids of the orders filed as [`Entry::Always`], ascending.
    pub(super) fn always(&self) -> impl Iterator<Item = u64> + '_ {
        self.always.iter().copied()
    }

    /// Every order `bar` may act on (fill, trigger, expire or move a trailing anchor), in no
    /// particular order and possibly more than once; whether it does is for the caller to
    /// decide. Costs O(log n) per kind of trigger plus the orders returned.
    pub(super) fn candidates<'a>(&'a self, bar: &Bar) -> impl Iterator<Item = u64> + 'a {
        let ids = |(_, id): &(Price, u64)| *id;
        // `f64::min`/`max` skip a side that is not a number, as the `||` of the fill rules does.
        let lo = bar.open.min(bar.low);
        let hi = bar.open.max(bar.high);
        // A threshold that is not a number reaches no price.
        let down = (!lo.is_nan())
            .then(|| self.down.range((Price::new(lo), 0)..))
            .into_iter()
            .flatten()
            .map(ids);
        let up = (!hi.is_nan())
            .then(|| self.up.range(..=(Price::new(hi), u64::MAX)))
            .into_iter()
            .flatten()
            .map(ids);
        let highs = (!bar.high.is_nan())
            .then(|| self.highs.range(..(Price::new(bar.high), 0)))
            .into_iter()
            .flatten()
            .map(ids);
        let lows = (!bar.low.is_nan())
            .then(|| {
                self.lows.range((
                    Bound::Excluded((Price::new(bar.low), u64::MAX)),
                    Bound::Unbounded,
                ))
            })
            .into_iter()
            .flatten()
            .map(ids);
        let day = bar.ts.div_euclid(86_400);
        let expiring = self.days.range(..(day, 0)).map(|&(_, id)| id);
        self.always
            .iter()
            .copied()
            .chain(down)
            .chain(up)
            .chain(highs)
            .chain(lows)
            .chain(expiring)
    }

    fn file(&mut self, id: u64, entry: Entry) {
        match entry {
            Entry::Always => {
                self.always.insert(id);
            }
            Entry::Down(p) => {
                self.down.insert((p, id));
            }
            Entry::Up(p) => {
                self.up.insert((p, id));
            }
            Entry::TrailSell { anchor, level } => {
                self.highs.insert((anchor, id));
                self.down.insert((level, id));
            }
            Entry::TrailBuy { anchor, level } => {
                self.lows.insert((anchor, id));
                self.up.insert((level, id));
            }
        }
    }

    fn unfile(&mut self, id: u64, entry: Entry) {
        match entry {
            Entry::Always => {
                self.always.remove(&id);
            }
            Entry::Down(p) => {
                self.down.remove(&(p, id));
            }
            Entry::Up(p) => {
                self.up.remove(&(p, id));
            }
            Entry::TrailSell { anchor, level } => {
                self.highs.remove(&(anchor, id));
                self.down.remove(&(level, id));
            }
            Entry::TrailBuy { anchor, level } => {
                self.lows.remove(&(anchor, id));
                self.up.remove(&(level, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64) -> Bar {
        Bar {
            ts: 0,
            open,
            high,
            low,
            close: open,
            volume: 1.0,
        }
    }

    fn found(book: &Book, b: &Bar) -> Vec<u64> {
        let mut v: Vec<u64> = book.candidates(b).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn ranges_reach_exactly_the_prices_the_bar_trades() {
        let mut book = Book::default();
        book.add(1, Entry::Down(Price::new(95.0)), None, None);
        book.add(2, Entry::Down(Price::new(94.99)), None, None);
        book.add(3, Entry::Up(Price::new(105.0)), None, None);
        book.add(4, Entry::Up(Price::new(105.01)), None, None);
        let b = bar(100.0, 105.0, 95.0);
        assert_eq!(found(&book, &b), [1, 3], "touching counts, beyond does not");
        // A gap: the open is past the price, the low and high are not.
        assert_eq!(found(&book, &bar(94.0, 94.5, 94.5)), [1, 2]);
        assert_eq!(found(&book, &bar(106.0, 105.5, 105.5)), [3, 4]);
        // A side that is not a number is skipped, as by the fill rules.
        assert_eq!(found(&book, &bar(f64::NAN, 105.0, 95.0)), [1, 3]);
        assert!(found(&book, &bar(f64::NAN, f64::NAN, f64::NAN)).is_empty());
        assert_eq!(Price::new(-0.0), Price::new(0.0));

        book.refile(
            1,
            Entry::Down(Price::new(95.0)),
            Entry::Up(Price::new(200.0)),
        );
        assert_eq!(found(&book, &b), [3]);
        book.remove(3, Entry::Up(Price::new(105.0)), None, None);
        book.remove(1, Entry::Up(Price::new(200.0)), None, None);
        assert_eq!(found(&book, &bar(300.0, 300.0, 0.0)), [2, 4]);
        assert!(!book.is_empty());
    }

    #[test]
    fn trailing_stops_are_found_by_anchor_and_by_level() {
        let mut book = Book::default();
        let sell = Entry::TrailSell {
            anchor: Price::new(100.0),
            level: Price::new(90.0),
        };
        let buy = Entry::TrailBuy {
            anchor: Price::new(100.0),
            level: Price::new(110.0),
        };
        book.add(1, sell, None, None);
        book.add(2, buy, None, None);
        assert!(found(&book, &bar(100.0, 100.0, 100.0)).is_empty());
        assert_eq!(found(&book, &bar(100.0, 100.5, 100.0)), [1], "a new high");
        assert_eq!(found(&book, &bar(100.0, 100.0, 99.5)), [2], "a new low");
        assert_eq!(found(&book, &bar(95.0, 100.0, 95.0)), [2]);
        assert_eq!(found(&book, &bar(89.0, 89.0, 89.0)), [1, 2]);
    }

    #[test]
    fn day_orders_expire_on_a_later_day_and_eager_ones_are_known() {
        let mut book = Book::default();
        book.add(1, Entry::Up(Price::new(1e9)), Some(3), Some(5));
        book.add(2, Entry::Always, None, Some(4));
        let mut b = bar(1.0, 1.0, 1.0);
        b.ts = 3 * 86_400 + 86_399;
        assert_eq!(found(&book, &b), [2]);
        b.ts += 1;
        assert_eq!(found(&book, &b), [1, 2]);
        assert_eq!(book.eager_from(), Some(4));
        book.remove(2, Entry::Always, None, Some(4));
        assert_eq!(book.eager_from(), Some(5));
        book.remove(1, Entry::Up(Price::new(1e9)), Some(3), Some(5));
        assert!(book.is_empty() && book.eager_from().is_none());
    }
}
