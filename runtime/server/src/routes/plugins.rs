//! The seeds' `/api/v1` integration routes, over what the platform has: modules presented as
//! plugins, the signal webhook sources presented as webhook types, and the WebSocket
//! counters.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::orders::optional_body;
use super::signals::{WebhookBody, WebhookReceipt, receive_webhook};
use crate::api_types::modules::Module;
use crate::auth::access::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::paging::{NamePageQuery, Page};
use crate::state::AppState;
use crate::ws::stats::StatsSnapshot;
use qtm_store::signals::{Category, FUNDING_RATES, GLASSNODE, ONCHAIN, WHALE_ACTIVITY};
use qtm_store::{self as store};

/// The `/api/v1` routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins))
        .routes(routes!(execute_plugin))
        .routes(routes!(list_webhooks))
        .routes(routes!(receive_v1_webhook))
        .routes(routes!(websocket_stats))
}

// ---- plugins --------------------------------------------------------------------------------

/// A module as a plugin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plugin {
    /// The module id (`replay-feed`, `ingest-bridge`, `signal-webhooks`, `live-engine`): the
    /// `{name}` of `POST /api/v1/plugins/{name}/execute`.
    pub name: String,
    /// Its display name.
    pub title: String,
    /// The server's version (modules are built in).
    pub version: String,
    /// The seeds' plugin type: `data_source` for the feed, ingest and signal modules; other
    /// kinds as they are (`engine`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The module kind (`feed`, `ingest`, `signals`, `engine`).
    pub kind: String,
    pub enabled: bool,
    pub description: String,
    /// `running`, `stopped` or an error text.
    pub status: String,
}

/// The seeds' plugin type of a module kind.
pub fn plugin_type(kind: &str) -> &str {
    match kind {
        "feed" | "ingest" | "signals" => "data_source",
        other => other,
    }
}

impl From<store::modules::Module> for Plugin {
    fn from(m: store::modules::Module) -> Self {
        Plugin {
            plugin_type: plugin_type(&m.kind).to_string(),
            name: m.id,
            title: m.name,
            version: env!("CARGO_PKG_VERSION").into(),
            kind: m.kind,
            enabled: m.enabled,
            description: m.description,
            status: m.status,
        }
    }
}

/// The modules (`GET /api/modules`) presented as the seeds' plugins, by name: each with its
/// version, type (`data_source` for the market feed, the ingest bridge and the signal
/// webhooks; other kinds as they are), whether it is enabled, and its description.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", params(NamePageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Plugin>), (status = 422, body = ErrorBody)))]
async fn list_plugins(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamePageQuery>,
) -> ApiResult<ApiJson<Page<Plugin>>> {
    let mut modules = store::modules::list(&state.store).await?;
    modules.sort_by(|a, b| a.id.cmp(&b.id));
    let (range, next_cursor) = q.range_by_name(modules.iter().map(|m| m.id.as_str()))?;
    Ok(ApiJson(Page {
        items: modules.drain(range).map(Plugin::from).collect(),
        next_cursor,
    }))
}

/// The plugin's input (kept for the seeds' `execute(input)`; modules take none).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// A JSON object; echoed in the answer.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
}

/// What an execution answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Execution {
    pub plugin: String,
    /// Always `status`: modules have no actions, so executing one reports its state.
    pub action: String,
    /// The module as `GET /api/modules/{id}` shows it (status and settings).
    pub result: Module,
    /// The input given, if any.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub note: String,
}

/// "Execute" a plugin. The module system has no actions of its own (a module is switched and
/// configured: `PUT /api/modules/{id}/toggle`, `POST /api/modules/{id}/configure`), so an
/// execution runs nothing: it answers with the module's current status and settings as its
/// result, and echoes the optional `input`. 404 for an unknown plugin, 409 when it is
/// disabled.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/execute", tag = "plugins",
    params(("name" = String, Path, description = "plugin (module) name, e.g. `replay-feed`")),
    request_body(content = Option<ExecuteRequest>),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Execution), (status = 404, body = ErrorBody),
        (status = 409, description = "the plugin is disabled", body = ErrorBody)))]
