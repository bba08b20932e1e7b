//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of clock skew
//! either way), each code accepted once.

use rand::RngCore;
use totp_rs::{Builder, Totp};

use crate::error::ApiError;
use qtm_store::{self as store, Store};

/// Issuer shown by authenticator apps.
const ISSUER: &str = "qtm";

/// A fresh random secret (160 bits, hex as stored).
pub fn new_secret() -> String {
    let mut b = [0u8; 20];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The generator for a stored secret.
pub fn totp(secret_hex: &str, account: &str) -> Result<Totp, ApiError> {
    let secret = hex::decode(secret_hex).map_err(ApiError::internal)?;
    Builder::new()
        .with_secret(secret)
        .with_skew(1)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(ApiError::internal)
}

/// The `otpauth://` URL an authenticator app scans.
pub fn url(secret_hex: &str, account: &str) -> Result<String, ApiError> {
    totp(secret_hex, account)?
        .to_url()
        .map_err(ApiError::internal)
}

/// Check `code` for a user with TOTP set up, refusing a code (time step) used before.
pub async fn check(store: &Store, user_id: i64, account: &str, code: &str) -> Result<(), ApiError> {
    let (secret, _) = store::users::totp(store, user_id).await?;
    let secret = secret.ok_or_else(|| {
        ApiError::conflict(
            "two-factor authentication is not set up: call POST /api/auth/2fa/setup first",
        )
    })?;
    let step = totp(&secret, account)?
        .check_current(code.trim())
        .ok_or_else(|| {
            ApiError::unauthorized("invalid or expired two-factor code").with_field("code")
        })?;
    if !store::users::claim_totp_step(store, user_id, step as i64).await? {
        return Err(ApiError::unauthorized(
            "this two-factor code was already used; wait for the next one",
        )
        .with_field("code"));
    }
    Ok(())
}
