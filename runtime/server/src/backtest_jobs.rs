//! The server's backtest jobs: each runs on the backtest layer's queue
//! ([`qtm_backtest::jobs`]: one per core, time limit, cancel, progress) and every event of
//! its life is recorded here: the row's status, progress and results in the store, and the
//! messages on the `strategy-updates` stream (key = strategy id) and `notifications`.
//!
//! `backtest.progress` (`bars_done`, `bars_total`) at most ten times a second while it runs,
//! then `backtest.done` (key metrics and the trades hash) or `backtest.failed` (the error).
//! A cancelled job says nothing more: `POST /api/backtests/{id}/cancel` has recorded and
//! announced its end.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::hub::Topic;
use super::state::AppState;
use qtm_backtest::jobs::{JobError, JobEvent, Prepare, Prepared};
use qtm_backtest::{BacktestOutcome, DataSource, RunSettings};
use qtm_core::model::Param;
use qtm_core::strategy::StrategyRunner;
use qtm_oms::risk::RiskLimits;
use qtm_store::{self as store, backtests::Finished};

/// Points the stored equity curve is reduced to (lowest and highest of each bucket), so a
/// million-bar run stays a few hundred kilobytes.
pub const EQUITY_BUCKETS: usize = 2000;

/// Where a run's bars come from.
#[derive(Debug, Clone)]
pub enum Bars {
    /// Files in the data directory: (path, symbol).
    Files(Vec<(PathBuf, String)>),
    /// Stored price history of these symbols.
    Stored(Vec<String>),
}

/// A checked backtest request, stored as queued under `id`.
pub struct JobSpec {
    /// The backtest's row.
    pub id: i64,
    pub strategy_id: i64,
    /// The stored version whose component runs.
    pub version_id: i64,
    pub params: Vec<Param>,
    pub bars: Bars,
    pub settings: RunSettings,
    pub risk: RiskLimits,
}

/// Queue `spec` and record its events as they come; announces it as queued.
pub fn start(state: &AppState, spec: JobSpec) {
    let (id, strategy_id) = (spec.id, spec.strategy_id);
    publish(
        state,
        strategy_id,
        json!({"event": "backtest.queued", "backtest_id": id, "strategy_id": strategy_id,
               "status": "queued", "bars_done": 0}),
    );
    // Error texts name files; the server's folders are no business of API clients.
    let hide = match &spec.bars {
        Bars::Files(_) => vec![state.config.data_dir.clone()],
        Bars::Stored(_) => Vec::new(),
    };
    let events = state.backtest_jobs.submit(id, prepare(state.clone(), spec));
    tokio::spawn(record(state.clone(), id, strategy_id, hide, events));
}

/// What the job does once it holds a slot: read the bars (stored history into memory: no
/// temporary files), fetch the component; the strategy is compiled and instantiated on the
/// run's thread.
fn prepare(state: AppState, spec: JobSpec) -> Prepare {
    Box::pin(async move {
        let internal = |e: store::StoreError| {
            tracing::error!(backtest = spec.id, error = %e, "backtest store error");
            format!("internal error: {e}")
        };
        let sources = match &spec.bars {
            Bars::Files(files) => files
                .iter()
                .map(|(path, symbol)| DataSource::csv(symbol.clone(), path.clone()))
                .collect(),
            Bars::Stored(symbols) => {
                let mut sources = Vec::new();
                for s in symbols {
                    let bars = store::backtests::price_history(&state.store, s)
                        .await
                        .map_err(|e| match e {
                            store::StoreError::NotFound(_) => format!(
                                "no stored price history for {s}: import it with `qtm data import <csv> --symbol {s}` or give `data` files"
                            ),
                            other => internal(other),
                        })?;
                    sources.push(DataSource::series(s.clone(), bars));
                }
                sources
            }
        };
        let component = store::strategies::component(&state.store, spec.version_id)
            .await
            .map_err(internal)?;
        let symbols: Vec<String> = sources.iter().map(|s| s.symbol.clone()).collect();
        let sandbox = state.sandbox.clone();
        let params = spec.params;
        Ok(Prepared {
            sources,
            config: spec.settings.config(spec.risk),
            strategy: Box::new(move || {
                let code = sandbox.load(&component).map_err(|e| e.to_string())?;
                let name = code.info().name.clone();
                let instance = code
                    .instantiate(&params, &symbols)
                    .map_err(|e| e.to_string())?;
                Ok((name, Box::new(instance) as Box<dyn StrategyRunner>))
            }),
        })
    })
}

fn publish(state: &AppState, strategy_id: i64, data: Value) {
    state
        .hub
        .publish(Topic::StrategyUpdates, Some(strategy_id.to_string()), &data);
}

