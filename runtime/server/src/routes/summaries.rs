//! One-call summaries the product seeds' dashboard reads (`docs/server.md`, "Seed routes"):
//! the dashboard summary, PnL, the open trades, the risk dashboard, and `GET /api/health`.
//!
//! Nothing here has numbers of its own: open trades are valued exactly as `GET /api/trades`
//! values them ([`super::orders::mark_trades`], at the one mark of [`crate::marks`]), booked
//! amounts come from the accounts' totals the fill booking keeps, and the risk figures are
//! those of `/api/risk/*` ([`super::risk::snapshot`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::{Trade, mark_trades};
use super::risk::{ExposureReport, RiskMetrics, RiskParameters};
use crate::api_types::risk::{Halt, RiskAlert};
use crate::error::{ApiJson, ApiResult};
use crate::hub::Topic;
use crate::marks::PriceSource;
use crate::state::AppState;
use qtm_store::orders::{AccountId, AccountTotals};
use qtm_store::{self as store, risk::ACCOUNT};

/// The summary routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard_summary))
        .routes(routes!(pnl_summary))
        .routes(routes!(active_trades_summary))
        .routes(routes!(risk_dashboard))
        .routes(routes!(api_health))
}

/// Seconds since the last `market-data` event within which the live feed counts as moving
/// (`live_data`).
pub const LIVE_DATA_WINDOW_SECS: i64 = 60;

/// Whether the live market moved lately: a bar reached the `market-data` stream (from a feed,
/// the replay, `POST /api/market` or `/ws/ingest`) in the last [`LIVE_DATA_WINDOW_SECS`].
pub fn live_data(state: &AppState) -> bool {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    state
        .hub
        .stats
        .last_published_ms(Topic::MarketData)
        .is_some_and(|t| now_ms - t <= LIVE_DATA_WINDOW_SECS * 1000)
}

// ---- PnL ------------------------------------------------------------------------------------

/// PnL figures of a book or one account.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub struct PnlFigures {
    /// Price PnL of closed quantities, before fees: the `realized_pnl` of every trade of
    /// `GET /api/trades?status=all`, summed.
    pub realized_pnl: f64,
    /// Σ `unrealized_pnl` of the open trades, at the marks `GET /api/trades` values them at.
    pub unrealized_pnl: f64,
    /// realized_pnl + unrealized_pnl.
    pub total_pnl: f64,
    /// Every fee paid.
    pub fees: f64,
    /// total_pnl − fees.
    pub net_pnl: f64,
}

impl PnlFigures {
    fn of(totals: &AccountTotals, unrealized: f64) -> Self {
        let total = totals.realized_pnl + unrealized;
        PnlFigures {
            realized_pnl: totals.realized_pnl,
            unrealized_pnl: unrealized,
            total_pnl: total,
            fees: totals.fees,
            net_pnl: total - totals.fees,
        }
    }
}

/// One account's PnL.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountPnl {
    /// `user:<id>` (a user's manual orders), `strategy:<id>`, or `manual` (earlier versions' shared manual account).
    #[schema(example = "user:1")]
    pub account: String,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub total_pnl: f64,
    pub fees: f64,
    pub net_pnl: f64,
    /// Its open trades.
    pub open_trades: usize,
}

/// `GET /api/pnl/summary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PnlSummary {
    /// Unix seconds.
    pub as_of: i64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub total_pnl: f64,
    pub fees: f64,
    pub net_pnl: f64,
    pub open_trades: usize,
    /// Every account that traded or holds a position: `manual` first, then the strategies'
    /// accounts by id.
    pub accounts: Vec<AccountPnl>,
}

/// The open trades, marked, and the PnL of the whole book and of each account.
pub(crate) struct Book {
    pub open: Vec<Trade>,
    pub total: PnlFigures,
    pub accounts: BTreeMap<AccountId, (AccountTotals, f64, usize)>,
}

pub(crate) async fn book(state: &AppState) -> ApiResult<Book> {
    let open = store::orders::open_positions(&state.store, None).await?;
    let open = mark_trades(state, open).await?;
    let mut accounts: BTreeMap<AccountId, (AccountTotals, f64, usize)> = BTreeMap::new();
    for (account, totals) in store::summaries::totals_by_account(&state.store).await? {
        accounts.entry(account).or_default().0 = totals;
    }
    for t in &open {
        let a = accounts.entry(t.position.account).or_default();
        a.1 += t.unrealized_pnl;
        a.2 += 1;
    }
    let mut totals = AccountTotals::default();
    let mut unrealized = 0.0;
    for (t, u, _) in accounts.values() {
        totals.cash_flow += t.cash_flow;
        totals.fees += t.fees;
        totals.realized_pnl += t.realized_pnl;
        unrealized += u;
    }
    Ok(Book {
        total: PnlFigures::of(&totals, unrealized),
        open,
        accounts,
    })
}

