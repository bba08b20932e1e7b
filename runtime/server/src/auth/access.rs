//! The access gate every `/api` route passes through. Who may call a route is read from the
//! route's own OpenAPI `security` entry (the scopes name the least role), so the document
//! clients read, the gate and the role-matrix test all use one table. A route without an entry
//! is refused: a new route cannot be forgotten open.
//!
//! The gate also applies the per-user rate limit and writes the audit row of every mutating
//! call.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Credential, Principal, Role, token_hash};
use crate::error::ApiError;
use crate::state::AppState;
use qtm_store::{self as store, audit::NewAudit};

/// Who may call one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone (login, health, webhooks with their own signature check, WS with its own auth).
    Public,
    /// Authenticated callers with at least this role.
    AtLeast(Role),
}

/// Rules by (method, route pattern).
#[derive(Debug, Clone, Default)]
pub struct AccessTable {
    rules: HashMap<(Method, String), Rule>,
}

impl AccessTable {
    /// Read the rules from an OpenAPI document: an empty security requirement (`{}`) or none
    /// at all on a route marked public means [`Rule::Public`]; otherwise the scopes of the
    /// `bearer` (or `api_key`) requirement name the least role.
    pub fn from_openapi(doc: &Value) -> Result<Self, String> {
        let mut rules = HashMap::new();
        let paths = doc["paths"]
            .as_object()
            .ok_or("OpenAPI document has no paths")?;
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let Ok(m) = method.to_ascii_uppercase().parse::<Method>() else {
                    continue;
                };
                if !matches!(
                    m,
                    Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE
                ) {
                    continue;
                }
                let Some(security) = op.get("security").and_then(Value::as_array) else {
                    return Err(format!("{method} {path} has no security entry"));
                };
                let mut rule = None;
                for req in security {
                    let req = req
                        .as_object()
                        .ok_or("security requirement is not an object")?;
                    if req.is_empty() {
                        rule = Some(Rule::Public);
                        break;
                    }
                    for scopes in req.values() {
                        for scope in scopes.as_array().into_iter().flatten() {
                            let role: Role = scope
                                .as_str()
                                .unwrap_or_default()
                                .parse()
                                .map_err(|e| format!("{method} {path}: {e}"))?;
                            rule = Some(match rule {
                                Some(Rule::AtLeast(r)) => Rule::AtLeast(r.min(role)),
                                _ => Rule::AtLeast(role),
                            });
                        }
                    }
                }
                let rule = rule.ok_or_else(|| format!("{method} {path} names no role"))?;
                rules.insert((m, path.clone()), rule);
            }
        }
        Ok(AccessTable { rules })
    }

    /// The rule of a route, if it has one.
    pub fn rule(&self, method: &Method, path: &str) -> Option<Rule> {
        self.rules.get(&(method.clone(), path.to_string())).copied()
    }

    /// Whether the authenticated `p` may call `method route`: the gate's role check, also
    /// asked by sources that reach a route's work without an HTTP request (`/ws/trading`
    /// places orders as `POST /api/orders` does), so both refuse the same callers with the
    /// same 403. A route without a rule is refused, as at the gate.
    pub fn permit(&self, method: &Method, route: &str, p: &Principal) -> Result<(), ApiError> {
        match self.rule(method, route) {
            None => Err(ApiError::internal(format!(
                "{method} {route} has no access rule"
            ))),
            Some(Rule::Public) => Ok(()),
            Some(Rule::AtLeast(min)) if p.role < min => Err(ApiError::forbidden(format!(
                "{method} {route} needs the {min} role; you are {}",
                p.role
            ))),
            Some(Rule::AtLeast(_)) => Ok(()),
        }
    }

    /// Every (method, path, rule), sorted (for the docs and tests).
    pub fn entries(&self) -> Vec<(Method, String, Rule)> {
        let mut v: Vec<_> = self
            .rules
            .iter()
            .map(|((m, p), r)| (m.clone(), p.clone(), *r))
            .collect();
        v.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
        v
    }
}

/// A handler's note to the audit row (e.g. the username a login tried), set as a response
/// extension.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub username: Option<String>,
    pub detail: Option<String>,
}

/// The client's address (the TCP peer; proxies are not trusted).
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Find the caller from `Authorization: Bearer` or `X-API-Key`.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| ApiError::unauthorized("X-API-Key is not valid text"))?;
        return authenticate_api_key(state, key).await;
    }
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing credentials: send `Authorization: Bearer <token>` or `X-API-Key`",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
    authenticate_token(state, token.trim()).await
}

