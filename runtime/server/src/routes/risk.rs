//! Risk: the account's numbers (equity, exposure, limit use), alerts, the limits in force, and
//! the kill switch.
//!
//! Every number is computed from the store: positions of every account (manual orders and,
//! once the live engine runs, strategy accounts), marked at the mark price of
//! [`crate::marks`] (the live market's last price, else the newest stored close); cash from the fills; the starting capital from the `live-engine` module's
//! `initial_cash`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::optional_body;
use crate::api_types::orders::Order;
use crate::api_types::risk::{Halt, RiskAlert};
use crate::auth::access::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::marks::{self, PriceSource};
use crate::paging::{self, Page};
use crate::state::AppState;
use qtm_live::KILL_SWITCH_CANCEL as KILL_SWITCH;
use qtm_oms::risk::RiskLimits;
use qtm_store::risk::ACCOUNT;
use qtm_store::{self as store};

/// The risk routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(exposure))
        .routes(routes!(alerts))
        .routes(routes!(get_parameters, put_parameters))
        .routes(routes!(configure))
        .routes(routes!(halt))
        .routes(routes!(resume))
}

/// Starting capital of the paper account when the `live-engine` module sets none.
pub const DEFAULT_INITIAL_CASH: f64 = 100_000.0;

/// The paper account's starting capital: `initial_cash` of the `live-engine` module.
async fn initial_capital(state: &AppState) -> ApiResult<f64> {
    Ok(store::modules::get(&state.store, "live-engine")
        .await
        .ok()
        .and_then(|m| m.config.get("initial_cash").and_then(Value::as_f64))
        .filter(|c| c.is_finite() && *c > 0.0)
        .unwrap_or(DEFAULT_INITIAL_CASH))
}

// ---- the account's numbers ----------------------------------------------------------------

/// One symbol's exposure, summed over accounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SymbolExposure {
    pub symbol: String,
    /// Net signed units over every account's open position.
    pub quantity: f64,
    /// `long`, `short` or `flat` (positions that offset each other).
    pub side: String,
    /// The mark: the live engine's last price, else the newest stored close; absent without
    /// either (the position is then valued at entry).
    pub mark_price: Option<f64>,
    /// Open time of the bar the mark is the close of, unix seconds.
    pub mark_ts: Option<i64>,
    /// `live` or `stored`.
    pub mark_source: Option<PriceSource>,
    /// quantity × mark (signed).
    pub notional: f64,
    /// |notional| / equity × 100.
    pub pct_of_equity: f64,
    /// Σ quantity × (mark − entry).
    pub unrealized_pnl: f64,
    /// Accounts holding it.
    pub accounts: Vec<String>,
}

/// `GET /api/risk/exposure`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExposureReport {
    /// Unix seconds.
    pub as_of: i64,
    pub equity: f64,
    /// Σ |notional|.
    pub gross_exposure: f64,
    /// Σ notional.
    pub net_exposure: f64,
    /// Largest |notional| first.
    pub symbols: Vec<SymbolExposure>,
}

/// Use of one limit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitUse {
    /// The limit's name in `/api/risk/parameters`.
    pub limit: String,
    pub max: f64,
    /// The value the limit is compared with now.
    pub current: f64,
    /// current / max × 100.
    pub used_pct: f64,
}

