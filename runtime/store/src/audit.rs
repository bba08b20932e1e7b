//! The audit log: one row per mutating API call (who, what, when, outcome).

use sqlx::FromRow;

use super::{Store, StoreResult, now, with_pool};

/// One audit row.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub ts: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// `METHOD /route/{pattern}`.
    pub action: String,
    /// The concrete path called.
    pub target: String,
    /// `ok`, `denied`, `rejected` or `error`.
    pub outcome: String,
    /// HTTP status returned.
    pub status: i64,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// What to record; the id and time are assigned by the store.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub status: u16,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// Append one row.
pub async fn record(store: &Store, e: &NewAudit) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query(
        "INSERT INTO audit_log (ts, user_id, username, action, target, outcome, status, ip, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now())
    .bind(e.user_id)
    .bind(&e.username)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.outcome)
    .bind(i64::from(e.status))
    .bind(&e.ip)
    .bind(&e.detail)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The newest `limit` rows, newest first, optionally only `user_id`'s.
pub async fn recent(
    store: &Store,
    limit: i64,
    user_id: Option<i64>,
) -> StoreResult<Vec<AuditEntry>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, AuditEntry>(
        "SELECT id, ts, user_id, username, action, target, outcome, status, ip, detail FROM audit_log WHERE ($1 IS NULL OR user_id = $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(user_id)
    .bind(limit)
    .fetch_all(p)
    .await)?)
}
