//! Risk limits (account-wide and per strategy) and the risk alerts raised by the engine.

use super::{Store, StoreResult, now};
use crate::risk::RiskLimits;

/// Scope name of the account-wide limits.
pub const ACCOUNT: &str = "account";

/// The stored account-wide limits, if they were ever set.
pub async fn account_limits(store: &Store) -> StoreResult<Option<RiskLimits>> {
    limits(store, ACCOUNT).await
}

/// The stored limits of a scope (`account` or `strategy:<id>`).
pub async fn limits(store: &Store, scope: &str) -> StoreResult<Option<RiskLimits>> {
    let text: Option<String> = sqlx::query_scalar("SELECT limits FROM risk_limits WHERE scope = ?")
        .bind(scope)
        .fetch_optional(store.pool())
        .await?;
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
    sqlx::query(
        "INSERT INTO risk_limits (scope, limits, updated_by, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET limits = excluded.limits, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(scope)
    .bind(super::to_json(limits))
    .bind(user_id)
    .bind(now())
    .execute(store.pool())
    .await?;
    Ok(())
}
