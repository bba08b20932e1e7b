//! Read-only aggregates for the dashboard-style views (`/api/pnl/summary`,
//! `/api/dashboard/summary`, `/api/notifications`): each account's totals, trades closed
//! since a time, and one feed of what happened, merged from the tables that record it.

use super::orders::{AccountId, AccountTotals};
use super::{Store, StoreResult, with_pool};

/// The totals of every account that has any ([`super::orders::totals`] per account), by
/// account name.
pub async fn totals_by_account(store: &Store) -> StoreResult<Vec<(AccountId, AccountTotals)>> {
    let rows: Vec<(String, f64, f64, f64)> = with_pool!(store, p => sqlx::query_as(
        "SELECT account, trade_cash, fees, realized_pnl FROM account_totals ORDER BY account",
    )
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .filter_map(|(account, cash, fees, realized_pnl)| {
            let account = account.parse().ok()?;
            Some((
                account,
                AccountTotals {
                    cash_flow: cash - fees,
                    fees,
                    realized_pnl,
                },
            ))
        })
        .collect())
}

/// Number of trades (positions) closed at or after `since` (unix seconds).
pub async fn closed_since(store: &Store, since: i64) -> StoreResult<i64> {
    Ok(with_pool!(store, p => sqlx::query_scalar(
        "SELECT COUNT(*) FROM positions WHERE closed_at IS NOT NULL AND closed_at >= $1",
    )
    .bind(since)
    .fetch_one(p)
    .await)?)
}

/// What the closed trades of one account add up to; a trade's result is its realized PnL
/// net of its fees.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClosedTrades {
    pub trades: i64,
    /// Trades with a result above 0, and below 0.
    pub wins: i64,
    pub losses: i64,
    /// Σ of the winning results, and of the losing ones (≤ 0).
    pub gross_profit: f64,
    pub gross_loss: f64,
    /// Best and worst result.
    pub best: Option<f64>,
    pub worst: Option<f64>,
}

/// [`ClosedTrades`] of every account with a closed trade.
pub async fn closed_trades_by_account(
    store: &Store,
) -> StoreResult<Vec<(AccountId, ClosedTrades)>> {
    type Row = (String, i64, i64, i64, f64, f64, Option<f64>, Option<f64>);
    let rows: Vec<Row> = with_pool!(store, p => sqlx::query_as(
        "SELECT account, COUNT(*), \
           SUM(CASE WHEN realized_pnl - fees > 0 THEN 1 ELSE 0 END), \
           SUM(CASE WHEN realized_pnl - fees < 0 THEN 1 ELSE 0 END), \
           SUM(CASE WHEN realized_pnl - fees > 0 THEN realized_pnl - fees ELSE 0.0 END), \
           SUM(CASE WHEN realized_pnl - fees < 0 THEN realized_pnl - fees ELSE 0.0 END), \
           MAX(realized_pnl - fees), MIN(realized_pnl - fees) \
         FROM positions WHERE closed_at IS NOT NULL GROUP BY account ORDER BY account",
    )
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(account, trades, wins, losses, gross_profit, gross_loss, best, worst)| {
                Some((
                    account.parse().ok()?,
                    ClosedTrades {
                        trades,
                        wins,
                        losses,
                        gross_profit,
                        gross_loss,
                        best,
                        worst,
                    },
                ))
            },
        )
        .collect())
}

/// Where a [`FeedItem`] comes from; also its rank among items of the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FeedSource {
    /// A successful call of a lifecycle route, from the audit log.
    Audit = 0,
    /// A risk alert.
    Alert = 1,
    /// A backtest that ended.
    Backtest = 2,
}

impl FeedSource {
    /// The rank stored in the feed's key.
    pub fn rank(self) -> i64 {
        self as i64
    }

    fn of(rank: i64) -> Option<Self> {
        match rank {
            0 => Some(FeedSource::Audit),
            1 => Some(FeedSource::Alert),
            2 => Some(FeedSource::Backtest),
            _ => None,
        }
    }
}

/// One row of the feed. Its key `(ts, source, id)` orders the feed, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// Unix seconds.
    pub ts: i64,
    pub source: FeedSource,
    /// The row's id in its own table.
    pub id: i64,
    /// Alert: its kind; audit: the action (`POST /api/strategies/{id}/enable`); backtest: its
    /// status.
    pub kind: String,
    /// Alert: its message; audit: the concrete path called; backtest: its error, if any.
    pub text: String,
    /// Alert and backtest: their strategy.
    pub strategy_id: Option<i64>,
    /// Alert: its scope; audit: who called.
    pub extra: Option<String>,
}

/// The position of a page of the feed: the key of the last item of the page before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedKey {
    pub ts: i64,
    pub source: FeedSource,
    pub id: i64,
}

