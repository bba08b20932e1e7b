//! Users, their API keys and refresh tokens. Secrets are stored only as hashes (argon2 for
//! passwords, SHA-256 for high-entropy random tokens, which need no slow hash).

use sqlx::FromRow;

use super::{Store, StoreError, StoreResult, in_transaction, now, with_pool};

/// A stored user (without the password hash, which never leaves this module except for
/// verification through [`password_hash`]).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    /// `viewer`, `trader` or `admin`.
    pub role: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub totp_enabled: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Raised by [`end_access_tokens`]: access tokens issued under a lower version are refused.
    pub token_version: i64,
}

const USER_COLUMNS: &str = "id, username, role, display_name, email, totp_enabled, disabled, created_at, updated_at, token_version";

/// Create a user; fails with [`StoreError::Conflict`] if the name is taken.
pub async fn create(
    store: &Store,
    username: &str,
    password_hash: &str,
    role: &str,
) -> StoreResult<User> {
    let t = now();
    let res: Result<i64, sqlx::Error> = with_pool!(store, p => sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .bind(t)
    .bind(t)
    .fetch_one(p)
    .await);
    match res {
        Ok(id) => by_id(store, id).await,
        Err(e) if StoreError::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "user {username:?} already exists"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Number of users.
pub async fn count(store: &Store) -> StoreResult<i64> {
    Ok(
        with_pool!(store, p => sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(p)
        .await)?,
    )
}

/// The user with this id.
pub async fn by_id(store: &Store, id: i64) -> StoreResult<User> {
    with_pool!(store, p => sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// The user with this name, if any.
pub async fn by_name(store: &Store, username: &str) -> StoreResult<Option<User>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    )))
    .bind(username)
    .fetch_optional(p)
    .await)?,
    )
}

/// Every user, by id.
pub async fn list(store: &Store) -> StoreResult<Vec<User>> {
    Ok(
        with_pool!(store, p => sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY id"
    )))
    .fetch_all(p)
    .await)?,
    )
}

