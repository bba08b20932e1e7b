//! External signals: senders post them to `POST /api/webhooks/{source}`, signed with the
//! source's secret; they are stored as named signals (which strategies read through the
//! contract's signal lookup, [`qtm_store::signals::latest_signal`]) and published on the
//! `notifications` stream. The list routes show what was received.
//!
//! Signing: `X-QTM-Timestamp: <unix seconds>` and `X-QTM-Signature: sha256=<hex>`, where the hex
//! is HMAC-SHA256 with the source's secret (`QTM_WEBHOOK_SECRET_<SOURCE>`, source in upper case
//! with `-` as `_`) over `"{timestamp}.{raw body}"`, so the timestamp cannot be swapped. A
//! request is accepted within `webhook_window_secs` of its timestamp and only once.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_types::signals::StoredSignal;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::paging::{self, Page};
use crate::state::AppState;
use qtm_store::signals::{
    self, Category, FUNDING_RATES, GLASSNODE, NewSignal, ONCHAIN, SignalFilter, WHALE_ACTIVITY,
};

/// The signals routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive_webhook))
        .routes(routes!(list_signals))
        .routes(routes!(whale_activity))
        .routes(routes!(funding_rates))
        .routes(routes!(onchain))
        .routes(routes!(glassnode))
}

/// Most signals in one webhook request.
pub const MAX_SIGNALS_PER_REQUEST: usize = 1000;

/// One signal as a sender posts it; any other fields are kept in the stored payload.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookSignal {
    /// 1 to 128 characters from letters, digits and `. _ - : /`, e.g. `whale.btc`.
    pub name: String,
    pub value: f64,
    /// Event time, integer unix seconds (default: when received).
    pub ts: Option<i64>,
}

/// A webhook body: one signal, or several under `signals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WebhookBody {
    One(WebhookSignal),
    Many { signals: Vec<WebhookSignal> },
}

/// What a webhook stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub received: usize,
    pub signals: Vec<StoredSignal>,
}

/// Receive signed signals from `source` (public: the HMAC signature is the credential).
/// 404 for a source without a secret, 401 for a missing or wrong signature or a timestamp
/// outside the window, 409 for a replay, 400 for a body that is not JSON, 422 naming the field
/// for a signal that is malformed.
#[utoipa::path(post, path = "/api/webhooks/{source}", tag = "signals",
    request_body(content = WebhookBody, content_type = "application/json"),
    params(
        ("source" = String, Path, description = "sender, e.g. whale-alert"),
        ("X-QTM-Timestamp" = i64, Header, description = "unix seconds when signed"),
        ("X-QTM-Signature" = String, Header,
            description = "sha256=<hex of HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>"),
    ),
    security(()),
    responses((status = 200, body = WebhookReceipt), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn receive_webhook(
    State(state): State<AppState>,
    ApiPath(source): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<ApiJson<WebhookReceipt>> {
    let source = source.to_ascii_lowercase();
    let Some(secret) = state.config.webhook_secrets.get(&source) else {
        return Err(ApiError::not_found(format!(
            "unknown webhook source {source:?}: no secret is configured for it (QTM_WEBHOOK_SECRET_{})",
            source.to_ascii_uppercase().replace('-', "_")
        )));
    };
    let body = body?;
    let header = |name: &str| -> ApiResult<&str> {
        headers
            .get(name)
            .ok_or_else(|| ApiError::unauthorized(format!("missing {name} header")))?
            .to_str()
            .map_err(|_| ApiError::unauthorized(format!("{name} header is not valid text")))
    };
    let ts_text = header("X-QTM-Timestamp")?;
    let signature = header("X-QTM-Signature")?;
    let mac_hex = verify(secret.as_bytes(), ts_text, &body, signature)?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| {
        ApiError::unauthorized(format!(
            "X-QTM-Timestamp {ts_text:?} is not integer unix seconds"
        ))
    })?;
    let now = qtm_store::now();
    let window = state.config.webhook_window_secs;
    if ts.abs_diff(now) > window.unsigned_abs() {
        return Err(ApiError::unauthorized(format!(
            "X-QTM-Timestamp {ts} is {} s from the server clock ({now}); requests are accepted within {window} s",
            ts.abs_diff(now)
        )));
    }
    let batch = parse_body(&body)?;
    let stored: Vec<StoredSignal> = signals::insert_batch(&state.store, &source, &mac_hex, &batch)
        .await?
        .into_iter()
        .map(StoredSignal::from)
        .collect();
    for s in &stored {
        state.hub.publish(
            Topic::Notifications,
            Some(s.name.clone()),
            &json!({"kind": "signal", "signal": s}),
        );
    }
    Ok(ApiJson(WebhookReceipt {
        received: stored.len(),
        signals: stored,
    }))
}

/// Check `sha256=<hex>` against the MAC of `"{ts_text}.{body}"` in constant time; the MAC in
/// lowercase hex on success.
fn verify(secret: &[u8], ts_text: &str, body: &[u8], signature: &str) -> ApiResult<String> {
    let hex_part = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or_else(|| ApiError::unauthorized("X-QTM-Signature must look like sha256=<hex>"))?;
    let given = hex::decode(hex_part).map_err(|_| {
        ApiError::unauthorized("X-QTM-Signature: the part after sha256= is not hex")
    })?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)
        .map_err(|e| ApiError::internal(format!("webhook secret: {e}")))?;
    mac.update(ts_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| {
        ApiError::unauthorized(
            "X-QTM-Signature does not match: sign \"{timestamp}.{raw body}\" with HMAC-SHA256 and the source's secret",
        )
    })?;
    Ok(hex::encode(given))
}

