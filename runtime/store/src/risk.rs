//! Risk limits (account-wide and per strategy), the risk alerts raised by the engine and the
//! API, the kill switches in force, and the price marks risk numbers are computed at.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::FromRow;

use super::{Store, StoreResult, in_transaction, now, with_pool};
use qtm_oms::risk::RiskLimits;

/// Scope name of the account-wide limits.
pub const ACCOUNT: &str = "account";

/// The stored account-wide limits, if they were ever set.
pub async fn account_limits(store: &Store) -> StoreResult<Option<RiskLimits>> {
    limits(store, ACCOUNT).await
}

/// The stored limits of a scope (`account` or `strategy:<id>`).
pub async fn limits(store: &Store, scope: &str) -> StoreResult<Option<RiskLimits>> {
    let text: Option<String> = with_pool!(store, p => sqlx::query_scalar("SELECT limits FROM risk_limits WHERE scope = $1")
        .bind(scope)
        .fetch_optional(p)
        .await)?;
    text.map(|t| super::from_json("risk_limits", &t))
        .transpose()
}

/// Store the limits of a scope.
pub async fn set_limits(
    store: &Store,
    scope: &str,
    limits: &RiskLimits,
    user_id: Option<i64>,
) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query(
        "INSERT INTO risk_limits (scope, limits, updated_by, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO UPDATE SET limits = excluded.limits, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(scope)
    .bind(super::to_json(limits))
    .bind(user_id)
    .bind(now())
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

// ---- price marks --------------------------------------------------------------------------

/// The latest price of a symbol: the close of its newest bar in `price_history`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Open time of the bar, unix seconds.
    pub ts: i64,
    /// Its close.
    pub price: f64,
}

/// The stored mark of `symbol`: the close of its newest bar. The server prices through
/// the server's `marks`, which prefers the live engine's last price and falls back to the
/// stored summary of the asset.
pub async fn last_price(store: &Store, symbol: &str) -> StoreResult<Option<Mark>> {
    let row: Option<(i64, f64)> = with_pool!(store, p => sqlx::query_as(
        "SELECT ts, close FROM price_history WHERE symbol = $1 ORDER BY ts DESC LIMIT 1",
    )
    .bind(symbol)
    .fetch_optional(p)
    .await)?;
    Ok(row.map(|(ts, price)| Mark { ts, price }))
}

/// Marks of several symbols (those without any bar are absent).
pub async fn last_prices(store: &Store, symbols: &[String]) -> StoreResult<HashMap<String, Mark>> {
    let mut out = HashMap::new();
    for s in symbols {
        if !out.contains_key(s)
            && let Some(m) = last_price(store, s).await?
        {
            out.insert(s.clone(), m);
        }
    }
    Ok(out)
}

/// Record a price mark for `symbol` at `ts`: a flat bar (open = high = low = close = `price`,
/// no volume) in `price_history`, creating a bare asset row (`source = "mark"`) if the symbol
/// is unknown. For operators and tests that need a price without a CSV import; an existing
/// bar at `ts` is overwritten.
pub async fn record_mark(store: &Store, symbol: &str, ts: i64, price: f64) -> StoreResult<()> {
    let t = now();
    in_transaction!(store, tx => {
    sqlx::query(
        "INSERT INTO assets (symbol, name, asset_class, currency, source, first_ts, last_ts, bars, created_at, updated_at) VALUES ($1, $2, 'unknown', 'USD', 'mark', $3, $4, 0, $5, $6) ON CONFLICT (symbol) DO NOTHING",
    )
    .bind(symbol)
    .bind(symbol)
    .bind(ts)
    .bind(ts)
    .bind(t)
    .bind(t)
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO price_history (symbol, ts, open, high, low, close, volume) VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (symbol, ts) DO UPDATE SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close",
    )
    .bind(symbol)
    .bind(ts)
    .bind(price)
    .bind(price)
    .bind(price)
    .bind(price)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() > 0 {
        // The asset's summary (last price, daily change) is what the server falls back to
        // for symbols the live engine has not priced: keep it in step with the bars.
        super::market::refresh_summary((&mut *tx).into(), symbol, None).await?;
    }
    Ok(())
    })?;
    super::market::invalidate_assets(store);
    Ok(())
}

// ---- alerts -------------------------------------------------------------------------------

/// One risk alert: a rejected order, a kill switch engaged or released.
// `Serialize` only because the live engine's events carry it; the API's JSON is the server's
// `api_types`, converted from this row.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct RiskAlert {
    pub id: i64,
    /// Unix seconds.
    pub ts: i64,
    /// `account` or `strategy:<id>`.
    pub scope: String,
    /// `order_rejected`, `kill_switch`, `kill_switch_released`, …
    pub kind: String,
    pub message: String,
    pub strategy_id: Option<i64>,
}

/// Append an alert.
pub async fn add_alert(
    store: &Store,
    scope: &str,
    kind: &str,
    message: &str,
    strategy_id: Option<i64>,
) -> StoreResult<RiskAlert> {
    let ts = now();
    let id: i64 = with_pool!(store, p => sqlx::query_scalar(
        "INSERT INTO risk_alerts (ts, scope, kind, message, strategy_id) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(ts)
    .bind(scope)
    .bind(kind)
    .bind(message)
    .bind(strategy_id)
    .fetch_one(p)
    .await)?;
    Ok(RiskAlert {
        id,
        ts,
        scope: scope.to_string(),
        kind: kind.to_string(),
        message: message.to_string(),
        strategy_id,
    })
}

/// The newest `limit` alerts at or after `since` (unix seconds) with an id below `before`,
/// newest first (by id: alerts are stored as they are raised, so ids follow their times).
pub async fn alerts(
    store: &Store,
    limit: i64,
    since: Option<i64>,
    before: Option<i64>,
) -> StoreResult<Vec<RiskAlert>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, RiskAlert>(
        "SELECT id, ts, scope, kind, message, strategy_id FROM risk_alerts WHERE ts >= $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(since.unwrap_or(i64::MIN))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(p)
    .await)?)
}

