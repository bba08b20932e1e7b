//! Merging several per-symbol bar streams into one time-ordered stream.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::iter::FusedIterator;
use std::path::Path;

use super::csv::BarReader;
use super::error::DataError;
use qtm_core::model::Bar;

/// One symbol's bars, oldest first. Boxed so file readers, in-memory series and adapters can be
/// merged together; `Send` so a merged feed can be moved to a worker thread.
pub type BarStream = Box<dyn Iterator<Item = Result<Bar, DataError>> + Send>;

/// A multi-symbol feed: the bars of several streams in timestamp order, each tagged with its
/// symbol index.
///
/// A portfolio backtest must see every symbol's bar for time `t` before any bar for a later time,
/// and it must see them in the same order on every run, so bars with equal `ts` come out by
/// ascending symbol index (then by the order the sources were given). Only one bar per source is
/// held, so memory does not grow with history length.
///
/// Each source must already be in increasing `ts` order ([`BarReader`] guarantees it). The first
/// error from any source is yielded as soon as it is read, after which the merged stream ends: a
/// bar that comes later in time may depend on the row that failed, so nothing after it is
/// trusted. Source errors keep their file and line.
pub struct MergedBars {
    sources: Vec<Source>,
    /// Heads of the non-exhausted sources, smallest `(ts, symbol, source position)` first.
    heap: BinaryHeap<Reverse<(i64, usize, usize)>>,
    /// The source whose head was handed out last and must be pulled before the next pick.
    refill: Option<usize>,
    primed: bool,
    done: bool,
}

struct Source {
    symbol: usize,
    stream: BarStream,
    head: Option<Bar>,
}

impl MergedBars {
    /// Merge `(symbol index, stream)` pairs. Nothing is read until the first call to `next`.
    pub fn new(sources: impl IntoIterator<Item = (usize, BarStream)>) -> Self {
        let sources: Vec<Source> = sources
            .into_iter()
            .map(|(symbol, stream)| Source {
                symbol,
                stream,
                head: None,
            })
            .collect();
        MergedBars {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            refill: None,
            primed: false,
            done: false,
        }
    }

