//! The accounts' balances (`GET /api/portfolio`) and performance analytics
//! (`GET /api/analytics/performance`), from the paper accounts the live engine keeps.
//!
//! Each paper account (the manual one and one per strategy) starts with the live engine's
//! `initial_cash` (as `GET /api/strategies/{id}/performance` counts a strategy's), its cash
//! moved by its fills; open positions are valued as `GET /api/trades` values them.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::Trade;
use super::summaries::{book, live_data};
use crate::auth::access::Caller;
use crate::error::{ApiJson, ApiResult};
use crate::marks::PriceSource;
use crate::state::AppState;
use qtm_store::orders::{AccountId, AccountTotals};
use qtm_store::summaries::ClosedTrades;
use qtm_store::{self as store};

/// The portfolio and analytics routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(portfolio))
        .routes(routes!(performance))
}

// ---- the portfolio --------------------------------------------------------------------------

/// One open position of an account, at its mark.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Holding {
    /// The trade id (`GET /api/trades/{id}`).
    pub trade_id: i64,
    pub symbol: String,
    /// Signed units.
    pub quantity: f64,
    /// Average entry price.
    pub avg_price: f64,
    /// The mark (absent without any price: then valued at entry).
    pub mark_price: Option<f64>,
    /// Open time of the bar the mark is the close of, unix seconds.
    pub mark_ts: Option<i64>,
    /// `live` or `stored`.
    pub mark_source: Option<PriceSource>,
    /// quantity × mark.
    pub market_value: f64,
    /// quantity × (mark − entry).
    pub unrealized_pnl: f64,
}

impl From<&Trade> for Holding {
    fn from(t: &Trade) -> Self {
        Holding {
            trade_id: t.position.id,
            symbol: t.position.symbol.clone(),
            quantity: t.position.quantity,
            avg_price: t.position.avg_price,
            mark_price: t.mark_price,
            mark_ts: t.mark_ts,
            mark_source: t.mark_source,
            market_value: t.market_value,
            unrealized_pnl: t.unrealized_pnl,
        }
    }
}

/// One paper account's balances.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountBalance {
    /// `user:<id>` (a user's manual orders), `strategy:<id>`, or `manual` (earlier versions' shared manual account).
    #[schema(example = "user:1")]
    pub account: String,
    /// What it started with: the live engine's `initial_cash`.
    pub initial_cash: f64,
    /// initial_cash − cost of buys + proceeds of sells − fees.
    pub cash: f64,
    /// Σ quantity × mark of its open positions.
    pub market_value: f64,
    /// cash + market_value.
    pub equity: f64,
    /// (equity / initial_cash − 1) × 100.
    pub return_pct: f64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub fees: f64,
    /// Its open positions, oldest first.
    pub positions: Vec<Holding>,
}

/// The accounts added up.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PortfolioTotals {
    pub initial_cash: f64,
    pub cash: f64,
    pub market_value: f64,
    pub equity: f64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub fees: f64,
    pub open_positions: usize,
}

/// `GET /api/portfolio`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Portfolio {
    /// Unix seconds.
    pub as_of: i64,
    /// Whether the live market moved in the last minute (marks are live prices then).
    pub live_data: bool,
    /// Every account that traded, in this order: `manual` (earlier versions' shared manual
    /// account), users' accounts by id (a trader's own always listed), strategy accounts by
    /// id.
    pub accounts: Vec<AccountBalance>,
    pub totals: PortfolioTotals,
}

/// The paper accounts' balances: for each, its cash, its open positions at their marks,
/// market value, equity, realized and unrealized PnL and fees; and the totals over every
/// account. Each account starts with the live engine's `initial_cash`, so the totals count it
/// once per account (`GET /api/risk/metrics` instead treats the whole book as one account).
#[utoipa::path(get, path = "/api/portfolio", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Portfolio)))]
async fn portfolio(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<ApiJson<Portfolio>> {
    let initial = state.live.config().initial_cash;
    let mut b = book(&state).await?;
    if caller.role >= crate::auth::Role::Trader {
        // A trader sees their own account before they first trade.
        b.accounts
            .entry(AccountId::User(caller.user_id))
            .or_default();
    }
    let mut accounts = Vec::with_capacity(b.accounts.len());
    for (account, (totals, unrealized, _)) in &b.accounts {
        let mut positions: Vec<Holding> = b
            .open
            .iter()
            .filter(|t| t.position.account == *account)
            .map(Holding::from)
            .collect();
        positions.sort_by_key(|h| h.trade_id);
        let market_value = positions.iter().fold(0.0, |a, h| a + h.market_value);
        let cash = initial + totals.cash_flow;
        let equity = cash + market_value;
        accounts.push(AccountBalance {
            account: account.text(),
            initial_cash: initial,
            cash,
            market_value,
            equity,
            return_pct: pct(equity, initial),
            realized_pnl: totals.realized_pnl,
            unrealized_pnl: *unrealized,
            fees: totals.fees,
            positions,
        });
    }
    let sum = |f: fn(&AccountBalance) -> f64| accounts.iter().fold(0.0, |a, x| a + f(x));
    let totals = PortfolioTotals {
        initial_cash: sum(|a| a.initial_cash),
        cash: sum(|a| a.cash),
        market_value: sum(|a| a.market_value),
        equity: sum(|a| a.equity),
        realized_pnl: sum(|a| a.realized_pnl),
        unrealized_pnl: sum(|a| a.unrealized_pnl),
        fees: sum(|a| a.fees),
        open_positions: b.open.len(),
    };
    Ok(ApiJson(Portfolio {
        as_of: store::now(),
        live_data: live_data(&state),
        accounts,
        totals,
    }))
}

/// (a / b − 1) × 100; 0 when b is not positive.
fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 { (a / b - 1.0) * 100.0 } else { 0.0 }
}

