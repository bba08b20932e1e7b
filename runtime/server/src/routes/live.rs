//! Live trading: the instances the live engine runs, hot swap and rollback, clone under flow,
//! per-strategy halt, and bar/tick ingest (the "bridge").
//!
//! Swaps are announced on `strategy-updates` (`{"event": "status", "status": "swapped" |
//! "swap_failed", …}`) and recorded (`GET /api/strategy-instances/{id}/swaps`) and audited.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::optional_body;
use super::strategies::{
    CloneRequest, announce_clone, live_error, make_clone, publish, require_owner,
};
use crate::api_types::live::SwapRecord;
use crate::api_types::strategies::Instance;
use crate::auth::access::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::paging::{Page, PageQuery};
use crate::state::AppState;
use qtm_core::model::Bar;
use qtm_live::{CloneStart, LiveError, LiveInstance, SwapOutcome};
use qtm_store as store;

/// The live routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_instances))
        .routes(routes!(swap_instance))
        .routes(routes!(rollback_instance))
        .routes(routes!(list_swaps))
        .routes(routes!(clone_instance))
        .routes(routes!(halt_instance))
        .routes(routes!(ingest))
}

/// A stored instance with what the live engine says of it (`live` is null when it does not
/// run).
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    pub live: Option<LiveInstance>,
}

/// Every strategy instance, with live figures for the ones the engine holds (`live.state`
/// `running`, or `halted` / `disabled` with `live.reason`), as the engine last published them
/// (at most 0.1 s old while polled; never waiting behind the bars queued for the engine).
#[utoipa::path(get, path = "/api/strategy-instances", tag = "live",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    params(PageQuery),
    responses((status = 200, body = Page<InstanceView>), (status = 422, body = ErrorBody)))]
async fn list_instances(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<InstanceView>>> {
    let running = state.live.instances();
    let all = store::strategies::list(&state.store).await?;
    Ok(ApiJson(q.page_by_id(
        all.into_iter().map(|r| r.instance),
        |i| i.id,
        |i| {
            InstanceView {
                live: running
                    .iter()
                    .find(|l| l.strategy_id == i.strategy_id)
                    .cloned(),
                instance: i.into(),
            }
        },
    )?))
}

/// Which version to swap to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// A version number of the strategy; its newest version when absent (upload a version
    /// with `POST /api/strategies/{id}/versions` first).
    pub version: Option<i64>,
}

async fn swap_to(
    state: &AppState,
    user_id: i64,
    username: &str,
    instance_id: i64,
    version: Option<i64>,
) -> ApiResult<SwapOutcome> {
    let strategy_id = store::live::strategy_of_instance(&state.store, instance_id).await?;
    if let Some(v) = version {
        store::strategies::version(&state.store, strategy_id, v).await?;
    }
    match state.live.swap(strategy_id, version, Some(user_id)).await {
        Ok(outcome) => {
            publish(
                state,
                strategy_id,
                json!({"event": "strategy.swapped", "strategy_id": strategy_id,
                       "from_version": outcome.from_version, "to_version": outcome.to_version,
                       "pause_us": outcome.pause_us, "by": username}),
            );
            Ok(outcome)
        }
        Err(e @ LiveError::Refused(_)) => Err(ApiError::validation("version", e.to_string())),
        Err(e) => Err(live_error(e)),
    }
}

/// Hot swap a running instance to another version of its strategy without stopping
/// anything: the version is loaded and instantiated off the engine thread, then swapped in
/// between two bars with the running state (snapshot → restore). On failure the running
/// version keeps running and the reason is returned (422) and broadcast.
#[utoipa::path(post, path = "/api/strategy-instances/{id}/swap", tag = "live",
    params(("id" = i64, Path, description = "strategy instance id")),
    request_body(content = Option<SwapRequest>),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = SwapOutcome), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn swap_instance(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<ApiJson<SwapOutcome>> {
    let req: SwapRequest = optional_body(&body)?;
    let strategy = store::live::strategy_of_instance(&state.store, id).await?;
    require_owner(&state, &p, strategy, "swap").await?;
    Ok(ApiJson(
        swap_to(&state, p.user_id, &p.username, id, req.version).await?,
    ))
}

/// The version to go back to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub version: i64,
}

