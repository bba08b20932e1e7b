//! `/api/auth/*`: log in (with an optional TOTP step), refresh with rotation and reuse
//! detection, log out, and TOTP set-up.

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{AuditNote, Caller};
use super::jwt::{ACCESS_TTL_SECS, MFA_TTL_SECS};
use super::{Role, password, random_token, token_hash, totp};
use crate::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::state::AppState;
use qtm_store::{self as store, now, users::RefreshUse};

/// The auth routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(login_2fa))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
}

/// Username and password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Tokens for a logged-in session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: i64,
    pub role: Role,
}

/// Password accepted, but a TOTP code is still needed: post it with `mfa_token` to
/// `/api/auth/login/2fa`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    pub mfa_token: String,
    pub expires_in: i64,
}

fn with_note(mut response: Response, username: &str, detail: Option<String>) -> Response {
    response.extensions_mut().insert(AuditNote {
        username: Some(username.to_string()),
        detail,
    });
    response
}

async fn issue_tokens(
    state: &AppState,
    user: &store::users::User,
    role: Role,
    family: Option<String>,
) -> ApiResult<TokenResponse> {
    let user_id = user.id;
    let refresh = random_token("rt_");
    let family = family.unwrap_or_else(|| random_token("")[..24].to_string());
    store::users::insert_refresh_token(
        &state.store,
        user_id,
        &family,
        &token_hash(&refresh),
        now() + state.config.refresh_ttl_secs,
    )
    .await?;
    Ok(TokenResponse {
        access_token: state.jwt.issue(
            user_id,
            &user.username,
            role,
            user.token_version,
            "access",
            ACCESS_TTL_SECS,
        ),
        refresh_token: refresh,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TTL_SECS,
        role,
    })
}

/// Log in with username and password.
///
/// Returns tokens, or `{"mfa_required": true, "mfa_token"}` when the user has TOTP enabled.
/// Limited per client IP; failures do not say whether the user exists.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Response {
    let username = req.username.trim().to_string();
    let result = async {
        if !state.allow_login(&peer.ip().to_string()) {
            return Err(ApiError::rate_limited(
                "too many login attempts; wait a minute",
            ));
        }
        if username.is_empty() {
            return Err(ApiError::validation("username", "username is required"));
        }
        let user = store::users::by_name(&state.store, &username).await?;
        // Verify against a fixed hash when the user is unknown, so timing does not tell.
        let (user, phc) = match user {
            Some(u) => {
                let phc = store::users::password_hash(&state.store, u.id).await?;
                (Some(u), phc)
            }
            None => (None, DUMMY_HASH.to_string()),
        };
        let ok = password::verify(req.password, phc).await;
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            _ => return Err(ApiError::unauthorized("wrong username or password")),
        };
        let role: Role = user.role.parse().map_err(ApiError::internal)?;
        if user.totp_enabled {
            let mfa = state.jwt.issue(
                user.id,
                &user.username,
                role,
                user.token_version,
                "mfa",
                MFA_TTL_SECS,
            );
            return Ok(ApiJson(MfaRequired {
                mfa_required: true,
                mfa_token: mfa,
                expires_in: MFA_TTL_SECS,
            })
            .into_response());
        }
        Ok(ApiJson(issue_tokens(&state, &user, role, None).await?).into_response())
    }
    .await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    with_note(response, &username, None)
}

/// An argon2id hash of a random string, verified against when the user does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2yF2ZDJ1ovwAPf+3xVrmKGzfiN8cIH+ckYxHBo7C7cM";

/// Second login step: the `mfa_token` from `/api/auth/login` and a current TOTP code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Login2faRequest {
    pub mfa_token: String,
    pub code: String,
}

/// Finish a login with a TOTP code.
#[utoipa::path(post, path = "/api/auth/login/2fa", tag = "auth", request_body = Login2faRequest,
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn login_2fa(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(req): ApiJson<Login2faRequest>,
) -> ApiResult<ApiJson<TokenResponse>> {
    if !state.allow_login(&peer.ip().to_string()) {
        return Err(ApiError::rate_limited(
            "too many login attempts; wait a minute",
        ));
    }
    let claims = state
        .jwt
        .verify(&req.mfa_token, "mfa")
        .map_err(|e| e.with_field("mfa_token"))?;
    let user_id = claims.user_id().unwrap_or_default();
    totp::check(&state.store, user_id, &claims.name, &req.code).await?;
    let user = store::users::by_id(&state.store, user_id).await?;
    let role: Role = user.role.parse().map_err(ApiError::internal)?;
    Ok(ApiJson(issue_tokens(&state, &user, role, None).await?))
}

