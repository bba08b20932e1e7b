//! `GET /ws/trading`: manual orders over a WebSocket, for clients that trade often and would
//! pay an HTTP request per order, and want their fills pushed.
//!
//! Authenticate as for the streams (`?token=`, `?api_key=`, headers, or a first
//! `{"type":"auth","token":…}` message within 10 s); the caller must have the role
//! `POST /api/orders` needs. Each message may carry a `request_id` (a string of at most 64
//! characters, or an integer) that its answer echoes:
//!
//! - `{"type":"place","order":{…}}`: the body of `POST /api/orders`;
//! - `{"type":"cancel","order_id":7,"reason"?:"…"}`: `POST /api/orders/{id}/cancel`;
//! - `{"type":"modify","order_id":7,"changes":{…}}`: the body of `PUT /api/orders/{id}`;
//! - `{"type":"auth","token":…}`: a fresh access token for the same user;
//! - `{"type":"ping"}`.
//!
//! Answers are `{"type":"order","request_id","action":"placed"|"cancelled"|"modified",
//! "order":{…}}` (the order as REST answers it) or `{"type":"error","request_id","status",
//! "error":{"code","message","field"?}}` (the code, message and HTTP status REST gives). The
//! caller's own manual orders that the live engine fills, cancels or places (bracket exits)
//! arrive as `{"type":"order_update","event":"filled"|"cancelled"|"accepted","order",
//! "fill"?}`.
//!
//! Every order message goes through the functions the REST handlers call
//! ([`orders::place_manual`], [`orders::cancel_by`], [`orders::modify`]): the same validation,
//! account-wide risk limits and kill switch. Like a REST request, each is authenticated again
//! (a demoted or disabled user, a revoked key or an expired token stops trading at once),
//! checked against the route's role rule, counted by the per-user rate limit and written to
//! the audit log.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{WsQuery, first_message_token, send, upfront_credentials};
use crate::api_types::orders::{FillRecord, Order};
use crate::auth::Principal;
use crate::auth::access::{AuditNote, audit, authenticate, authenticate_token};
use crate::error::ApiError;
use crate::routes::orders::{self, CancelRequest, ModifyOrder, PlaceOrder};
use crate::state::AppState;
use qtm_live::LiveEvent;

/// Largest message answered: an order message is well under 1 KiB, so anything past this is
/// refused (`payload_too_large`) unparsed and the connection stays open.
pub const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// Longest `request_id` string echoed back.
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// The route `/ws/trading` answers for in errors and audit rows.
const ROUTE: &str = "/ws/trading";

/// `GET /ws/trading`.
pub async fn connect(
    State(state): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let upfront = match upfront_credentials(&q, &headers)? {
        Some(h) => {
            // Refused before the upgrade, as a plain 401 or 403, like `POST /api/orders`.
            let p = authenticate(&state, &h).await?;
            Action::Place.permit(&state, &p)?;
            Some((h, p))
        }
        None => None,
    };
    // The transport's own cap: frames between `MAX_MESSAGE_BYTES` and the server's body
    // limit are read (never more) and answered with an error; past it the connection ends.
    let transport = state.config.max_body_bytes.max(MAX_MESSAGE_BYTES);
    let ip = peer.map(|Extension(ConnectInfo(a))| a.ip());
    Ok(upgrade
        .max_message_size(transport)
        .max_frame_size(transport)
        .on_upgrade(move |socket| session(state, socket, upfront, ip)))
}

/// What one order message does: the REST route it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Place,
    Cancel,
    Modify,
}

impl Action {
    /// The REST route (method, pattern) whose role rule applies.
    fn route(self) -> (Method, &'static str) {
        match self {
            Action::Place => (Method::POST, "/api/orders"),
            Action::Cancel => (Method::POST, "/api/orders/{id}/cancel"),
            Action::Modify => (Method::PUT, "/api/orders/{id}"),
        }
    }

