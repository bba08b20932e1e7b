//! Backtests run through the API: the request, the status as it runs, and what it produced
//! (metrics, the trade list and its hash, the equity curve reduced for charts, or the error).
//! A backtest outlives its strategy: deleting the strategy only detaches it.

use serde_json::Value;
use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, from_json, now, to_json, with_pool};
use qtm_core::model::Bar;

/// A backtest without its (large) trade list and equity curve.
#[derive(Debug, Clone, PartialEq)]
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
    pub request: Value,
    pub bars_total: Option<i64>,
    pub bars_done: i64,
    /// Summary statistics once done.
    pub metrics: Option<Value>,
    pub trades_sha256: Option<String>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A backtest with its trades and equity curve.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestDetail {
    pub backtest: Backtest,
    /// Every trade (`symbol, entry_ts, exit_ts, entry_price, exit_price, quantity, pnl,
    /// fees`); empty until done.
    pub trades: Value,
    /// The equity curve reduced for charts (`ts, equity, in_market`); empty until done.
    pub equity: Value,
}

/// What a finished backtest produced.
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub bars_done: i64,
    pub metrics: &'a Value,
    pub trades_sha256: &'a str,
    pub trades: &'a Value,
    pub equity: &'a Value,
}

const COLUMNS: &str = "b.id, b.strategy_id, b.version_id, json_extract(b.request, '$.version') AS version, b.user_id, b.status, b.request, b.bars_total, b.bars_done, b.metrics, b.trades_sha256, b.error, b.created_at, b.started_at, b.finished_at";

/// [`COLUMNS`] on PostgreSQL, where the request text is read as JSON by a cast.
const COLUMNS_PG: &str = "b.id, b.strategy_id, b.version_id, (b.request::jsonb ->> 'version')::BIGINT AS version, b.user_id, b.status, b.request, b.bars_total, b.bars_done, b.metrics, b.trades_sha256, b.error, b.created_at, b.started_at, b.finished_at";

/// The columns of [`Row`] in `store`'s dialect.
fn columns(store: &Store) -> &'static str {
    super::dialect(store, COLUMNS, COLUMNS_PG)
}