/// `GET /api/risk/metrics`: the whole paper book (every account) at the mark prices.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiskMetrics {
    /// Unix seconds.
    pub as_of: i64,
    /// Whether the kill switch is engaged, and why.
    pub halted: bool,
    pub halt: Option<Halt>,
    /// Starting capital (`live-engine` module, `initial_cash`).
    pub initial_capital: f64,
    /// initial_capital − cost of buys + proceeds of sells − fees.
    pub cash: f64,
    /// cash + Σ position × mark.
    pub equity: f64,
    /// (equity / initial_capital − 1) × 100.
    pub return_pct: f64,
    /// How far equity is below the starting capital, percent (0 when above). The store keeps
    /// no equity history, so this is the drawdown from the start, not from the peak.
    pub drawdown_pct: f64,
    /// Σ |position × mark|.
    pub gross_exposure: f64,
    /// Σ position × mark.
    pub net_exposure: f64,
    /// Σ over long positions.
    pub long_exposure: f64,
    /// Σ |…| over short positions.
    pub short_exposure: f64,
    /// gross_exposure / equity.
    pub leverage: f64,
    /// Price PnL of closed quantities, before fees.
    pub realized_pnl: f64,
    /// Σ position × (mark − entry).
    pub unrealized_pnl: f64,
    /// Every fee paid.
    pub fees: f64,
    pub open_positions: usize,
    /// Working (accepted or partially filled) orders.
    pub open_orders: usize,
    /// Orders (every account's) accepted in the last `order_window_secs` (default 60): what
    /// the account-wide order-rate limit counts for the next order.
    pub orders_in_window: usize,
    /// Symbols held without any price (valued at their entry price).
    pub unpriced_symbols: Vec<String>,
    /// Risk alerts in the last 24 hours.
    pub alerts_24h: i64,
    /// Time of the newest alert.
    pub last_alert_at: Option<i64>,
    /// How much of each set limit is used: max_gross_exposure (gross exposure),
    /// max_position (largest |net position| of a symbol), max_open_orders (working orders),
    /// max_orders_per_window (orders in the window), max_drawdown_pct (drawdown_pct),
    /// max_daily_loss (loss below the starting capital).
    pub limits_utilisation: Vec<LimitUse>,
    /// The limits in force.
    pub limits: RiskParameters,
}

pub(crate) struct Snapshot {
    pub(crate) metrics: RiskMetrics,
    pub(crate) symbols: Vec<SymbolExposure>,
}

pub(crate) async fn snapshot(state: &AppState) -> ApiResult<Snapshot> {
    let now = store::now();
    let limits = state
        .risk
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let initial = initial_capital(state).await?;
    let positions = store::orders::open_positions(&state.store, None).await?;
    let marks = marks::marks(state, positions.iter().map(|p| p.symbol.as_str())).await?;
    let totals = store::orders::totals(&state.store, None).await?;
    let (cash, fees) = (initial + totals.cash_flow, totals.fees);

    let mut by_symbol: Vec<SymbolExposure> = Vec::new();
    let mut unpriced = Vec::new();
    for p in &positions {
        let mark = marks.get(&p.symbol);
        if mark.is_none() && !unpriced.contains(&p.symbol) {
            unpriced.push(p.symbol.clone());
        }
        let m = mark.map_or(p.avg_price, |m| m.price);
        let i = match by_symbol.iter().position(|s| s.symbol == p.symbol) {
            Some(i) => i,
            None => {
                by_symbol.push(SymbolExposure {
                    symbol: p.symbol.clone(),
                    quantity: 0.0,
                    side: String::new(),
                    mark_price: mark.map(|m| m.price),
                    mark_ts: mark.map(|m| m.ts),
                    mark_source: mark.map(|m| m.source),
                    notional: 0.0,
                    pct_of_equity: 0.0,
                    unrealized_pnl: 0.0,
                    accounts: Vec::new(),
                });
                by_symbol.len() - 1
            }
        };
        let s = &mut by_symbol[i];
        s.quantity += p.quantity;
        s.notional += p.quantity * m;
        s.unrealized_pnl += p.quantity * (m - p.avg_price);
        let account = p.account.text();
        if !s.accounts.contains(&account) {
            s.accounts.push(account);
        }
    }
    let market_value = total(by_symbol.iter().map(|s| s.notional));
    let equity = cash + market_value;
    let gross = total(by_symbol.iter().map(|s| s.notional.abs()));
    let long = total(by_symbol.iter().map(|s| s.notional.max(0.0)));
    for s in &mut by_symbol {
        s.side = if s.quantity > 0.0 {
            "long"
        } else if s.quantity < 0.0 {
            "short"
        } else {
            "flat"
        }
        .into();
        s.pct_of_equity = ratio(s.notional.abs(), equity) * 100.0;
    }
    by_symbol.sort_by(|a, b| b.notional.abs().total_cmp(&a.notional.abs()));

    let working = store::orders::working(&state.store, None).await?;
    let window = limits.order_window_secs.unwrap_or(60);
    let in_window = store::orders::accepted_since_any(&state.store, now - window + 1)
        .await?
        .len();
    let (alerts_24h, last_alert_at) = store::risk::alert_stats(&state.store, now - 86_400).await?;
    let halt = store::risk::halted(&state.store, ACCOUNT).await?;
    let drawdown_pct = (ratio(initial - equity, initial) * 100.0).max(0.0);
    let largest_position = by_symbol
        .iter()
        .map(|s| s.quantity.abs())
        .fold(0.0, f64::max);

    let mut used = Vec::new();
    let mut use_of = |name: &str, max: Option<f64>, current: f64| {
        if let Some(max) = max {
            used.push(LimitUse {
                limit: name.into(),
                max,
                current,
                used_pct: ratio(current, max) * 100.0,
            });
        }
    };
    use_of("max_gross_exposure", limits.max_gross_exposure, gross);
    use_of("max_position", limits.max_position, largest_position);
    use_of(
        "max_open_orders",
        limits.max_open_orders.map(|n| n as f64),
        working.len() as f64,
    );
    use_of(
        "max_orders_per_window",
        limits.max_orders_per_window.map(f64::from),
        in_window as f64,
    );
    use_of("max_drawdown_pct", limits.max_drawdown_pct, drawdown_pct);
    use_of(
        "max_daily_loss",
        limits.max_daily_loss,
        (initial - equity).max(0.0),
    );

    let metrics = RiskMetrics {
        as_of: now,
        halted: halt.is_some(),
        halt: halt.map(Halt::from),
        initial_capital: initial,
        cash,
        equity,
        return_pct: (ratio(equity, initial) - 1.0) * 100.0,
        drawdown_pct,
        gross_exposure: gross,
        net_exposure: market_value,
        long_exposure: long,
        short_exposure: gross - long,
        leverage: ratio(gross, equity),
        realized_pnl: totals.realized_pnl,
        unrealized_pnl: total(by_symbol.iter().map(|s| s.unrealized_pnl)),
        fees,
        open_positions: positions.len(),
        open_orders: working.len(),
        orders_in_window: in_window,
        unpriced_symbols: unpriced,
        alerts_24h,
        last_alert_at,
        limits_utilisation: used,
        limits: RiskParameters::from(&limits),
    };
    Ok(Snapshot {
        metrics,
        symbols: by_symbol,
    })
}