/// Swap a running instance back to an earlier version (a swap that names its version).
#[utoipa::path(post, path = "/api/strategy-instances/{id}/rollback", tag = "live",
    params(("id" = i64, Path, description = "strategy instance id")),
    request_body = RollbackRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = SwapOutcome), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn rollback_instance(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<ApiJson<SwapOutcome>> {
    let strategy = store::live::strategy_of_instance(&state.store, id).await?;
    require_owner(&state, &p, strategy, "roll back").await?;
    Ok(ApiJson(
        swap_to(&state, p.user_id, &p.username, id, Some(req.version)).await?,
    ))
}

/// Every swap attempt of an instance, oldest first.
#[utoipa::path(get, path = "/api/strategy-instances/{id}/swaps", tag = "live",
    params(("id" = i64, Path, description = "strategy instance id"), PageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<SwapRecord>), (status = 404, body = ErrorBody)))]
async fn list_swaps(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<SwapRecord>>> {
    let strategy_id = store::live::strategy_of_instance(&state.store, id).await?;
    let swaps = store::live::swaps(&state.store, strategy_id).await?;
    Ok(ApiJson(q.page_by_id(swaps, |s| s.id, SwapRecord::from)?))
}

/// A clone of a running instance.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneInstanceRequest {
    pub name: Option<String>,
    /// Parameters that differ from the source's.
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
    /// Symbols (the source's when absent).
    pub symbols: Option<Vec<String>>,
    /// `fresh` (default) or `from_snapshot` (the source's state now).
    pub start: Option<CloneStart>,
}

/// What a clone made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cloned {
    pub strategy_id: i64,
    pub instance: Instance,
    pub start: CloneStart,
}

/// Clone a running instance with new parameters and/or symbols while the market moves: a new
/// strategy is stored (as `POST /api/strategies/{id}/clone` does) and started live at once,
/// fresh or from the source's state; it receives the next bar of its symbols.
#[utoipa::path(post, path = "/api/strategy-instances/{id}/clone", tag = "live",
    params(("id" = i64, Path, description = "strategy instance id of the running source")),
    request_body(content = Option<CloneInstanceRequest>),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 201, body = Cloned), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn clone_instance(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, ApiJson<Cloned>)> {
    let req: CloneInstanceRequest = optional_body(&body)?;
    let source = store::live::strategy_of_instance(&state.store, id).await?;
    let running = state.live.status().await.map_err(live_error)?;
    if !running.iter().any(|r| r.strategy_id == source) {
        return Err(live_error(LiveError::NotRunning(source)));
    }
    let start = req.start.unwrap_or(CloneStart::Fresh);
    let record = make_clone(
        &state,
        &p,
        source,
        CloneRequest {
            name: req.name,
            params: req.params,
            symbols: req.symbols,
        },
    )
    .await?;
    let new_id = record.strategy.id;
    // All or nothing: a clone that could not start is deleted again, so a failed request
    // leaves no strategy behind.
    let started = match state.live.clone_running(source, new_id, start).await {
        Ok(()) => store::strategies::set_status(&state.store, new_id, "enabled", None)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(live_error(e)),
    };
    let instance = match started {
        Ok(instance) => instance,
        Err(e) => {
            let _ = state.live.disable(new_id, "clone failed").await;
            if let Err(undo) = store::strategies::delete(&state.store, new_id).await {
                tracing::error!(strategy = new_id, error = %undo, "a failed clone could not be deleted");
            }
            return Err(e);
        }
    };
    announce_clone(&state, &p, source, &record);
    publish(
        &state,
        new_id,
        json!({"event": "strategy.enabled", "strategy_id": new_id, "cloned_from": source,
               "start": start, "by": p.username}),
    );
    Ok((
        StatusCode::CREATED,
        ApiJson(Cloned {
            strategy_id: new_id,
            instance: instance.into(),
            start,
        }),
    ))
}

/// Why an instance is halted (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceHalt {
    pub reason: Option<String>,
}

/// Per-strategy kill switch (admin): the instance stops trading and its orders are
/// cancelled; enable it again to restart it. (`POST /api/risk/halt` halts every instance.)
#[utoipa::path(post, path = "/api/strategy-instances/{id}/halt", tag = "live",
    params(("id" = i64, Path, description = "strategy instance id")),
    request_body(content = Option<InstanceHalt>),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn halt_instance(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<ApiJson<Instance>> {
    let req: InstanceHalt = optional_body(&body)?;
    let strategy_id = store::live::strategy_of_instance(&state.store, id).await?;
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => format!("halted by {}: {r}", p.username),
        _ => format!("halted by {}", p.username),
    };
    let halted = state
        .live
        .halt(Some(strategy_id), &reason)
        .await
        .map_err(live_error)?;
    if halted.is_empty() {
        return Err(live_error(LiveError::NotRunning(strategy_id)));
    }
    state.live.flush().await.map_err(live_error)?;
    Ok(ApiJson(
        store::strategies::instance(&state.store, strategy_id)
            .await?
            .into(),
    ))
}