    /// Open one CSV file per symbol; the symbol index is the file's position in `paths`.
    ///
    /// All headers are checked before anything is merged, so a wrong file list fails up front.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self, DataError> {
        let mut sources = Vec::with_capacity(paths.len());
        for (symbol, path) in paths.iter().enumerate() {
            let reader: BarStream = Box::new(BarReader::open(path)?);
            sources.push((symbol, reader));
        }
        Ok(Self::new(sources))
    }

    /// How many sources are merged.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Read the next bar of source `i` into its head slot.
    fn pull(&mut self, i: usize) -> Result<(), DataError> {
        let source = &mut self.sources[i];
        match source.stream.next() {
            Some(Ok(bar)) => {
                source.head = Some(bar);
                self.heap.push(Reverse((bar.ts, source.symbol, i)));
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    fn advance(&mut self) -> Result<Option<(usize, Bar)>, DataError> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.sources.len() {
                self.pull(i)?;
            }
        }
        if let Some(i) = self.refill.take() {
            self.pull(i)?;
        }
        let Some(Reverse((_, symbol, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let bar = self.sources[i]
            .head
            .take()
            .expect("a source in the heap has a head bar");
        self.refill = Some(i);
        Ok(Some((symbol, bar)))
    }
}

impl Iterator for MergedBars {
    type Item = Result<(usize, Bar), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for MergedBars {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fixture_in, peer_file_or_skip};
    use crate::{DataErrorKind, load_bars};

    fn bar(ts: i64, close: f64) -> Bar {
        Bar {
            ts,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
        }
    }

    fn stream(bars: Vec<Bar>) -> BarStream {
        Box::new(bars.into_iter().map(Ok))
    }

    #[test]
    fn merges_in_time_order_with_ties_by_symbol() {
        // Sources are given out of symbol order to show that ties follow the symbol index.
        let merged = MergedBars::new([
            (2, stream(vec![bar(10, 2.10), bar(20, 2.20), bar(40, 2.40)])),
            (
                0,
                stream(vec![
                    bar(10, 0.10),
                    bar(30, 0.30),
                    bar(40, 0.40),
                    bar(50, 0.50),
                ]),
            ),
            (1, stream(vec![bar(5, 1.05), bar(10, 1.10), bar(40, 1.40)])),
        ]);
        assert_eq!(merged.source_count(), 3);
        let got: Vec<(usize, i64, f64)> = merged
            .map(|r| r.map(|(s, b)| (s, b.ts, b.close)).unwrap())
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 5, 1.05),
                (0, 10, 0.10),
                (1, 10, 1.10),
                (2, 10, 2.10),
                (2, 20, 2.20),
                (0, 30, 0.30),
                (0, 40, 0.40),
                (1, 40, 1.40),
                (2, 40, 2.40),
                (0, 50, 0.50),
            ]
        );
    }

    #[test]
    fn feeds_can_move_to_another_thread() {
        fn check<T: Send + 'static>() {}
        check::<MergedBars>();
        check::<BarReader>();
    }

    #[test]
    fn empty_inputs() {
        assert!(MergedBars::new([]).next().is_none());
        let mut m = MergedBars::new([(0, stream(vec![])), (1, stream(vec![bar(1, 1.0)]))]);
        assert_eq!(m.next().unwrap().unwrap(), (1, bar(1, 1.0)));
        assert!(m.next().is_none());
        assert!(m.next().is_none());
    }

    #[test]
    fn error_propagates_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let h = "ts,open,high,low,close,volume\n";
        let a = fixture_in(
            &dir,
            "aaa_1m.csv",
            &format!(
                "{h}60,1.0,1.0,1.0,1.0,1\n120,1.0,1.0,1.0,1.0,1\n180,1.0,1.0,1.0,1.0,1\n240,1.0,1.0,1.0,1.0,1\n"
            ),
        );
        // Line 4 of bbb is bad; its line 3 (ts 120) is fine.
        let b = fixture_in(
            &dir,
            "bbb_1m.csv",
            &format!("{h}60,2.0,2.0,2.0,2.0,1\n120,2.0,2.0,2.0,2.0,1\n180,2.0,1.5,2.0,2.0,1\n"),
        );
        let c = fixture_in(&dir, "ccc_1m.csv", &format!("{h}90,3.0,3.0,3.0,3.0,1\n"));

        let items: Vec<_> = MergedBars::open(&[&a, &b, &c]).unwrap().collect();
        let ok: Vec<(usize, i64)> = items
            .iter()
            .map_while(|r| r.as_ref().ok().map(|(s, b)| (*s, b.ts)))
            .collect();
        // bbb's bad row is read right after its ts=120 bar is handed out, before anything later.
        assert_eq!(ok, vec![(0, 60), (1, 60), (2, 90), (0, 120), (1, 120)]);
        assert_eq!(items.len(), ok.len() + 1, "the stream ends after the error");
        let err = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.path, b);
        assert_eq!(err.line, Some(4));
        assert!(matches!(err.kind, DataErrorKind::HighTooLow { .. }));
        assert_eq!(
            err.to_string(),
            format!("{}:4: high 1.5 is below low 2.0", b.display())
        );
    }

    #[test]
    fn open_fails_on_a_bad_header() {
        let dir = tempfile::tempdir().unwrap();
        let good = fixture_in(&dir, "x.csv", "ts,open,high,low,close,volume\n");
        let bad = fixture_in(&dir, "y.csv", "time,o,h,l,c,v\n");
        let err = MergedBars::open(&[&good, &bad]).err().unwrap();
        assert_eq!(err.path, bad);
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn merging_real_files_keeps_every_bar_in_order() {
        let names = ["goog_1d.csv", "orcl_1d.csv", "nvda_1d.csv"];
        let Some(paths) = names
            .iter()
            .map(|n| peer_file_or_skip(n))
            .collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let expected: usize = paths.iter().map(|p| load_bars(p).unwrap().len()).sum();
        let mut count = 0;
        let mut last = (i64::MIN, 0);
        for item in MergedBars::open(&paths).unwrap() {
            let (symbol, bar) = item.unwrap();
            assert!((bar.ts, symbol) > last, "out of order at {last:?}");
            last = (bar.ts, symbol);
            count += 1;
        }
        assert_eq!(count, expected);
    }
}