/// The stored argon2 PHC string of a user.
pub async fn password_hash(store: &Store, id: i64) -> StoreResult<String> {
    with_pool!(store, p => sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await)?
    .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// Replace a user's password hash.
pub async fn set_password_hash(store: &Store, id: i64, hash: &str) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash)
        .bind(now())
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// End every access token issued to user `id` so far (logout, a password or role change):
/// raises its token version and returns the new one.
pub async fn end_access_tokens(store: &Store, id: i64) -> StoreResult<i64> {
    with_pool!(store, p => sqlx::query_scalar(
        "UPDATE users SET token_version = token_version + 1 WHERE id = $1 RETURNING token_version",
    )
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// Update the profile fields; `None` leaves a field as it is.
pub async fn update_profile(
    store: &Store,
    id: i64,
    display_name: Option<&str>,
    email: Option<&str>,
) -> StoreResult<User> {
    with_pool!(store, p => sqlx::query(
        "UPDATE users SET display_name = COALESCE($1, display_name), email = COALESCE($2, email), updated_at = $3 WHERE id = $4",
    )
    .bind(display_name)
    .bind(email)
    .bind(now())
    .bind(id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    by_id(store, id).await
}

/// Change a user's role (admin only, checked by the caller).
pub async fn set_role(store: &Store, id: i64, role: &str) -> StoreResult<User> {
    with_pool!(store, p => sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
        .bind(role)
        .bind(now())
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    by_id(store, id).await
}

/// The TOTP secret (base32) and whether it is enabled.
pub async fn totp(store: &Store, id: i64) -> StoreResult<(Option<String>, bool)> {
    let row: Option<(Option<String>, bool)> = with_pool!(store, p => sqlx::query_as("SELECT totp_secret, totp_enabled FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await)?;
    row.ok_or_else(|| StoreError::NotFound(format!("user {id}")))
}

/// Store a TOTP secret and whether it is enabled.
pub async fn set_totp(
    store: &Store,
    id: i64,
    secret: Option<&str>,
    enabled: bool,
) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query("UPDATE users SET totp_secret = $1, totp_enabled = $2, updated_at = $3 WHERE id = $4")
        .bind(secret)
        .bind(enabled)
        .bind(now())
        .bind(id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Record that a TOTP time step was used; false if it (or a later one) already was, so each
/// code logs in once.
pub async fn claim_totp_step(store: &Store, id: i64, step: i64) -> StoreResult<bool> {
    let n = with_pool!(store, p => sqlx::query(
        "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)",
    )
    .bind(step)
    .bind(id)
    .bind(step)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ApiKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    /// The most the key may do; never more than its owner's role.
    pub role: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Store a new API key by its hash.
pub async fn create_api_key(
    store: &Store,
    user_id: i64,
    name: &str,
    prefix: &str,
    key_hash: &str,
    role: &str,
) -> StoreResult<ApiKey> {
    let id: i64 = with_pool!(store, p => sqlx::query_scalar(
        "INSERT INTO api_keys (user_id, name, prefix, key_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(user_id)
    .bind(name)
    .bind(prefix)
    .bind(key_hash)
    .bind(role)
    .bind(now())
    .fetch_one(p)
    .await)?;
    api_key(store, id).await
}

async fn api_key(store: &Store, id: i64) -> StoreResult<ApiKey> {
    with_pool!(store, p => sqlx::query_as::<_, ApiKey>(
        "SELECT id, user_id, name, prefix, role, created_at, last_used_at, revoked_at FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(p)
    .await)?
    .ok_or_else(|| StoreError::NotFound(format!("API key {id}")))
}

/// A user's API keys, newest first.
pub async fn list_api_keys(store: &Store, user_id: i64) -> StoreResult<Vec<ApiKey>> {
    Ok(with_pool!(store, p => sqlx::query_as::<_, ApiKey>(
        "SELECT id, user_id, name, prefix, role, created_at, last_used_at, revoked_at FROM api_keys WHERE user_id = $1 ORDER BY id DESC",
    )
    .bind(user_id)
    .fetch_all(p)
    .await)?)
}

/// Revoke one of a user's keys; `NotFound` if it is not theirs.
pub async fn revoke_api_key(store: &Store, user_id: i64, id: i64) -> StoreResult<ApiKey> {
    let n = with_pool!(store, p => sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3",
    )
    .bind(now())
    .bind(id)
    .bind(user_id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("API key {id}")));
    }
    api_key(store, id).await
}

/// The live (not revoked) key with this hash and its owner; marks it used.
pub async fn use_api_key(store: &Store, key_hash: &str) -> StoreResult<Option<(ApiKey, User)>> {
    let key = with_pool!(store, p => sqlx::query_as::<_, ApiKey>(
        "SELECT id, user_id, name, prefix, role, created_at, last_used_at, revoked_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(p)
    .await)?;
    let Some(key) = key else { return Ok(None) };
    let t = now();
    // Once a minute is enough for "last used", and spares a write per request.
    if key.last_used_at.is_none_or(|u| t - u >= 60) {
        with_pool!(store, p => sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(t)
            .bind(key.id)
            .execute(p)
            .await.map(|r| r.rows_affected()))?;
    }
    let user = by_id(store, key.user_id).await?;
    Ok(Some((key, user)))
}

/// Store a refresh token (by hash) in `family`.
pub async fn insert_refresh_token(
    store: &Store,
    user_id: i64,
    family: &str,
    token_hash: &str,
    expires_at: i64,
) -> StoreResult<()> {
    with_pool!(store, p => sqlx::query(
        "INSERT INTO refresh_tokens (user_id, family, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(family)
    .bind(token_hash)
    .bind(now())
    .bind(expires_at)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshUse {
    /// Valid and now consumed: issue the next token in `family`.
    Fresh { user_id: i64, family: String },
    /// Already used: a sign of theft, so the whole family was revoked.
    Reused { user_id: i64, family: String },
    /// Never used, but revoked (a logout, a password change, or its family's revocation after
    /// a reuse): no new sign of theft.
    Revoked { user_id: i64 },
    /// Past its expiry.
    Expired,
    /// No such token.
    Unknown,
}

/// user_id, family, expires_at, used_at, revoked_at of a refresh token.
type RefreshRow = (i64, String, i64, Option<i64>, Option<i64>);

/// Consume a refresh token atomically: the first presentation wins; any later one revokes
/// the token's whole family (rotation with reuse detection).
pub async fn use_refresh_token(store: &Store, token_hash: &str) -> StoreResult<RefreshUse> {
    in_transaction!(store, tx => {
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT user_id, family, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, family, expires_at, used_at, revoked_at)) = row else {
        return Ok(RefreshUse::Unknown);
    };
    let t = now();
    if used_at.is_none() && revoked_at.is_some() {
        return Ok(RefreshUse::Revoked { user_id });
    }
    if used_at.is_some() {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE family = $2",
        )
        .bind(t)
        .bind(&family)
        .execute(&mut *tx)
        .await?;
        return Ok(RefreshUse::Reused { user_id, family });
    }
    if expires_at <= t {
        return Ok(RefreshUse::Expired);
    }
    let n = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
    )
    .bind(t)
    .bind(token_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 1 {
        Ok(RefreshUse::Fresh { user_id, family })
    } else {
        Ok(RefreshUse::Reused { user_id, family })
    }
    })
}

/// Revoke the family of a refresh token (logout). Returns whether the token was known.
pub async fn revoke_refresh_family(store: &Store, token_hash: &str) -> StoreResult<bool> {
    let n = with_pool!(store, p => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE family = (SELECT family FROM refresh_tokens WHERE token_hash = $2)",
    )
    .bind(now())
    .bind(token_hash)
    .execute(p)
    .await.map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Revoke every refresh token of a user (logout everywhere).
pub async fn revoke_all_refresh(store: &Store, user_id: i64) -> StoreResult<u64> {
    Ok(with_pool!(store, p => sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE user_id = $2",
    )
    .bind(now())
    .bind(user_id)
    .execute(p)
    .await.map(|r| r.rows_affected()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_are_unique_and_profiles_update() {
        for s in crate::test_stores().await {
            let u = create(&s, "ann", "hash", "trader").await.unwrap();
            assert_eq!(u.role, "trader");
            let e = create(&s, "ann", "hash", "viewer").await.unwrap_err();
            assert_eq!(e.to_string(), "user \"ann\" already exists");
            let u = update_profile(&s, u.id, Some("Ann"), None).await.unwrap();
            assert_eq!(u.display_name.as_deref(), Some("Ann"));
            assert_eq!(u.email, None);
            assert_eq!(by_name(&s, "ann").await.unwrap().unwrap().id, u.id);
        }
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
        for s in crate::test_stores().await {
            let u = create(&s, "bob", "hash", "viewer").await.unwrap();
            let far = now() + 3600;
            insert_refresh_token(&s, u.id, "fam", "t1", far)
                .await
                .unwrap();
            assert_eq!(
                use_refresh_token(&s, "t1").await.unwrap(),
                RefreshUse::Fresh {
                    user_id: u.id,
                    family: "fam".into()
                }
            );
            insert_refresh_token(&s, u.id, "fam", "t2", far)
                .await
                .unwrap();
            // t1 again: theft suspected, t2 dies with it.
            assert!(matches!(
                use_refresh_token(&s, "t1").await.unwrap(),
                RefreshUse::Reused { .. }
            ));
            // t2 was never used: it is revoked, not reused (no second alarm).
            assert_eq!(
                use_refresh_token(&s, "t2").await.unwrap(),
                RefreshUse::Revoked { user_id: u.id }
            );
            assert_eq!(
                use_refresh_token(&s, "nope").await.unwrap(),
                RefreshUse::Unknown
            );
            insert_refresh_token(&s, u.id, "old", "t3", now() - 1)
                .await
                .unwrap();
            assert_eq!(
                use_refresh_token(&s, "t3").await.unwrap(),
                RefreshUse::Expired
            );
        }
    }

    #[tokio::test]
    async fn api_keys_are_found_by_hash_until_revoked() {
        for s in crate::test_stores().await {
            let u = create(&s, "cat", "hash", "trader").await.unwrap();
            let k = create_api_key(&s, u.id, "bot", "qtm_ab12", "h1", "viewer")
                .await
                .unwrap();
            let (found, owner) = use_api_key(&s, "h1").await.unwrap().unwrap();
            assert_eq!((found.id, owner.id), (k.id, u.id));
            assert!(
                revoke_api_key(&s, u.id + 1, k.id).await.is_err(),
                "not theirs"
            );
            revoke_api_key(&s, u.id, k.id).await.unwrap();
            assert!(use_api_key(&s, "h1").await.unwrap().is_none());
        }
    }
}
