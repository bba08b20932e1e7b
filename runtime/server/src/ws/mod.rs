//! WebSocket streams: `GET /ws` (subscribe by message) and `GET /ws/{topic}` (subscribed to
//! that topic on connect); market data comes in over [`ingest`] (`GET /ws/ingest`).
//!
//! Authenticate with `?token=<access token>` (or `?api_key=`), or with a first message
//! `{"type":"auth","token":"…"}` within 10 seconds. Then send
//! `{"type":"subscribe","topic":"market-data","symbols":["SPY"]}` (or `"strategies":[…]`;
//! no list means everything on the topic), `{"type":"unsubscribe","topic":…}` and
//! `{"type":"ping"}`. Events arrive as `{"type":"event","topic","seq","key"?,"ts_ms","data"}`.
//!
//! Each client reads the hub through its own bounded queue: a client that cannot keep up
//! skips ahead and receives `{"type":"lagged","skipped":n}`; one that stops reading for
//! [`SEND_TIMEOUT`] is dropped. Neither ever slows the publishers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::auth::Principal;
use super::auth::access::{authenticate, authenticate_token};
use super::error::{ApiError, ApiPath};
use super::hub::Topic;
use super::state::AppState;

pub mod ingest;
pub mod presets;
pub mod stats;
pub mod trading;

/// How long a client may take to accept one message before it is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unauthenticated connection may wait before its auth message.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// `/ws` and `/ws/{topic}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ws", get(connect_any))
        .route("/ws/ingest", get(ingest::connect))
        .route("/ws/trading", get(trading::connect))
        .route("/ws/{topic}", get(connect_topic))
        .merge(presets::routes())
}

/// What a stream connection is subscribed to on connect, and the path it is counted under in
/// the stream statistics: `/ws` starts with nothing, `/ws/{topic}` with its topic, and the
/// presets of [`presets`] with their lists (and key filters).
#[derive(Debug, Clone, Default)]
pub struct Preset {
    /// The path connected to, as the statistics show it (`/api/ws/strategies/{id}` for every
    /// id).
    pub path: String,
    /// Each topic subscribed on connect, with its key filter (`None`: every key).
    pub topics: Vec<(Topic, Option<HashSet<String>>)>,
}

/// Credentials in the query string.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    api_key: Option<String>,
}

async fn connect_any(
    State(state): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let preset = Preset {
        path: "/ws".into(),
        topics: Vec::new(),
    };
    connect(state, q, headers, upgrade, preset).await
}

async fn connect_topic(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let t = Topic::parse(&topic).ok_or_else(|| {
        ApiError::not_found(format!(
            "no stream {topic:?}; streams: {}",
            Topic::ALL.map(Topic::as_str).join(", ")
        ))
    })?;
    let preset = Preset {
        path: format!("/ws/{}", t.as_str()),
        topics: vec![(t, None)],
    };
    connect(state, q, headers, upgrade, preset).await
}

/// Upgrade a stream connection that starts subscribed as `preset` says.
pub(crate) async fn connect(
    state: AppState,
    q: WsQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
    preset: Preset,
) -> Result<Response, ApiError> {
    let principal = upfront_principal(&state, &q, &headers).await?;
    Ok(connect_as(state, principal, upgrade, preset))
}

/// Upgrade a stream connection of `principal` (`None`: it authenticates by its first message).
pub(crate) fn connect_as(
    state: AppState,
    principal: Option<Principal>,
    upgrade: WebSocketUpgrade,
    preset: Preset,
) -> Response {
    upgrade
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| session(state, socket, principal, preset))
}

/// The caller named by credentials given with the upgrade request (`?token=`, `?api_key=` or
/// the usual headers), checked before upgrading so a bad token is a plain 401; `None` when
/// the client will authenticate with its first message.
pub(crate) async fn upfront_principal(
    state: &AppState,
    q: &WsQuery,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    Ok(match upfront_credentials(q, headers)? {
        Some(h) => Some(authenticate(state, &h).await?),
        None => None,
    })
}

