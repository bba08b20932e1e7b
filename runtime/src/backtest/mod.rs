//! Backtesting: the engine driven by a historical clock. Reads bars streaming from CSV files,
//! merges symbols in time order, runs the engine, and produces metrics, the trade list, the
//! equity curve and their hash. No fill or risk logic lives here.

mod output;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use output::{equity_csv, trades_csv, trades_sha256};

use crate::engine::{Engine, EngineConfig, StrategyRunner};
use crate::events::{Event, EventSink, StrategyState};
use crate::market::{BarReader, BarStream, DataError, IntervalEstimator, MergedBars};
use crate::metrics::{self, Metrics, MetricsInput};
use crate::model::{Bar, EquityPoint, LogLevel, Trade};
use crate::risk::RiskLimits;

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
    /// Keep every bar for the report's price charts.
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
    #[error("{0}")]
    Setup(String),
}

/// Everything a backtest produced.
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip)]
    pub equity: Vec<EquityPoint>,
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
    equity: Vec<EquityPoint>,
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
            } => self.equity.push(point),
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
    let mut prices: Vec<Vec<Bar>> = vec![Vec::new(); symbols.len()];
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
                    prices[*sym].push(*b);
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
        && let Some(last) = recorder.equity.last_mut()
    {
        last.equity = cash;
        last.in_market = false;
    }
    let metrics = metrics::compute(&MetricsInput {
        equity: &recorder.equity,
        trades: &trades,
        initial_cash: config.cash,
        fees: book_fees,
        interval_seconds: interval.estimate(),
        risk_free_rate: 0.0,
    });
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
            symbols.into_iter().zip(prices).collect()
        } else {
            Vec::new()
        },
        logs,
        elapsed: started.elapsed(),
    })
}