async fn execute_plugin(
    State(state): State<AppState>,
    Caller(_p): Caller,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> ApiResult<ApiJson<Execution>> {
    let module = store::modules::get(&state.store, &name).await?;
    let req: ExecuteRequest = optional_body(&body)?;
    if !module.enabled {
        return Err(ApiError::conflict(format!(
            "plugin {name} is disabled: enable it with PUT /api/modules/{name}/toggle {{\"enabled\": true}}"
        )));
    }
    Ok(ApiJson(Execution {
        plugin: name,
        action: "status".into(),
        result: module.into(),
        input: req.input,
        note: "modules have no actions to run; this is the module's current status and settings"
            .into(),
    }))
}

// ---- webhooks -------------------------------------------------------------------------------

/// A webhook type: a signal source.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookType {
    /// The source name: the `{type}` of `POST /api/v1/webhooks/{type}` (and the `{source}`
    /// of `POST /api/webhooks/{source}`).
    #[serde(rename = "type")]
    pub source: String,
    /// The signal lists its signals appear in (`whale-activity`, `funding-rates`, `onchain`,
    /// `glassnode`; every signal is in `GET /api/signals`).
    pub categories: Vec<String>,
    /// Whether the server has its secret: only then does it accept requests (else 404).
    pub configured: bool,
    /// The environment variable holding the secret.
    pub secret_env: String,
    /// Where to post.
    pub url: String,
    /// How to sign: `X-QTM-Timestamp: <unix seconds>` and `X-QTM-Signature: sha256=<hex>`,
    /// the hex of HMAC-SHA256 with the secret over `"{timestamp}.{raw body}"`.
    pub signing: String,
    /// Accepted clock skew of the timestamp, seconds (`webhook_window_secs`).
    pub window_secs: i64,
}

/// The signal categories, in their list order.
const CATEGORIES: [Category; 4] = [WHALE_ACTIVITY, FUNDING_RATES, ONCHAIN, GLASSNODE];

/// The registered webhook types: every source a signal category knows (whale activity,
/// funding rates, on-chain and Glassnode metrics) and every source with a configured secret,
/// by name, with the categories its signals land in, whether the server accepts it now, and
/// how to sign a request.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "plugins", params(NamePageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<WebhookType>), (status = 422, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamePageQuery>,
) -> ApiResult<ApiJson<Page<WebhookType>>> {
    let mut sources: Vec<String> = CATEGORIES
        .iter()
        .flat_map(|c| c.sources.iter().map(|s| s.to_string()))
        .chain(state.config.webhook_secrets.keys().cloned())
        .collect();
    sources.sort();
    sources.dedup();
    let (range, next_cursor) = q.range_by_name(sources.iter().map(String::as_str))?;
    let items = sources[range]
        .iter()
        .map(|s| WebhookType {
            categories: CATEGORIES
                .iter()
                .filter(|c| c.sources.contains(&s.as_str()))
                .map(|c| c.route.to_string())
                .collect(),
            configured: state.config.webhook_secrets.contains_key(s),
            secret_env: format!(
                "QTM_WEBHOOK_SECRET_{}",
                s.to_ascii_uppercase().replace('-', "_")
            ),
            url: format!("/api/v1/webhooks/{s}"),
            signing: "X-QTM-Timestamp: <unix seconds>; X-QTM-Signature: sha256=<hex of HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>".into(),
            window_secs: state.config.webhook_window_secs,
            source: s.clone(),
        })
        .collect();
    Ok(ApiJson(Page { items, next_cursor }))
}

/// Alias of `POST /api/webhooks/{source}`: the same handler, so the same signature check,
/// replay refusal, limits and answers. Receive signed signals of source `type` (public: the
/// HMAC signature is the credential). 404 for a source without a secret, 401 for a missing or
/// wrong signature or a timestamp outside the window, 409 for a replay, 400 for a body that
/// is not JSON, 422 naming the field for a signal that is malformed.
#[utoipa::path(post, path = "/api/v1/webhooks/{type}", tag = "plugins",
    request_body(content = WebhookBody, content_type = "application/json"),
    params(
        ("type" = String, Path, description = "the source, e.g. whale-alert"),
        ("X-QTM-Timestamp" = i64, Header, description = "unix seconds when signed"),
        ("X-QTM-Signature" = String, Header,
            description = "sha256=<hex of HMAC-SHA256(secret, \"{timestamp}.{raw body}\")>"),
    ),
    security(()),
    responses((status = 200, body = WebhookReceipt), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn receive_v1_webhook(
    state: State<AppState>,
    source: ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<ApiJson<WebhookReceipt>> {
    receive_webhook(state, source, headers, body).await
}

// ---- WebSocket statistics -------------------------------------------------------------------

/// WebSocket statistics: connections open now (in total and by the path connected to: `/ws`,
/// `/ws/{topic}`, the seed presets such as `/api/ws/dashboard`, `/ws/trading`, `/ws/ingest`),
/// subscribers and events published per topic, event frames sent to clients, and the
/// `lagged` notices sent to clients that fell behind (with the messages they skipped).
#[utoipa::path(get, path = "/api/v1/websocket/stats", tag = "plugins",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = StatsSnapshot)))]
async fn websocket_stats(State(state): State<AppState>) -> ApiJson<StatsSnapshot> {
    ApiJson(state.hub.stats.snapshot())
}