/// The credentials given with the upgrade request as the headers a REST call carries them in
/// (`Authorization: Bearer` or `X-API-Key`), so [`authenticate`] checks them exactly as the
/// REST gate does; `?token=` wins over `?api_key=` over the request's own headers.
fn upfront_credentials(q: &WsQuery, headers: &HeaderMap) -> Result<Option<HeaderMap>, ApiError> {
    let mut h = HeaderMap::new();
    if let Some(t) = &q.token {
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {t}")
                .parse()
                .map_err(|_| ApiError::unauthorized("token is not valid text"))?,
        );
    } else if let Some(k) = &q.api_key {
        h.insert(
            "x-api-key",
            k.parse()
                .map_err(|_| ApiError::unauthorized("api_key is not valid text"))?,
        );
    } else {
        for name in [
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderName::from_static("x-api-key"),
        ] {
            if let Some(v) = headers.get(&name) {
                h.insert(name, v.clone());
            }
        }
        if h.is_empty() {
            return Ok(None);
        }
    }
    Ok(Some(h))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Auth {
        token: String,
    },
    Subscribe {
        topic: String,
        #[serde(default)]
        symbols: Option<Vec<String>>,
        #[serde(default)]
        strategies: Option<Vec<serde_json::Value>>,
    },
    Unsubscribe {
        topic: String,
    },
    Ping,
}

/// Per topic, `None` = every key, `Some(set)` = only these keys.
type Subscriptions = HashMap<Topic, Option<HashSet<String>>>;

/// A session's subscriptions, counted per topic in the stream statistics while it lives.
struct Counted<'a> {
    stats: &'a stats::WsStats,
    subs: Subscriptions,
}

impl<'a> Counted<'a> {
    fn new(stats: &'a stats::WsStats, subs: Subscriptions) -> Self {
        stats.resubscribed(0, stats::mask(subs.keys()));
        Counted { stats, subs }
    }

    /// Apply `f` to the subscriptions and count what it changed.
    fn change<T>(&mut self, f: impl FnOnce(&mut Subscriptions) -> T) -> T {
        let before = stats::mask(self.subs.keys());
        let out = f(&mut self.subs);
        self.stats
            .resubscribed(before, stats::mask(self.subs.keys()));
        out
    }
}

impl std::ops::Deref for Counted<'_> {
    type Target = Subscriptions;
    fn deref(&self) -> &Subscriptions {
        &self.subs
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.stats.resubscribed(stats::mask(self.subs.keys()), 0);
    }
}

fn wants(subs: &Subscriptions, topic: Topic, key: Option<&str>) -> bool {
    match subs.get(&topic) {
        None => false,
        Some(None) => true,
        Some(Some(keys)) => key.is_none_or(|k| keys.contains(k)),
    }
}

