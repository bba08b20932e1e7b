//! Backtests through the API: `POST /api/backtests` checks the request, stores it as queued and
//! answers 202 at once; the run happens in the background (a blocking thread runs
//! [`crate::backtest::run`] on the stored component) and reports on the `strategy-updates`
//! stream (key = strategy id):
//! `{"event": "backtest.progress", "backtest_id", "strategy_id", "status": "running",
//! "bars_done", "bars_total"}` at most ten times a second, then `backtest.done` (with key
//! metrics and the trades hash) or `backtest.failed` (with the error), which also go to
//! `notifications`. The results are read with `GET /api/backtests/{id}`.
//!
//! A job runs at most the server's `backtest_timeout_secs`, then fails as timed out; its owner
//! or an admin may end it sooner with `POST /api/backtests/{id}/cancel` (status `cancelled`,
//! `backtest.cancelled` on both streams). Either stops the run between two strategy calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::strategies::{
    check_symbols, info_of, load_component, params_from_json, params_to_json, resolve,
};
use crate::api::auth::Role;
use crate::api::auth::access::Caller;
use crate::api::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::api::hub::Topic;
use crate::api::state::AppState;
use crate::backtest::{self, BacktestError, DataSource, RunOptions, RunSettings, TimeLimit};
use crate::exchange::FillMode;
use crate::market::symbol_from_path;
use crate::model::Param;
use crate::risk::RiskLimits;
use crate::store::{
    self,
    backtests::{Backtest, BacktestDetail, Finished},
};

/// Points the stored equity curve is reduced to (lowest and highest of each bucket), so a
/// million-bar run stays a few hundred kilobytes.
pub const EQUITY_BUCKETS: usize = 2000;
/// Shortest time between two progress messages of one backtest.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The backtests routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backtests, create_backtest))
        .routes(routes!(get_backtest))
        .routes(routes!(cancel_backtest))
}

/// The cancel flags of the backtest jobs queued or running in this server, by backtest id.
#[derive(Debug, Default)]
pub struct BacktestJobs {
    flags: Mutex<HashMap<i64, Arc<AtomicBool>>>,
}

impl BacktestJobs {
    /// Register job `id`; its flag is raised by [`BacktestJobs::cancel`].
    fn register(&self, id: i64) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.lock().insert(id, flag.clone());
        flag
    }

    /// Number of jobs queued or running.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn forget(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Raise job `id`'s cancel flag, if it is queued or running here.
    fn cancel(&self, id: i64) {
        if let Some(flag) = self.lock().get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<AtomicBool>>> {
        // The map stays consistent whatever a panicking holder did: every operation is one
        // insert, remove or load.
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes a job's flag however the job ends.
struct Registered<'a> {
    jobs: &'a BacktestJobs,
    id: i64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.jobs.forget(self.id);
    }
}

/// A backtest to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBacktest {
    pub strategy_id: i64,
    /// Version number to run (default: the one the strategy's instance runs).
    pub version: Option<i64>,
    /// CSV files (`ts,open,high,low,close,volume`) by name inside the server's data directory.
    #[serde(default)]
    pub data: Vec<String>,
    /// With `data`: the symbol of each file, in order (default: the file name up to the first
    /// `_`, upper-cased). Without `data`: symbols whose stored price history to use.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Parameters (default: the instance's configuration when running its version, else the
    /// component's defaults); checked against its `describe`.
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// Starting cash (default 10000).
    pub cash: Option<f64>,
    /// Commission as a fraction of notional (0.001 = 0.1 %).
    pub commission: Option<f64>,
    /// Fixed fee per order.
    pub fixed_fee: Option<f64>,
    /// Slippage in basis points against the trader.
    pub slippage_bps: Option<f64>,
    /// `next-open` (default) or `close`.
    pub fill: Option<String>,
    /// Fill at most this fraction (0 < x ≤ 1) of a bar's volume per order per bar.
    pub volume_participation: Option<f64>,
    /// Gross exposure allowed as a multiple of equity (default 1).
    pub max_leverage: Option<f64>,
    /// Close open positions at the last close.
    pub close_at_end: Option<bool>,
    /// Risk limits for the run (fields of `RiskLimits`; all off by default except the host
    /// bounds `max_resting_orders` 1000 and `max_oco_orders` 16).
    #[schema(value_type = Option<Object>)]
    pub risk: Option<Value>,
}

/// The answer to a queued backtest.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    pub id: i64,
    /// `queued`.
    pub status: String,
    pub strategy_id: i64,
    pub version: i64,
}