/// Number of alerts at or after `since`, and the time of the newest alert overall.
pub async fn alert_stats(store: &Store, since: i64) -> StoreResult<(i64, Option<i64>)> {
    let row: (i64, Option<i64>) = with_pool!(store, p => sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM risk_alerts WHERE ts >= $1), (SELECT MAX(ts) FROM risk_alerts)",
    )
    .bind(since)
    .fetch_one(p)
    .await)?;
    Ok(row)
}

// ---- kill switch ----------------------------------------------------------------------------

/// A kill switch in force.
// `Serialize` only because the live engine's events carry it; the API's JSON is the server's
// `api_types`, converted from this row.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct Halt {
    /// `account` or `strategy:<id>`.
    pub scope: String,
    pub reason: String,
    pub halted_by: Option<i64>,
    /// Unix seconds.
    pub halted_at: i64,
}

/// Engage the kill switch of `scope`. Returns the halt in force: a scope already halted keeps
/// its first reason and time.
pub async fn halt(
    store: &Store,
    scope: &str,
    reason: &str,
    user_id: Option<i64>,
) -> StoreResult<Halt> {
    // One statement, so a concurrent resume cannot slip between "insert" and "read back";
    // the no-op update keeps the first reason and makes RETURNING answer on conflict too.
    Ok(with_pool!(store, p => sqlx::query_as::<_, Halt>(
        "INSERT INTO risk_halts (scope, reason, halted_by, halted_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope) DO UPDATE SET reason = risk_halts.reason \
         RETURNING scope, reason, halted_by, halted_at",
    )
    .bind(scope)
    .bind(reason)
    .bind(user_id)
    .bind(now())
    .fetch_one(p)
    .await)?)
}

/// Release the kill switch of `scope`; returns the halt that was in force, if any.
pub async fn resume(store: &Store, scope: &str) -> StoreResult<Option<Halt>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, Halt>(
        "DELETE FROM risk_halts WHERE scope = $1 RETURNING scope, reason, halted_by, halted_at",
    )
    .bind(scope)
    .fetch_optional(p)
    .await)?)
}

/// The kill switch of `scope`, if engaged.
pub async fn halted(store: &Store, scope: &str) -> StoreResult<Option<Halt>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, Halt>(
        "SELECT scope, reason, halted_by, halted_at FROM risk_halts WHERE scope = $1",
    )
    .bind(scope)
    .fetch_optional(p)
    .await)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_alerts_and_halts_round_trip() {
        for s in crate::test_stores().await {
            assert_eq!(last_price(&s, "GOOG").await.unwrap(), None);
            record_mark(&s, "GOOG", 100, 10.0).await.unwrap();
            record_mark(&s, "GOOG", 300, 30.0).await.unwrap();
            record_mark(&s, "GOOG", 200, 20.0).await.unwrap();
            assert_eq!(
                last_price(&s, "GOOG").await.unwrap(),
                Some(Mark {
                    ts: 300,
                    price: 30.0
                })
            );
            let marks = last_prices(&s, &["GOOG".into(), "NONE".into()])
                .await
                .unwrap();
            assert_eq!(marks.len(), 1);
            // The asset summary, which the server falls back to, follows the marks.
            let a = crate::market::asset(&s, "GOOG").await.unwrap();
            assert_eq!(
                (a.last_ts, a.last_price, a.bars),
                (Some(300), Some(30.0), 3)
            );
            assert_eq!((a.ref_ts, a.ref_price), (Some(100), Some(10.0)));

            let a = add_alert(&s, ACCOUNT, "order_rejected", "too big", None)
                .await
                .unwrap();
            let b = add_alert(&s, ACCOUNT, "kill_switch", "stop", None)
                .await
                .unwrap();
            let listed = alerts(&s, 10, None, None).await.unwrap();
            assert_eq!(
                listed.iter().map(|x| x.id).collect::<Vec<_>>(),
                [b.id, a.id]
            );
            assert_eq!(alerts(&s, 1, None, None).await.unwrap().len(), 1);
            assert!(
                alerts(&s, 10, Some(now() + 10), None)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(alert_stats(&s, 0).await.unwrap().0, 2);

            assert_eq!(halted(&s, ACCOUNT).await.unwrap(), None);
            let h = halt(&s, ACCOUNT, "first", None).await.unwrap();
            assert_eq!(h.reason, "first");
            // A second press keeps the first reason.
            assert_eq!(
                halt(&s, ACCOUNT, "second", None).await.unwrap().reason,
                "first"
            );
            assert_eq!(resume(&s, ACCOUNT).await.unwrap().unwrap().reason, "first");
            assert_eq!(resume(&s, ACCOUNT).await.unwrap(), None);
        }
    }

    /// Halts racing resumes (an admin double-clicking beside another) never fail: the halt
    /// answers with whatever halt is in force at its statement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn halts_racing_resumes_always_answer() {
        for s in crate::test_stores().await {
            let mut tasks = Vec::new();
            for i in 0..40 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    if i % 2 == 0 {
                        halt(&s, ACCOUNT, &format!("press {i}"), None)
                            .await
                            .map(|_| ())
                    } else {
                        resume(&s, ACCOUNT).await.map(|_| ())
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
    }
}