/// Check an access token and that its user still exists and is enabled; the role is the
/// user's current one, so a demotion takes effect at once.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let claims = state.jwt.verify(token, "access")?;
    let user = state
        .users
        .get(&state.store, claims.user_id().unwrap_or_default())
        .await
        .map_err(|_| ApiError::unauthorized("the token's user no longer exists"))?;
    if user.disabled {
        return Err(ApiError::unauthorized("user is disabled"));
    }
    if claims.ver != user.token_version {
        return Err(ApiError::unauthorized(
            "access token ended by a logout or a password or role change: refresh or log in again",
        ));
    }
    Ok(Principal {
        user_id: user.id,
        role: user.role.parse().map_err(ApiError::internal)?,
        username: user.username,
        credential: Credential::Token,
    })
}

async fn authenticate_api_key(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let (key, user) = store::users::use_api_key(&state.store, &token_hash(key.trim()))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    if user.disabled {
        return Err(ApiError::unauthorized("user is disabled"));
    }
    let owner: Role = user.role.parse().map_err(ApiError::internal)?;
    let role: Role = key.role.parse().map_err(ApiError::internal)?;
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        role: owner.min(role),
        credential: Credential::ApiKey(key.id),
    })
}

/// The gate (an axum `route_layer` middleware).
pub async fn gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let target = req.uri().path().to_string();
    let ip = client_ip(&req);
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    // The request body is not `Sync`, so the headers are copied before awaiting on them.
    let headers = req.headers().clone();

    let outcome: Result<Option<Principal>, ApiError> = async {
        match state.access().rule(&method, &route) {
            None => Err(ApiError::internal(format!(
                "{method} {route} has no access rule"
            ))),
            Some(Rule::Public) => Ok(None),
            Some(Rule::AtLeast(_)) => {
                let p = authenticate(&state, &headers).await?;
                state.access().permit(&method, &route, &p)?;
                Ok(Some(p))
            }
        }
    }
    .await;

    let principal = match outcome {
        Ok(p) => p,
        Err(e) => {
            let status = e.status;
            if mutating {
                audit(&state, &method, &route, &target, None, None, ip, status).await;
            }
            return e.into_response();
        }
    };
    let limit_key = match &principal {
        Some(p) => format!("user:{}", p.user_id),
        None => format!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
    };
    if !state.allow_request(&limit_key) {
        return ApiError::rate_limited("too many requests; slow down").into_response();
    }
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    let response = next.run(req).await;
    if mutating {
        let note = response.extensions().get::<AuditNote>().cloned();
        audit(
            &state,
            &method,
            &route,
            &target,
            principal.as_ref(),
            note,
            ip,
            response.status(),
        )
        .await;
    }
    response
}

/// Write the audit row of one mutating call (also of the order messages of `/ws/trading`,
/// which leave the same rows as the REST calls they stand for).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit(
    state: &AppState,
    method: &Method,
    route: &str,
    target: &str,
    principal: Option<&Principal>,
    note: Option<AuditNote>,
    ip: Option<IpAddr>,
    status: StatusCode,
) {
    let outcome = match status.as_u16() {
        200..=399 => "ok",
        401 | 403 => "denied",
        400..=499 => "rejected",
        _ => "error",
    };
    let note = note.unwrap_or(AuditNote {
        username: None,
        detail: None,
    });
    let entry = NewAudit {
        user_id: principal.map(|p| p.user_id),
        username: principal.map(|p| p.username.clone()).or(note.username),
        action: format!("{method} {route}"),
        target: target.to_string(),
        outcome: outcome.into(),
        status: status.as_u16(),
        ip: ip.map(|i| i.to_string()),
        detail: note.detail,
    };
    if let Err(e) = store::audit::record(&state.store, &entry).await {
        tracing::error!(error = %e, action = %entry.action, "audit row could not be written");
    }
}

/// The authenticated caller, for handlers behind the gate.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_come_from_security_scopes_and_missing_ones_are_errors() {
        let doc = json!({"paths": {
            "/a": {"get": {"security": [{}]}, "post": {"security": [{"bearer": ["trader"]}, {"api_key": ["trader"]}]}},
            "/b/{id}": {"delete": {"security": [{"bearer": ["admin"]}]}, "parameters": []}
        }});
        let t = AccessTable::from_openapi(&doc).unwrap();
        assert_eq!(t.rule(&Method::GET, "/a"), Some(Rule::Public));
        assert_eq!(
            t.rule(&Method::POST, "/a"),
            Some(Rule::AtLeast(Role::Trader))
        );
        assert_eq!(
            t.rule(&Method::DELETE, "/b/{id}"),
            Some(Rule::AtLeast(Role::Admin))
        );
        assert_eq!(t.rule(&Method::GET, "/b/{id}"), None);
        let bad = json!({"paths": {"/c": {"get": {}}}});
        assert_eq!(
            AccessTable::from_openapi(&bad).unwrap_err(),
            "get /c has no security entry"
        );
    }
}
