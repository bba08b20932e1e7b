//! Market-data feeds: where live bars come from. A feed pushes bars into the live engine
//! through a [`FeedOut`]; the engine numbers them per symbol. The replay feed is the default;
//! real venues implement [`Feed`] the same way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use super::LiveError;
use crate::model::Bar;

/// Where a feed delivers its bars.
#[derive(Clone)]
pub struct FeedOut {
    pub(crate) engine: super::LiveEngine,
}

impl FeedOut {
    /// Deliver bars (one symbol each, in time order per symbol). Fails only when the engine has
    /// stopped or a symbol is not traded by it.
    pub fn send(&self, bars: Vec<(String, Bar)>) -> Result<(), LiveError> {
        self.engine.ingest(bars)
    }
}

/// A running feed's future.
pub type FeedTask = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A source of live bars (a replay, a venue adapter). `run` delivers bars until the feed ends
/// or `stop` turns true.
pub trait Feed: Send + 'static {
    /// The module id it runs as (`replay-feed`, …).
    fn name(&self) -> String;
    /// Deliver bars to `out` until done or stopped.
    fn run(self: Box<Self>, out: FeedOut, stop: watch::Receiver<bool>) -> FeedTask;
}

/// Replays recorded bars, each symbol on its own clock from its first bar (or from where the
/// engine's cursor says it stopped), `speed` times faster than they were recorded. With `loop`
/// the series starts over, shifted by its span so time keeps moving forward.
pub struct ReplayFeed {
    /// Bars per symbol, oldest first.
    pub series: Vec<(String, Vec<Bar>)>,
    /// Recorded time per wall time (60 = a minute bar every second).
    pub speed: f64,
    pub looped: bool,
    /// Where each symbol resumes: bars at or before this time (already handled before a
    /// restart, with loop shifts applied) are skipped.
    pub resume_after: HashMap<String, i64>,
}

/// One symbol's replay position.
struct Track {
    symbol: String,
    bars: Vec<Bar>,
    next: usize,
    /// Added to every timestamp on the current pass.
    shift: i64,
    /// Span of one pass plus one bar interval.
    period: i64,
}

impl Track {
    fn new(symbol: String, bars: Vec<Bar>, after: Option<i64>, looped: bool) -> Option<Track> {
        let first = bars.first()?.ts;
        let last = bars.last()?.ts;
        let step = bars.get(1).map_or(60, |b| (b.ts - first).max(1));
        let period = last - first + step;
        let mut t = Track {
            symbol,
            bars,
            next: 0,
            shift: 0,
            period,
        };
        if let Some(after) = after {
            // Skip whole passes, then the bars of this pass already handled.
            if looped && after >= last {
                let passes = (after - first) / period;
                t.shift = passes * period;
            }
            t.next = t.bars.partition_point(|b| b.ts + t.shift <= after);
            if t.next == t.bars.len() && looped {
                t.next = 0;
                t.shift += period;
            }
        }
        Some(t)
    }

    fn peek(&self) -> Option<Bar> {
        self.bars.get(self.next).map(|b| Bar {
            ts: b.ts + self.shift,
            ..*b
        })
    }

    fn advance(&mut self, looped: bool) {
        self.next += 1;
        if self.next == self.bars.len() && looped {
            self.next = 0;
            self.shift += self.period;
        }
    }
}

impl Feed for ReplayFeed {
    fn name(&self) -> String {
        "replay-feed".into()
    }

    fn run(self: Box<Self>, out: FeedOut, mut stop: watch::Receiver<bool>) -> FeedTask {
        Box::pin(async move {
            let speed = if self.speed.is_finite() && self.speed > 0.0 {
                self.speed
            } else {
                1.0
            };
            let mut tracks: Vec<Track> = self
                .series
                .into_iter()
                .filter_map(|(s, bars)| {
                    let after = self.resume_after.get(&s).copied();
                    Track::new(s, bars, after, self.looped)
                })
                .collect();
            // Each symbol's clock: its own first bar is due now.
            let start = tokio::time::Instant::now();
            let origins: Vec<i64> = tracks
                .iter()
                .map(|t| t.peek().map_or(0, |b| b.ts))
                .collect();
            loop {
                if *stop.borrow() {
                    return Ok(());
                }
                // The next bar due across symbols.
                let mut due: Option<(usize, f64)> = None;
                for (i, t) in tracks.iter().enumerate() {
                    if let Some(b) = t.peek() {
                        let at = (b.ts - origins[i]) as f64 / speed;
                        if due.is_none_or(|(_, d)| at < d) {
                            due = Some((i, at));
                        }
                    }
                }
                let Some((_, at)) = due else {
                    return Ok(());
                };
                let when = start + Duration::from_secs_f64(at.max(0.0));
                tokio::select! {
                    _ = tokio::time::sleep_until(when) => {}
                    _ = stop.changed() => continue,
                }
                // Everything due by now goes out in one batch.
                let now_s = start.elapsed().as_secs_f64();
                let mut batch = Vec::new();
                for (i, t) in tracks.iter_mut().enumerate() {
                    while let Some(b) = t.peek() {
                        if (b.ts - origins[i]) as f64 / speed > now_s || batch.len() >= 4096 {
                            break;
                        }
                        batch.push((t.symbol.clone(), b));
                        t.advance(self.looped);
                    }
                }
                if !batch.is_empty() {
                    out.send(batch).map_err(|e| e.to_string())?;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(ts: i64) -> Bar {
        Bar {
            ts,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 1.0,
        }
    }

    #[test]
    fn a_looped_track_moves_forward_and_resumes_after_its_cursor() {
        let bars = vec![bar(100), bar(160), bar(220)];
        let mut t = Track::new("X".into(), bars.clone(), None, true).unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(t.peek().unwrap().ts);
            t.advance(true);
        }
        assert_eq!(seen, [100, 160, 220, 280, 340]);
        // A restart after 280 (the first bar of the second pass) continues at 340.
        let t = Track::new("X".into(), bars.clone(), Some(280), true).unwrap();
        assert_eq!(t.peek().unwrap().ts, 340);
        // Without a loop, a cursor past the end leaves nothing.
        let t = Track::new("X".into(), bars, Some(220), false).unwrap();
        assert!(t.peek().is_none());
    }
}
