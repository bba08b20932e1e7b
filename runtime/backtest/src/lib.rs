//! Backtesting: the engine driven by a historical clock. Reads bars streaming from CSV files,
//! merges symbols in time order, runs the engine, and produces metrics, the trade list, the
//! equity curve and their hash. No fill or risk logic lives here.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod jobs;
pub mod metrics;
mod output;
pub mod request;
pub mod spill;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use output::{equity_csv, trades_csv, trades_sha256, write_equity_csv};
pub use request::{RunSettings, SettingError};

use crate::metrics::{Metrics, MetricsInput};
use crate::spill::SpillVec;
use qtm_core::events::{Event, EventSink, StrategyState};
use qtm_core::model::{Bar, EquityPoint, Fill, Trade};
use qtm_core::strategy::{InstanceStats, StrategyHost};
use qtm_engine::{Engine, EngineConfig, LogLine, LogSink, StrategyRunner};
use qtm_market::{BarReader, BarStream, DataError, IntervalEstimator, MergedBars};
use qtm_oms::risk::RiskLimits;

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

/// One symbol's bars for a backtest.
#[derive(Debug, Clone)]
pub struct DataSource {
    pub symbol: String,
    pub bars: BarSource,
}

/// Where a symbol's bars come from: a CSV file read as it streams, or bars already in memory
/// (the store's history, a generated series), oldest first.
#[derive(Debug, Clone)]
pub enum BarSource {
    Csv(PathBuf),
    Series(Arc<[Bar]>),
}

impl DataSource {
    /// The bars of a CSV file (`ts,open,high,low,close,volume`).
    pub fn csv(symbol: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        DataSource {
            symbol: symbol.into(),
            bars: BarSource::Csv(path.into()),
        }
    }

    /// Bars in memory, oldest first; checked as a file's rows are (strictly increasing
    /// times, sane prices) when the run reads them.
    pub fn series(symbol: impl Into<String>, bars: impl Into<Arc<[Bar]>>) -> Self {
        DataSource {
            symbol: symbol.into(),
            bars: BarSource::Series(bars.into()),
        }
    }

    /// The file, for a CSV source.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.bars {
            BarSource::Csv(p) => Some(p),
            BarSource::Series(_) => None,
        }
    }

    /// How many bars, when known without reading a file.
    pub fn len_known(&self) -> Option<u64> {
        match &self.bars {
            BarSource::Csv(_) => None,
            BarSource::Series(b) => Some(b.len() as u64),
        }
    }

    fn stream(&self) -> Result<BarStream, BacktestError> {
        Ok(match &self.bars {
            BarSource::Csv(path) => Box::new(BarReader::open(path)?),
            BarSource::Series(bars) => Box::new(SeriesStream {
                name: format!("{} (in memory)", self.symbol),
                bars: bars.clone(),
                next: 0,
                last_ts: None,
            }),
        })
    }
}

/// An in-memory series as a checked bar stream: the same rules as a CSV file's rows
/// ([`qtm_market::validate`]), and errors that name the series and the bar's position.
struct SeriesStream {
    name: String,
    bars: Arc<[Bar]>,
    next: usize,
    last_ts: Option<i64>,
}

impl Iterator for SeriesStream {
    type Item = Result<Bar, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        let bar = *self.bars.get(self.next)?;
        self.next += 1;
        match qtm_market::validate(bar, self.last_ts) {
            Ok(bar) => {
                self.last_ts = Some(bar.ts);
                Some(Ok(bar))
            }
            Err(kind) => {
                // Nothing after a bad bar is trusted, as in a file.
                let position = self.next as u64;
                self.next = self.bars.len();
                Some(Err(DataError::new(self.name.clone(), Some(position), kind)))
            }
        }
    }
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
    /// The run took longer than its [`TimeLimit`].
    #[error("backtest stopped after {} s ({setting}); {bars} bars processed", .limit.as_secs_f64())]
    TimedOut {
        /// The limit that was reached.
        limit: Duration,
        /// The setting that gave the limit, as the user knows it (`--max-seconds`).
        setting: String,
        /// Bars processed when it stopped.
        bars: u64,
    },
    /// The run's cancel flag was raised.
    #[error("backtest cancelled; {bars} bars processed")]
    Cancelled {
        /// Bars processed when it stopped.
        bars: u64,
    },
    /// Writing the strategy's log lines to their sink failed.
    #[error("writing the strategy's log failed: {0}")]
    LogOut(std::io::Error),
}

/// A wall-time limit on a whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeLimit {
    /// Longest wall time, counted from the start of the run.
    pub limit: Duration,
    /// The setting that gave it, named in the error (`--max-seconds`).
    pub setting: String,
}

/// How a run is watched and what it reports besides its outcome.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Called with the number of bars processed so far, after each chunk.
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// Receives every log line as the strategy writes it, beyond the lines the outcome keeps.
    pub log_sink: Option<Box<dyn LogSink>>,
    /// Stop with [`BacktestError::TimedOut`] past this.
    pub time_limit: Option<TimeLimit>,
    /// Stop with [`BacktestError::Cancelled`] once this is set.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Everything a backtest produced.
