//! Market-data feeds: where live bars come from. A feed pushes bars into the live engine
//! through a [`FeedOut`]; the engine numbers them per symbol. The replay feed is the default;
//! real venues implement [`Feed`] the same way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

use super::LiveError;
use qtm_core::model::Bar;

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
/// the series starts over, shifted by its span so time keeps moving forward. With
/// `max_pause` no symbol waits longer than that for its next bar: nights, weekends and the
/// sparse bars of extended hours would otherwise stop a replayed market for minutes (a
/// weekend is 64 minutes at 60×). The bars keep their recorded times; only the pacing changes.
pub struct ReplayFeed {
    /// Bars per symbol, oldest first.
    pub series: Vec<(String, Vec<Bar>)>,
    /// Recorded time per wall time (60 = a minute bar every second).
    pub speed: f64,
    pub looped: bool,
    /// Longest wall-clock wait between two bars of a symbol, in seconds (`None`: the recorded
    /// gaps, divided by `speed`).
    pub max_pause: Option<f64>,
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
    /// When the next bar is due, in wall seconds from the replay's start.
    due: f64,
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
            due: 0.0,
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

    /// Move past the bar just sent; the next one is due after its recorded gap at `speed`,
    /// or after `max_pause` when that is shorter.
    fn advance(&mut self, looped: bool, speed: f64, max_pause: Option<f64>) {
        let sent = self.peek().map(|b| b.ts);
        self.next += 1;
        if self.next == self.bars.len() && looped {
            self.next = 0;
            self.shift += self.period;
        }
        if let (Some(sent), Some(next)) = (sent, self.peek()) {
            let wait = (next.ts - sent) as f64 / speed;
            self.due += max_pause.map_or(wait, |m| wait.min(m));
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
            let max_pause = self.max_pause.filter(|m| m.is_finite() && *m >= 0.0);
            // Each symbol's clock: its own first bar is due now.
            let start = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    return Ok(());
                }
                // The next bar due across symbols.
                let mut due: Option<(usize, f64)> = None;
                for (i, t) in tracks.iter().enumerate() {
                    if t.peek().is_some() && due.is_none_or(|(_, d)| t.due < d) {
                        due = Some((i, t.due));
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
                for t in tracks.iter_mut() {
                    while let Some(b) = t.peek() {
                        if t.due > now_s || batch.len() >= 4096 {
                            break;
                        }
                        batch.push((t.symbol.clone(), b));
                        t.advance(self.looped, speed, max_pause);
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
            t.advance(true, 60.0, None);
        }
        assert_eq!(seen, [100, 160, 220, 280, 340]);
        // A restart after 280 (the first bar of the second pass) continues at 340.
        let t = Track::new("X".into(), bars.clone(), Some(280), true).unwrap();
        assert_eq!(t.peek().unwrap().ts, 340);
        // Without a loop, a cursor past the end leaves nothing.
        let t = Track::new("X".into(), bars, Some(220), false).unwrap();
        assert!(t.peek().is_none());
    }

    /// Wall seconds at which each of the first `n` bars is due.
    fn dues(bars: &[Bar], looped: bool, speed: f64, max_pause: Option<f64>, n: usize) -> Vec<f64> {
        let mut t = Track::new("X".into(), bars.to_vec(), None, looped).unwrap();
        let mut dues = Vec::new();
        while dues.len() < n && t.peek().is_some() {
            dues.push(t.due);
            t.advance(looped, speed, max_pause);
        }
        dues
    }

    #[test]
    fn gaps_longer_than_the_pause_limit_are_shortened_to_it() {
        // Three minute bars, a night, two more; at 60× a minute is a second.
        let bars = [
            bar(0),
            bar(60),
            bar(120),
            bar(120 + 17 * 3600),
            bar(180 + 17 * 3600),
        ];
        assert_eq!(
            dues(&bars, false, 60.0, None, 5),
            [0.0, 1.0, 2.0, 2.0 + 1020.0, 3.0 + 1020.0]
        );
        assert_eq!(
            dues(&bars, false, 60.0, Some(1.0), 5),
            [0.0, 1.0, 2.0, 3.0, 4.0]
        );
        // Gaps shorter than the limit keep their pace; the loop's seam is one bar interval.
        assert_eq!(
            dues(&bars[..3], true, 120.0, Some(5.0), 5),
            [0.0, 0.5, 1.0, 1.5, 2.0]
        );
        // No wait at all when the limit is zero: the whole series as fast as it goes.
        assert_eq!(dues(&bars, false, 60.0, Some(0.0), 5), [0.0; 5]);
    }
}