/// One bar to ingest.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBar {
    pub symbol: String,
    /// Unix seconds.
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    #[serde(default)]
    pub volume: f64,
}

/// One trade to ingest; it enters the engine as a one-price bar.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestTick {
    pub symbol: String,
    pub ts: i64,
    pub price: f64,
    #[serde(default)]
    pub size: f64,
}

/// A batch of market data.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    #[serde(default)]
    pub bars: Vec<IngestBar>,
    #[serde(default)]
    pub ticks: Vec<IngestTick>,
    /// Quotes in the seeds' shape, each taken as a tick at its mid price
    /// ([`super::quotes`]).
    #[serde(default)]
    pub quotes: Vec<super::quotes::IngestQuote>,
}

/// What an ingest accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ingested {
    pub bars: usize,
    pub ticks: usize,
    /// Quotes taken (absent when none were sent).
    #[serde(skip_serializing_if = "is_zero")]
    pub quotes: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Largest number of bars plus ticks in one ingest request.
pub const MAX_INGEST: usize = 10_000;

/// Feed bars and ticks to the live engine (the bridge): validated as a whole (a bad entry is
/// named by its index and nothing is taken), then handled in order, bars first. Symbols are
/// upper-cased; a symbol the engine has not seen joins it. The body may also be one quote in
/// the seeds' shape, `{"symbol", "bid", "ask", "time"?, "volume"?}` (or a batch's `quotes`):
/// a tick at its mid price, at its `time` (RFC 3339) or `ts`, else when received.
#[utoipa::path(post, path = "/api/market", tag = "live",
    request_body(content = super::quotes::IngestBody, content_type = "application/json"),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 202, body = Ingested), (status = 422, body = ErrorBody)))]
async fn ingest(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<(StatusCode, ApiJson<Ingested>)> {
    let req = super::quotes::ingest_request(body)?;
    Ok((StatusCode::ACCEPTED, ApiJson(ingest_batch(&state, &req)?)))
}

/// Check a whole batch and hand it to the live engine: the bridge's one path, shared by
/// `POST /api/market` and the WebSocket ingest endpoint.
pub(crate) fn ingest_batch(state: &AppState, req: &IngestRequest) -> ApiResult<Ingested> {
    if !state.ingest_enabled() {
        return Err(ApiError::conflict(
            "the ingest bridge is switched off: PUT /api/modules/ingest-bridge/toggle {\"enabled\": true}",
        ));
    }
    let n = req.bars.len() + req.ticks.len() + req.quotes.len();
    if n == 0 {
        return Err(ApiError::validation(
            "bars",
            "nothing to ingest: give bars, ticks or quotes",
        ));
    }
    if n > MAX_INGEST {
        return Err(ApiError::validation(
            "bars",
            format!("{n} entries in one request; at most {MAX_INGEST}"),
        ));
    }
    let mut all = Vec::with_capacity(n);
    for (i, b) in req.bars.iter().enumerate() {
        let bar = Bar {
            ts: b.ts,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        };
        let symbol = check_entry(&format!("bars[{i}]"), &b.symbol, &bar)?;
        all.push((symbol, bar));
    }
    for (i, t) in req.ticks.iter().enumerate() {
        let bar = Bar {
            ts: t.ts,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            volume: t.size,
        };
        let symbol = check_entry(&format!("ticks[{i}]"), &t.symbol, &bar)?;
        all.push((symbol, bar));
    }
    let now = store::now();
    for (i, q) in req.quotes.iter().enumerate() {
        let field = format!("quotes[{i}]");
        let bar = super::quotes::quote_bar(&field, q, now)?;
        let symbol = check_entry(&field, &q.symbol, &bar)?;
        all.push((symbol, bar));
    }
    state.live.ingest(all).map_err(live_error)?;
    Ok(Ingested {
        bars: req.bars.len(),
        ticks: req.ticks.len(),
        quotes: req.quotes.len(),
    })
}

fn check_entry(field: &str, symbol: &str, bar: &Bar) -> ApiResult<String> {
    let symbol = store::market::normalize_symbol(symbol)
        .map_err(|e| ApiError::validation(format!("{field}.symbol"), format!("{field}: {e}")))?;
    qtm_live::check_bar(bar).map_err(|e| ApiError::validation(field, format!("{field}: {e}")))?;
    Ok(symbol)
}