/// Sum of `xs` from +0.0: `Iterator::sum` of floats starts from -0.0, so an empty book would
/// report its exposures as `-0.0`.
fn total(xs: impl Iterator<Item = f64>) -> f64 {
    xs.fold(0.0, |a, x| a + x)
}

/// a / b, 0 when b is not positive (no equity: no meaningful share).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Equity, exposure, PnL and limit use of the paper book (see the fields).
#[utoipa::path(get, path = "/api/risk/metrics", tag = "risk",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = RiskMetrics)))]
async fn metrics(State(state): State<AppState>) -> ApiResult<ApiJson<RiskMetrics>> {
    Ok(ApiJson(snapshot(&state).await?.metrics))
}

/// Exposure per symbol, largest first, at the mark price (the live market's last price, else
/// the newest stored close).
#[utoipa::path(get, path = "/api/risk/exposure", tag = "risk",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = ExposureReport)))]
async fn exposure(State(state): State<AppState>) -> ApiResult<ApiJson<ExposureReport>> {
    let s = snapshot(&state).await?;
    Ok(ApiJson(ExposureReport {
        as_of: s.metrics.as_of,
        equity: s.metrics.equity,
        gross_exposure: s.metrics.gross_exposure,
        net_exposure: s.metrics.net_exposure,
        symbols: s.symbols,
    }))
}

