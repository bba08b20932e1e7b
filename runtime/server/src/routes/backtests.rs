//! Backtests through the API: `POST /api/backtests` checks the request, stores it as queued and
//! answers 202 at once; the run is a job of the backtest queue, recorded and streamed by
//! [`crate::backtest_jobs`] (progress, `backtest.done` or `backtest.failed` on
//! `strategy-updates`, key = strategy id). The results are read with `GET /api/backtests/{id}`.
//!
//! A job runs at most the server's `backtest_timeout_secs`, then fails as timed out; its owner
//! or an admin may end it sooner with `POST /api/backtests/{id}/cancel` (status `cancelled`,
//! `backtest.cancelled` on both streams). Either stops the run between two strategy calls.

use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::strategies::{check_symbols, info_of, params_from_json, params_to_json, resolve};
use crate::api_types::backtests::{Backtest, BacktestDetail};
use crate::auth::Role;
use crate::auth::access::Caller;
use crate::backtest_jobs::{Bars, JobSpec};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::paging::{self, Page};
use crate::state::AppState;
use qtm_backtest::RunSettings;
use qtm_market::symbol_from_path;
use qtm_oms::exchange::FillMode;
use qtm_oms::risk::RiskLimits;
use qtm_store as store;

/// The backtests routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backtests, create_backtest))
        .routes(routes!(get_backtest))
        .routes(routes!(cancel_backtest))
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
    crate::backtest_jobs::start(
        &state,
        JobSpec {
            id: row.id,
            strategy_id: req.strategy_id,
            version_id: version.id,
            params,
            bars,
            settings,
            risk,
        },
    );
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
            "backtest {id} has already ended ({}); only a queued or running backtest can be cancelled",
            now.status
        )));
    }
    // After the store says cancelled, so the job, seeing the flag, finds nothing to record.
    state.backtest_jobs.cancel(id);
    if let Some(sid) = b.strategy_id {
        let msg = json!({"event": "backtest.cancelled", "backtest_id": id,
            "strategy_id": sid, "status": "cancelled", "error": reason});
        state
            .hub
            .publish(Topic::StrategyUpdates, Some(sid.to_string()), &msg);
        state.hub.publish(Topic::Notifications, None, &msg);
    }
    Ok(ApiJson(
        store::backtests::summary(&state.store, id).await?.into(),
    ))
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
    Ok(ApiJson(
        store::backtests::get(&state.store, id).await?.into(),
    ))
}

/// Filters of the backtest list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BacktestFilter {
    /// Only this strategy's backtests.
    pub strategy_id: Option<i64>,
    /// At most this many, newest first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// Backtests, newest first, without trades and equity curves.
#[utoipa::path(get, path = "/api/backtests", tag = "backtests", params(BacktestFilter),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Backtest>), (status = 422, body = ErrorBody)))]
async fn list_backtests(
    State(state): State<AppState>,
    ApiQuery(f): ApiQuery<BacktestFilter>,
) -> ApiResult<ApiJson<Page<Backtest>>> {
    let limit = paging::limit(f.limit, paging::MAX_LIMIT)?;
    let before = paging::id_cursor(f.cursor.as_deref())?;
    let rows = store::backtests::list(&state.store, f.strategy_id, before, limit + 1).await?;
    Ok(ApiJson(Page::from_overfetch(
        rows,
        limit,
        |b| b.id.to_string(),
        Backtest::from,
    )))
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
}