// ---- performance ----------------------------------------------------------------------------

/// What closed trades add up to (a trade's result is its realized PnL net of its fees).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct TradeStats {
    /// Closed trades.
    pub trades: i64,
    pub wins: i64,
    pub losses: i64,
    /// wins / trades × 100 (null without a closed trade).
    pub win_rate_pct: Option<f64>,
    /// Σ winning results / |Σ losing results| (null without a loss).
    pub profit_factor: Option<f64>,
    /// Mean result (null without a closed trade).
    pub avg_trade: Option<f64>,
    pub best_trade: Option<f64>,
    pub worst_trade: Option<f64>,
}

impl TradeStats {
    fn of(c: &ClosedTrades) -> Self {
        TradeStats {
            trades: c.trades,
            wins: c.wins,
            losses: c.losses,
            win_rate_pct: (c.trades > 0).then(|| c.wins as f64 / c.trades as f64 * 100.0),
            profit_factor: (c.gross_loss < 0.0).then(|| c.gross_profit / -c.gross_loss),
            avg_trade: (c.trades > 0).then(|| (c.gross_profit + c.gross_loss) / c.trades as f64),
            best_trade: c.best,
            worst_trade: c.worst,
        }
    }

    fn add(a: &ClosedTrades, b: &ClosedTrades) -> ClosedTrades {
        ClosedTrades {
            trades: a.trades + b.trades,
            wins: a.wins + b.wins,
            losses: a.losses + b.losses,
            gross_profit: a.gross_profit + b.gross_profit,
            gross_loss: a.gross_loss + b.gross_loss,
            best: max_opt(a.best, b.best, f64::max),
            worst: max_opt(a.worst, b.worst, f64::min),
        }
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(pick(x, y)),
        (x, y) => x.or(y),
    }
}

/// Paper (live) results of an account.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaperPerformance {
    /// `user:<id>`, `strategy:<id>`, `manual`, or `book` for every account together.
    pub account: String,
    /// Starting capital: the live engine's `initial_cash` (per account; for the book, once
    /// per account).
    pub initial_cash: f64,
    /// Cash plus open positions at their marks.
    pub equity: f64,
    /// (equity / initial_cash − 1) × 100.
    pub return_pct: f64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub fees: f64,
    pub open_trades: usize,
    pub closed: TradeStats,
}

/// The metrics of a strategy's newest finished backtest (`docs/metrics.md`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacktestPerformance {
    pub backtest_id: i64,
    pub finished_at: Option<i64>,
    pub total_return_pct: Option<f64>,
    pub sharpe: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub win_rate_pct: Option<f64>,
    pub profit_factor: Option<f64>,
    /// Closed trades.
    pub n_trades: Option<i64>,
}

/// One strategy's performance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyPerformance {
    pub strategy_id: i64,
    pub name: String,
    /// Its instance's status (`enabled`, `disabled`, `halted`, `failed`).
    pub status: String,
    /// Its paper account (`strategy:<id>`), as `GET /api/strategies/{id}/performance`
    /// shows it under `paper`, with its closed trades' statistics.
    pub paper: PaperPerformance,
    /// Its newest finished backtest (as `latest` there), with Sharpe and max drawdown; null
    /// without one.
    pub backtest: Option<BacktestPerformance>,
}