#[derive(FromRow)]
struct Row {
    id: i64,
    strategy_id: Option<i64>,
    version_id: Option<i64>,
    version: Option<i64>,
    user_id: Option<i64>,
    status: String,
    request: String,
    bars_total: Option<i64>,
    bars_done: i64,
    metrics: Option<String>,
    trades_sha256: Option<String>,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

impl Row {
    fn decode(self) -> StoreResult<Backtest> {
        Ok(Backtest {
            id: self.id,
            strategy_id: self.strategy_id,
            version_id: self.version_id,
            version: self.version,
            user_id: self.user_id,
            status: self.status,
            request: from_json("backtests", &self.request)?,
            bars_total: self.bars_total,
            bars_done: self.bars_done,
            metrics: self
                .metrics
                .as_deref()
                .map(|m| from_json("backtests", m))
                .transpose()?,
            trades_sha256: self.trades_sha256,
            error: self.error,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

/// Record a queued backtest; `request` should carry the `version` number that will run.
pub async fn create(
    store: &Store,
    strategy_id: i64,
    version_id: i64,
    user_id: Option<i64>,
    request: &Value,
) -> StoreResult<Backtest> {
    let id: i64 = with_pool!(store, p => sqlx::query_scalar(
        "INSERT INTO backtests (strategy_id, version_id, user_id, status, request, created_at) VALUES ($1, $2, $3, 'queued', $4, $5) RETURNING id",
    )
    .bind(strategy_id)
    .bind(version_id)
    .bind(user_id)
    .bind(to_json(request))
    .bind(now())
    .fetch_one(p)
    .await)?;
    summary(store, id).await
}

/// Mark a queued backtest running, with the number of bars it will read if known. `false`
/// when it is no longer queued (cancelled meanwhile).
pub async fn start(store: &Store, id: i64, bars_total: Option<i64>) -> StoreResult<bool> {
    let done = with_pool!(store, p => sqlx::query(
        "UPDATE backtests SET status = 'running', bars_total = $1, started_at = $2 WHERE id = $3 AND status = 'queued'",
    )
    .bind(bars_total)
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(done > 0)
}

/// Record how far a running backtest got.
pub async fn progress(store: &Store, id: i64, bars_done: i64) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query("UPDATE backtests SET bars_done = $1 WHERE id = $2 AND status = 'running'")
        .bind(bars_done)
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Store the results of a running backtest that completed. `false` when it is no longer
/// running (cancelled meanwhile): a cancelled backtest stays cancelled.
pub async fn finish(store: &Store, id: i64, f: &Finished<'_>) -> StoreResult<bool> {
    let done = with_pool!(store, p => sqlx::query(
        "UPDATE backtests SET status = 'done', bars_done = $1, metrics = $2, trades_sha256 = $3, trades = $4, equity = $5, error = NULL, finished_at = $6 WHERE id = $7 AND status = 'running'",
    )
    .bind(f.bars_done)
    .bind(to_json(f.metrics))
    .bind(f.trades_sha256)
    .bind(to_json(f.trades))
    .bind(to_json(f.equity))
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    // The strategy list shows each strategy's latest finished backtest.
    store.catalog_changed();
    Ok(done > 0)
}

/// Record why a queued or running backtest failed. `false` when it had already ended
/// (cancelled meanwhile).
pub async fn fail(store: &Store, id: i64, error: &str) -> StoreResult<bool> {
    let done = with_pool!(store, p => sqlx::query(
        "UPDATE backtests SET status = 'failed', error = $1, finished_at = $2 WHERE id = $3 AND status IN ('queued', 'running')",
    )
    .bind(error)
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(done > 0)
}

/// Mark a queued or running backtest cancelled, with why. `false` when it had already ended.
pub async fn cancel(store: &Store, id: i64, reason: &str) -> StoreResult<bool> {
    let done = with_pool!(store, p => sqlx::query(
        "UPDATE backtests SET status = 'cancelled', error = $1, finished_at = $2 WHERE id = $3 AND status IN ('queued', 'running')",
    )
    .bind(reason)
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(done > 0)
}

/// Fail every backtest left queued or running by a previous process (call at start-up);
/// returns how many there were.
pub async fn fail_interrupted(store: &Store) -> StoreResult<u64> {
    Ok(with_pool!(store, p => sqlx::query(
        "UPDATE backtests SET status = 'failed', error = 'interrupted: the server stopped before the backtest finished', finished_at = $1 WHERE status IN ('queued', 'running')",
    )
    .bind(now())
    .execute(p)
    .await.map(|r| r.rows_affected()))?)
}

/// A backtest with its trades and equity curve.
pub async fn get(store: &Store, id: i64) -> StoreResult<BacktestDetail> {
    let row: Option<(Option<String>, Option<String>)> = with_pool!(store, p => sqlx::query_as("SELECT trades, equity FROM backtests WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await)?;
    let Some((trades, equity)) = row else {
        return Err(StoreError::NotFound(format!("backtest {id}")));
    };
    let backtest = summary(store, id).await?;
    let decode = |text: Option<String>| -> StoreResult<Value> {
        match text {
            Some(t) => from_json("backtests", &t),
            None => Ok(Value::Array(Vec::new())),
        }
    };
    Ok(BacktestDetail {
        backtest,
        trades: decode(trades)?,
        equity: decode(equity)?,
    })
}

/// A backtest without trades and equity.
pub async fn summary(store: &Store, id: i64) -> StoreResult<Backtest> {
    with_pool!(store, p => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM backtests b WHERE b.id = $1",
        columns(store)
    )))
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("backtest {id}")))?
    .decode()
}

/// Backtests newest first, of one strategy or of all, with an id below `before` when given,
/// at most `limit`.
pub async fn list(
    store: &Store,
    strategy_id: Option<i64>,
    before: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<Backtest>> {
    // NULL parameters match everything, so one statement serves every filter.
    let rows = with_pool!(store, p => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM backtests b WHERE ($1 IS NULL OR b.strategy_id = $2) AND ($3 IS NULL OR b.id < $4) ORDER BY b.id DESC LIMIT $5",
        columns(store)
    )))
    .bind(strategy_id)
    .bind(strategy_id)
    .bind(before)
    .bind(before)
    .bind(limit)
    .fetch_all(p)
    .await)?;
    rows.into_iter().map(Row::decode).collect()
}

/// The newest finished backtest of each strategy, by strategy id (for listings).
pub async fn latest_done(store: &Store) -> StoreResult<std::collections::HashMap<i64, Backtest>> {
    let rows = with_pool!(store, p => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM backtests b WHERE b.id IN (SELECT MAX(id) FROM backtests WHERE status = 'done' AND strategy_id IS NOT NULL GROUP BY strategy_id)",
        columns(store)
    )))
    .fetch_all(p)
    .await)?;
    let mut out = std::collections::HashMap::new();
    for r in rows {
        let b = r.decode()?;
        if let Some(sid) = b.strategy_id {
            out.insert(sid, b);
        }
    }
    Ok(out)
}

/// A symbol's stored bars, oldest first, for a backtest over the store's history; a symbol
/// without history is [`StoreError::NotFound`].
pub async fn price_history(store: &Store, symbol: &str) -> StoreResult<Vec<Bar>> {
    let bars = super::live::history_after(store, symbol, None).await?;
    if bars.is_empty() {
        return Err(StoreError::NotFound(format!("price history of {symbol}")));
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::{self, NewStrategy, NewVersion};
    use serde_json::json;

    #[tokio::test]
    async fn lifecycle_listing_and_detaching_on_strategy_delete() {
        for s in crate::test_stores().await {
            let d = json!({"name": "t", "params": []});
            let rec = strategies::create(
                &s,
                &NewStrategy {
                    name: "x",
                    description: "",
                    owner_id: None,
                    source: "upload",
                    cloned_from: None,
                },
                &NewVersion {
                    content_sha256: "aa",
                    contract_version: "qtm:strategy@0.1.0",
                    describe: &d,
                    component: b"c",
                    created_by: None,
                },
                &json!({}),
                &[],
            )
            .await
            .unwrap();
            let sid = rec.strategy.id;
            let b = create(
                &s,
                sid,
                rec.current_version.id,
                None,
                &json!({"version": 1, "data": ["a.csv"]}),
            )
            .await
            .unwrap();
            assert_eq!((b.status.as_str(), b.version), ("queued", Some(1)));
            start(&s, b.id, Some(100)).await.unwrap();
            progress(&s, b.id, 40).await.unwrap();
            let mid = summary(&s, b.id).await.unwrap();
            assert_eq!(
                (mid.status.as_str(), mid.bars_done, mid.bars_total),
                ("running", 40, Some(100))
            );
            let metrics = json!({"sharpe": 1.5, "n_trades": 3});
            let trades = json!([{"symbol": "A"}]);
            let equity = json!([{"ts": 1, "equity": 1.0, "in_market": false}]);
            finish(
                &s,
                b.id,
                &Finished {
                    bars_done: 100,
                    metrics: &metrics,
                    trades_sha256: "ff",
                    trades: &trades,
                    equity: &equity,
                },
            )
            .await
            .unwrap();
            let full = get(&s, b.id).await.unwrap();
            assert_eq!(full.backtest.status, "done");
            assert_eq!(full.backtest.metrics, Some(metrics));
            assert_eq!((full.trades, full.equity), (trades, equity));
            assert_eq!(latest_done(&s).await.unwrap()[&sid].id, b.id);

            let b2 = create(&s, sid, rec.current_version.id, None, &json!({}))
                .await
                .unwrap();
            assert_eq!(fail_interrupted(&s).await.unwrap(), 1);
            // An ended backtest stays as it ended.
            assert!(!cancel(&s, b.id, "too late").await.unwrap());
            assert!(!fail(&s, b.id, "too late").await.unwrap());
            let failed = get(&s, b2.id).await.unwrap();
            assert_eq!(failed.backtest.status, "failed");
            assert!(failed.backtest.error.unwrap().starts_with("interrupted"));
            assert_eq!(failed.trades, json!([]));
            assert_eq!(list(&s, Some(sid), None, 10).await.unwrap().len(), 2);

            // Cancelled while running: results that arrive later are not stored over it.
            let b3 = create(&s, sid, rec.current_version.id, None, &json!({}))
                .await
                .unwrap();
            assert!(start(&s, b3.id, None).await.unwrap());
            assert!(cancel(&s, b3.id, "cancelled by alice").await.unwrap());
            assert!(
                !finish(
                    &s,
                    b3.id,
                    &Finished {
                        bars_done: 1,
                        metrics: &json!({}),
                        trades_sha256: "00",
                        trades: &json!([]),
                        equity: &json!([]),
                    }
                )
                .await
                .unwrap()
            );
            assert!(!fail(&s, b3.id, "late").await.unwrap());
            let c = summary(&s, b3.id).await.unwrap();
            assert_eq!(
                (c.status.as_str(), c.error.as_deref()),
                ("cancelled", Some("cancelled by alice"))
            );
            // Cancelled while queued: it never starts.
            let b4 = create(&s, sid, rec.current_version.id, None, &json!({}))
                .await
                .unwrap();
            assert!(cancel(&s, b4.id, "x").await.unwrap());
            assert!(!start(&s, b4.id, None).await.unwrap());
            assert_eq!(summary(&s, b4.id).await.unwrap().status, "cancelled");

            strategies::delete(&s, sid).await.unwrap();
            let kept = summary(&s, b.id).await.unwrap();
            assert_eq!(
                (kept.strategy_id, kept.version_id, kept.version),
                (None, None, Some(1))
            );
            assert!(
                matches!(get(&s, 999).await, Err(StoreError::NotFound(m)) if m == "backtest 999")
            );
        }
    }
}