/// Filters of `GET /api/risk/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only alerts at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// Risk alerts, newest first.
#[utoipa::path(get, path = "/api/risk/alerts", tag = "risk", params(AlertQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<RiskAlert>), (status = 422, body = ErrorBody)))]
async fn alerts(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> ApiResult<ApiJson<Page<RiskAlert>>> {
    let limit = paging::limit(q.limit, paging::MAX_LIMIT)?;
    let before = paging::id_cursor(q.cursor.as_deref())?;
    let rows = store::risk::alerts(&state.store, limit + 1, q.since, before).await?;
    Ok(ApiJson(Page::from_overfetch(
        rows,
        limit,
        |a| a.id.to_string(),
        RiskAlert::from,
    )))
}

// ---- parameters ---------------------------------------------------------------------------

/// The account-wide limits. Every field is optional; absent or `null` turns the limit off,
/// except the host's bounds `max_resting_orders` and `max_oco_orders`, which fall back to
/// their defaults.
/// Each is inclusive: a value exactly at the limit passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskParameters {
    /// Largest order, units (> 0).
    #[schema(exclusive_minimum = 0.0)]
    pub max_order_quantity: Option<f64>,
    /// Largest order notional, units × last close (> 0).
    #[schema(exclusive_minimum = 0.0)]
    pub max_order_notional: Option<f64>,
    /// Largest |position| per symbol after an order, units (> 0).
    #[schema(exclusive_minimum = 0.0)]
    pub max_position: Option<f64>,
    /// Largest Σ |position × mark| after an order (> 0).
    #[schema(exclusive_minimum = 0.0)]
    pub max_gross_exposure: Option<f64>,
    /// Most working orders at once (≥ 1).
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_open_orders: Option<u64>,
    /// Most resting orders of one account at once, a bound on the host's work for it
    /// (1–100000; absent or `null`: the default 1000, never off).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_resting_orders: Option<u64>,
    /// Most resting orders in one OCO group (1–1000; absent or `null`: the default 16, never
    /// off).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_oco_orders: Option<u64>,
    /// Most orders accepted per `order_window_secs` (≥ 1).
    #[schema(minimum = 1, maximum = 4294967295.0)]
    pub max_orders_per_window: Option<u64>,
    /// Window of the order-rate limit, seconds (1–86400, default 60).
    #[schema(minimum = 1, maximum = 86400)]
    pub order_window_secs: Option<i64>,
    /// Limit and stop prices must lie within this percentage of the last close (0–100].
    #[schema(exclusive_minimum = 0.0, maximum = 100.0)]
    pub price_collar_pct: Option<f64>,
    /// Kill switch: equity this far below the day's opening equity (> 0).
    #[schema(exclusive_minimum = 0.0)]
    pub max_daily_loss: Option<f64>,
    /// Kill switch: equity this many percent below its peak (0–100].
    #[schema(exclusive_minimum = 0.0, maximum = 100.0)]
    pub max_drawdown_pct: Option<f64>,
}

impl From<&RiskLimits> for RiskParameters {
    fn from(l: &RiskLimits) -> Self {
        RiskParameters {
            max_order_quantity: l.max_order_quantity,
            max_order_notional: l.max_order_notional,
            max_position: l.max_position,
            max_gross_exposure: l.max_gross_exposure,
            max_open_orders: l.max_open_orders.map(|n| n as u64),
            max_resting_orders: l.max_resting_orders.map(|n| n as u64),
            max_oco_orders: l.max_oco_orders.map(|n| n as u64),
            max_orders_per_window: l.max_orders_per_window.map(u64::from),
            order_window_secs: l.order_window_secs,
            price_collar_pct: l.price_collar_pct,
            max_daily_loss: l.max_daily_loss,
            max_drawdown_pct: l.max_drawdown_pct,
        }
    }
}

const MAXIMA: [&str; 5] = [
    "max_order_quantity",
    "max_order_notional",
    "max_position",
    "max_gross_exposure",
    "max_daily_loss",
];
const PERCENTS: [&str; 2] = ["price_collar_pct", "max_drawdown_pct"];
const COUNTS: [&str; 5] = [
    "max_open_orders",
    "max_resting_orders",
    "max_oco_orders",
    "max_orders_per_window",
    "order_window_secs",
];