/// Realized, unrealized and total PnL of the paper book and of each account, with fees. The
/// open trades are valued as `GET /api/trades` values them (at the mark: the live market's
/// last price, else the newest stored close), so `unrealized_pnl` is the sum of that list's
/// `unrealized_pnl` and `realized_pnl` the sum of its `realized_pnl` over every trade.
#[utoipa::path(get, path = "/api/pnl/summary", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = PnlSummary)))]
async fn pnl_summary(State(state): State<AppState>) -> ApiResult<ApiJson<PnlSummary>> {
    let b = book(&state).await?;
    let accounts = b
        .accounts
        .iter()
        .map(|(account, (totals, unrealized, n))| {
            let f = PnlFigures::of(totals, *unrealized);
            AccountPnl {
                account: account.text(),
                realized_pnl: f.realized_pnl,
                unrealized_pnl: f.unrealized_pnl,
                total_pnl: f.total_pnl,
                fees: f.fees,
                net_pnl: f.net_pnl,
                open_trades: *n,
            }
        })
        .collect();
    Ok(ApiJson(PnlSummary {
        as_of: store::now(),
        realized_pnl: b.total.realized_pnl,
        unrealized_pnl: b.total.unrealized_pnl,
        total_pnl: b.total.total_pnl,
        fees: b.total.fees,
        net_pnl: b.total.net_pnl,
        open_trades: b.open.len(),
        accounts,
    }))
}

// ---- open trades ------------------------------------------------------------------------------

/// The open trades of one symbol, over every account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SymbolTrades {
    pub symbol: String,
    /// Open trades in it.
    pub trades: usize,
    /// Net signed units.
    pub quantity: f64,
    /// The mark the trades are valued at; absent without a price (then valued at entry).
    pub mark_price: Option<f64>,
    /// `live` or `stored`.
    pub mark_source: Option<PriceSource>,
    /// Σ quantity × mark (signed).
    pub market_value: f64,
    /// Σ quantity × (mark − entry).
    pub unrealized_pnl: f64,
}

/// `GET /api/trades/active/summary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActiveTradesSummary {
    /// Unix seconds.
    pub as_of: i64,
    /// Open trades (as `GET /api/trades` lists them).
    pub open_trades: usize,
    /// Of which long (quantity > 0) and short.
    pub long_trades: usize,
    pub short_trades: usize,
    /// Σ |market_value|.
    pub gross_exposure: f64,
    /// Σ market_value.
    pub net_exposure: f64,
    /// Σ unrealized_pnl.
    pub unrealized_pnl: f64,
    /// By symbol, largest |market_value| first.
    pub symbols: Vec<SymbolTrades>,
}