    /// `action` of the answer.
    fn done(self) -> &'static str {
        match self {
            Action::Place => "placed",
            Action::Cancel => "cancelled",
            Action::Modify => "modified",
        }
    }

    /// The gate's role check of the REST route.
    fn permit(self, state: &AppState, p: &Principal) -> Result<(), ApiError> {
        let (method, route) = self.route();
        state.access().permit(&method, route, p)
    }
}

/// Who the session trades as.
struct Caller {
    /// The credentials, as REST headers: every order message authenticates them again.
    credentials: HeaderMap,
    /// Fixed for the session (a renewed token must name the same user).
    user_id: i64,
    ip: Option<std::net::IpAddr>,
}

/// One connection; `upfront` holds the credentials given with the upgrade request and the
/// caller they named.
async fn session(
    state: AppState,
    mut socket: WebSocket,
    upfront: Option<(HeaderMap, Principal)>,
    ip: Option<std::net::IpAddr>,
) {
    let (credentials, principal) = match upfront {
        Some(known) => known,
        None => match first_message_token(&state, &mut socket).await {
            Some((p, token)) => match bearer(&token) {
                Ok(h) => (h, p),
                Err(e) => return refuse(&mut socket, &e).await,
            },
            None => return,
        },
    };
    if let Err(e) = Action::Place.permit(&state, &principal) {
        return refuse(&mut socket, &e).await;
    }
    let mut caller = Caller {
        credentials,
        user_id: principal.user_id,
        ip,
    };
    // Subscribed before the welcome, so no fill of an order placed after it is missed.
    let mut events = Some(state.live.subscribe());
    let _open = state.hub.stats.open("/ws/trading");
    let welcome = json!({
        "type": "welcome",
        "user": principal.username,
        "role": principal.role,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    });
    if !send(&mut socket, welcome.to_string()).await {
        return;
    }
    metrics::gauge!("qtm_ws_trading_sessions").increment(1.0);
    loop {
        tokio::select! {
            event = async { Some(events.as_mut()?.recv().await) }, if events.is_some() => {
                let reply = match event {
                    Some(Ok(e)) => match own_update(&e, caller.user_id) {
                        Some(update) => update,
                        None => continue,
                    },
                    Some(Err(RecvError::Lagged(n))) => {
                        json!({"type": "lagged", "skipped": n, "source": "live-engine"})
                    }
                    // The engine stopped (the server is shutting down): answers go on.
                    Some(Err(RecvError::Closed)) | None => {
                        events = None;
                        continue;
                    }
                };
                if !send(&mut socket, reply.to_string()).await {
                    break;
                }
            },
            incoming = socket.recv() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => {
                        handle(&state, &mut caller, text.as_bytes()).await
                    }
                    Some(Ok(Message::Binary(bytes))) => handle(&state, &mut caller, &bytes).await,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        // Past the transport cap (or a broken frame): the rest of the
                        // message cannot be skipped, so say why and end the connection.
                        let e = transport_error(&e.to_string());
                        let _ = send(&mut socket, error_reply(None, &e).to_string()).await;
                        let code = if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                            close_code::SIZE
                        } else {
                            close_code::PROTOCOL
                        };
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: e.code.into(),
                            })))
                            .await;
                        break;
                    }
                };
                metrics::counter!("qtm_ws_trading_messages_total").increment(1);
                if !send(&mut socket, reply.to_string()).await {
                    break;
                }
            },
        }
    }
    metrics::gauge!("qtm_ws_trading_sessions").decrement(1.0);
}

/// Tell the client why it may not trade here, then close.
async fn refuse(socket: &mut WebSocket, e: &ApiError) {
    let _ = send(socket, error_reply(None, e).to_string()).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: e.code.into(),
        })))
        .await;
}

fn bearer(token: &str) -> Result<HeaderMap, ApiError> {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .map_err(|_| ApiError::unauthorized("token is not valid text"))?,
    );
    Ok(h)
}