#[derive(Debug, Serialize)]
pub struct BacktestOutcome {
    pub metrics: Metrics,
    pub trades_sha256: String,
    pub symbols: Vec<String>,
    /// Buying each symbol at its first close and holding it to its last, in percent, the
    /// symbols weighted equally (backtesting.py's "Buy & Hold Return"): the bar a strategy
    /// has to clear. `None` without bars.
    pub buy_and_hold_return_pct: Option<f64>,
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
    /// The newest log lines (bar time, level, text), at most `engine.log_lines`.
    #[serde(skip)]
    pub logs: Vec<LogLine>,
    /// Log lines written but not in `logs` (older than the newest `engine.log_lines`).
    pub logs_dropped: u64,
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
    let options = RunOptions {
        progress: Some(progress),
        ..Default::default()
    };
    run_with(name, runner, sources, config, options)
}

/// [`run`] with a log sink, a time limit and a cancel flag.
pub fn run_with(
    name: &str,
    runner: Box<dyn StrategyRunner>,
    sources: &[DataSource],
    config: &BacktestConfig,
    options: RunOptions<'_>,
) -> Result<BacktestOutcome, BacktestError> {
    let RunOptions {
        mut progress,
        log_sink,
        time_limit,
        cancel,
    } = options;
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
        streams.push((i, s.stream()?));
    }
    let mut merged = MergedBars::new(streams);
    let started = Instant::now();
    let watch = Arc::new(Watch {
        // A limit beyond what the clock can count is no limit (rather than a panic).
        deadline: time_limit
            .as_ref()
            .and_then(|t| started.checked_add(t.limit)),
        cancel,
        tripped: AtomicBool::new(false),
    });
    let stopped = |bars: u64| match &time_limit {
        Some(t) if !watch.cancelled() => BacktestError::TimedOut {
            limit: t.limit,
            setting: t.setting.clone(),
            bars,
        },
        _ => BacktestError::Cancelled { bars },
    };
    let runner: Box<dyn StrategyRunner> = if watch.deadline.is_some() || watch.cancel.is_some() {
        Box::new(Watched {
            inner: runner,
            watch: watch.clone(),
        })
    } else {
        runner
    };
    let mut recorder = Recorder::default();
    let mut interval = IntervalEstimator::new();
    let mut prices: Vec<PriceSampler> = vec![PriceSampler::default(); symbols.len()];
    // Per symbol, its first and last close.
    let mut held: Vec<Option<(f64, f64)>> = vec![None; symbols.len()];
    let mut bars = 0u64;
    let (trades, book_fees, cash, state, logs, logs_dropped) = {
        let mut engine = Engine::new(config.engine.clone(), symbols.clone(), &mut recorder);
        let account = engine
            .add_strategy(name, runner, &symbols, config.cash, config.risk.clone())
            .map_err(BacktestError::Setup)?;
        if let Some(sink) = log_sink {
            engine.set_log_sink(account, sink);
        }
        let mut chunk: Vec<(usize, Bar)> = Vec::with_capacity(config.chunk + 1);
        // Chunks hold whole timestamps, so equity is published once per time step: the first
        // bar of the next timestamp waits for the next chunk.
        let mut pending: Option<(usize, Bar)> = None;
        let mut last_ts = i64::MIN;
        loop {
            if watch.expired() {
                return Err(stopped(bars));
            }
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
                let h = held[*sym].get_or_insert((b.close, b.close));
                h.1 = b.close;
                if config.keep_prices {
                    prices[*sym].push(b);
                }
            }
            engine.process(&chunk);
            if watch.tripped.load(Ordering::Relaxed) {
                // The strategy was stopped part-way through the chunk: the bars after that
                // point were not run, so none of this chunk counts.
                return Err(stopped(bars));
            }
            bars += chunk.len() as u64;
            if let Some(p) = progress.as_mut() {
                p(bars);
            }
        }
        if config.close_at_end
            && let Some(ts) = (last_ts != i64::MIN).then_some(last_ts)
        {
            engine.close_all(ts);
        }
        if let Some(mut sink) = engine.take_log_sink(account) {
            sink.finish().map_err(BacktestError::LogOut)?;
        }
        let book = engine.portfolio(account);
        let logs = engine.logs(account);
        (
            engine.trades(account),
            book.fees(),
            book.equity(),
            engine.state(account).clone(),
            logs.iter().cloned().collect(),
            logs.dropped(),
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
    let returns: Vec<f64> = held
        .iter()
        .flatten()
        .filter(|(first, _)| *first > 0.0)
        .map(|(first, last)| (last / first - 1.0) * 100.0)
        .collect();
    let buy_and_hold_return_pct =
        (!returns.is_empty()).then(|| returns.iter().sum::<f64>() / returns.len() as f64);
    Ok(BacktestOutcome {
        metrics,
        trades_sha256: hash,
        symbols: symbols.clone(),
        buy_and_hold_return_pct,
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
        logs_dropped,
        elapsed: started.elapsed(),
    })
}