/// The signals of a body, each checked; errors name the field (`signals[2].value`).
fn parse_body(body: &[u8]) -> ApiResult<Vec<NewSignal>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::validation(
            "body",
            "expected a JSON object: one signal {\"name\", \"value\", \"ts\"?} or {\"signals\": [...]}",
        ));
    };
    if let Some(list) = obj.get("signals") {
        let Value::Array(items) = list else {
            return Err(ApiError::validation("signals", "signals must be an array"));
        };
        if items.is_empty() || items.len() > MAX_SIGNALS_PER_REQUEST {
            return Err(ApiError::validation(
                "signals",
                format!(
                    "signals must hold 1 to {MAX_SIGNALS_PER_REQUEST} signals, not {}",
                    items.len()
                ),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(o) => parse_signal(o, &format!("signals[{i}].")),
                _ => Err(ApiError::validation(
                    format!("signals[{i}]"),
                    "each signal must be an object with name and value",
                )),
            })
            .collect()
    } else {
        Ok(vec![parse_signal(&obj, "")?])
    }
}

fn parse_signal(o: &Map<String, Value>, at: &str) -> ApiResult<NewSignal> {
    let field = |f: &str| format!("{at}{f}");
    let name = match o.get("name") {
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(ApiError::validation(field("name"), "name must be a string")),
        None => return Err(ApiError::validation(field("name"), "name is missing")),
    };
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        return Err(ApiError::validation(
            field("name"),
            format!(
                "name {name:?} must have 1 to 128 characters from letters, digits and . _ - : /"
            ),
        ));
    }
    let value = match o.get("value") {
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
        None => return Err(ApiError::validation(field("value"), "value is missing")),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::validation(field("value"), "value must be a finite number"))?;
    let ts = match o.get("ts") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|t| t >= 0) => n.as_i64(),
        Some(other) => {
            return Err(ApiError::validation(
                field("ts"),
                format!("ts must be integer unix seconds, not {other}"),
            ));
        }
    };
    Ok(NewSignal {
        name: name.to_string(),
        value,
        ts,
        payload: Value::Object(o.clone()),
    })
}

/// Paging of a category list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most signals to return, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only signals received at or after this unix second.
    pub since: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// One page of the stored signals matching `filter` (its `limit` is the page's), continuing
/// after `cursor`.
async fn list_stored(
    state: &AppState,
    mut filter: SignalFilter,
    cursor: Option<&str>,
) -> ApiResult<Page<StoredSignal>> {
    let limit = filter.limit;
    filter.before = paging::id_cursor(cursor)?;
    filter.limit = limit + 1;
    let rows = signals::list(&state.store, &filter).await?;
    Ok(Page::from_overfetch(
        rows,
        limit,
        |s| s.id.to_string(),
        StoredSignal::from,
    ))
}

async fn list_category(
    state: &AppState,
    category: Category,
    p: ListParams,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    let filter = SignalFilter {
        category: Some(category),
        since: p.since,
        limit: paging::limit(p.limit, paging::MAX_LIMIT)?,
        ..Default::default()
    };
    Ok(ApiJson(
        list_stored(state, filter, p.cursor.as_deref()).await?,
    ))
}

/// Whale activity received, newest first: signals from the sources `whale-alert` or `whales`,
/// or named `whale.*` or `whale-activity.*` (from any source).
#[utoipa::path(get, path = "/api/signals/whale-activity", tag = "signals", params(ListParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StoredSignal>), (status = 422, body = ErrorBody)))]
async fn whale_activity(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    list_category(&state, WHALE_ACTIVITY, p).await
}

/// Funding rates received, newest first: signals from the sources `funding` or
/// `funding-rates`, or named `funding.*` or `funding-rate.*` (from any source).
#[utoipa::path(get, path = "/api/signals/funding-rates", tag = "signals", params(ListParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StoredSignal>), (status = 422, body = ErrorBody)))]
async fn funding_rates(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    list_category(&state, FUNDING_RATES, p).await
}

