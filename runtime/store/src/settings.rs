//! Small server-wide values that must survive restarts (the JWT signing secret).

use super::{Store, StoreResult, with_pool};

/// Key of the account-wide risk state the live engine carries across restarts (order-rate
/// window, the day's opening and peak equity, the halt).
pub const ACCOUNT_RISK: &str = "account_risk";

/// Store `value` under `key`, replacing what was there.
pub async fn set(store: &Store, key: &str, value: &str) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The value stored under `key`, if any.
pub async fn get(store: &Store, key: &str) -> StoreResult<Option<String>> {
    Ok(
        with_pool!(store, p => sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(p)
            .await)?,
    )
}

/// The value under `key`, storing `make()` first if there is none. Concurrent callers agree on
/// one value: the first insert wins and everyone reads it back.
pub async fn get_or_insert(
    store: &Store,
    key: &str,
    make: impl FnOnce() -> String,
) -> StoreResult<String> {
    with_pool!(store, p => sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(make())
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    Ok(get(store, key).await?.expect("inserted above"))
}