/// The open trades summed up: counts, long/short, gross and net exposure and unrealized PnL,
/// with a row per symbol; every figure is the sum of the open trades as `GET /api/trades`
/// values them.
#[utoipa::path(get, path = "/api/trades/active/summary", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = ActiveTradesSummary)))]
async fn active_trades_summary(
    State(state): State<AppState>,
) -> ApiResult<ApiJson<ActiveTradesSummary>> {
    let open = store::orders::open_positions(&state.store, None).await?;
    let open = mark_trades(&state, open).await?;
    let mut rows: Vec<SymbolTrades> = Vec::new();
    for t in &open {
        let i = match rows.iter().position(|r| r.symbol == t.position.symbol) {
            Some(i) => i,
            None => {
                rows.push(SymbolTrades {
                    symbol: t.position.symbol.clone(),
                    trades: 0,
                    quantity: 0.0,
                    mark_price: t.mark_price,
                    mark_source: t.mark_source,
                    market_value: 0.0,
                    unrealized_pnl: 0.0,
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.trades += 1;
        r.quantity += t.position.quantity;
        r.market_value += t.market_value;
        r.unrealized_pnl += t.unrealized_pnl;
    }
    rows.sort_by(|a, b| {
        b.market_value
            .abs()
            .total_cmp(&a.market_value.abs())
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    let sum = |f: fn(&Trade) -> f64| open.iter().map(f).fold(0.0, |a, x| a + x);
    Ok(ApiJson(ActiveTradesSummary {
        as_of: store::now(),
        open_trades: open.len(),
        long_trades: open.iter().filter(|t| t.position.quantity > 0.0).count(),
        short_trades: open.iter().filter(|t| t.position.quantity < 0.0).count(),
        gross_exposure: sum(|t| t.market_value.abs()),
        net_exposure: sum(|t| t.market_value),
        unrealized_pnl: sum(|t| t.unrealized_pnl),
        symbols: rows,
    }))
}

// ---- risk dashboard -------------------------------------------------------------------------

/// The kill switch of the account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KillSwitch {
    pub halted: bool,
    /// The halt in force, if any.
    pub halt: Option<Halt>,
}

/// Alerts the risk dashboard shows.
pub const DASHBOARD_ALERTS: i64 = 20;

/// `GET /api/risk/dashboard`: the union of the risk routes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiskDashboard {
    /// Unix seconds.
    pub as_of: i64,
    /// `GET /api/risk/metrics`.
    pub metrics: RiskMetrics,
    /// `GET /api/risk/exposure`.
    pub exposure: ExposureReport,
    /// `GET /api/risk/parameters`.
    pub parameters: RiskParameters,
    /// The account's kill switch (`POST /api/risk/halt`, `POST /api/risk/resume`).
    pub kill_switch: KillSwitch,
    /// The newest 20 alerts of `GET /api/risk/alerts`, newest first.
    pub alerts: Vec<RiskAlert>,
}

/// The risk dashboard in one call: the union of `GET /api/risk/metrics`,
/// `GET /api/risk/exposure`, `GET /api/risk/parameters`, the kill switch's state and the
/// newest 20 alerts of `GET /api/risk/alerts`, all read at once (the same snapshot of the
/// book for metrics and exposure).
#[utoipa::path(get, path = "/api/risk/dashboard", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = RiskDashboard)))]
async fn risk_dashboard(State(state): State<AppState>) -> ApiResult<ApiJson<RiskDashboard>> {
    let s = super::risk::snapshot(&state).await?;
    let alerts = store::risk::alerts(&state.store, DASHBOARD_ALERTS, None, None).await?;
    let m = s.metrics;
    Ok(ApiJson(RiskDashboard {
        as_of: m.as_of,
        exposure: ExposureReport {
            as_of: m.as_of,
            equity: m.equity,
            gross_exposure: m.gross_exposure,
            net_exposure: m.net_exposure,
            symbols: s.symbols,
        },
        parameters: m.limits.clone(),
        kill_switch: KillSwitch {
            halted: m.halted,
            halt: m.halt.clone(),
        },
        alerts: alerts.into_iter().map(RiskAlert::from).collect(),
        metrics: m,
    }))
}

// ---- the dashboard ----------------------------------------------------------------------------

/// Strategies by the state of their default instance.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StrategyCounts {
    pub total: usize,
    /// Instance `enabled` (what `GET /api/strategies/active` lists).
    pub enabled: usize,
    /// Running in the live engine now (`live.state` `running`).
    pub running: usize,
    /// Halted: instance `halted`, or held halted by the live engine.
    pub halted: usize,
    /// Instance `disabled`.
    pub disabled: usize,
    /// Instance `failed`.
    pub failed: usize,
}

/// Trades at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TradeCounts {
    /// Open trades.
    pub open: usize,
    /// Trades whose closing fill is at or after 00:00 UTC today. Fill times are the market's
    /// (the bar a fill came on), so a replay of old bars closes none "today".
    pub closed_today: i64,
}

/// Risk at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RiskGlance {
    /// Whether the account's kill switch is engaged.
    pub halted: bool,
    pub halt: Option<Halt>,
    /// Risk alerts in the last 24 hours.
    pub alerts_24h: i64,
    /// Time of the newest alert, unix seconds.
    pub last_alert_at: Option<i64>,
}

/// The system at a glance: `GET /api/system/status` without its module list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemGlance {
    /// `ok`, or `degraded` when the database does not answer or the live engine is stalled
    /// or stopped.
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
    pub database: String,
    /// `ok`, `stalled` or `stopped`.
    pub engine: String,
    pub engine_heartbeat_age_ms: Option<u64>,
    /// Connected stream clients.
    pub ws_clients: usize,
    /// Whether the live market moved in the last minute (see `GET /api/health`).
    pub live_data: bool,
}

/// `GET /api/dashboard/summary`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DashboardSummary {
    /// Unix seconds.
    pub as_of: i64,
    pub strategies: StrategyCounts,
    pub trades: TradeCounts,
    /// As `GET /api/pnl/summary` (the whole book).
    pub pnl: PnlFigures,
    pub risk: RiskGlance,
    pub system: SystemGlance,
}

