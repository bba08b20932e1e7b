//! Backtesting: the engine driven by a historical clock. Reads bars streaming from CSV files,
//! merges symbols in time order, runs the engine, and produces metrics, the trade list, the
//! equity curve and their hash. No fill or risk logic lives here.

mod output;
pub mod request;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use output::{equity_csv, trades_csv, trades_sha256, write_equity_csv};
pub use request::{RunSettings, SettingError};

use crate::engine::{Engine, EngineConfig, StrategyRunner};
use crate::events::{Event, EventSink, StrategyState};
use crate::market::{BarReader, BarStream, DataError, IntervalEstimator, MergedBars};
use crate::metrics::{self, Metrics, MetricsInput};
use crate::model::{Bar, EquityPoint, LogLevel, Trade};
use crate::risk::RiskLimits;
use crate::spill::SpillVec;

/// A backtest's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BacktestConfig {
    pub cash: f64,
    pub engine: EngineConfig,
    pub risk: RiskLimits,
    /// Close open positions at the last close (with commission) instead of marking them.
    pub close_at_end: bool,
    /// Bars merged and processed per engine step.
    pub chunk: usize,
    /// Keep the bars for the report's price charts, merged into at most
    /// [`PRICE_CHART_BARS`] per symbol so memory stays flat.
    pub keep_prices: bool,
}

impl Default for BacktestConfig {
    fn default() -> Self {
        Self {
            cash: 10_000.0,
            engine: EngineConfig::default(),
            risk: RiskLimits::default(),
            close_at_end: false,
            chunk: 8192,
            keep_prices: false,
        }
    }
}

/// One input file and the symbol its bars belong to.
#[derive(Debug, Clone)]
pub struct DataSource {
    pub symbol: String,
    pub path: PathBuf,
}