impl BacktestOutcome {
    /// The run's summary as the CLI's `--json` and the backtest API report it: every metric,
    /// then what the run did (counts, final state, logs, timing, the trade list's hash and
    /// the buy-and-hold benchmark). One builder, so both always say the same.
    pub fn summary_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.metrics).unwrap_or_else(|_| serde_json::json!({}));
        let extra = serde_json::json!({
            "trades_sha256": self.trades_sha256,
            "buy_and_hold_return_pct": self.buy_and_hold_return_pct,
            "symbols": self.symbols,
            "bars": self.bars,
            "orders": self.orders,
            "rejected_orders": self.rejected,
            "fills": self.fills,
            "risk_alerts": self.risk_alerts,
            "state": self.final_state,
            "stop_reason": self.stop_reason,
            "logs_kept": self.logs.len(),
            "logs_dropped": self.logs_dropped,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1e3,
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        v
    }
}

/// What stops a run early: its deadline and its cancel flag. `tripped` is set when the
/// strategy was refused a call because of them.
struct Watch {
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    tripped: AtomicBool,
}

impl Watch {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn expired(&self) -> bool {
        self.cancelled() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Before each strategy call: a chunk can hold thousands of calls, each bounded only by
    /// the sandbox's own budget, so checking between chunks alone could overrun the limit by
    /// hours. A refused call stops the strategy; the rest of the chunk then runs without it.
    fn check(&self) -> Result<(), String> {
        if self.expired() {
            self.tripped.store(true, Ordering::Relaxed);
            return Err("the backtest's time limit was reached or it was cancelled".into());
        }
        Ok(())
    }
}

/// A strategy whose every call is first checked against the run's [`Watch`]. This keeps the
/// engine free of wall clocks.
struct Watched {
    inner: Box<dyn StrategyRunner>,
    watch: Arc<Watch>,
}

impl StrategyRunner for Watched {
    fn on_bar(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        bar: &Bar,
    ) -> Result<(), String> {
        self.watch.check()?;
        self.inner.on_bar(host, symbol, bar)
    }
    fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        fill: &Fill,
    ) -> Result<(), String> {
        self.watch.check()?;
        self.inner.on_fill(host, symbol, fill)
    }
    fn wants_fills(&self) -> bool {
        self.inner.wants_fills()
    }
    fn pulls_bars(&self) -> bool {
        self.inner.pulls_bars()
    }
    fn on_bars(&mut self, host: &mut dyn StrategyHost) -> Result<u64, String> {
        self.watch.check()?;
        // A pull can take thousands of bars, each with its own budget: end it at the limit.
        let mut host = WatchedHost {
            inner: host,
            watch: &self.watch,
        };
        self.inner.on_bars(&mut host)
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        self.inner.snapshot()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.inner.restore(state)
    }
    fn stats(&self) -> Option<InstanceStats> {
        self.inner.stats()
    }
}

/// A host whose `next_bar` ends the pull once the run's [`Watch`] has expired; everything else
/// goes through unchanged.
struct WatchedHost<'a> {
    inner: &'a mut dyn StrategyHost,
    watch: &'a Watch,
}

impl StrategyHost for WatchedHost<'_> {
    fn log(&mut self, level: qtm_core::model::LogLevel, message: &str) {
        self.inner.log(level, message)
    }
    fn submit_order(&mut self, order: qtm_core::model::OrderRequest) -> Result<u64, String> {
        self.inner.submit_order(order)
    }
    fn cancel_order(&mut self, id: u64) -> Result<(), String> {
        self.inner.cancel_order(id)
    }
    fn modify_order(
        &mut self,
        id: u64,
        change: qtm_core::model::OrderChange,
    ) -> Result<(), String> {
        self.inner.modify_order(id, change)
    }
    fn position(&mut self, symbol: &str) -> qtm_core::model::Position {
        self.inner.position(symbol)
    }
    fn cash(&mut self) -> f64 {
        self.inner.cash()
    }
    fn equity(&mut self) -> f64 {
        self.inner.equity()
    }
    fn open_orders(&mut self) -> Vec<qtm_core::model::OpenOrder> {
        self.inner.open_orders()
    }
    fn signal(&mut self, name: &str) -> Option<qtm_core::model::Signal> {
        self.inner.signal(name)
    }
    fn now_ns(&mut self) -> i64 {
        self.inner.now_ns()
    }
    fn recent_bars(&mut self, symbol: &str, count: u32) -> Result<Vec<Bar>, String> {
        self.inner.recent_bars(symbol, count)
    }
    fn next_bar(&mut self) -> Option<(u32, Bar)> {
        if self.watch.expired() {
            self.watch.tripped.store(true, Ordering::Relaxed);
            return None;
        }
        self.inner.next_bar()
    }
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