/// The error of a frame the transport refused to read.
fn transport_error(detail: &str) -> ApiError {
    if detail.contains("too long") || detail.contains("limit exceeded") {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("message refused, connection closed: {detail}"),
        )
    } else {
        ApiError::bad_request(format!("unreadable frame, connection closed: {detail}"))
    }
}

/// A manual order event of the live engine that concerns `user_id`'s orders, as pushed.
fn own_update(event: &LiveEvent, user_id: i64) -> Option<Value> {
    let (name, order, fill) = match event {
        LiveEvent::OrderFilled { order, fill } => ("filled", order, Some(fill)),
        LiveEvent::OrderCancelled { order } => ("cancelled", order, None),
        LiveEvent::OrderAccepted { order } => ("accepted", order, None),
        _ => return None,
    };
    if order.user_id != Some(user_id) {
        return None;
    }
    let mut update = json!({"type": "order_update", "event": name, "order": Order::from(order)});
    if let Some(f) = fill {
        update["fill"] = json!(FillRecord::from(f));
    }
    Some(update)
}

/// The message envelope: what it is and the id to echo; the rest is read by type.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an object with a \"type\"")]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    request_id: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceMessage {
    order: PlaceOrder,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelMessage {
    order_id: i64,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModifyMessage {
    order_id: i64,
    changes: ModifyOrder,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthMessage {
    token: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PingMessage {}

/// Answer one client message. Never fails: whatever was wrong is the answer.
async fn handle(state: &AppState, caller: &mut Caller, raw: &[u8]) -> Value {
    // Checked before anything is parsed or copied.
    if raw.len() > MAX_MESSAGE_BYTES {
        return error_reply(
            None,
            &ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "message of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit of {ROUTE}",
                    raw.len()
                ),
            ),
        );
    }
    let envelope: Envelope = match serde_json::from_slice(raw) {
        Ok(m) => m,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return error_reply(
                None,
                &ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("message is not valid JSON: {e}"),
                ),
            );
        }
        Err(e) => {
            return error_reply(
                None,
                &ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    format!("bad message: {e}"),
                ),
            );
        }
    };
    let id = match request_id(envelope.request_id) {
        Ok(id) => id,
        Err(e) => return error_reply(None, &e),
    };
    match answer(state, caller, envelope.kind.as_deref(), envelope.rest).await {
        Ok(mut reply) => {
            reply["request_id"] = id;
            reply
        }
        Err(e) => error_reply(Some(id), &e),
    }
}

/// The request id to echo: a short string or an integer (bounded, so echoing it back cannot
/// be used to make the server copy large values).
fn request_id(v: Option<Value>) -> Result<Value, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) if s.chars().count() <= MAX_REQUEST_ID_CHARS => Ok(Value::String(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
        Some(_) => Err(ApiError::validation(
            "request_id",
            format!(
                "request_id must be a string of at most {MAX_REQUEST_ID_CHARS} characters or an integer"
            ),
        )),
    }
}

/// Read the message body of its type: serde's message names the field at fault.
fn body<T: serde::de::DeserializeOwned>(
    kind: &str,
    rest: Map<String, Value>,
) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("bad {kind} message: {e}"),
        )
    })
}