/// `GET /api/analytics/performance`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PerformanceReport {
    /// Unix seconds.
    pub as_of: i64,
    /// Every paper account together.
    pub book: PaperPerformance,
    /// The book's drawdown below its starting capital, percent, as `GET /api/risk/metrics`
    /// computes it (no equity history is stored, so not from the peak).
    pub drawdown_pct: f64,
    /// Each paper account that traded or holds a position (`manual` and strategies').
    pub accounts: Vec<PaperPerformance>,
    /// Every strategy, by id.
    pub strategies: Vec<StrategyPerformance>,
}

/// Performance over the whole book and per strategy: paper results (return, realized and
/// unrealized PnL, fees, and the closed trades' count, win rate, profit factor, average, best
/// and worst) per account and for all together, and each strategy's newest finished backtest
/// (return, Sharpe, max drawdown, win rate, profit factor, trades), as
/// `GET /api/strategies/{id}/performance` reports them. Sharpe and max drawdown come from the
/// backtests only: the store keeps no equity history of paper trading.
#[utoipa::path(get, path = "/api/analytics/performance", tag = "summaries",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = PerformanceReport)))]
async fn performance(State(state): State<AppState>) -> ApiResult<ApiJson<PerformanceReport>> {
    let initial = state.live.config().initial_cash;
    let b = book(&state).await?;
    let closed: BTreeMap<AccountId, ClosedTrades> =
        store::summaries::closed_trades_by_account(&state.store)
            .await?
            .into_iter()
            .collect();
    let market_value = |account: AccountId| {
        b.open
            .iter()
            .filter(|t| t.position.account == account)
            .fold(0.0, |a, t| a + t.market_value)
    };
    let paper = |name: String,
                 initial: f64,
                 totals: &AccountTotals,
                 unrealized: f64,
                 open: usize,
                 value: f64,
                 c: &ClosedTrades| {
        let equity = initial + totals.cash_flow + value;
        PaperPerformance {
            account: name,
            initial_cash: initial,
            equity,
            return_pct: pct(equity, initial),
            realized_pnl: totals.realized_pnl,
            unrealized_pnl: unrealized,
            fees: totals.fees,
            open_trades: open,
            closed: TradeStats::of(c),
        }
    };
    let mut accounts = Vec::new();
    let mut all_closed = ClosedTrades::default();
    let mut all_totals = AccountTotals::default();
    let (mut all_unrealized, mut all_value) = (0.0, 0.0);
    for (account, (totals, unrealized, open)) in &b.accounts {
        let c = closed.get(account).copied().unwrap_or_default();
        let value = market_value(*account);
        accounts.push(paper(
            account.text(),
            initial,
            totals,
            *unrealized,
            *open,
            value,
            &c,
        ));
        all_closed = TradeStats::add(&all_closed, &c);
        all_totals.cash_flow += totals.cash_flow;
        all_totals.fees += totals.fees;
        all_totals.realized_pnl += totals.realized_pnl;
        all_unrealized += unrealized;
        all_value += value;
    }
    let book_initial = initial * accounts.len().max(1) as f64;
    let book_perf = paper(
        "book".into(),
        book_initial,
        &all_totals,
        all_unrealized,
        b.open.len(),
        all_value,
        &all_closed,
    );
    let latest = store::backtests::latest_done(&state.store).await?;
    let mut strategies = Vec::new();
    for r in store::strategies::list(&state.store).await? {
        let id = r.strategy.id;
        let account = qtm_live::strategy_account(id);
        let (totals, unrealized, open) = b.accounts.get(&account).copied().unwrap_or_default();
        let c = closed.get(&account).copied().unwrap_or_default();
        let backtest = latest.get(&id).map(|bt| {
            let m = |k: &str| {
                bt.metrics
                    .as_ref()
                    .and_then(|m| m.get(k))
                    .and_then(Value::as_f64)
            };
            BacktestPerformance {
                backtest_id: bt.id,
                finished_at: bt.finished_at,
                total_return_pct: m("total_return_pct"),
                sharpe: m("sharpe"),
                max_drawdown_pct: m("max_drawdown_pct"),
                win_rate_pct: m("win_rate_pct"),
                profit_factor: m("profit_factor"),
                n_trades: bt
                    .metrics
                    .as_ref()
                    .and_then(|m| m.get("n_trades"))
                    .and_then(Value::as_i64),
            }
        });
        strategies.push(StrategyPerformance {
            strategy_id: id,
            name: r.strategy.name,
            status: r.instance.status,
            paper: paper(
                account.text(),
                initial,
                &totals,
                unrealized,
                open,
                market_value(account),
                &c,
            ),
            backtest,
        });
    }
    let drawdown_pct = super::risk::snapshot(&state).await?.metrics.drawdown_pct;
    Ok(ApiJson(PerformanceReport {
        as_of: store::now(),
        book: book_perf,
        drawdown_pct,
        accounts,
        strategies,
    }))
}