/// Everything the dashboard opens with, in one call: strategies by state, open trades and
/// those closed today, the book's PnL (as `GET /api/pnl/summary`), the kill switch and the
/// alerts of the last 24 hours, and the system's status (as `GET /api/system/status`,
/// without the module list).
#[utoipa::path(get, path = "/api/dashboard/summary", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = DashboardSummary)))]
async fn dashboard_summary(State(state): State<AppState>) -> ApiResult<ApiJson<DashboardSummary>> {
    let now = store::now();
    let records = store::strategies::list(&state.store).await?;
    let live = state.live.instances();
    let mut strategies = StrategyCounts {
        total: records.len(),
        ..StrategyCounts::default()
    };
    for r in &records {
        let running = live.iter().find(|l| l.strategy_id == r.strategy.id);
        let live_state = running.map(|l| l.state.as_str());
        match r.instance.status.as_str() {
            "enabled" => strategies.enabled += 1,
            "disabled" => strategies.disabled += 1,
            "failed" => strategies.failed += 1,
            _ => {}
        }
        if live_state == Some("running") {
            strategies.running += 1;
        }
        if r.instance.status == "halted" || live_state == Some("halted") {
            strategies.halted += 1;
        }
    }
    let b = book(&state).await?;
    let closed_today =
        store::summaries::closed_since(&state.store, now - now.rem_euclid(86_400)).await?;
    let (alerts_24h, last_alert_at) = store::risk::alert_stats(&state.store, now - 86_400).await?;
    let halt = store::risk::halted(&state.store, ACCOUNT).await?;
    let status = super::system::snapshot(&state).await;
    Ok(ApiJson(DashboardSummary {
        as_of: now,
        strategies,
        trades: TradeCounts {
            open: b.open.len(),
            closed_today,
        },
        pnl: b.total,
        risk: RiskGlance {
            halted: halt.is_some(),
            halt: halt.map(Halt::from),
            alerts_24h,
            last_alert_at,
        },
        system: SystemGlance {
            status: status.status,
            version: status.version,
            uptime_secs: status.uptime_secs,
            database: status.database,
            engine: status.engine,
            engine_heartbeat_age_ms: status.engine_heartbeat_age_ms,
            ws_clients: status.ws_clients,
            live_data: live_data(&state),
        },
    }))
}

// ---- health ---------------------------------------------------------------------------------

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`, or `degraded` when the database does not answer or the live engine thread
    /// is stalled or stopped (then the status is 503).
    #[schema(pattern = "^(healthy|degraded)$")]
    pub status: String,
    /// Whether the live feed is moving: a bar reached the market-data stream in the last 60 s.
    pub live_data: bool,
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// Now, RFC 3339 UTC (`2026-01-15T10:30:45Z`).
    pub timestamp: String,
    /// Now, unix seconds.
    pub ts: i64,
    /// `ok` or `unreachable`.
    pub database: String,
    /// The live engine thread: `ok`, `stalled` or `stopped`.
    pub engine: String,
    pub engine_heartbeat_age_ms: Option<u64>,
    /// WebSocket connections open now.
    pub websocket_clients: u64,
    pub version: String,
}

/// Health for the seeds' clients, public as `/health` is (same checks: 503 with `degraded`
/// when the database does not answer or the live engine thread is stalled or stopped), with
/// the seeds' fields: `status` `healthy`/`degraded`, `live_data`, `uptime_s`, `timestamp`.
#[utoipa::path(get, path = "/api/health", tag = "summaries", security(()),
    responses((status = 200, description = "healthy", body = Health),
        (status = 503, description = "degraded: the database or the live engine is not well", body = Health)))]
async fn api_health(State(state): State<AppState>) -> Response {
    let db_ok = crate::telemetry::sqlx_ping(&state).await;
    let age = state.live.heartbeat_age();
    let engine = crate::telemetry::engine_health(age);
    let ok = db_ok && engine == "ok";
    let ts = store::now();
    let body = Health {
        status: if ok { "healthy" } else { "degraded" }.into(),
        live_data: live_data(&state),
        uptime_s: state.started.elapsed().as_secs(),
        timestamp: rfc3339(ts),
        ts,
        database: if db_ok { "ok" } else { "unreachable" }.into(),
        engine: engine.into(),
        engine_heartbeat_age_ms: age.map(|a| a.as_millis() as u64),
        websocket_clients: state.hub.stats.snapshot().connections,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ApiJson(body)).into_response()
}

pub use qtm_core::calendar::rfc3339;