/// A refresh token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Trade a refresh token for a new access token and a new refresh token.
///
/// Each refresh token works once. Presenting one that was already used revokes every token
/// descended from the same login (it was probably stolen), and the caller must log in again.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    security(()),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<ApiJson<TokenResponse>> {
    match store::users::use_refresh_token(&state.store, &token_hash(req.refresh_token.trim()))
        .await?
    {
        RefreshUse::Fresh { user_id, family } => {
            let user = store::users::by_id(&state.store, user_id).await?;
            if user.disabled {
                return Err(ApiError::unauthorized("user is disabled"));
            }
            let role: Role = user.role.parse().map_err(ApiError::internal)?;
            Ok(ApiJson(
                issue_tokens(&state, &user, role, Some(family)).await?,
            ))
        }
        RefreshUse::Reused { user_id, .. } => {
            tracing::warn!(user_id, "refresh token reused: family revoked");
            Err(ApiError::unauthorized(
                "refresh token already used: every session from that login was revoked; log in again",
            )
            .with_field("refresh_token"))
        }
        RefreshUse::Revoked { .. } => Err(ApiError::unauthorized(
            "refresh token revoked (by a logout, a password change or a detected reuse); log in again",
        )
        .with_field("refresh_token")),
        RefreshUse::Expired => Err(
            ApiError::unauthorized("refresh token expired; log in again")
                .with_field("refresh_token"),
        ),
        RefreshUse::Unknown => {
            Err(ApiError::unauthorized("unknown refresh token").with_field("refresh_token"))
        }
    }
}

/// Log out: the refresh token (and its whole family) stops working; with `all`, every
/// session of the user ends.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutRequest {
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub all: bool,
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutResponse {
    pub revoked: bool,
}

/// Log out.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body = LogoutRequest,
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = LogoutResponse), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<LogoutRequest>,
) -> ApiResult<ApiJson<LogoutResponse>> {
    let mut revoked = false;
    if let Some(t) = &req.refresh_token {
        revoked |= store::users::revoke_refresh_family(&state.store, &token_hash(t.trim())).await?;
    }
    if req.all {
        revoked |= store::users::revoke_all_refresh(&state.store, p.user_id).await? > 0;
    }
    if req.refresh_token.is_none() && !req.all {
        return Err(ApiError::validation(
            "refresh_token",
            "give the refresh_token to revoke, or all: true",
        ));
    }
    // The access tokens end now rather than when they expire. That takes every access token
    // of the user: other sessions refresh (their refresh tokens still work unless `all`).
    store::users::end_access_tokens(&state.store, p.user_id).await?;
    state.users.invalidate(p.user_id);
    Ok(ApiJson(LogoutResponse { revoked }))
}

/// A new TOTP secret to scan; it becomes active once confirmed with a code.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetup {
    /// `otpauth://totp/…` for authenticator apps.
    pub otpauth_url: String,
}

/// Start TOTP set-up (replaces any unconfirmed secret).
#[utoipa::path(post, path = "/api/auth/2fa/setup", tag = "auth",
    security(("bearer" = ["viewer"])),
    responses((status = 200, body = TotpSetup), (status = 409, body = ErrorBody)))]
async fn totp_setup(
    State(state): State<AppState>,
    Caller(p): Caller,
) -> ApiResult<ApiJson<TotpSetup>> {
    let (_, enabled) = store::users::totp(&state.store, p.user_id).await?;
    if enabled {
        return Err(ApiError::conflict(
            "two-factor authentication is already on; disable it first",
        ));
    }
    let secret = totp::new_secret();
    store::users::set_totp(&state.store, p.user_id, Some(&secret), false).await?;
    Ok(ApiJson(TotpSetup {
        otpauth_url: totp::url(&secret, &p.username)?,
    }))
}

/// A current TOTP code.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TotpCode {
    pub code: String,
}

/// Whether TOTP is now on.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpState {
    pub enabled: bool,
}

/// Confirm set-up with a code from the app: TOTP is required at every login from now on.
#[utoipa::path(post, path = "/api/auth/2fa/enable", tag = "auth", request_body = TotpCode,
    security(("bearer" = ["viewer"])),
    responses((status = 200, body = TotpState), (status = 401, body = ErrorBody),
        (status = 409, description = "Two-factor authentication is not set up.", body = ErrorBody)))]
async fn totp_enable(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<TotpCode>,
) -> ApiResult<ApiJson<TotpState>> {
    totp::check(&state.store, p.user_id, &p.username, &req.code).await?;
    let (secret, _) = store::users::totp(&state.store, p.user_id).await?;
    store::users::set_totp(&state.store, p.user_id, secret.as_deref(), true).await?;
    Ok(ApiJson(TotpState { enabled: true }))
}

/// Turn TOTP off (needs a current code).
#[utoipa::path(post, path = "/api/auth/2fa/disable", tag = "auth", request_body = TotpCode,
    security(("bearer" = ["viewer"])),
    responses((status = 200, body = TotpState), (status = 401, body = ErrorBody),
        (status = 409, description = "Two-factor authentication is not set up.", body = ErrorBody)))]
async fn totp_disable(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<TotpCode>,
) -> ApiResult<ApiJson<TotpState>> {
    totp::check(&state.store, p.user_id, &p.username, &req.code).await?;
    store::users::set_totp(&state.store, p.user_id, None, false).await?;
    Ok(ApiJson(TotpState { enabled: false }))
}