/// Store and announce the events of job `id` until it ends.
async fn record(
    state: AppState,
    id: i64,
    strategy_id: i64,
    hide: Vec<PathBuf>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<JobEvent>,
) {
    let scrub = |msg: String| {
        hide.iter().fold(msg, |m, dir| {
            m.replace(&format!("{}/", dir.display()), "")
                .replace(&dir.display().to_string(), "")
        })
    };
    let mut bars_total = None;
    while let Some(event) = events.recv().await {
        match event {
            JobEvent::Started { bars_total: total } => {
                bars_total = total;
                match store::backtests::start(&state.store, id, total.map(|n| n as i64)).await {
                    // Cancelled meanwhile: the run stops at its next strategy call.
                    Ok(false) => {
                        state.backtest_jobs.cancel(id);
                    }
                    Ok(true) => publish(&state, strategy_id, progress(id, strategy_id, 0, total)),
                    Err(e) => {
                        tracing::error!(backtest = id, error = %e, "could not record a started backtest");
                    }
                }
            }
            JobEvent::Progress { bars_done } => {
                let _ = store::backtests::progress(&state.store, id, bars_done as i64).await;
                publish(
                    &state,
                    strategy_id,
                    progress(id, strategy_id, bars_done, bars_total),
                );
            }
            JobEvent::Finished(Ok(outcome)) => {
                match finish(&state, id, strategy_id, *outcome).await {
                    Ok(Some(msg)) => {
                        publish(&state, strategy_id, msg.clone());
                        state.hub.publish(Topic::Notifications, None, &msg);
                    }
                    // Ended otherwise meanwhile (cancelled): nothing to announce.
                    Ok(None) => {}
                    Err(error) => failed(&state, id, strategy_id, error).await,
                }
            }
            JobEvent::Finished(Err(JobError::Cancelled)) => {}
            JobEvent::Finished(Err(e)) => {
                failed(&state, id, strategy_id, scrub(e.to_string())).await
            }
        }
    }
}

fn progress(id: i64, strategy_id: i64, bars_done: u64, bars_total: Option<u64>) -> Value {
    json!({"event": "backtest.progress", "backtest_id": id, "strategy_id": strategy_id,
           "status": "running", "bars_done": bars_done, "bars_total": bars_total})
}

/// Store a finished run's results; the `backtest.done` message, or `None` when the row had
/// ended otherwise (cancelled) meanwhile.
async fn finish(
    state: &AppState,
    id: i64,
    strategy_id: i64,
    outcome: BacktestOutcome,
) -> Result<Option<Value>, String> {
    // Serializing a million-bar run's trades and curve takes CPU: off the async threads.
    let (outcome, metrics, trades, equity) = tokio::task::spawn_blocking(move || {
        let metrics = outcome.summary_json();
        let trades = serde_json::to_value(&outcome.trades).map_err(|e| e.to_string())?;
        let equity = serde_json::to_value(qtm_report::chart_curve(&outcome.equity, EQUITY_BUCKETS))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((outcome, metrics, trades, equity))
    })
    .await
    .map_err(|e| format!("the backtest crashed: {e}"))??;
    let stored = store::backtests::finish(
        &state.store,
        id,
        &Finished {
            bars_done: outcome.bars as i64,
            metrics: &metrics,
            trades_sha256: &outcome.trades_sha256,
            trades: &trades,
            equity: &equity,
        },
    )
    .await
    .map_err(|e| {
        tracing::error!(backtest = id, error = %e, "backtest store error");
        format!("internal error: {e}")
    })?;
    if !stored {
        return Ok(None);
    }
    Ok(Some(json!({"event": "backtest.done", "backtest_id": id,
        "strategy_id": strategy_id, "status": "done", "bars_done": outcome.bars,
        "bars_total": outcome.bars, "metrics": {
            "final_equity": metrics["final_equity"],
            "total_return_pct": metrics["total_return_pct"],
            "sharpe": metrics["sharpe"],
            "max_drawdown_pct": metrics["max_drawdown_pct"],
            "n_trades": metrics["n_trades"],
        },
        "trades_sha256": outcome.trades_sha256})))
}

async fn failed(state: &AppState, id: i64, strategy_id: i64, error: String) {
    match store::backtests::fail(&state.store, id, &error).await {
        Ok(true) => {}
        // Ended otherwise meanwhile (cancelled): nothing to announce.
        Ok(false) => return,
        Err(e) => {
            tracing::error!(backtest = id, error = %e, "could not record a failed backtest");
        }
    }
    let msg = json!({"event": "backtest.failed", "backtest_id": id,
        "strategy_id": strategy_id, "status": "failed", "error": error});
    publish(state, strategy_id, msg.clone());
    state.hub.publish(Topic::Notifications, None, &msg);
}