/// Check a parameters document field by field (each error names its field) and turn it into
/// the engine's limits.
pub fn parse_parameters(body: &Value) -> ApiResult<RiskLimits> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::validation(
            "body",
            "risk parameters must be a JSON object of limits",
        ));
    };
    let known: Vec<&str> = MAXIMA
        .iter()
        .chain(&PERCENTS)
        .chain(&COUNTS)
        .copied()
        .collect();
    let mut l = RiskLimits::default();
    for (key, v) in obj {
        if !known.contains(&key.as_str()) {
            return Err(ApiError::validation(
                key.clone(),
                format!(
                    "unknown risk parameter `{key}`; known: {}",
                    known.join(", ")
                ),
            ));
        }
        if v.is_null() {
            continue;
        }
        if MAXIMA.contains(&key.as_str()) || PERCENTS.contains(&key.as_str()) {
            let x = v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                ApiError::validation(key.clone(), format!("{key} must be a number, got {v}"))
            })?;
            let pct = PERCENTS.contains(&key.as_str());
            if !(x > 0.0 && (!pct || x <= 100.0)) {
                return Err(ApiError::validation(
                    key.clone(),
                    if pct {
                        format!("{key} must be a percentage above 0 and at most 100, got {x}")
                    } else {
                        format!("{key} must be greater than 0, got {x}")
                    },
                ));
            }
            let slot = match key.as_str() {
                "max_order_quantity" => &mut l.max_order_quantity,
                "max_order_notional" => &mut l.max_order_notional,
                "max_position" => &mut l.max_position,
                "max_gross_exposure" => &mut l.max_gross_exposure,
                "max_daily_loss" => &mut l.max_daily_loss,
                "price_collar_pct" => &mut l.price_collar_pct,
                _ => &mut l.max_drawdown_pct,
            };
            *slot = Some(x);
        } else {
            let top: u64 = match key.as_str() {
                "order_window_secs" => 86_400,
                "max_orders_per_window" => u64::from(u32::MAX),
                "max_resting_orders" => 100_000,
                "max_oco_orders" => 1_000,
                _ => 1_000_000,
            };
            // `3.0` is the whole number 3 to JSON Schema (and to clients that send floats).
            let whole = v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x <= top as f64)
                    .map(|x| x as u64)
            });
            let n = whole.filter(|n| (1..=top).contains(n)).ok_or_else(|| {
                ApiError::validation(
                    key.clone(),
                    format!("{key} must be a whole number from 1 to {top}, got {v}"),
                )
            })?;
            match key.as_str() {
                "max_open_orders" => l.max_open_orders = Some(n as usize),
                "max_resting_orders" => l.max_resting_orders = Some(n as usize),
                "max_oco_orders" => l.max_oco_orders = Some(n as usize),
                "max_orders_per_window" => l.max_orders_per_window = Some(n as u32),
                _ => l.order_window_secs = Some(n as i64),
            }
        }
    }
    // The engine's own sanity rules, in case they ever grow stricter than the ones above.
    l.validate().map_err(|e| ApiError::validation("body", e))?;
    Ok(l)
}

/// The account-wide limits in force.
#[utoipa::path(get, path = "/api/risk/parameters", tag = "risk",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = RiskParameters)))]
async fn get_parameters(State(state): State<AppState>) -> ApiResult<ApiJson<RiskParameters>> {
    let l = state
        .risk
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(ApiJson(RiskParameters::from(&l)))
}

async fn apply_parameters(
    state: &AppState,
    caller: &crate::auth::Principal,
    body: &Value,
) -> ApiResult<RiskParameters> {
    let limits = parse_parameters(body)?;
    store::risk::set_limits(&state.store, ACCOUNT, &limits, Some(caller.user_id)).await?;
    state
        .live
        .set_account_limits(limits.clone())
        .await
        .map_err(super::strategies::live_error)?;
    *state
        .risk
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = limits.clone();
    let params = RiskParameters::from(&limits);
    let event = json!({"event": "limits_changed", "message": "risk limits changed", "by": caller.username, "limits": params});
    state.hub.publish(Topic::RiskAlerts, None, &event);
    state.hub.publish(Topic::Notifications, None, &event);
    Ok(params)
}