async fn send(socket: &mut WebSocket, text: impl Into<Utf8Bytes>) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn session(
    state: AppState,
    mut socket: WebSocket,
    principal: Option<Principal>,
    preset: Preset,
) {
    let principal = match principal {
        Some(p) => p,
        None => match first_message_auth(&state, &mut socket).await {
            Some(p) => p,
            None => return,
        },
    };
    metrics::gauge!("qtm_ws_sessions").increment(1.0);
    let stats = &state.hub.stats;
    let _open = stats.open(&preset.path);
    let subs: Subscriptions = preset.topics.into_iter().collect();
    let mut subs = Counted::new(stats, subs);
    let mut rx = state.hub.subscribe();
    let welcome = json!({
        "type": "welcome",
        "user": principal.username,
        "role": principal.role,
        "subscribed": subs.keys().map(|t| t.as_str()).collect::<Vec<_>>(),
        "topics": Topic::ALL.map(Topic::as_str),
    });
    if !send(&mut socket, welcome.to_string()).await {
        metrics::gauge!("qtm_ws_sessions").decrement(1.0);
        return;
    }
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    if !forward(&mut socket, &mut rx, &subs, &m, stats).await {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    metrics::counter!("qtm_ws_lagged_total").increment(n);
                    stats.lagged(n);
                    if !send(&mut socket, json!({"type": "lagged", "skipped": n}).to_string()).await {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = subs.change(|subs| handle(subs, &text));
                    if !send(&mut socket, reply.to_string()).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    metrics::gauge!("qtm_ws_sessions").decrement(1.0);
}

/// Most frames written before one flush.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Send `first` and whatever else is already queued for this client (up to
/// [`MAX_FRAMES_PER_FLUSH`]) with one flush: under a burst that is one write for many frames
/// instead of one per frame. The frames share the hub's serialized text (no copy per client).
/// Lag met while draining is reported as usual; false once the client is gone or too slow.
async fn forward(
    socket: &mut WebSocket,
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<super::hub::HubMessage>>,
    subs: &Subscriptions,
    first: &super::hub::HubMessage,
    stats: &stats::WsStats,
) -> bool {
    use futures_util::SinkExt;
    use tokio::sync::broadcast::error::TryRecvError;
    let write = async {
        let (mut queued, mut events) = (0, 0);
        if wants(subs, first.topic, first.key.as_deref()) {
            socket.feed(Message::Text(first.json.clone())).await?;
            queued += 1;
            events += 1;
        }
        while queued < MAX_FRAMES_PER_FLUSH {
            match rx.try_recv() {
                Ok(m) => {
                    if wants(subs, m.topic, m.key.as_deref()) {
                        socket.feed(Message::Text(m.json.clone())).await?;
                        queued += 1;
                        events += 1;
                    }
                }
                Err(TryRecvError::Lagged(n)) => {
                    metrics::counter!("qtm_ws_lagged_total").increment(n);
                    stats.lagged(n);
                    let notice = json!({"type": "lagged", "skipped": n}).to_string();
                    socket.feed(Message::Text(notice.into())).await?;
                    queued += 1;
                }
                Err(_) => break,
            }
        }
        if queued > 0 {
            socket.flush().await?;
            stats.sent(events);
        }
        Ok::<(), axum::Error>(())
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

/// The one error frame of every stream: `{"type":"error","status","error":{"code","message",
/// "field"?},"message"}`, with the code, message, field and HTTP status REST gives for the
/// same fault (`message` repeats `error.message` for clients that read only that).
pub(crate) fn error_frame(e: &ApiError) -> serde_json::Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(f) = &e.field {
        error["field"] = json!(f);
    }
    json!({"type": "error", "status": e.status.as_u16(), "error": error, "message": e.message})
}

/// What REST would answer for a frame that is not JSON (`malformed_json`, 400) or JSON of
/// the wrong shape (`validation`, 422).
pub(crate) fn malformed(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("message is not valid JSON: {e}"),
        ),
        Category::Data => ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("bad message: {e}"),
        ),
    }
}

