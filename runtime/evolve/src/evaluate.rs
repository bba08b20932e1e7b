//! Fitness: one candidate backtested by the real engine over one period, each evaluation in its
//! own fuel-limited sandbox instance. The bars are read once and shared; a period is a slice of
//! them by time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::genome::{Genome, ParamSpace};
use qtm_backtest::metrics::{self, Metrics, MetricsInput};
use qtm_backtest::{BacktestConfig, BacktestOutcome, DataSource};
use qtm_core::model::{Bar, EquityPoint, Trade};
use qtm_market::IntervalEstimator;
use qtm_sandbox::{DataVariants, Sandbox, StrategyCode};

/// The market of a search: each symbol's bars, in memory, oldest first.
#[derive(Debug, Clone)]
pub struct Market {
    /// Symbols, in the order of the `--data` files.
    pub symbols: Vec<String>,
    /// Each symbol's bars.
    pub bars: Vec<Arc<[Bar]>>,
    /// Each file's SHA-256 (the manifest names the data a result depends on).
    pub hashes: Vec<String>,
    /// Each file's path as given.
    pub files: Vec<PathBuf>,
}

impl Market {
    /// Read `files` (one symbol each) into memory, checked as `qtm backtest` checks them.
    pub fn load(files: &[(String, PathBuf)]) -> Result<Self, String> {
        let mut m = Market {
            symbols: Vec::new(),
            bars: Vec::new(),
            hashes: Vec::new(),
            files: Vec::new(),
        };
        for (symbol, path) in files {
            if m.symbols.contains(symbol) {
                return Err(format!(
                    "symbol {symbol} is given twice; use --symbol to name the files apart"
                ));
            }
            let bytes =
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let bars = qtm_market::load_bars(path).map_err(|e| e.to_string())?;
            if bars.is_empty() {
                return Err(format!("{}: no bars", path.display()));
            }
            m.symbols.push(symbol.clone());
            m.bars.push(bars.into());
            m.hashes.push(hex::encode(Sha256::digest(&bytes)));
            m.files.push(path.clone());
        }
        if m.symbols.is_empty() {
            return Err("no data: pass at least one --data file".into());
        }
        Ok(m)
    }

    /// A market of bars already in memory (the server's stored history), one entry per
    /// symbol, oldest first; `hashes` are of the bars themselves.
    pub fn from_bars(series: Vec<(String, Vec<Bar>)>) -> Result<Self, String> {
        let mut m = Market {
            symbols: Vec::new(),
            bars: Vec::new(),
            hashes: Vec::new(),
            files: Vec::new(),
        };
        for (symbol, bars) in series {
            if m.symbols.contains(&symbol) {
                return Err(format!("symbol {symbol} is given twice"));
            }
            if bars.is_empty() {
                return Err(format!("{symbol}: no bars"));
            }
            let mut h = Sha256::new();
            for b in &bars {
                for x in [b.open, b.high, b.low, b.close, b.volume] {
                    h.update(x.to_le_bytes());
                }
                h.update(b.ts.to_le_bytes());
            }
            m.hashes.push(hex::encode(h.finalize()));
            m.files
                .push(PathBuf::from(format!("{symbol} (stored bars)")));
            m.symbols.push(symbol);
            m.bars.push(bars.into());
        }
        if m.symbols.is_empty() {
            return Err("no data: name at least one symbol".into());
        }
        Ok(m)
    }

    /// First and last bar time over every symbol.
    pub fn span(&self) -> (i64, i64) {
        let first = self
            .bars
            .iter()
            .filter_map(|b| b.first())
            .map(|b| b.ts)
            .min();
        let last = self
            .bars
            .iter()
            .filter_map(|b| b.last())
            .map(|b| b.ts)
            .max();
        (first.unwrap_or(0), last.unwrap_or(0))
    }

