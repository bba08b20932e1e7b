//! The last price of every symbol the live engine has handled a bar of: what the server values
//! positions at and computes the daily change from.
//!
//! The engine thread writes it as it handles bars (one short write lock per chunk of bars);
//! readers copy out what they need without a round trip through the engine's command queue.
//! Days are UTC calendar days of the bar timestamps.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

#[cfg(test)]
use qtm_core::model::SECONDS_PER_DAY;
use qtm_core::model::{Bar, day_start};

/// What the live engine last saw of one symbol.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LiveMark {
    /// Open time of the last bar handled, unix seconds.
    pub ts: i64,
    /// Its close: the live market's last price.
    pub price: f64,
    /// Open time of the first bar the engine handled in the UTC day of `ts`.
    pub day_open_ts: i64,
    /// That bar's open.
    pub day_open: f64,
    /// The last bar the engine handled before the UTC day of `ts`, as (open time, close):
    /// the previous day's close. `None` until the live stream crosses a day boundary forward
    /// (readers then take it from the stored bars).
    pub prev_close: Option<(i64, f64)>,
}

impl LiveMark {
    fn first(bar: &Bar) -> Self {
        Self {
            ts: bar.ts,
            price: bar.close,
            day_open_ts: bar.ts,
            day_open: bar.open,
            prev_close: None,
        }
    }

    /// Move to `bar`, the next bar handled. A bar of a later day makes the last price the
    /// previous day's close; a bar of an earlier day (a replay starting over) leaves the close
    /// before it unknown, since the engine never saw it.
    fn advance(&mut self, bar: &Bar) {
        let (day, now) = (day_start(bar.ts), day_start(self.ts));
        if day > now {
            self.prev_close = Some((self.ts, self.price));
        } else if day < now {
            self.prev_close = None;
        }
        if day != now {
            self.day_open_ts = bar.ts;
            self.day_open = bar.open;
        }
        self.ts = bar.ts;
        self.price = bar.close;
    }
}

/// The live marks of every symbol, shared by the engine thread (writer) and the server
/// (readers).
#[derive(Debug, Default)]
pub struct Marks {
    by_symbol: RwLock<HashMap<String, LiveMark>>,
}

impl Marks {
    /// The mark of `symbol`, if the engine has handled a bar of it since it started.
    pub fn get(&self, symbol: &str) -> Option<LiveMark> {
        self.read().get(symbol).copied()
    }

    /// The marks of `symbols` the engine has handled a bar of (one lock for all).
    pub fn of<'a>(&self, symbols: impl IntoIterator<Item = &'a str>) -> HashMap<String, LiveMark> {
        let map = self.read();
        symbols
            .into_iter()
            .filter_map(|s| map.get(s).map(|m| (s.to_string(), *m)))
            .collect()
    }

    /// Every mark.
    pub fn all(&self) -> HashMap<String, LiveMark> {
        self.read().clone()
    }

    /// Record bars in the order the engine handles them.
    pub(crate) fn update<'a>(&self, bars: impl IntoIterator<Item = (&'a str, &'a Bar)>) {
        let mut map = self
            .by_symbol
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (symbol, bar) in bars {
            match map.get_mut(symbol) {
                Some(m) => m.advance(bar),
                None => {
                    map.insert(symbol.to_string(), LiveMark::first(bar));
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, LiveMark>> {
        self.by_symbol
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64, open: f64, close: f64) -> Bar {
        Bar {
            ts,
            open,
            high: open.max(close),
            low: open.min(close),
            close,
            volume: 1.0,
        }
    }

    #[test]
    fn the_previous_close_is_the_last_bar_before_the_day() {
        let m = Marks::default();
        let d = 20_000 * SECONDS_PER_DAY;
        m.update([
            ("SPY", &bar(d + 60, 10.0, 11.0)),
            ("SPY", &bar(d + 120, 11.0, 12.0)),
        ]);
        let a = m.get("SPY").unwrap();
        assert_eq!(
            (a.ts, a.price, a.day_open_ts, a.day_open),
            (d + 120, 12.0, d + 60, 10.0)
        );
        assert_eq!(a.prev_close, None);
        // The next day (over a weekend gap too): yesterday's last close is the reference.
        m.update([("SPY", &bar(d + 3 * SECONDS_PER_DAY + 30, 13.0, 14.0))]);
        let b = m.get("SPY").unwrap();
        assert_eq!(b.prev_close, Some((d + 120, 12.0)));
        assert_eq!((b.day_open, b.price), (13.0, 14.0));
        m.update([("SPY", &bar(d + 3 * SECONDS_PER_DAY + 90, 14.0, 15.0))]);
        assert_eq!(m.get("SPY").unwrap().prev_close, Some((d + 120, 12.0)));
        // A replay starting over: the close before that day was never seen.
        m.update([("SPY", &bar(d + 5, 9.0, 9.5))]);
        let c = m.get("SPY").unwrap();
        assert_eq!((c.prev_close, c.day_open, c.price), (None, 9.0, 9.5));
        assert_eq!(m.get("QQQ"), None);
        assert_eq!(m.of(["SPY", "QQQ"]).len(), 1);
        assert_eq!(day_start(-1), -SECONDS_PER_DAY);
    }
}