/// Replace the account-wide limits (admin). The whole set is replaced: a limit left out is
/// turned off. Stored, and in force for the next order at once; announced on `risk-alerts`
/// and `notifications`.
#[utoipa::path(put, path = "/api/risk/parameters", tag = "risk", request_body = RiskParameters,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = RiskParameters), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_parameters(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<ApiJson<RiskParameters>> {
    Ok(ApiJson(apply_parameters(&state, &p, &body).await?))
}

/// Same as `PUT /api/risk/parameters` (admin).
#[utoipa::path(post, path = "/api/risk/configure", tag = "risk", operation_id = "configure_risk", request_body = RiskParameters,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = RiskParameters), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn configure(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<ApiJson<RiskParameters>> {
    Ok(ApiJson(apply_parameters(&state, &p, &body).await?))
}

// ---- kill switch --------------------------------------------------------------------------

/// Why the account is halted (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    pub reason: Option<String>,
}

/// The kill switch after a halt or resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct HaltStatus {
    pub halted: bool,
    /// The halt in force (after a halt), or the one just released (after a resume).
    pub halt: Option<Halt>,
    /// Orders the halt cancelled.
    pub cancelled_orders: Vec<Order>,
}

/// Engage the account's kill switch (admin): every working order of every account is
/// cancelled (reason `kill switch`), a risk alert is recorded and published on `risk-alerts`,
/// and new orders are rejected until `POST /api/risk/resume`. Pressing it again keeps the
/// first reason and cancels whatever is working. Body optional: `{"reason"}`.
#[utoipa::path(post, path = "/api/risk/halt", tag = "risk", request_body(content = Option<HaltRequest>),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = HaltStatus), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn halt(
    State(state): State<AppState>,
    Caller(p): Caller,
    body: axum::body::Bytes,
) -> ApiResult<ApiJson<HaltStatus>> {
    let req: HaltRequest = optional_body(&body)?;
    let reason = match req.reason.as_deref().map(str::trim) {
        Some(r) if r.chars().count() > 200 => {
            return Err(ApiError::validation(
                "reason",
                "reason has more than 200 characters",
            ));
        }
        Some(r) if !r.is_empty() => format!("kill switch engaged by {}: {r}", p.username),
        _ => format!("kill switch engaged by {}", p.username),
    };
    let h = store::risk::halt(&state.store, ACCOUNT, &reason, Some(p.user_id)).await?;
    let (halted_live, cancelled) = halt_everything(&state, &h.reason).await?;
    let message = format!(
        "{}; {} working order(s) cancelled, {} live strateg{} halted",
        h.reason,
        cancelled.len(),
        halted_live.len(),
        if halted_live.len() == 1 { "y" } else { "ies" }
    );
    let alert =
        store::risk::add_alert(&state.store, ACCOUNT, "kill_switch", &message, None).await?;
    state.hub.publish(
        Topic::RiskAlerts,
        None,
        &json!({"event": "kill_switch", "alert": RiskAlert::from(alert), "halt": Halt::from(&h), "cancelled": cancelled.iter().map(|o| o.id).collect::<Vec<_>>()}),
    );
    Ok(ApiJson(HaltStatus {
        halted: true,
        halt: Some(h.into()),
        cancelled_orders: cancelled.into_iter().map(Order::from).collect(),
    }))
}

/// Press the live engine's kill switch: its strategies halt and the manual account's orders
/// are cancelled (published as they are stored), in one command, so no order gets in
/// between; whatever else the store still has working is cancelled after it. Returns the
/// halted strategies and the orders cancelled.
pub(crate) async fn halt_everything(
    state: &AppState,
    reason: &str,
) -> ApiResult<(Vec<i64>, Vec<store::orders::Order>)> {
    let working: Vec<i64> = store::orders::working(&state.store, None)
        .await?
        .into_iter()
        .filter(|o| o.instance_id.is_none())
        .map(|o| o.id)
        .collect();
    let halted = state
        .live
        .halt(None, reason)
        .await
        .map_err(super::strategies::live_error)?;
    state
        .live
        .flush()
        .await
        .map_err(super::strategies::live_error)?;
    let mut cancelled = Vec::new();
    for id in working {
        let o = store::orders::get(&state.store, id).await?;
        if o.status == store::orders::OrderStatus::Cancelled {
            cancelled.push(o);
        }
    }
    // Orders no running engine account holds (a strategy's left from a previous run).
    for o in store::orders::cancel_all_working(&state.store, KILL_SWITCH).await? {
        state.hub.publish(
            Topic::Trades,
            Some(o.symbol.clone()),
            &json!({"event": "order_cancelled", "order": Order::from(&o)}),
        );
        cancelled.push(o);
    }
    Ok((halted, cancelled))
}

