//! Small server-wide values that must survive restarts (the JWT signing secret).

use super::{Store, StoreResult};

/// Key of the account-wide risk state the live engine carries across restarts (order-rate
/// window, the day's opening and peak equity, the halt).
pub const ACCOUNT_RISK: &str = "account_risk";

/// Store `value` under `key`, replacing what was there.
pub async fn set(store: &Store, key: &str, value: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The value stored under `key`, if any.
pub async fn get(store: &Store, key: &str) -> StoreResult<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(store.pool())
            .await?,
    )
}

/// The value under `key`, storing `make()` first if there is none. Concurrent callers agree on
/// one value: the first insert wins and everyone reads it back.
pub async fn get_or_insert(
    store: &Store,
    key: &str,
    make: impl FnOnce() -> String,
) -> StoreResult<String> {
    sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(make())
        .execute(store.pool())
        .await?;
    Ok(get(store, key).await?.expect("inserted above"))
}