    /// Every distinct bar time, sorted (the clock that splits and folds are cut on).
    pub fn times(&self) -> Vec<i64> {
        let mut t: Vec<i64> = self
            .bars
            .iter()
            .flat_map(|b| b.iter().map(|b| b.ts))
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// The sources of `period`: each symbol's bars with `from ≤ ts ≤ to`.
    pub fn sources(&self, period: Period) -> Vec<DataSource> {
        self.symbols
            .iter()
            .zip(&self.bars)
            .map(|(s, bars)| {
                let lo = bars.partition_point(|b| b.ts < period.from);
                let hi = bars.partition_point(|b| b.ts <= period.to);
                DataSource::series(s.clone(), Arc::<[Bar]>::from(&bars[lo..hi]))
            })
            .collect()
    }

    /// Buying every symbol at its first close of `period` and holding to its last, the
    /// symbols weighted equally: the equity curve a strategy has to beat.
    pub fn buy_and_hold(&self, period: Period, cash: f64) -> Vec<EquityPoint> {
        let mut points: std::collections::BTreeMap<i64, Vec<(usize, f64)>> = Default::default();
        for (i, bars) in self.bars.iter().enumerate() {
            for b in bars
                .iter()
                .filter(|b| b.ts >= period.from && b.ts <= period.to)
            {
                points.entry(b.ts).or_default().push((i, b.close));
            }
        }
        let n = self.bars.len() as f64;
        let mut first: Vec<Option<f64>> = vec![None; self.bars.len()];
        let mut last: Vec<f64> = vec![0.0; self.bars.len()];
        let mut out = Vec::with_capacity(points.len());
        for (ts, closes) in points {
            for (i, c) in closes {
                first[i].get_or_insert(c);
                last[i] = c;
            }
            let equity: f64 = (0..self.bars.len())
                .map(|i| match first[i] {
                    Some(f) if f > 0.0 => cash / n * last[i] / f,
                    _ => cash / n,
                })
                .sum();
            out.push(EquityPoint {
                ts,
                equity,
                in_market: true,
            });
        }
        out
    }
}

/// A stretch of market time, both ends included (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// First bar time included.
    pub from: i64,
    /// Last bar time included.
    pub to: i64,
}

impl Subject {
    /// The subject of `--gp`: rule programs run in `sandbox`.
    pub fn rules(sandbox: Arc<Sandbox>) -> Result<Self, String> {
        let variants = sandbox
            .data_variants(qtm_rules_component::reference_component())
            .map_err(|e| format!("compiling the rules guest: {e}"))?;
        Ok(Subject::Rules {
            sandbox,
            variants: Arc::new(variants),
        })
    }
}

/// How candidates become strategy instances.
pub enum Subject {
    /// A component whose parameters are the genome.
    Component {
        /// The compiled component.
        code: Arc<StrategyCode>,
        /// Its genes.
        space: ParamSpace,
    },
    /// Rule programs (`--gp`), each a component of its own, loaded from the rules guest's
    /// compiled code with the program written into its data (no compiling per program).
    Rules {
        /// Runs them.
        sandbox: Arc<Sandbox>,
        /// The rules guest, compiled once.
        variants: Arc<DataVariants>,
    },
}

/// One candidate's backtest over one period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Why the candidate could not run (its parameters were refused, its program failed);
    /// `None` when it ran.
    pub error: Option<String>,
    /// The run's metrics, as `qtm backtest --json` reports them.
    pub metrics: Metrics,
    /// Return of each calendar day (UTC) with bars, from the end-of-day equity.
    #[serde(skip)]
    pub daily: Vec<f64>,
    /// SHA-256 of the trade list.
    pub trades_sha256: String,
    /// The whole summary, as `qtm backtest --json` prints it (kept for the champion only).
    #[serde(skip)]
    pub summary: Option<serde_json::Value>,
    /// The trades (kept for the champion only).
    #[serde(skip)]
    pub trades: Vec<Trade>,
    /// The equity curve (kept for the champion only).
    #[serde(skip)]
    pub equity: Vec<EquityPoint>,
}

impl Evaluation {
    fn failed(error: String) -> Self {
        Evaluation {
            error: Some(error),
            metrics: Metrics::default(),
            daily: Vec::new(),
            trades_sha256: String::new(),
            summary: None,
            trades: Vec::new(),
            equity: Vec::new(),
        }
    }
}

/// Backtests candidates: the subject, the market and the run's settings.
pub struct Evaluator {
    /// How a genome becomes a strategy.
    pub subject: Subject,
    /// The bars.
    pub market: Market,
    /// Costs, cash, risk limits: the same for every candidate.
    pub config: BacktestConfig,
}

