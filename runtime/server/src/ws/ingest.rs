//! `GET /ws/ingest`: the ingest bridge over a WebSocket, for feeds that push many small
//! batches and would pay an HTTP request each on `POST /api/market`.
//!
//! Authenticate as for the streams (`?token=`, `?api_key=`, headers, or a first
//! `{"type":"auth","token":…}` message); the caller must be a trader or admin. Then send
//! batches in the body format of `POST /api/market`, optionally with an `id` to match the
//! reply: `{"id": 7, "ticks": [{"symbol":"SPY","ts":1700000000,"price":470.1}]}`. Each batch
//! is checked as a whole and answered in order with `{"type":"ack","id":7,"bars":0,"ticks":1}`
//! or `{"type":"error","id":7,"error":{"code","message","field"?}}` (nothing of a refused
//! batch is taken). `{"type":"ping"}` gets `{"type":"pong"}`.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{WsQuery, first_message_auth, send, upfront_principal};
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::routes::live::{IngestBar, IngestRequest, IngestTick, MAX_INGEST, ingest_batch};
use crate::state::AppState;

/// Largest message accepted: a full batch ([`MAX_INGEST`] entries) with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// `GET /ws/ingest`.
pub async fn connect(
    State(state): State<AppState>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let principal = upfront_principal(&state, &q, &headers).await?;
    if let Some(p) = &principal {
        may_ingest(p)?;
    }
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| session(state, socket, principal)))
}

fn may_ingest(p: &Principal) -> Result<(), ApiError> {
    if p.role >= Role::Trader {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "ingesting market data needs the trader role; {} is a {}",
            p.username,
            p.role.as_str()
        )))
    }
}

/// One client message: a batch, or a ping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestMessage {
    /// `ingest` (the default) or `ping`.
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// Echoed in the reply.
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    bars: Vec<IngestBar>,
    #[serde(default)]
    ticks: Vec<IngestTick>,
}

async fn session(state: AppState, mut socket: WebSocket, principal: Option<Principal>) {
    let principal = match principal {
        Some(p) => p,
        None => match first_message_auth(&state, &mut socket).await {
            Some(p) => p,
            None => return,
        },
    };
    if let Err(e) = may_ingest(&principal) {
        let _ = send(&mut socket, error_reply(None, &e).to_string()).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let welcome = json!({
        "type": "welcome",
        "user": principal.username,
        "role": principal.role,
        "max_entries": MAX_INGEST,
    });
    let _open = state.hub.stats.open("/ws/ingest");
    if !send(&mut socket, welcome.to_string()).await {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(text) => handle(&state, text.as_bytes()),
            Message::Binary(bytes) => handle(&state, &bytes),
            Message::Close(_) => break,
            _ => continue,
        };
        metrics::counter!("qtm_ws_ingest_messages_total").increment(1);
        if !send(&mut socket, reply.to_string()).await {
            break;
        }
    }
}

/// Check and ingest one message; the reply.
fn handle(state: &AppState, raw: &[u8]) -> Value {
    let msg: IngestMessage = match serde_json::from_slice(raw) {
        Ok(m) => m,
        Err(e) => {
            return error_reply(None, &super::malformed(&e));
        }
    };
    match msg.kind.as_deref() {
        None | Some("ingest") => {}
        Some("ping") => return json!({"type": "pong", "id": msg.id}),
        Some(other) => {
            return error_reply(
                msg.id,
                &ApiError::validation(
                    "type",
                    format!("unknown message type {other:?}: send ingest batches or ping"),
                ),
            );
        }
    }
    let req = IngestRequest {
        bars: msg.bars,
        ticks: msg.ticks,
        quotes: Vec::new(),
    };
    match ingest_batch(state, &req) {
        Ok(n) => json!({"type": "ack", "id": msg.id, "bars": n.bars, "ticks": n.ticks}),
        Err(e) => error_reply(msg.id, &e),
    }
}

fn error_reply(id: Option<Value>, e: &ApiError) -> Value {
    let mut frame = super::error_frame(e);
    frame["id"] = id.unwrap_or(Value::Null);
    frame
}
