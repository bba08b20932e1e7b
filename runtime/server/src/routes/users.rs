//! Profiles, API keys and (for admins) user management.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_types::users::{ApiKey, User};
use crate::auth::access::Caller;
use crate::auth::{Role, password, random_token, token_hash};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::paging::{Page, PageQuery};
use crate::state::AppState;
use qtm_store as store;

/// The user routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_profile, put_profile))
        .routes(routes!(change_password))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_users, create_user))
        .routes(routes!(set_user_role))
}

/// Your own account.
#[utoipa::path(get, path = "/api/users/profile", tag = "users",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn get_profile(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<ApiJson<User>> {
    Ok(ApiJson(
        store::users::by_id(&state.store, p.user_id).await?.into(),
    ))
}

/// Editable profile fields; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// 1 to 100 characters, not only spaces, no control characters.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub display_name: Option<String>,
    /// At most 254 characters with an `@`, no spaces or control characters.
    #[schema(
        max_length = 254,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f]*@[^\s\x00-\x1f\x7f-\x9f]*$"
    )]
    pub email: Option<String>,
}

/// Update your display name or email.
#[utoipa::path(put, path = "/api/users/profile", tag = "users", request_body = ProfileUpdate,
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = User), (status = 422, body = ErrorBody)))]
async fn put_profile(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<ProfileUpdate>,
) -> ApiResult<ApiJson<User>> {
    if let Some(name) = &req.display_name
        && (name.trim().is_empty()
            || name.chars().count() > 100
            || name.chars().any(char::is_control))
    {
        return Err(ApiError::validation(
            "display_name",
            "display_name must have 1 to 100 characters, not only spaces, and no control characters",
        ));
    }
    if let Some(email) = &req.email
        && (email.chars().count() > 254
            || !email.contains('@')
            || email.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        return Err(ApiError::validation(
            "email",
            format!("{email:?} is not an email address"),
        ));
    }
    Ok(ApiJson(
        store::users::update_profile(
            &state.store,
            p.user_id,
            req.display_name.as_deref(),
            req.email.as_deref(),
        )
        .await?
        .into(),
    ))
}

/// Old and new password.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Done.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ok {
    pub ok: bool,
}

/// Change your password; every refresh token of yours is revoked.
#[utoipa::path(put, path = "/api/users/password", tag = "users", request_body = PasswordChange,
    security(("bearer" = ["viewer"])),
    responses((status = 200, body = Ok), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<ApiJson<Ok>> {
    let phc = store::users::password_hash(&state.store, p.user_id).await?;
    if !password::verify(req.current_password, phc).await {
        return Err(
            ApiError::unauthorized("current password is wrong").with_field("current_password")
        );
    }
    password::validate(&req.new_password).map_err(|e| e.with_field("new_password"))?;
    let hash = password::hash(req.new_password).await?;
    store::users::set_password_hash(&state.store, p.user_id, &hash).await?;
    store::users::end_access_tokens(&state.store, p.user_id).await?;
    state.users.invalidate(p.user_id);
    store::users::revoke_all_refresh(&state.store, p.user_id).await?;
    Ok(ApiJson(Ok { ok: true }))
}

/// Your API keys (never the keys themselves).
#[utoipa::path(get, path = "/api/users/api-keys", tag = "users",
    security(("bearer" = ["viewer"])),
    params(PageQuery),
    responses((status = 200, body = Page<ApiKey>), (status = 422, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<ApiKey>>> {
    let keys = store::users::list_api_keys(&state.store, p.user_id).await?;
    Ok(ApiJson(q.page_by_id_desc(keys, |k| k.id, ApiKey::from)?))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewApiKey {
    pub name: String,
    /// The most the key may do (default: your role); capped at your role.
    pub role: Option<Role>,
}

/// The created key: `key` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKey,
}

/// Create an API key for a bot (send it as `X-API-Key`).
#[utoipa::path(post, path = "/api/users/api-keys", tag = "users", request_body = NewApiKey,
    security(("bearer" = ["viewer"])),
    responses((status = 201, body = CreatedApiKey), (status = 422, body = ErrorBody)))]
async fn create_key(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiJson(req): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, ApiJson<CreatedApiKey>)> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::validation(
            "name",
            "name must have 1 to 64 characters",
        ));
    }
    let role = req.role.unwrap_or(p.role);
    if role > p.role {
        return Err(ApiError::validation(
            "role",
            format!("a key cannot have more than your role ({})", p.role),
        ));
    }
    let key = random_token("qtm_");
    let info = store::users::create_api_key(
        &state.store,
        p.user_id,
        name,
        &key[..12],
        &token_hash(&key),
        role.as_str(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedApiKey {
            key,
            info: info.into(),
        }),
    ))
}

/// Revoke one of your API keys.
#[utoipa::path(delete, path = "/api/users/api-keys/{id}", tag = "users",
    params(("id" = i64, Path, description = "key id")),
    security(("bearer" = ["viewer"])),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<ApiKey>> {
    Ok(ApiJson(
        store::users::revoke_api_key(&state.store, p.user_id, id)
            .await?
            .into(),
    ))
}

/// Every user (admin).
#[utoipa::path(get, path = "/api/users", tag = "users",
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    params(PageQuery),
    responses((status = 200, body = Page<User>), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<User>>> {
    let users = store::users::list(&state.store).await?;
    Ok(ApiJson(q.page_by_id(users, |u| u.id, User::from)?))
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

/// Create a user (admin).
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, ApiJson<User>)> {
    let name = req.username.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        return Err(ApiError::validation(
            "username",
            "username must have 1 to 64 characters from letters, digits and . _ - @",
        ));
    }
    password::validate(&req.password)?;
    let hash = password::hash(req.password).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(
            store::users::create(&state.store, name, &hash, req.role.as_str())
                .await?
                .into(),
        ),
    ))
}

/// A new role.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleChange {
    pub role: Role,
}

/// Change a user's role (admin); takes effect on their next request.
#[utoipa::path(put, path = "/api/users/{id}/role", tag = "users", request_body = RoleChange,
    params(("id" = i64, Path, description = "user id")),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = User), (status = 404, body = ErrorBody),
        (status = 409, description = "An admin cannot demote themselves.", body = ErrorBody)))]
async fn set_user_role(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<RoleChange>,
) -> ApiResult<ApiJson<User>> {
    if id == p.user_id && req.role < Role::Admin {
        // The request is well formed; the account's state forbids it.
        return Err(
            ApiError::conflict("you cannot demote yourself; ask another admin").with_field("role"),
        );
    }
    store::users::by_id(&state.store, id).await?;
    store::users::set_role(&state.store, id, req.role.as_str()).await?;
    store::users::end_access_tokens(&state.store, id).await?;
    let user = store::users::by_id(&state.store, id).await?;
    state.users.invalidate(id);
    Ok(ApiJson(user.into()))
}