async fn answer(
    state: &AppState,
    caller: &mut Caller,
    kind: Option<&str>,
    rest: Map<String, Value>,
) -> Result<Value, ApiError> {
    let kind = kind.ok_or_else(|| {
        ApiError::validation(
            "type",
            "message has no \"type\": send place, cancel, modify, auth or ping",
        )
    })?;
    match kind {
        "place" => {
            let m: PlaceMessage = body(kind, rest)?;
            order_action(state, caller, Action::Place, None, |p| async move {
                orders::place_manual(state, &p, &m.order).await
            })
            .await
        }
        "cancel" => {
            let m: CancelMessage = body(kind, rest)?;
            let req = CancelRequest { reason: m.reason };
            order_action(state, caller, Action::Cancel, Some(m.order_id), |p| {
                let req = &req;
                async move { orders::cancel_by(state, &p, m.order_id, req).await }
            })
            .await
        }
        "modify" => {
            let m: ModifyMessage = body(kind, rest)?;
            order_action(state, caller, Action::Modify, Some(m.order_id), |p| {
                let changes = &m.changes;
                async move { orders::modify(state, &p, m.order_id, changes).await }
            })
            .await
        }
        "auth" => {
            let m: AuthMessage = body(kind, rest)?;
            let p = authenticate_token(state, &m.token).await?;
            if p.user_id != caller.user_id {
                return Err(ApiError::forbidden(
                    "the token is another user's: open a new connection to trade as them",
                ));
            }
            caller.credentials = bearer(&m.token)?;
            Ok(json!({"type": "authenticated", "user": p.username, "role": p.role}))
        }
        "ping" => {
            let _: PingMessage = body(kind, rest)?;
            Ok(json!({"type": "pong"}))
        }
        other => Err(ApiError::validation(
            "type",
            format!(
                "unknown message type {:?}: send place, cancel, modify, auth or ping",
                other.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// Run one order action as its REST request would run: authenticate the session's
/// credentials again, check the route's role, count it against the caller's rate limit, call
/// the route's own function and write the audit row. The answer carries the stored order.
async fn order_action<F, Fut>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    order_id: Option<i64>,
    call: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Result<qtm_store::orders::Order, ApiError>>,
{
    let (method, route) = action.route();
    let target = match order_id {
        None => route.to_string(),
        Some(id) => route.replace("{id}", &id.to_string()),
    };
    let principal = authenticate(state, &caller.credentials).await;
    let outcome = match &principal {
        Err(e) => Err(e.clone()),
        Ok(p) => match action.permit(state, p) {
            Err(e) => Err(e),
            Ok(()) if !state.allow_request(&format!("user:{}", p.user_id)) => {
                Err(ApiError::rate_limited("too many requests; slow down"))
            }
            Ok(()) => call(p.clone()).await,
        },
    };
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    // A rate-limited call leaves no row, as at the gate.
    if status != StatusCode::TOO_MANY_REQUESTS {
        let note = AuditNote {
            username: None,
            detail: Some(format!("via {ROUTE}")),
        };
        audit(
            state,
            &method,
            route,
            &target,
            principal.as_ref().ok(),
            Some(note),
            caller.ip,
            status,
        )
        .await;
    }
    let order = Order::from(outcome?);
    Ok(json!({"type": "order", "action": action.done(), "order": order}))
}

/// `{"type":"error","request_id","status","error":{"code","message","field"?}}`: the error
/// object of the REST answer, with the HTTP status it would have had.
fn error_reply(request_id: Option<Value>, e: &ApiError) -> Value {
    let mut frame = super::error_frame(e);
    frame["request_id"] = request_id.unwrap_or(Value::Null);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_bounded_and_errors_have_the_rest_shape() {
        assert_eq!(request_id(None).unwrap(), Value::Null);
        assert_eq!(request_id(Some(json!("a-1"))).unwrap(), json!("a-1"));
        assert_eq!(request_id(Some(json!(7))).unwrap(), json!(7));
        for bad in [
            json!("x".repeat(65)),
            json!(1.5),
            json!({"a": 1}),
            json!([1]),
        ] {
            let e = request_id(Some(bad.clone())).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                ("validation", Some("request_id")),
                "{bad}"
            );
        }
        let e = ApiError::validation("symbol", "symbol is empty");
        assert_eq!(
            error_reply(Some(json!(3)), &e),
            json!({"type": "error", "request_id": 3, "status": 422, "message": "symbol is empty",
                   "error": {"code": "validation", "message": "symbol is empty", "field": "symbol"}})
        );
        assert_eq!(
            transport_error("Space limit exceeded: Message too long: 9 > 8").code,
            "payload_too_large"
        );
    }
}