impl Evaluator {
    /// Backtest `genome` over `period`. `keep` keeps the trades, the equity curve and the full
    /// summary (for the champion and the reports).
    pub fn evaluate(&self, genome: &Genome, period: Period, keep: bool) -> Evaluation {
        let runner = match (&self.subject, genome) {
            (Subject::Component { code, space }, Genome::Params(p)) => {
                match code.instantiate(&space.params(p), &self.market.symbols) {
                    Ok(i) => i,
                    Err(e) => return Evaluation::failed(e.to_string()),
                }
            }
            (Subject::Rules { sandbox, variants }, Genome::Rules(r)) => {
                let text = r.to_rules();
                let compiled = match qtm_rules_component::compile("evolved", text.as_bytes()) {
                    Ok(c) => c,
                    Err(d) => {
                        let first = d.first().map(|d| d.to_string()).unwrap_or_default();
                        return Evaluation::failed(format!("program does not check: {first}"));
                    }
                };
                let code = match sandbox.load_variant(variants, &compiled.component) {
                    Ok(c) => c,
                    Err(e) => return Evaluation::failed(e.to_string()),
                };
                match code.instantiate(&[], &self.market.symbols) {
                    Ok(i) => i,
                    Err(e) => return Evaluation::failed(e.to_string()),
                }
            }
            _ => return Evaluation::failed("genome of another kind than the search".into()),
        };
        let sources = self.market.sources(period);
        let outcome = match qtm_backtest::run(
            "candidate",
            Box::new(runner),
            &sources,
            &self.config,
            &mut |_| {},
        ) {
            Ok(o) => o,
            Err(e) => return Evaluation::failed(e.to_string()),
        };
        self.evaluation(outcome, keep)
    }

    fn evaluation(&self, outcome: BacktestOutcome, keep: bool) -> Evaluation {
        let daily = daily_returns(outcome.equity.iter(), self.config.cash);
        let summary = keep.then(|| outcome.summary_json());
        let equity: Vec<EquityPoint> = if keep {
            outcome.equity.iter().collect()
        } else {
            Vec::new()
        };
        Evaluation {
            error: None,
            trades_sha256: outcome.trades_sha256,
            metrics: outcome.metrics,
            daily,
            summary,
            trades: if keep { outcome.trades } else { Vec::new() },
            equity,
        }
    }

    /// Buy-and-hold over `period`: its metrics and daily returns.
    pub fn buy_and_hold(&self, period: Period) -> Evaluation {
        let equity = self.market.buy_and_hold(period, self.config.cash);
        let mut interval = IntervalEstimator::new();
        for p in &equity {
            interval.push(p.ts);
        }
        let m = metrics::compute(&MetricsInput {
            equity: &equity[..],
            trades: &[],
            initial_cash: self.config.cash,
            fees: 0.0,
            interval_seconds: interval.estimate(),
            risk_free_rate: 0.0,
        });
        Evaluation {
            error: None,
            daily: daily_returns(equity.iter().copied(), self.config.cash),
            trades_sha256: qtm_backtest::trades_sha256(&[]),
            summary: Some(serde_json::to_value(&m).unwrap_or_default()),
            metrics: m,
            trades: Vec::new(),
            equity,
        }
    }
}

/// Returns of each UTC calendar day from the last equity of the day, the first against
/// `cash`. Daily returns make candidates comparable whatever the bar interval, and keep the
/// statistics' matrices small for minute data.
pub fn daily_returns(points: impl Iterator<Item = EquityPoint>, cash: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut prev = cash;
    let mut day: Option<(i64, f64)> = None;
    for p in points {
        let d = p.ts.div_euclid(86_400);
        match &mut day {
            Some((cur, eq)) if *cur == d => *eq = p.equity,
            _ => {
                if let Some((_, eq)) = day {
                    out.push(ratio(eq, prev));
                    prev = eq;
                }
                day = Some((d, p.equity));
            }
        }
    }
    if let Some((_, eq)) = day {
        out.push(ratio(eq, prev));
    }
    out
}

fn ratio(eq: f64, prev: f64) -> f64 {
    if prev > 0.0 && eq.is_finite() {
        eq / prev - 1.0
    } else {
        0.0
    }
}

/// The file's symbol when the user names none: as `qtm backtest` does.
pub fn symbol_of(path: &Path) -> String {
    qtm_market::symbol_from_path(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_returns_take_the_last_equity_of_each_day() {
        let p = |ts, equity| EquityPoint {
            ts,
            equity,
            in_market: false,
        };
        let pts = [
            p(0, 100.0),
            p(3_600, 110.0),
            p(86_400, 99.0),
            p(2 * 86_400 + 5, 99.0),
        ];
        let r = daily_returns(pts.into_iter(), 100.0);
        assert_eq!(r.len(), 3);
        assert!((r[0] - 0.10).abs() < 1e-12);
        assert!((r[1] - (99.0 / 110.0 - 1.0)).abs() < 1e-12);
        assert_eq!(r[2], 0.0);
    }
}