/// On-chain metrics received, newest first: signals from the sources `onchain` or
/// `glassnode`, or named `onchain.*` (from any source).
#[utoipa::path(get, path = "/api/signals/onchain", tag = "signals", params(ListParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StoredSignal>), (status = 422, body = ErrorBody)))]
async fn onchain(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    list_category(&state, ONCHAIN, p).await
}

/// Glassnode metrics received, newest first: signals from the source `glassnode`, or named
/// `glassnode.*` (from any source). (They are on-chain metrics too, so they are also in
/// `GET /api/signals/onchain`.)
#[utoipa::path(get, path = "/api/signals/glassnode", tag = "signals", params(ListParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StoredSignal>), (status = 422, body = ErrorBody)))]
async fn glassnode(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    list_category(&state, GLASSNODE, p).await
}

/// Filters of the generic list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignalsParams {
    /// Exact signal name.
    pub name: Option<String>,
    /// Exact webhook source.
    pub source: Option<String>,
    /// Most signals to return, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only signals received at or after this unix second.
    pub since: Option<i64>,
    /// Only signals whose payload has a numeric `confidence` at or above this (0 to 1,
    /// inclusive); signals without one are left out. Absent: no filter.
    #[param(minimum = 0.0, maximum = 1.0)]
    pub min_confidence: Option<f64>,
    /// Continue after this cursor: the `next_cursor` of the page before.
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// Every signal received, newest first, optionally by name or source, or those of at least
/// `min_confidence` (the payload's `confidence` field, as the seeds' signal feed filters;
/// filtered in the query, so every page is full until the last).
#[utoipa::path(get, path = "/api/signals", tag = "signals", params(SignalsParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StoredSignal>), (status = 422, body = ErrorBody)))]
async fn list_signals(
    State(state): State<AppState>,
    ApiQuery(p): ApiQuery<SignalsParams>,
) -> ApiResult<ApiJson<Page<StoredSignal>>> {
    let filter = SignalFilter {
        category: None,
        name: p.name.filter(|n| !n.is_empty()),
        source: p
            .source
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| !s.is_empty()),
        since: p.since,
        before: None,
        min_confidence: match p.min_confidence {
            Some(c) if !(0.0..=1.0).contains(&c) => {
                return Err(ApiError::validation(
                    "min_confidence",
                    format!("min_confidence must be 0 to 1, got {c}"),
                ));
            }
            other => other,
        },
        limit: paging::limit(p.limit, paging::MAX_LIMIT)?,
    };
    Ok(ApiJson(
        list_stored(&state, filter, p.cursor.as_deref()).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, ts: &str, body: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let body = r#"{"name":"whale.btc","value":1}"#;
        let sig = sign("s3cret", "100", body);
        assert!(verify(b"s3cret", "100", body.as_bytes(), &sig).is_ok());
        let upper = sig.replace("sha256=", "").to_ascii_uppercase();
        assert_eq!(
            verify(
                b"s3cret",
                "100",
                body.as_bytes(),
                &format!("sha256={upper}")
            )
            .unwrap(),
            sig.trim_start_matches("sha256=")
        );
        for (secret, ts, body, sig) in [
            ("other", "100", body, sig.as_str()),
            ("s3cret", "101", body, sig.as_str()),
            ("s3cret", "100", "{}", sig.as_str()),
            ("s3cret", "100", body, "sha1=00"),
            ("s3cret", "100", body, "sha256=zz"),
        ] {
            let e = verify(secret.as_bytes(), ts, body.as_bytes(), sig).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{}", e.message);
        }
    }

    #[test]
    fn bodies_name_the_bad_field() {
        let ok = parse_body(
            br#"{"signals":[{"name":"a","value":1,"ts":5,"x":"y"},{"name":"b","value":2.5}]}"#,
        )
        .unwrap();
        assert_eq!((ok[0].ts, ok[1].value), (Some(5), 2.5));
        assert_eq!(ok[0].payload["x"], "y");
        let field = |b: &str| parse_body(b.as_bytes()).unwrap_err().field;
        assert_eq!(field(r#"{"value":1}"#).as_deref(), Some("name"));
        assert_eq!(
            field(r#"{"name":"a b","value":1}"#).as_deref(),
            Some("name")
        );
        assert_eq!(
            field(r#"{"name":"a","value":"1"}"#).as_deref(),
            Some("value")
        );
        assert_eq!(
            field(r#"{"name":"a","value":1,"ts":1.5}"#).as_deref(),
            Some("ts")
        );
        assert_eq!(
            field(r#"{"signals":[{"name":"a","value":1},{"name":"b"}]}"#).as_deref(),
            Some("signals[1].value")
        );
        assert_eq!(field(r#"{"signals":[]}"#).as_deref(), Some("signals"));
        assert_eq!(field("[1]").as_deref(), Some("body"));
        let e = parse_body(b"{nope").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
    }
}