/// Release the account's kill switch (admin); orders are accepted again. Harmless when not
/// halted (`halt` is then null).
#[utoipa::path(post, path = "/api/risk/resume", tag = "risk",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = HaltStatus), (status = 403, body = ErrorBody)))]
async fn resume(
    State(state): State<AppState>,
    Caller(p): Caller,
) -> ApiResult<ApiJson<HaltStatus>> {
    let released = store::risk::resume(&state.store, ACCOUNT).await?;
    state
        .live
        .resume_account()
        .await
        .map_err(super::strategies::live_error)?;
    if let Some(h) = &released {
        let message = format!("kill switch released by {} (was: {})", p.username, h.reason);
        let alert = store::risk::add_alert(
            &state.store,
            ACCOUNT,
            "kill_switch_released",
            &message,
            None,
        )
        .await?;
        state.hub.publish(
            Topic::RiskAlerts,
            None,
            &json!({"event": "kill_switch_released", "alert": RiskAlert::from(alert)}),
        );
    }
    Ok(ApiJson(HaltStatus {
        halted: false,
        halt: released.map(Halt::from),
        cancelled_orders: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_bounds_are_settable_and_never_off() {
        let l = parse_parameters(&json!({"max_resting_orders": 5, "max_oco_orders": 2})).unwrap();
        assert_eq!((l.max_resting_orders, l.max_oco_orders), (Some(5), Some(2)));
        let l = parse_parameters(&json!({"max_resting_orders": null})).unwrap();
        assert_eq!(
            (l.max_resting_orders, l.max_oco_orders),
            (Some(1000), Some(16))
        );
        let shown = RiskParameters::from(&l);
        assert_eq!(
            (shown.max_resting_orders, shown.max_oco_orders),
            (Some(1000), Some(16))
        );
        let e = parse_parameters(&json!({"max_resting_orders": 100_001})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("max_resting_orders"));
        assert!(e.message.contains("from 1 to 100000"), "{}", e.message);
        let e = parse_parameters(&json!({"max_oco_orders": 0})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("max_oco_orders"));
    }

    #[test]
    fn parameters_are_checked_field_by_field() {
        let l = parse_parameters(&json!({"max_order_quantity": 10, "max_open_orders": 3, "price_collar_pct": 5.5, "max_drawdown_pct": null})).unwrap();
        assert_eq!(l.max_order_quantity, Some(10.0));
        assert_eq!(l.max_open_orders, Some(3));
        assert_eq!(l.price_collar_pct, Some(5.5));
        assert_eq!(l.max_drawdown_pct, None);
        let field = |v: Value| parse_parameters(&v).unwrap_err().field.unwrap();
        assert_eq!(
            field(json!({"max_order_quantity": 0})),
            "max_order_quantity"
        );
        assert_eq!(field(json!({"max_position": -1.5})), "max_position");
        assert_eq!(
            field(json!({"max_drawdown_pct": 100.5})),
            "max_drawdown_pct"
        );
        assert_eq!(field(json!({"max_open_orders": 2.5})), "max_open_orders");
        assert_eq!(field(json!({"max_open_orders": 0})), "max_open_orders");
        assert_eq!(
            field(json!({"order_window_secs": "60"})),
            "order_window_secs"
        );
        assert_eq!(field(json!({"max_postion": 1})), "max_postion");
        let e = parse_parameters(&json!({"max_postion": 1})).unwrap_err();
        assert!(
            e.message.contains("unknown risk parameter `max_postion`"),
            "{}",
            e.message
        );
        assert_eq!(field(json!([1])), "body");
        assert_eq!(
            parse_parameters(&json!({"price_collar_pct": 100}))
                .unwrap()
                .price_collar_pct,
            Some(100.0)
        );
    }
}