/// A data file name: a plain name inside the data directory, never a path.
fn check_file_name(name: &str) -> ApiResult<()> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name.contains('\\')
        || name.contains("..")
        || name.starts_with('.')
        || name.chars().any(char::is_control);
    if bad {
        return Err(ApiError::validation(
            "data",
            format!(
                "{name:?} is not a data file name: give the name of a CSV file in the server's \
                 data directory, without any path"
            ),
        ));
    }
    Ok(())
}

/// The CSV files of the data directory, for error messages.
fn available_files(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn setting(field: &'static str, ok: bool, message: impl FnOnce() -> String) -> ApiResult<()> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(field, message()))
    }
}

/// Where a run's bars come from.
#[derive(Debug, Clone)]
enum Bars {
    /// Files in the data directory: (path, symbol).
    Files(Vec<(PathBuf, String)>),
    /// Stored price history of these symbols.
    Stored(Vec<String>),
}

/// Everything the background job needs.
struct Job {
    id: i64,
    strategy_id: i64,
    version_id: i64,
    params: Vec<Param>,
    bars: Bars,
    settings: RunSettings,
    risk: RiskLimits,
    /// Raised by `POST /api/backtests/{id}/cancel`.
    cancel: Arc<AtomicBool>,
}

/// Start a backtest of a stored strategy version; answers 202 with its id at once. Progress and
/// completion arrive on the `strategy-updates` stream (key = strategy id) and the results at
/// `GET /api/backtests/{id}`.
#[utoipa::path(post, path = "/api/backtests", tag = "backtests", request_body = NewBacktest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 202, body = Queued), (status = 422, body = ErrorBody)))]
async fn create_backtest(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<NewBacktest>,
) -> ApiResult<(StatusCode, ApiJson<Queued>)> {
    let record = match store::strategies::get(&state.store, req.strategy_id).await {
        Ok(r) => r,
        Err(store::StoreError::NotFound(_)) => {
            return Err(ApiError::validation(
                "strategy_id",
                format!("there is no strategy {}", req.strategy_id),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let version = match req.version {
        None => record.current_version.clone(),
        Some(v) => match store::strategies::version(&state.store, req.strategy_id, v).await {
            Ok(v) => v,
            Err(store::StoreError::NotFound(_)) => {
                let n = store::strategies::versions(&state.store, req.strategy_id)
                    .await?
                    .len();
                return Err(ApiError::validation(
                    "version",
                    format!(
                        "strategy {} has no version {v} (its versions are 1 to {n})",
                        req.strategy_id
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let info = info_of(&version)?;
    let base = if version.id == record.instance.version_id {
        super::strategies::carried_params(&info, &record.instance.params)
    } else {
        Vec::new()
    };
    let given = match &req.params {
        Some(v) => params_from_json(&info, v)?,
        None => Vec::new(),
    };
    let params = resolve(&info, base, given)?;

    let bars = if !req.data.is_empty() {
        if req.data.len() > 64 {
            return Err(ApiError::validation(
                "data",
                "at most 64 data files per backtest",
            ));
        }
        if !req.symbols.is_empty() && req.symbols.len() != req.data.len() {
            return Err(ApiError::validation(
                "symbols",
                format!(
                    "{} symbols for {} data files: give one symbol per file, or none to take \
                     them from the file names",
                    req.symbols.len(),
                    req.data.len()
                ),
            ));
        }
        let mut files = Vec::new();
        for (i, name) in req.data.iter().enumerate() {
            check_file_name(name)?;
            let path = state.config.data_dir.join(name);
            if !path.is_file() {
                return Err(ApiError::validation(
                    "data",
                    format!(
                        "no data file {name:?} in the server's data directory (available: {})",
                        available_files(&state.config.data_dir)
                    ),
                ));
            }
            let symbol = req
                .symbols
                .get(i)
                .cloned()
                .unwrap_or_else(|| symbol_from_path(Path::new(name)));
            files.push((path, symbol));
        }
        let symbols: Vec<String> = files.iter().map(|(_, s)| s.clone()).collect();
        check_symbols("symbols", &symbols)?;
        Bars::Files(files)
    } else if !req.symbols.is_empty() {
        check_symbols("symbols", &req.symbols)?;
        Bars::Stored(req.symbols.clone())
    } else {
        return Err(ApiError::validation(
            "data",
            "give `data` (CSV file names in the server's data directory) or `symbols` (stored \
             price history)",
        ));
    };

    let defaults = RunSettings::default();
    let settings = RunSettings {
        cash: req.cash.unwrap_or(defaults.cash),
        commission: req.commission.unwrap_or(0.0),
        fixed_fee: req.fixed_fee.unwrap_or(0.0),
        slippage_bps: req.slippage_bps.unwrap_or(0.0),
        fill: match req.fill.as_deref() {
            None | Some("next-open") => FillMode::NextOpen,
            Some("close") => FillMode::Close,
            Some(other) => {
                return Err(ApiError::validation(
                    "fill",
                    format!("fill must be \"next-open\" or \"close\", got {other:?}"),
                ));
            }
        },
        volume_participation: req.volume_participation,
        max_leverage: req.max_leverage.unwrap_or(defaults.max_leverage),
        close_at_end: req.close_at_end.unwrap_or(false),
        batch: true,
    };
    settings
        .check_costs()
        .map_err(|e| ApiError::validation(e.field, format!("{} {}", e.field, e.message)))?;
    setting(
        "cash",
        settings.cash.is_finite() && settings.cash > 0.0,
        || format!("cash must be a positive number, got {}", settings.cash),
    )?;
    setting(
        "volume_participation",
        settings
            .volume_participation
            .is_none_or(|v| v.is_finite() && v > 0.0 && v <= 1.0),
        || "volume_participation must be in (0, 1]".into(),
    )?;
    setting(
        "max_leverage",
        settings.max_leverage.is_finite() && settings.max_leverage > 0.0,
        || {
            format!(
                "max_leverage must be positive, got {}",
                settings.max_leverage
            )
        },
    )?;
    let risk: RiskLimits = match &req.risk {
        None => RiskLimits::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::validation("risk", format!("risk limits: {e}")))?,
    };
    risk.validate()
        .map_err(|e| ApiError::validation("risk", e))?;

    let (data, symbols) = match &bars {
        Bars::Files(files) => (
            req.data.clone(),
            files.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        ),
        Bars::Stored(symbols) => (Vec::new(), symbols.clone()),
    };
    let request = json!({
        "strategy_id": req.strategy_id,
        "version": version.version,
        "data": data,
        "symbols": symbols,
        "source": if matches!(bars, Bars::Files(_)) { "files" } else { "price_history" },
        "params": params_to_json(&params),
        "cash": settings.cash,
        "commission": settings.commission,
        "fixed_fee": settings.fixed_fee,
        "slippage_bps": settings.slippage_bps,
        "fill": settings.fill,
        "volume_participation": settings.volume_participation,
        "max_leverage": settings.max_leverage,
        "close_at_end": settings.close_at_end,
        "risk": risk,
    });
    let row = store::backtests::create(
        &state.store,
        req.strategy_id,
        version.id,
        Some(p.user_id),
        &request,
    )
    .await?;
    let job = Job {
        id: row.id,
        strategy_id: req.strategy_id,
        version_id: version.id,
        params,
        bars,
        settings,
        risk,
        cancel: state.backtest_jobs.register(row.id),
    };
    publish(
        &state,
        job.strategy_id,
        json!({"event": "backtest.queued", "backtest_id": row.id, "strategy_id": job.strategy_id,
               "status": "queued", "bars_done": 0}),
    );
    tokio::spawn(run_job(state.clone(), job));
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(Queued {
            id: row.id,
            status: "queued".into(),
            strategy_id: req.strategy_id,
            version: version.version,
        }),
    ))
}

fn publish(state: &AppState, strategy_id: i64, data: Value) {
    state
        .hub
        .publish(Topic::StrategyUpdates, Some(strategy_id.to_string()), &data);
}

/// Backtests use the CPU fully; at most one per core runs, the rest wait as `queued`.
fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS
        .get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
}

async fn run_job(state: AppState, job: Job) {
    let (id, strategy_id) = (job.id, job.strategy_id);
    let _registered = Registered {
        jobs: &state.backtest_jobs,
        id,
    };
    let cancel = job.cancel.clone();
    let result = match slots().acquire().await {
        // Cancelled while queued: the cancel call has recorded it already.
        Ok(_) if cancel.load(Ordering::Relaxed) => return,
        Ok(_permit) => execute(&state, job).await,
        Err(e) => Err(e.to_string()),
    };
    match result {
        // The cancel call recorded and announced the end; a result that raced it is dropped.
        _ if cancel.load(Ordering::Relaxed) => {}
        Ok(None) => {}
        Ok(Some(done)) => {
            let msg = json!({"event": "backtest.done", "backtest_id": id,
                "strategy_id": strategy_id, "status": "done", "bars_done": done.bars,
                "bars_total": done.bars, "metrics": done.key_metrics,
                "trades_sha256": done.trades_sha256});
            publish(&state, strategy_id, msg.clone());
            state.hub.publish(Topic::Notifications, None, &msg);
        }
        Err(error) => {
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
            publish(&state, strategy_id, msg.clone());
            state.hub.publish(Topic::Notifications, None, &msg);
        }
    }
}

/// What a finished run reports on the stream.
struct Done {
    bars: u64,
    key_metrics: Value,
    trades_sha256: String,
}

/// Bars in a CSV file (its lines after the header), for progress totals.
fn count_rows(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok(lines.saturating_sub(1))
}

/// Run a job; `Ok(None)` when it was cancelled before it could start or finish.
async fn execute(state: &AppState, job: Job) -> Result<Option<Done>, String> {
    let internal = |e: store::StoreError| {
        tracing::error!(backtest = job.id, error = %e, "backtest store error");
        format!("internal error: {e}")
    };
    // Stored history is read into memory and run as a series: no temporary files.
    let (sources, hide): (Vec<DataSource>, Vec<PathBuf>) = match &job.bars {
        Bars::Files(files) => (
            files
                .iter()
                .map(|(path, symbol)| DataSource::csv(symbol.clone(), path.clone()))
                .collect(),
            vec![state.config.data_dir.clone()],
        ),
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
            (sources, Vec::new())
        }
    };
    // Error texts name files; the server's folders are no business of API clients.
    let scrub = move |msg: String| {
        hide.iter().fold(msg, |m, dir| {
            m.replace(&format!("{}/", dir.display()), "")
                .replace(&dir.display().to_string(), "")
        })
    };

    let counted: Vec<(Option<PathBuf>, Option<u64>)> = sources
        .iter()
        .map(|s| (s.path().map(PathBuf::from), s.len_known()))
        .collect();
    let bars_total = tokio::task::spawn_blocking(move || {
        counted
            .iter()
            .map(|(path, known)| known.or_else(|| path.as_deref().and_then(|p| count_rows(p).ok())))
            .sum::<Option<u64>>()
    })
    .await
    .ok()
    .flatten();
    let component = store::strategies::component(&state.store, job.version_id)
        .await
        .map_err(internal)?;
    if !store::backtests::start(&state.store, job.id, bars_total.map(|n| n as i64))
        .await
        .map_err(internal)?
    {
        return Ok(None);
    }
    let progress_msg = |bars_done: u64| {
        json!({"event": "backtest.progress", "backtest_id": job.id,
               "strategy_id": job.strategy_id, "status": "running",
               "bars_done": bars_done, "bars_total": bars_total})
    };
    publish(state, job.strategy_id, progress_msg(0));

    // Progress leaves the blocking thread through a channel; this task stores and publishes it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let forward = {
        let state = state.clone();
        let (id, sid) = (job.id, job.strategy_id);
        tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                let _ = store::backtests::progress(&state.store, id, n as i64).await;
                state.hub.publish(
                    Topic::StrategyUpdates,
                    Some(sid.to_string()),
                    &json!({"event": "backtest.progress", "backtest_id": id,
                            "strategy_id": sid, "status": "running",
                            "bars_done": n, "bars_total": bars_total}),
                );
            }
        })
    };

    let code = load_component(state, component.into())
        .await
        .map_err(|e| e.to_string())?;
    let name = code.info().name.clone();
    let config = job.settings.config(job.risk.clone());
    let params = job.params.clone();
    let symbols: Vec<String> = sources.iter().map(|s| s.symbol.clone()).collect();
    let time_limit = TimeLimit {
        limit: state.config.backtest_timeout(),
        setting: "the server's backtest_timeout_secs".into(),
    };
    let cancel = job.cancel.clone();
    let ran = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let instance = code
            .instantiate(&params, &symbols)
            .map_err(|e| e.to_string())?;
        let mut last: Option<Instant> = None;
        let mut progress = |n: u64| {
            if last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                last = Some(Instant::now());
                let _ = tx.send(n);
            }
        };
        let options = RunOptions {
            progress: Some(&mut progress),
            time_limit: Some(time_limit),
            cancel: Some(cancel),
            ..Default::default()
        };
        let outcome = backtest::run_with(&name, Box::new(instance), &sources, &config, options)
            .map_err(|e| match e {
                BacktestError::TimedOut { .. } => format!("timed out: {e}"),
                e => e.to_string(),
            })?;
        let metrics = outcome.summary_json();
        let trades = serde_json::to_value(&outcome.trades).map_err(|e| e.to_string())?;
        let equity =
            serde_json::to_value(crate::report::chart_curve(&outcome.equity, EQUITY_BUCKETS))
                .map_err(|e| e.to_string())?;
        Ok((outcome.bars, metrics, outcome.trades_sha256, trades, equity))
    })
    .await
    .map_err(|e| format!("the backtest crashed: {e}"))
    .and_then(|r| r)
    .map_err(&scrub);
    // The sender went with the blocking closure, so the forwarder drains and ends.
    let _ = forward.await;
    let (bars, metrics, trades_sha256, trades, equity) = ran?;
    let stored = store::backtests::finish(
        &state.store,
        job.id,
        &Finished {
            bars_done: bars as i64,
            metrics: &metrics,
            trades_sha256: &trades_sha256,
            trades: &trades,
            equity: &equity,
        },
    )
    .await
    .map_err(internal)?;
    if !stored {
        return Ok(None);
    }
    let key_metrics = json!({
        "final_equity": metrics["final_equity"],
        "total_return_pct": metrics["total_return_pct"],
        "sharpe": metrics["sharpe"],
        "max_drawdown_pct": metrics["max_drawdown_pct"],
        "n_trades": metrics["n_trades"],
    });
    Ok(Some(Done {
        bars,
        key_metrics,
        trades_sha256,
    }))
}