/// The feed, newest first: risk alerts, the successful audit rows of `actions` (each
/// `METHOD /route/{pattern}`), and backtests that ended; at most `limit` items after `after`.
pub async fn feed(
    store: &Store,
    actions: &[&str],
    after: Option<FeedKey>,
    limit: i64,
) -> StoreResult<Vec<FeedItem>> {
    // `$1..$n` are the actions; the keyset and the limit follow.
    let n = actions.len();
    let in_list = if n == 0 {
        "NULL".to_string()
    } else {
        (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Each use of a value is a parameter of its own, as PostgreSQL types each use.
    let (ts, ts_again, rank_a, rank_b, id, lim) = (n + 1, n + 2, n + 3, n + 4, n + 5, n + 6);
    let sql = format!(
        "SELECT ts, src, id, kind, text, strategy_id, extra FROM ( \
           SELECT ts, CAST(1 AS BIGINT) AS src, id, kind, message AS text, strategy_id, scope AS extra \
             FROM risk_alerts \
           UNION ALL \
           SELECT ts, CAST(0 AS BIGINT), id, action, target, CAST(NULL AS BIGINT), username \
             FROM audit_log WHERE outcome = 'ok' AND action IN ({in_list}) \
           UNION ALL \
           SELECT finished_at, CAST(2 AS BIGINT), id, status, COALESCE(error, ''), strategy_id, CAST(NULL AS TEXT) \
             FROM backtests WHERE finished_at IS NOT NULL \
         ) feed \
         WHERE ts < ${ts} OR (ts = ${ts_again} AND (src < ${rank_a} OR (src = ${rank_b} AND id < ${id}))) \
         ORDER BY ts DESC, src DESC, id DESC LIMIT ${lim}"
    );
    let (after_ts, after_rank, after_id) = match after {
        Some(k) => (k.ts, k.source.rank(), k.id),
        None => (i64::MAX, i64::MAX, i64::MAX),
    };
    type Row = (i64, i64, i64, String, String, Option<i64>, Option<String>);
    let rows: Vec<Row> = with_pool!(store, p => {
        let mut q = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql));
        for a in actions {
            q = q.bind(a.to_string());
        }
        q.bind(after_ts)
            .bind(after_ts)
            .bind(after_rank)
            .bind(after_rank)
            .bind(after_id)
            .bind(limit.max(0))
            .fetch_all(p)
            .await
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(ts, src, id, kind, text, strategy_id, extra)| {
            Some(FeedItem {
                ts,
                source: FeedSource::of(src)?,
                id,
                kind,
                text,
                strategy_id,
                extra,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{self, NewAudit};
    use crate::risk;

    #[tokio::test]
    async fn the_feed_merges_alerts_and_audited_actions_and_pages_by_its_key() {
        for s in crate::test_stores().await {
            for (action, outcome) in [
                ("POST /api/strategies/{id}/enable", "ok"),
                ("POST /api/strategies/{id}/enable", "denied"),
                ("POST /api/orders", "ok"),
                ("POST /api/strategies/{id}/disable", "ok"),
            ] {
                audit::record(
                    &s,
                    &NewAudit {
                        action: action.into(),
                        target: "/api/strategies/3/x".into(),
                        outcome: outcome.into(),
                        status: 200,
                        username: Some("ann".into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
            for i in 0..3 {
                risk::add_alert(&s, "account", "order_rejected", &format!("no {i}"), None)
                    .await
                    .unwrap();
            }
            let actions = [
                "POST /api/strategies/{id}/enable",
                "POST /api/strategies/{id}/disable",
            ];
            let all = feed(&s, &actions, None, 100).await.unwrap();
            // Same second: alerts rank above audit rows; newest id first within each.
            let seen: Vec<(FeedSource, String)> =
                all.iter().map(|f| (f.source, f.kind.clone())).collect();
            assert_eq!(seen.len(), 5, "{seen:?}");
            assert!(
                all.windows(2)
                    .all(|w| { (w[0].ts, w[0].source, w[0].id) > (w[1].ts, w[1].source, w[1].id) })
            );
            assert_eq!(
                all.iter()
                    .filter(|f| f.source == FeedSource::Audit)
                    .map(|f| f.kind.as_str())
                    .collect::<Vec<_>>(),
                [
                    "POST /api/strategies/{id}/disable",
                    "POST /api/strategies/{id}/enable"
                ]
            );
            // Pages of two cover the feed once, in order.
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = feed(&s, &actions, after, 2).await.unwrap();
                if page.is_empty() {
                    break;
                }
                let last = page.last().unwrap();
                after = Some(FeedKey {
                    ts: last.ts,
                    source: last.source,
                    id: last.id,
                });
                paged.extend(page);
            }
            assert_eq!(paged, all);
            assert_eq!(feed(&s, &[], None, 100).await.unwrap().len(), 3);
        }
    }

    #[tokio::test]
    async fn totals_by_account_and_closed_trades_start_empty() {
        for s in crate::test_stores().await {
            assert!(totals_by_account(&s).await.unwrap().is_empty());
            assert_eq!(closed_since(&s, 0).await.unwrap(), 0);
        }
    }
}
