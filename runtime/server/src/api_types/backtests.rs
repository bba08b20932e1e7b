//! Backtests.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use qtm_store::backtests as rows;

/// A backtest without its (large) trade list and equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Backtest {
    pub id: i64,
    /// `None` once the strategy was deleted.
    pub strategy_id: Option<i64>,
    pub version_id: Option<i64>,
    /// The version number that ran (kept even after the strategy is deleted).
    pub version: Option<i64>,
    pub user_id: Option<i64>,
    /// `queued`, `running`, `done`, `failed` (timed out among other failures, with the reason
    /// in `error`) or `cancelled`.
    pub status: String,
    /// The request as resolved (parameters with defaults, data files, costs).
    #[schema(value_type = Object)]
    pub request: Value,
    pub bars_total: Option<i64>,
    pub bars_done: i64,
    /// Summary statistics once done.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Value>,
    pub trades_sha256: Option<String>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl From<rows::Backtest> for Backtest {
    fn from(b: rows::Backtest) -> Self {
        Backtest {
            id: b.id,
            strategy_id: b.strategy_id,
            version_id: b.version_id,
            version: b.version,
            user_id: b.user_id,
            status: b.status,
            request: b.request,
            bars_total: b.bars_total,
            bars_done: b.bars_done,
            metrics: b.metrics,
            trades_sha256: b.trades_sha256,
            error: b.error,
            created_at: b.created_at,
            started_at: b.started_at,
            finished_at: b.finished_at,
        }
    }
}

/// A backtest with its trades and equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BacktestDetail {
    #[serde(flatten)]
    pub backtest: Backtest,
    /// Every trade (`symbol, entry_ts, exit_ts, entry_price, exit_price, quantity, pnl,
    /// fees`); empty until done.
    #[schema(value_type = Vec<Object>)]
    pub trades: Value,
    /// The equity curve reduced for charts (`ts, equity, in_market`); empty until done.
    #[schema(value_type = Vec<Object>)]
    pub equity: Value,
}

impl From<rows::BacktestDetail> for BacktestDetail {
    fn from(d: rows::BacktestDetail) -> Self {
        BacktestDetail {
            backtest: d.backtest.into(),
            trades: d.trades,
            equity: d.equity,
        }
    }
}