/// Apply one client message; the reply says what happened or what was wrong.
fn handle(subs: &mut Subscriptions, text: &str) -> serde_json::Value {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => return error_frame(&malformed(&e)),
    };
    let topic_of = |name: &str| {
        Topic::parse(name).ok_or_else(|| {
            error_frame(&ApiError::validation(
                "topic",
                format!(
                    "unknown topic {name:?}; topics: {}",
                    Topic::ALL.map(Topic::as_str).join(", ")
                ),
            ))
        })
    };
    match msg {
        ClientMessage::Auth { .. } => error_frame(&ApiError::conflict("already authenticated")),
        ClientMessage::Ping => json!({"type": "pong"}),
        ClientMessage::Subscribe {
            topic,
            symbols,
            strategies,
        } => match topic_of(&topic) {
            Err(e) => e,
            Ok(t) => {
                let keys: Option<HashSet<String>> = match (symbols, strategies) {
                    (Some(s), _) => Some(s.into_iter().collect()),
                    (None, Some(ids)) => Some(
                        ids.into_iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                            .collect(),
                    ),
                    (None, None) => None,
                };
                let filter = keys.as_ref().map(|k| {
                    let mut v: Vec<&String> = k.iter().collect();
                    v.sort();
                    v.into_iter().cloned().collect::<Vec<_>>()
                });
                subs.insert(t, keys);
                json!({"type": "subscribed", "topic": t.as_str(), "keys": filter})
            }
        },
        ClientMessage::Unsubscribe { topic } => match topic_of(&topic) {
            Err(e) => e,
            Ok(t) => {
                subs.remove(&t);
                json!({"type": "unsubscribed", "topic": t.as_str()})
            }
        },
    }
}

async fn first_message_auth(state: &AppState, socket: &mut WebSocket) -> Option<Principal> {
    first_message_token(state, socket).await.map(|(p, _)| p)
}

/// [`first_message_auth`] that also returns the token, for sessions that authenticate it again
/// later (`/ws/trading` checks the caller on every order, as REST does per request).
async fn first_message_token(
    state: &AppState,
    socket: &mut WebSocket,
) -> Option<(Principal, String)> {
    let reply = |m: String| error_frame(&ApiError::unauthorized(m)).to_string();
    let first = tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(_) => return None,
        Err(_) => {
            let _ = send(
                socket,
                reply("authenticate within 10 seconds: {\"type\":\"auth\",\"token\":…}".into()),
            )
            .await;
            return None;
        }
    };
    match serde_json::from_str::<ClientMessage>(&text) {
        Ok(ClientMessage::Auth { token }) => match authenticate_token(state, &token).await {
            Ok(p) => Some((p, token)),
            Err(e) => {
                let _ = send(socket, reply(e.message)).await;
                let _ = socket.send(Message::Close(None)).await;
                None
            }
        },
        _ => {
            let _ = send(
                socket,
                reply("the first message must be {\"type\":\"auth\",\"token\":…}".into()),
            )
            .await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_filter_by_key_and_bad_messages_say_why() {
        let mut subs = Subscriptions::new();
        assert_eq!(
            handle(
                &mut subs,
                r#"{"type":"subscribe","topic":"market-data","symbols":["SPY"]}"#
            )["type"],
            "subscribed"
        );
        assert!(wants(&subs, Topic::MarketData, Some("SPY")));
        assert!(!wants(&subs, Topic::MarketData, Some("QQQ")));
        assert!(!wants(&subs, Topic::Trades, None));
        handle(&mut subs, r#"{"type":"subscribe","topic":"trades"}"#);
        assert!(wants(&subs, Topic::Trades, Some("anything")));
        handle(&mut subs, r#"{"type":"unsubscribe","topic":"trades"}"#);
        assert!(!wants(&subs, Topic::Trades, None));
        let e = handle(&mut subs, r#"{"type":"subscribe","topic":"nope"}"#);
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("unknown topic \"nope\"")
        );
        assert_eq!(
            (&e["error"]["code"], &e["error"]["field"], &e["status"]),
            (&json!("validation"), &json!("topic"), &json!(422))
        );
        // The codes REST gives: not JSON, and JSON of the wrong shape.
        let e = handle(&mut subs, "{");
        assert_eq!(
            (&e["error"]["code"], &e["status"]),
            (&json!("malformed_json"), &json!(400))
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("message is not valid JSON")
        );
        let e = handle(&mut subs, r#"{"type":"subscribe"}"#);
        assert_eq!(
            (&e["error"]["code"], &e["status"]),
            (&json!("validation"), &json!(422))
        );
        assert_eq!(handle(&mut subs, r#"{"type":"ping"}"#)["type"], "pong");
    }
}
