//! Users and their API keys.

use serde::Serialize;
use utoipa::ToSchema;

use qtm_store::users as rows;

/// A user (never the password hash).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
}

impl From<rows::User> for User {
    fn from(u: rows::User) -> Self {
        User {
            id: u.id,
            username: u.username,
            role: u.role,
            display_name: u.display_name,
            email: u.email,
            totp_enabled: u.totp_enabled,
            disabled: u.disabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

impl From<rows::ApiKey> for ApiKey {
    fn from(k: rows::ApiKey) -> Self {
        ApiKey {
            id: k.id,
            user_id: k.user_id,
            name: k.name,
            prefix: k.prefix,
            role: k.role,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}