/// Cancel a queued or running backtest: it stops before the strategy's next call and ends as
/// `cancelled`, its results discarded. Only the user who started it or an admin may cancel it;
/// one that has already ended answers 409.
#[utoipa::path(post, path = "/api/backtests/{id}/cancel", tag = "backtests",
    params(("id" = i64, Path, description = "backtest id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Backtest), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_backtest(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Backtest>> {
    let b = store::backtests::summary(&state.store, id).await?;
    if b.user_id != Some(p.user_id) && p.role < Role::Admin {
        return Err(ApiError::forbidden(format!(
            "only the user who started backtest {id} or an admin may cancel it"
        )));
    }
    let reason = format!("cancelled by {}", p.username);
    if !store::backtests::cancel(&state.store, id, &reason).await? {
        let now = store::backtests::summary(&state.store, id).await?;
        return Err(ApiError::conflict(format!(
            "backtest {id} has already ended ({}); only a queued or running backtest can be              cancelled",
            now.status
        )));
    }
    // After the store says cancelled, so the job, seeing the flag, finds nothing to record.
    state.backtest_jobs.cancel(id);
    if let Some(sid) = b.strategy_id {
        let msg = json!({"event": "backtest.cancelled", "backtest_id": id,
            "strategy_id": sid, "status": "cancelled", "error": reason});
        publish(&state, sid, msg.clone());
        state.hub.publish(Topic::Notifications, None, &msg);
    }
    Ok(ApiJson(store::backtests::summary(&state.store, id).await?))
}

/// A backtest with its request, status, metrics, every trade and the equity curve (reduced to
/// at most about 4,000 points, keeping each stretch's lowest and highest).
#[utoipa::path(get, path = "/api/backtests/{id}", tag = "backtests",
    params(("id" = i64, Path, description = "backtest id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = BacktestDetail), (status = 404, body = ErrorBody)))]
async fn get_backtest(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<BacktestDetail>> {
    Ok(ApiJson(store::backtests::get(&state.store, id).await?))
}

/// Filters of the backtest list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BacktestFilter {
    /// Only this strategy's backtests.
    pub strategy_id: Option<i64>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Backtests, newest first, without trades and equity curves.
#[utoipa::path(get, path = "/api/backtests", tag = "backtests", params(BacktestFilter),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<Backtest>), (status = 400, body = ErrorBody)))]
async fn list_backtests(
    State(state): State<AppState>,
    ApiQuery(f): ApiQuery<BacktestFilter>,
) -> ApiResult<ApiJson<Vec<Backtest>>> {
    let limit = f.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation(
            "limit",
            format!("limit must be 1 to 1000, got {limit}"),
        ));
    }
    Ok(ApiJson(
        store::backtests::list(&state.store, f.strategy_id, limit).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_names_are_plain_file_names() {
        check_file_name("goog_1d.csv").unwrap();
        for bad in ["../etc/passwd", "a/b.csv", "..", ".hidden", "", "a\\b"] {
            let e = check_file_name(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("data"), "{bad}");
        }
    }

    #[test]
    fn rows_are_counted_without_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(
            &p,
            "ts,open,high,low,close,volume\n1,1,1,1,1,1\n2,1,1,1,1,1",
        )
        .unwrap();
        assert_eq!(count_rows(&p).unwrap(), 2);
        std::fs::write(&p, "ts,open,high,low,close,volume\n1,1,1,1,1,1\n").unwrap();
        assert_eq!(count_rows(&p).unwrap(), 1);
    }
}