/// Why a backtest could not run.
#[derive(Debug, Error)]
pub enum BacktestError {
    #[error(transparent)]
    Data(#[from] DataError),
    /// The equity curve could not be kept (its temporary file failed).
    #[error("keeping the equity curve in a temporary file failed: {0}")]
    Spill(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Everything a backtest produced.
#[derive(Debug, Serialize)]
pub struct BacktestOutcome {
    pub metrics: Metrics,
    pub trades_sha256: String,
    pub symbols: Vec<String>,
    pub bars: u64,
    pub orders: u64,
    pub rejected: u64,
    pub fills: u64,
    pub risk_alerts: Vec<String>,
    /// `running`, `halted` or `disabled`, with the reason.
    pub final_state: StrategyState,
    pub stop_reason: Option<String>,
    #[serde(skip)]
    pub trades: Vec<Trade>,
    /// One point per time step; long curves live in a temporary file (see [`SpillVec`]).
    #[serde(skip)]
    pub equity: SpillVec<EquityPoint>,
    /// Per symbol, the bars merged down to at most [`PRICE_CHART_BARS`] (empty unless
    /// [`BacktestConfig::keep_prices`]).
    #[serde(skip)]
    pub prices: Vec<(String, Vec<Bar>)>,
    #[serde(skip)]
    pub logs: Vec<(i64, LogLevel, String)>,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Collects what the report needs from the engine's events.
#[derive(Default)]
struct Recorder {
    equity: SpillVec<EquityPoint>,
    /// The newest point, held back because `--close-at-end` may still rewrite it.
    last: Option<EquityPoint>,
    spill_error: Option<std::io::Error>,
    orders: u64,
    rejected: u64,
    fills: u64,
    alerts: Vec<String>,
    stop_reason: Option<String>,
}

impl EventSink for Recorder {
    fn publish(&mut self, event: Event) {
        match event {
            Event::Equity {
                account: None,
                point,
            } => {
                if let Some(prev) = self.last.replace(point)
                    && let Err(e) = self.equity.push(prev)
                {
                    self.spill_error.get_or_insert(e);
                }
            }
            Event::OrderAccepted { .. } => self.orders += 1,
            Event::OrderRejected { .. } => self.rejected += 1,
            Event::Fill(_) => self.fills += 1,
            Event::RiskAlert { message, ts, .. } => self.alerts.push(format!("{ts}: {message}")),
            Event::StrategyStatus { reason, .. } => self.stop_reason = Some(reason),
            _ => {}
        }
    }
}

/// Run `runner` over `sources` (one symbol each, merged in time order).
/// `progress` is called with the number of bars processed so far.
pub fn run(
    name: &str,
    runner: Box<dyn StrategyRunner>,
    sources: &[DataSource],
    config: &BacktestConfig,
    progress: &mut dyn FnMut(u64),
) -> Result<BacktestOutcome, BacktestError> {
    if sources.is_empty() {
        return Err(BacktestError::Setup(
            "no data: pass at least one --data file".into(),
        ));
    }
    if !(config.cash.is_finite() && config.cash > 0.0) {
        return Err(BacktestError::Setup(format!(
            "cash must be positive, got {}",
            config.cash
        )));
    }
    let symbols: Vec<String> = sources.iter().map(|s| s.symbol.clone()).collect();
    for (i, s) in symbols.iter().enumerate() {
        if symbols[..i].contains(s) {
            return Err(BacktestError::Setup(format!(
                "symbol {s} is given twice; use --symbol to name the files apart"
            )));
        }
    }
    let mut streams: Vec<(usize, BarStream)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        streams.push((i, Box::new(BarReader::open(&s.path)?)));
    }
    let mut merged = MergedBars::new(streams);
    let started = Instant::now();
    let mut recorder = Recorder::default();
    let mut interval = IntervalEstimator::new();
    let mut prices: Vec<PriceSampler> = vec![PriceSampler::default(); symbols.len()];
    let mut bars = 0u64;
    let (trades, book_fees, cash, state, logs) = {
        let mut engine = Engine::new(config.engine.clone(), symbols.clone(), &mut recorder);
        engine
            .add_strategy(name, runner, &symbols, config.cash, config.risk.clone())
            .map_err(BacktestError::Setup)?;
        let mut chunk: Vec<(usize, Bar)> = Vec::with_capacity(config.chunk + 1);
        // Chunks hold whole timestamps, so equity is published once per time step: the first
        // bar of the next timestamp waits for the next chunk.
        let mut pending: Option<(usize, Bar)> = None;
        let mut last_ts = i64::MIN;
        loop {
            chunk.clear();
            chunk.extend(pending.take());
            loop {
                match merged.next() {
                    Some(Ok((sym, bar))) => {
                        if chunk.len() >= config.chunk.max(1)
                            && chunk.last().is_some_and(|(_, b)| b.ts != bar.ts)
                        {
                            pending = Some((sym, bar));
                            break;
                        }
                        chunk.push((sym, bar));
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            let Some((_, last)) = chunk.last() else { break };
            last_ts = last.ts;
            for (sym, b) in &chunk {
                interval.push(b.ts);
                if config.keep_prices {
                    prices[*sym].push(b);
                }
            }
            engine.process(&chunk);
            bars += chunk.len() as u64;
            progress(bars);
        }
        if config.close_at_end
            && let Some(ts) = (last_ts != i64::MIN).then_some(last_ts)
        {
            engine.close_all(ts);
        }
        let book = engine.portfolio(0);
        (
            engine.trades(0),
            book.fees(),
            book.equity(),
            engine.state(0).clone(),
            engine.logs(0).to_vec(),
        )
    };
    if config.close_at_end
        && let Some(last) = recorder.last.as_mut()
    {
        last.equity = cash;
        last.in_market = false;
    }
    if let Some(last) = recorder.last.take() {
        recorder.equity.push(last)?;
    }
    if let Some(e) = recorder.spill_error.take() {
        return Err(e.into());
    }
    let metrics = metrics::compute(&MetricsInput {
        equity: &recorder.equity,
        trades: &trades,
        initial_cash: config.cash,
        fees: book_fees,
        interval_seconds: interval.estimate(),
        risk_free_rate: 0.0,
    });
    recorder.equity.check()?;
    let hash = trades_sha256(&trades);
    Ok(BacktestOutcome {
        metrics,
        trades_sha256: hash,
        symbols: symbols.clone(),
        bars,
        orders: recorder.orders,
        rejected: recorder.rejected,
        fills: recorder.fills,
        risk_alerts: recorder.alerts,
        final_state: state,
        stop_reason: recorder.stop_reason,
        trades,
        equity: recorder.equity,
        prices: if config.keep_prices {
            symbols
                .into_iter()
                .zip(prices.into_iter().map(PriceSampler::into_bars))
                .collect()
        } else {
            Vec::new()
        },
        logs,
        elapsed: started.elapsed(),
    })
}

/// Bars kept per symbol for the report's price chart: a few times the widest chart's pixels.
pub const PRICE_CHART_BARS: usize = 4096;

/// Keeps a symbol's bars for the price chart in bounded memory: every `stride` consecutive bars
/// are merged into one OHLC bar, and when [`PRICE_CHART_BARS`] merged bars are held, neighbours
/// are merged pairwise and the stride doubles. Highs and lows survive every merge, so the chart
/// still shows every extreme.
#[derive(Debug, Clone)]
struct PriceSampler {
    bars: Vec<Bar>,
    /// Source bars per kept bar.
    stride: u64,
    /// Source bars merged into the last kept bar so far.
    filled: u64,
}

impl Default for PriceSampler {
    fn default() -> Self {
        PriceSampler {
            bars: Vec::new(),
            stride: 1,
            filled: 0,
        }
    }
}

impl PriceSampler {
    fn push(&mut self, bar: &Bar) {
        match self.bars.last_mut() {
            Some(last) if self.filled < self.stride => {
                merge_into(last, bar);
                self.filled += 1;
            }
            _ => {
                if self.bars.len() >= PRICE_CHART_BARS {
                    self.halve();
                    return self.push(bar);
                }
                self.bars.push(*bar);
                self.filled = 1;
            }
        }
    }

    /// Merge neighbours pairwise; the stride doubles. Only called when the last kept bar is
    /// full, so every merged bar is full too, except an unpaired last one.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.bars);
        for pair in old.chunks(2) {
            let mut b = pair[0];
            if let Some(next) = pair.get(1) {
                merge_into(&mut b, next);
            }
            self.bars.push(b);
        }
        self.filled = if old.len().is_multiple_of(2) {
            self.stride * 2
        } else {
            self.stride
        };
        self.stride *= 2;
    }

    fn into_bars(self) -> Vec<Bar> {
        self.bars
    }
}

/// `into` followed by `next` as one bar: the first open, the extremes, the last close, the
/// summed volume.
fn merge_into(into: &mut Bar, next: &Bar) {
    into.high = into.high.max(next.high);
    into.low = into.low.min(next.low);
    into.close = next.close;
    into.volume += next.volume;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(i: i64) -> Bar {
        let p = 100.0 + (i % 97) as f64;
        Bar {
            ts: 60 * i,
            open: p,
            high: p + 1.0 + (i % 5) as f64,
            low: p - 1.0 - (i % 7) as f64,
            close: p + 0.5,
            volume: 1.0,
        }
    }

    #[test]
    fn price_sampler_is_bounded_and_keeps_the_extremes() {
        let n = 3 * PRICE_CHART_BARS as i64 + 123;
        let mut s = PriceSampler::default();
        for i in 0..n {
            s.push(&bar(i));
        }
        let kept = s.into_bars();
        assert!(kept.len() <= PRICE_CHART_BARS, "{}", kept.len());
        assert!(kept.len() > PRICE_CHART_BARS / 4);
        assert_eq!(kept[0].ts, 0);
        assert_eq!(kept[0].open, bar(0).open);
        assert_eq!(kept.last().unwrap().close, bar(n - 1).close);
        assert_eq!(kept.iter().map(|b| b.volume).sum::<f64>(), n as f64);
        let max = (0..n).map(|i| bar(i).high).fold(f64::MIN, f64::max);
        let min = (0..n).map(|i| bar(i).low).fold(f64::MAX, f64::min);
        assert_eq!(kept.iter().map(|b| b.high).fold(f64::MIN, f64::max), max);
        assert_eq!(kept.iter().map(|b| b.low).fold(f64::MAX, f64::min), min);
        assert!(kept.windows(2).all(|w| w[0].ts < w[1].ts));
    }

    #[test]
    fn short_series_are_kept_bar_for_bar() {
        let mut s = PriceSampler::default();
        for i in 0..100 {
            s.push(&bar(i));
        }
        assert_eq!(s.into_bars(), (0..100).map(bar).collect::<Vec<_>>());
    }
}
