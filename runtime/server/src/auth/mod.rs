//! Authentication and authorization: who is calling (JWT bearer token or API key), what their
//! role allows, passwords, refresh-token rotation and TOTP.

pub mod access;
pub mod cache;
pub mod jwt;
pub mod password;
pub mod routes;
pub mod totp;

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a caller may do. Ordered: each role includes the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything a trader sees.
    Viewer,
    /// Uploads strategies, trades, backtests.
    Trader,
    /// Manages users, modules and risk limits.
    Admin,
}

impl Role {
    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Trader => "trader",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "trader" => Ok(Role::Trader),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, trader or admin"
            )),
        }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A JWT access token.
    Token,
    /// An API key (its id).
    ApiKey(i64),
}

/// The authenticated caller, put into request extensions by [`access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    /// Effective role (an API key's role is capped at its owner's).
    pub role: Role,
    pub credential: Credential,
}

/// 32 random bytes as hex, prefixed: refresh tokens, API keys, generated passwords.
pub fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

/// SHA-256 hex of a high-entropy secret (refresh tokens, API keys): a fast hash is enough
/// because the secret cannot be guessed, and lookups by hash stay indexed.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Trader && Role::Trader < Role::Admin);
        assert_eq!("trader".parse::<Role>().unwrap(), Role::Trader);
        assert_eq!(
            "root".parse::<Role>().unwrap_err(),
            "unknown role \"root\": expected viewer, trader or admin"
        );
        let t = random_token("rt_");
        assert_eq!(t.len(), 3 + 64);
        assert_ne!(t, random_token("rt_"));
        assert_eq!(token_hash("a").len(), 64);
    }
}
