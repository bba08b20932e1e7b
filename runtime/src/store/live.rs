//! What the live engine keeps between runs: per-symbol stream cursors, instance snapshots, the
//! version an instance runs, and the record of hot swaps.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreResult, now};
use crate::model::Bar;

/// How far the live engine got in one symbol's stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Cursor {
    /// Sequence number of the last bar whose effects are stored.
    pub seq: i64,
    /// Its time (unix seconds) and close.
    pub ts: i64,
    pub close: f64,
}

/// Every stored cursor, by symbol.
pub async fn cursors(store: &Store) -> StoreResult<HashMap<String, Cursor>> {
    let rows: Vec<(String, i64, i64, f64)> =
        sqlx::query_as("SELECT symbol, seq, ts, close FROM live_cursors")
            .fetch_all(store.pool())
            .await?;
    Ok(rows
        .into_iter()
        .map(|(s, seq, ts, close)| (s, Cursor { seq, ts, close }))
        .collect())
}

/// Insert or move one symbol's cursor: symbol, seq, ts, close, updated_at. The recorder writes
/// cursors through [`super::writer::WriteTx::save_cursors`], in the transaction of the bars'
/// effects.
pub(crate) const UPSERT_CURSOR: &str = "INSERT INTO live_cursors (symbol, seq, ts, close, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, close = excluded.close, updated_at = excluded.updated_at";

/// Bars of `symbol` after `after` (unix seconds; all when `None`), oldest first.
pub async fn history_after(
    store: &Store,
    symbol: &str,
    after: Option<i64>,
) -> StoreResult<Vec<Bar>> {
    let rows: Vec<(i64, f64, f64, f64, f64, f64)> = sqlx::query_as(
        "SELECT ts, open, high, low, close, volume FROM price_history WHERE symbol = ? AND ts > ? ORDER BY ts",
    )
    .bind(symbol)
    .bind(after.unwrap_or(i64::MIN))
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(ts, open, high, low, close, volume)| Bar {
            ts,
            open,
            high,
            low,
            close,
            volume,
        })
        .collect())
}

/// A strategy's latest snapshot, if it has one.
pub async fn snapshot(store: &Store, strategy_id: i64) -> StoreResult<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar::<_, Option<Vec<u8>>>(
        "SELECT last_snapshot FROM strategy_instances WHERE strategy_id = ? ORDER BY id LIMIT 1",
    )
    .bind(strategy_id)
    .fetch_optional(store.pool())
    .await?
    .flatten())
}

/// Point a strategy's default instance at another of its versions (swap, rollback).
pub async fn set_version(store: &Store, strategy_id: i64, version_id: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE strategy_instances SET version_id = ?, updated_at = ? WHERE strategy_id = ?",
    )
    .bind(version_id)
    .bind(now())
    .bind(strategy_id)
    .execute(store.pool())
    .await?;
    store.catalog_changed();
    Ok(())
}

/// One hot swap as it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow, utoipa::ToSchema)]
pub struct SwapRecord {
    pub id: i64,
    pub strategy_id: i64,
    /// Version numbers (not ids).
    pub from_version: Option<i64>,
    pub to_version: i64,
    /// `ok` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    /// How long the engine stood still for the swap, microseconds.
    pub pause_us: Option<f64>,
    pub user_id: Option<i64>,
    pub created_at: i64,
}

/// The fields of a new [`SwapRecord`].
#[derive(Debug, Clone)]
pub struct NewSwap<'a> {
    pub strategy_id: i64,
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub pause_us: Option<f64>,
    pub user_id: Option<i64>,
}

/// Record a swap attempt.
pub async fn record_swap(store: &Store, s: &NewSwap<'_>) -> StoreResult<SwapRecord> {
    Ok(sqlx::query_as::<_, SwapRecord>(
        "INSERT INTO instance_swaps (strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at",
    )
    .bind(s.strategy_id)
    .bind(s.from_version)
    .bind(s.to_version)
    .bind(s.outcome)
    .bind(s.reason)
    .bind(s.pause_us)
    .bind(s.user_id)
    .bind(now())
    .fetch_one(store.pool())
    .await?)
}

/// A strategy's swaps, oldest first.
pub async fn swaps(store: &Store, strategy_id: i64) -> StoreResult<Vec<SwapRecord>> {
    Ok(sqlx::query_as::<_, SwapRecord>(
        "SELECT id, strategy_id, from_version, to_version, outcome, reason, pause_us, user_id, created_at FROM instance_swaps WHERE strategy_id = ? ORDER BY id",
    )
    .bind(strategy_id)
    .fetch_all(store.pool())
    .await?)
}

/// Strategies whose default instance is enabled (the live engine resumes them on start).
pub async fn enabled_strategies(store: &Store) -> StoreResult<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT strategy_id FROM strategy_instances WHERE status = 'enabled' ORDER BY strategy_id",
    )
    .fetch_all(store.pool())
    .await?)
}

/// Every symbol with stored bars.
pub async fn symbols(store: &Store) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT symbol FROM assets ORDER BY symbol")
            .fetch_all(store.pool())
            .await?,
    )
}

/// The strategy a stored instance belongs to.
pub async fn strategy_of_instance(store: &Store, instance_id: i64) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT strategy_id FROM strategy_instances WHERE id = ?")
        .bind(instance_id)
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| super::StoreError::NotFound(format!("strategy instance {instance_id}")))
}
