//! Estimating the bar interval of a series from its timestamps.

use std::collections::HashMap;

use qtm_core::model::Bar;

/// The bar interval of a series in seconds: the most common positive gap between consecutive
/// timestamps. `None` with fewer than two bars.
///
/// Metrics need the interval to annualise returns, and the files do not state it. The mode, not
/// the minimum or the mean, is used because real series have gaps (nights, weekends, missing
/// minutes) that would inflate a mean, and a single odd pair of rows would fool a minimum. Ties
/// between gaps that are equally common go to the smaller gap.
pub fn interval_seconds(bars: &[Bar]) -> Option<i64> {
    let mut estimator = IntervalEstimator::new();
    for bar in bars {
        estimator.push(bar.ts);
    }
    estimator.estimate()
}

/// [`interval_seconds`] for a stream: feed timestamps one at a time with
/// [`push`](Self::push), so a backtest can learn the interval while it reads bars instead of
/// loading the whole series first.
///
/// Memory grows with the number of *distinct* gaps, which stays small for real data (a few dozen
/// for minute bars with gaps), not with the number of bars.
#[derive(Debug, Clone, Default)]
pub struct IntervalEstimator {
    prev: Option<i64>,
    counts: HashMap<i64, u64>,
    /// The current run of equal gaps, not yet in `counts`: most consecutive gaps are equal,
    /// so most pushes only add to it (hashing every bar was a visible cost of the short
    /// backtests the evolution engine runs by the thousand).
    run: Option<(i64, u64)>,
    seen: u64,
}

impl IntervalEstimator {
    /// An estimator that has seen no timestamps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record the next timestamp. Zero or negative gaps (duplicates, out-of-order input) are not
    /// intervals and are ignored, so the estimate stays meaningful on unvalidated input.
    pub fn push(&mut self, ts: i64) {
        // The mode of the first ~100k gaps is the interval; hashing every bar of a long
        // backtest was a visible cost.
        if self.seen >= 100_000 {
            return;
        }
        self.seen += 1;
        if let Some(prev) = self.prev
            && let Some(gap) = ts.checked_sub(prev)
            && gap > 0
        {
            match &mut self.run {
                Some((g, n)) if *g == gap => *n += 1,
                run => {
                    if let Some((g, n)) = run.replace((gap, 1)) {
                        *self.counts.entry(g).or_insert(0) += n;
                    }
                }
            }
        }
        self.prev = Some(ts);
    }

    /// The most common positive gap so far (smallest on ties); `None` until one has been seen.
    pub fn estimate(&self) -> Option<i64> {
        let count = |gap: i64, n: u64| match self.run {
            Some((g, r)) if g == gap => n + r,
            _ => n,
        };
        let run_only = self
            .run
            .filter(|(g, _)| !self.counts.contains_key(g))
            .into_iter();
        self.counts
            .iter()
            .map(|(&gap, &n)| (gap, count(gap, n)))
            .chain(run_only)
            .max_by(|(gap_a, n_a), (gap_b, n_b)| n_a.cmp(n_b).then(gap_b.cmp(gap_a)))
            .map(|(gap, _)| gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bundled, peer_file_or_skip};
    use crate::{BarReader, load_bars};

    fn bars_at(ts: &[i64]) -> Vec<Bar> {
        ts.iter()
            .map(|&ts| Bar {
                ts,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 0.0,
            })
            .collect()
    }

    #[test]
    fn small_cases() {
        assert_eq!(interval_seconds(&[]), None);
        assert_eq!(interval_seconds(&bars_at(&[100])), None);
        assert_eq!(interval_seconds(&bars_at(&[100, 160])), Some(60));
        // Gaps do not fool the mode.
        assert_eq!(
            interval_seconds(&bars_at(&[0, 60, 120, 3600, 3660, 3720])),
            Some(60)
        );
        // Ties go to the smaller gap.
        assert_eq!(interval_seconds(&bars_at(&[0, 300, 360])), Some(60));
        // Non-positive gaps are ignored.
        assert_eq!(interval_seconds(&bars_at(&[60, 60, 0, 60])), Some(60));
        assert_eq!(interval_seconds(&bars_at(&[60, 60, 60])), None);
    }

    #[test]
    fn real_files() {
        let spy = load_bars(bundled("spy_1m_2011.csv")).unwrap();
        assert_eq!(interval_seconds(&spy), Some(60));
        if let Some(goog) = peer_file_or_skip("goog_1d.csv") {
            let goog = load_bars(goog).unwrap();
            assert_eq!(interval_seconds(&goog), Some(86_400));
        }

        // The streaming estimator agrees with the slice version.
        let mut est = IntervalEstimator::new();
        for bar in BarReader::open(bundled("spy_1m_2011.csv")).unwrap() {
            est.push(bar.unwrap().ts);
        }
        assert_eq!(est.estimate(), Some(60));
        if let Some(eurusd) = peer_file_or_skip("eurusd_1h.csv") {
            let mut est = IntervalEstimator::new();
            for bar in BarReader::open(eurusd).unwrap() {
                est.push(bar.unwrap().ts);
            }
            assert_eq!(est.estimate(), Some(3_600));
        }
    }

    #[test]
    fn runs_of_equal_gaps_count_as_every_gap() {
        // Gaps in runs and interleaved: the estimate is the mode of all gaps, ties to the
        // smaller, whatever the order they come in.
        let cases: &[&[i64]] = &[
            &[60, 60, 60, 120, 60, 120, 120, 120],
            &[120, 120, 60, 60],
            &[60, 120, 60, 120],
            &[300],
            &[5, 5, 7, 7, 7, 5, 5],
        ];
        for gaps in cases {
            let mut e = IntervalEstimator::new();
            let mut ts = 0;
            e.push(ts);
            let mut counts = std::collections::BTreeMap::new();
            for g in *gaps {
                ts += g;
                e.push(ts);
                *counts.entry(*g).or_insert(0u32) += 1;
            }
            let max = counts.values().max().copied().unwrap();
            let expected = counts.iter().find(|(_, n)| **n == max).map(|(g, _)| *g);
            assert_eq!(e.estimate(), expected, "{gaps:?}");
        }
    }
}
