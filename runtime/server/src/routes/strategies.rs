//! Strategies: upload components (checked by the sandbox's upload gate first), keep their
//! versions, configure, enable and disable the default instance, clone, delete, and read what
//! the platform offers to start from (types and templates) and how a strategy performed.
//!
//! Changes are published on the `strategy-updates` stream with the strategy id as key
//! (`{"event": "strategy.created" | "strategy.version" | "strategy.configured" |
//! "strategy.enabled" | "strategy.disabled" | "strategy.deleted", "strategy_id", …}`); uploads
//! are also announced on `notifications`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_types::strategies::{Instance, StrategyRecord, Version};
use crate::auth::Role;
use crate::auth::access::Caller;
use crate::cache::CachedJson;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::hub::Topic;
use crate::paging::{Page, PageQuery};
use crate::state::AppState;
use qtm_core::model::{Param, ParamKind, ParamSpec, ParamValue, StrategyInfo};
use qtm_live::LiveError;
use qtm_sandbox::{SandboxError, StrategyCode};
use qtm_store::{
    self as store,
    backtests::Backtest,
    strategies::{NewStrategy, NewVersion},
};

/// The strategies routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_strategies, create_strategy))
        .routes(routes!(strategy_types))
        .routes(routes!(strategy_templates))
        .routes(routes!(get_strategy, delete_strategy))
        .routes(routes!(list_versions, create_version))
        .routes(routes!(clone_strategy))
        .routes(routes!(enable_strategy))
        .routes(routes!(disable_strategy))
        .routes(routes!(configure_strategy))
        .routes(routes!(strategy_performance))
}

// ---------------------------------------------------------------------------------------------
// Shared with the backtest routes: parameters, symbols, loading stored components.

/// A live-engine refusal as an API error: what is wrong with the strategy is a 422, a
/// strategy that is not running a 409.
pub(crate) fn live_error(e: LiveError) -> ApiError {
    match e {
        LiveError::Store(e) => e.into(),
        LiveError::NotRunning(_) | LiveError::AlreadyRunning(_) => {
            ApiError::conflict(e.to_string())
        }
        LiveError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
        LiveError::UnknownSymbol(_) => ApiError::validation("symbols", e.to_string()),
        LiveError::BadBar(_) => ApiError::validation("bars", e.to_string()),
        LiveError::Refused(_) => ApiError::validation("strategy", e.to_string()),
        // Nothing was kept (a manual order is taken off the exchange again): the caller
        // may retry, and should know why.
        LiveError::NotStored(_) => {
            tracing::error!(error = %e, "the live recorder could not store a change");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_stored", e.to_string())
        }
    }
}

/// The `describe` output stored with a version, decoded.
pub(crate) fn info_of(version: &store::strategies::Version) -> ApiResult<StrategyInfo> {
    serde_json::from_value(version.describe.clone()).map_err(|e| {
        ApiError::internal(format!(
            "strategy version {} has an unreadable describe output: {e}",
            version.id
        ))
    })
}

/// `{"fast": 10, "mode": "flip"}` → parameters, each checked against `info` so an error names
/// `params.<name>` and says what is wrong.
pub(crate) fn params_from_json(info: &StrategyInfo, v: &Value) -> ApiResult<Vec<Param>> {
    qtm_core::config::params_from_json(info, v).map_err(config_error)
}

/// Parameters as the JSON object stored and shown.
pub(crate) fn params_to_json(params: &[Param]) -> Value {
    qtm_core::config::params_to_json(params)
}

/// A configuration error as the API's 422 on its field.
pub(crate) fn config_error(e: qtm_core::config::ConfigError) -> ApiError {
    ApiError::validation(e.field, e.message)
}

/// Stored parameters that are still valid for `info` (a new version may have dropped or
/// narrowed some); the others fall back to their defaults.
pub(crate) fn carried_params(info: &StrategyInfo, stored: &Value) -> Vec<Param> {
    let mut out = Vec::new();
    for (name, value) in stored.as_object().into_iter().flatten() {
        if let Ok(mut ps) = params_from_json(info, &json!({ name: value })) {
            out.append(&mut ps);
        }
    }
    out
}

/// `base` overlaid with `given`, resolved against `info` (every parameter present).
pub(crate) fn resolve(
    info: &StrategyInfo,
    base: Vec<Param>,
    given: Vec<Param>,
) -> ApiResult<Vec<Param>> {
    let mut merged: Vec<Param> = base
        .into_iter()
        .filter(|b| !given.iter().any(|g| g.name == b.name))
        .collect();
    merged.extend(given);
    info.resolve_params(&merged)
        .map_err(|e| ApiError::validation("params", e))
}

/// Check a list of symbols: 1 to 32 characters from letters, digits and `. _ - / : ^ =`, no
/// duplicates.
pub(crate) fn check_symbols(field: &str, symbols: &[String]) -> ApiResult<()> {
    qtm_core::config::check_symbols(field, symbols).map_err(config_error)
}

/// What the sandbox said about a component, as an API error on `field`.
pub(crate) fn sandbox_error(field: &str, e: SandboxError) -> ApiError {
    match e {
        SandboxError::Gate(_)
        | SandboxError::Refused(_)
        | SandboxError::Compile(_)
        | SandboxError::Configure(_)
        | SandboxError::Instantiate(_)
        | SandboxError::Trapped(_)
        | SandboxError::Disabled(_) => ApiError::validation(field, e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Run the upload gate on `bytes`, compile and describe the component (off the async
/// threads: it is CPU work).
pub(crate) async fn load_component(
    state: &AppState,
    bytes: Bytes,
) -> Result<Arc<StrategyCode>, SandboxError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.sandbox.load(&bytes))
        .await
        .unwrap_or_else(|e| Err(SandboxError::Engine(format!("the loader panicked: {e}"))))
}

/// Load a stored version and let the strategy itself accept `params` and `symbols` (its own
/// constructor may refuse combinations the declared ranges allow, e.g. fast ≥ slow).
async fn check_configuration(
    state: &AppState,
    version_id: i64,
    params: &[Param],
    symbols: &[String],
) -> ApiResult<()> {
    let bytes = store::strategies::component(&state.store, version_id).await?;
    let code = load_component(state, bytes.into())
        .await
        .map_err(|e| sandbox_error("file", e))?;
    let (params, symbols) = (params.to_vec(), symbols.to_vec());
    tokio::task::spawn_blocking(move || code.instantiate(&params, &symbols).map(drop))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            SandboxError::Configure(m) => ApiError::validation(
                "params",
                format!("the strategy refused this configuration: {m}"),
            ),
            other => sandbox_error("params", other),
        })
}

pub(crate) fn publish(state: &AppState, strategy_id: i64, data: Value) {
    state
        .hub
        .publish(Topic::StrategyUpdates, Some(strategy_id.to_string()), &data);
}

// ---------------------------------------------------------------------------------------------
// Uploads.

/// A component upload: the bytes and optional name and description.
struct Upload {
    bytes: Bytes,
    name: Option<String>,
    description: Option<String>,
    /// Where the component came from: `upload`, or `rules` when it was built from rule text.
    source: &'static str,
}

/// `POST /api/strategies` as JSON: a rule program (`docs/rules.md`), built into a component.
/// An upload as a multipart form (what `curl -F file=@x.wasm` sends); other fields are
/// refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The form is read field by field; this only documents it.
pub struct UploadForm {
    /// The component (`.wasm`).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Name of the strategy (default: what its `describe` reports).
    name: Option<String>,
    /// Description (default: none).
    description: Option<String>,
}

/// A component sent as the raw body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // The body is read as bytes; this only documents it.
pub struct ComponentBytes(Vec<u8>);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesUpload {
    /// Name of the strategy (also what its component's `describe` reports).
    pub name: String,
    /// The program text (`.rules`).
    pub rules: String,
    /// Description (default: none).
    pub description: Option<String>,
}

/// At most this many of a program's problems go into one error message.
const RULES_PROBLEMS_SHOWN: usize = 50;

/// Check a rule program and build its component off the async threads (checking and
/// componentizing take milliseconds); every problem comes back at its `line:col`.
async fn build_rules(name: String, rules: String) -> ApiResult<Bytes> {
    let built =
        tokio::task::spawn_blocking(move || qtm_rules_component::compile(&name, rules.as_bytes()))
            .await
            .map_err(|e| ApiError::internal(format!("building the rule program: {e}")))?;
    match built {
        Ok(c) => Ok(Bytes::from(c.component)),
        Err(problems) => {
            let mut text: Vec<String> = problems
                .iter()
                .take(RULES_PROBLEMS_SHOWN)
                .map(ToString::to_string)
                .collect();
            if problems.len() > RULES_PROBLEMS_SHOWN {
                text.push(format!(
                    "… and {} more",
                    problems.len() - RULES_PROBLEMS_SHOWN
                ));
            }
            Err(ApiError::validation(
                "rules",
                format!(
                    "the rule program has {} problem(s): {}",
                    problems.len(),
                    text.join("; ")
                ),
            ))
        }
    }
}

/// Read an upload: `multipart/form-data` (field `file`, optional `name`, `description`) or
/// the raw component (`application/wasm`, `application/octet-stream`), at most
/// `max_upload_bytes` (the route's own limit replaces the smaller JSON body limit).
async fn read_upload(state: &AppState, mut req: Request) -> ApiResult<Upload> {
    let limit = state.config.max_upload_bytes;
    DefaultBodyLimit::max(limit).apply(&mut req);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("upload too large: the limit is {limit} bytes (max_upload_bytes)"),
        )
        .with_field("file")
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime {
        "multipart/form-data" => {
            let mut form = Multipart::from_request(req, &())
                .await
                .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
            let mut upload = Upload {
                bytes: Bytes::new(),
                name: None,
                description: None,
                source: "upload",
            };
            let mut have_file = false;
            loop {
                let field = match form.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(too_large());
                    }
                    Err(e) => {
                        return Err(ApiError::bad_request(format!(
                            "malformed multipart body: {}",
                            e.body_text()
                        )));
                    }
                };
                let name = field.name().unwrap_or("").to_string();
                let data = field.bytes().await.map_err(|e| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large()
                    } else {
                        ApiError::bad_request(format!(
                            "malformed multipart field `{name}`: {}",
                            e.body_text()
                        ))
                    }
                })?;
                let text = |data: &Bytes| {
                    String::from_utf8(data.to_vec()).map_err(|_| {
                        ApiError::validation(name.clone(), format!("`{name}` is not UTF-8 text"))
                    })
                };
                match name.as_str() {
                    "file" if have_file => {
                        return Err(ApiError::validation(
                            "file",
                            "send one `file` field per upload",
                        ));
                    }
                    "file" => {
                        upload.bytes = data;
                        have_file = true;
                    }
                    "name" => upload.name = Some(text(&data)?),
                    "description" => upload.description = Some(text(&data)?),
                    other => {
                        return Err(ApiError::validation(
                            other,
                            format!(
                                "unknown form field `{other}`: expected `file`, `name` and `description`"
                            ),
                        ));
                    }
                }
            }
            if !have_file {
                return Err(ApiError::validation(
                    "file",
                    "the multipart upload has no `file` field with the component",
                ));
            }
            Ok(upload)
        }
        "application/wasm" | "application/octet-stream" => {
            let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::from(e)
                }
            })?;
            Ok(Upload {
                bytes,
                name: None,
                description: None,
                source: "upload",
            })
        }
        "application/json" => {
            // The server's JSON rules: a syntax error is 400, a wrong shape 422.
            let axum::Json(r) = axum::Json::<RulesUpload>::from_request(req, &())
                .await
                .map_err(|e| {
                    let e = ApiError::from(e);
                    if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                        return too_large();
                    }
                    let message = format!(
                        "{}; expected {{\"name\", \"rules\"[, \"description\"]}}",
                        e.message
                    );
                    ApiError { message, ..e }
                })?;
            let name = check_name(&r.name)?;
            let bytes = build_rules(name.clone(), r.rules).await?;
            Ok(Upload {
                bytes,
                name: Some(name),
                description: r.description,
                source: "rules",
            })
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the component as multipart/form-data (field `file`) or as raw bytes with \
                 `Content-Type: application/wasm`, or a rule program as JSON \
                 (`{{\"name\", \"rules\"}}`); got {:?}",
                if mime.is_empty() {
                    "no Content-Type"
                } else {
                    mime
                }
            ),
        )),
    }
}

fn check_name(name: &str) -> ApiResult<String> {
    qtm_core::config::check_name(name).map_err(config_error)
}

fn check_description(d: &str) -> ApiResult<String> {
    qtm_core::config::check_description(d).map_err(config_error)
}

/// Gate, compile and describe an upload; what a version row needs.
struct Checked {
    code: Arc<StrategyCode>,
    bytes: Bytes,
    describe: Value,
}

async fn check_upload(state: &AppState, bytes: Bytes) -> ApiResult<Checked> {
    let code = load_component(state, bytes.clone())
        .await
        .map_err(|e| sandbox_error("file", e))?;
    let describe = serde_json::to_value(code.info()).map_err(ApiError::internal)?;
    Ok(Checked {
        code,
        bytes,
        describe,
    })
}

impl Checked {
    fn version(&self, created_by: i64) -> NewVersion<'_> {
        NewVersion {
            content_sha256: self.code.sha256(),
            contract_version: &self.code.gate().contract,
            describe: &self.describe,
            component: &self.bytes,
            size: None,
            created_by: Some(created_by),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Listing and reading.

/// The key numbers of a finished backtest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BacktestBrief {
    pub id: i64,
    pub status: String,
    pub version: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub final_equity: Option<f64>,
    pub total_return_pct: Option<f64>,
    pub sharpe: Option<f64>,
    pub max_drawdown_pct: Option<f64>,
    pub n_trades: Option<i64>,
    pub trades_sha256: Option<String>,
    pub error: Option<String>,
}

impl From<&Backtest> for BacktestBrief {
    fn from(b: &Backtest) -> Self {
        let m = |k: &str| {
            b.metrics
                .as_ref()
                .and_then(|m| m.get(k))
                .and_then(Value::as_f64)
        };
        BacktestBrief {
            id: b.id,
            status: b.status.clone(),
            version: b.version,
            created_at: b.created_at,
            finished_at: b.finished_at,
            final_equity: m("final_equity"),
            total_return_pct: m("total_return_pct"),
            sharpe: m("sharpe"),
            max_drawdown_pct: m("max_drawdown_pct"),
            n_trades: b
                .metrics
                .as_ref()
                .and_then(|m| m.get("n_trades"))
                .and_then(Value::as_i64),
            trades_sha256: b.trades_sha256.clone(),
            error: b.error.clone(),
        }
    }
}

/// A strategy as listed: its record, what its code declares, and its newest finished backtest.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyView {
    #[serde(flatten)]
    pub record: StrategyRecord,
    /// The current version's `describe`: name, version, description, symbols, params.
    #[schema(value_type = Object)]
    pub info: Value,
    /// The newest finished backtest, if any.
    pub latest_backtest: Option<BacktestBrief>,
    /// Where an imported strategy came from (`GET /api/strategies/{id}` only; absent for
    /// uploads and in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// Where an imported strategy came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Provenance {
    /// The source database's URL without credentials, or `upload:<file name>`.
    pub source: String,
    /// The query that read it.
    pub query: String,
    /// The row's key.
    pub row_key: String,
    /// SHA-256 of what the row defined (code, parameters, symbols, name, description).
    pub content_sha256: String,
    /// The version the latest import of the row made or kept.
    pub version: i64,
    /// Who imported it.
    pub imported_by: Option<i64>,
    /// When, unix seconds.
    pub imported_at: i64,
}

impl From<store::imports::Provenance> for Provenance {
    fn from(p: store::imports::Provenance) -> Self {
        Provenance {
            source: p.source,
            query: p.query,
            row_key: p.row_key,
            content_sha256: p.content_sha256,
            version: p.version,
            imported_by: p.imported_by,
            imported_at: p.imported_at,
        }
    }
}

pub(crate) fn view(
    record: store::strategies::StrategyRecord,
    latest: Option<&Backtest>,
) -> StrategyView {
    StrategyView {
        info: record.current_version.describe.clone(),
        latest_backtest: latest.map(BacktestBrief::from),
        record: record.into(),
        provenance: None,
    }
}

/// Every strategy with its current version, parameters, status and latest backtest, by id,
/// one page at a time.
#[utoipa::path(get, path = "/api/strategies", tag = "strategies", params(PageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<StrategyView>), (status = 422, body = ErrorBody)))]
async fn list_strategies(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<CachedJson> {
    let store = &state.store;
    let build = || async {
        let records = store::strategies::list(store).await?;
        let latest = store::backtests::latest_done(store).await?;
        q.page_by_id(
            records,
            |r| r.strategy.id,
            |r| {
                let l = latest.get(&r.strategy.id);
                view(r, l)
            },
        )
    };
    if q.limit.is_none() && q.cursor.is_none() {
        // Dashboards poll the first page; it changes only when the catalog does, so it is
        // served from a serialized copy (four queries and the serialization were most of its
        // cost).
        state
            .strategy_list
            .get_or_build(|| store.catalog_generation(), build)
            .await
    } else {
        CachedJson::of(&build().await?)
    }
}

/// One strategy.
#[utoipa::path(get, path = "/api/strategies/{id}", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = StrategyView), (status = 404, body = ErrorBody)))]
async fn get_strategy(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<StrategyView>> {
    let record = store::strategies::get(&state.store, id).await?;
    let latest = store::backtests::list(&state.store, Some(id), None, 50)
        .await?
        .into_iter()
        .find(|b| b.status == "done");
    let mut shown = view(record, latest.as_ref());
    shown.provenance = store::imports::provenance(&state.store, id)
        .await?
        .map(Provenance::from);
    Ok(ApiJson(shown))
}

/// `?name=` for raw uploads.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Name of the strategy (raw uploads; default: the name the component declares).
    pub name: Option<String>,
    /// Description (raw uploads; default: the component's own).
    pub description: Option<String>,
}

/// Upload a strategy component: multipart (`file`, optional `name`, `description`) or the raw
/// bytes (`Content-Type: application/wasm` or `application/octet-stream`, `?name=`), or create
/// one from a rule program: JSON `{"name", "rules"[, "description"]}` (`docs/rules.md`; its
/// problems come back as a 422 listing each at its `line:col`). The
/// upload gate checks it first (component, contract, imports, size); it is then compiled and
/// described, and stored as version 1 with a disabled default instance.
#[utoipa::path(post, path = "/api/strategies", tag = "strategies",
    params(UploadQuery),
    request_body(description = "the component: a multipart form (field `file`) or the raw bytes; or a rule program as JSON `{\"name\", \"rules\"}`",
        content((UploadForm = "multipart/form-data"), (ComponentBytes = "application/wasm"),
            (ComponentBytes = "application/octet-stream"), (RulesUpload = "application/json"))),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 201, body = StrategyView), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    req: Request,
) -> ApiResult<(StatusCode, ApiJson<StrategyView>)> {
    let upload = read_upload(&state, req).await?;
    let name = upload.name.or(q.name).map(|n| check_name(&n)).transpose()?;
    let description = upload
        .description
        .or(q.description)
        .map(|d| check_description(&d))
        .transpose()?;
    let checked = check_upload(&state, upload.bytes).await?;
    let info = checked.code.info();
    let name = match name {
        Some(n) => n,
        None => check_name(&info.name)?,
    };
    let description = description.unwrap_or_else(|| info.description.clone());
    let params = info
        .resolve_params(&[])
        .map_err(|e| ApiError::validation("file", format!("the component's defaults: {e}")))?;
    let record = store::strategies::create(
        &state.store,
        &NewStrategy {
            name: &name,
            description: &description,
            owner_id: Some(p.user_id),
            source: upload.source,
            cloned_from: None,
        },
        &checked.version(p.user_id),
        &params_to_json(&params),
        &info.symbols,
    )
    .await?;
    let id = record.strategy.id;
    publish(
        &state,
        id,
        json!({"event": "strategy.created", "strategy_id": id, "name": name, "version": 1,
               "content_sha256": checked.code.sha256(), "by": p.username}),
    );
    state.hub.publish(
        Topic::Notifications,
        None,
        &json!({"event": "strategy.created", "strategy_id": id,
                "message": format!("{} uploaded strategy {name:?} ({})", p.username, info.name)}),
    );
    Ok((StatusCode::CREATED, ApiJson(view(record, None))))
}

/// `?activate=` for new versions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// Move the default instance to the new version (default true); its parameters carry over
    /// where the new version still accepts them. An instance running live is never moved by
    /// an upload: `POST /api/strategy-instances/{id}/swap` swaps it to the newest version.
    pub activate: Option<bool>,
}

/// Upload a new version of a strategy (same forms as `POST /api/strategies`; `name` and
/// `description` are ignored). Versions count up from 1.
#[utoipa::path(post, path = "/api/strategies/{id}/versions", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id"), VersionQuery),
    request_body(description = "the component: a multipart form (field `file`) or the raw bytes",
        content((UploadForm = "multipart/form-data"), (ComponentBytes = "application/wasm"),
            (ComponentBytes = "application/octet-stream"))),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 201, body = Version), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_version(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    req: Request,
) -> ApiResult<(StatusCode, ApiJson<Version>)> {
    // The body first: answering before it is read would cost the client its connection.
    let upload = read_upload(&state, req).await?;
    require_owner(&state, &p, id, "upload a version to").await?;
    let current = store::strategies::get(&state.store, id).await?;
    let checked = check_upload(&state, upload.bytes).await?;
    // Only a swap changes what a running instance runs: moving its stored version here
    // would make the store and the engine disagree until a swap, and for good if the swap
    // is refused. A stopped instance moves at once.
    let running = state
        .live
        .instances()
        .iter()
        .any(|l| l.strategy_id == id && l.state == "running");
    let activate = q.activate.unwrap_or(true) && !running;
    let params = if activate {
        let info = checked.code.info();
        let carried = carried_params(info, &current.instance.params);
        Some(params_to_json(&resolve(info, carried, Vec::new())?))
    } else {
        None
    };
    let version = store::strategies::add_version(
        &state.store,
        id,
        &checked.version(p.user_id),
        params.as_ref(),
    )
    .await?;
    publish(
        &state,
        id,
        json!({"event": "strategy.version", "strategy_id": id, "version": version.version,
               "activated": activate, "content_sha256": version.content_sha256, "by": p.username}),
    );
    state.hub.publish(
        Topic::Notifications,
        None,
        &json!({"event": "strategy.version", "strategy_id": id,
                "message": format!("{} uploaded version {} of strategy {:?}", p.username, version.version, current.strategy.name)}),
    );
    Ok((StatusCode::CREATED, ApiJson(version.into())))
}

/// Every version of a strategy, oldest first.
#[utoipa::path(get, path = "/api/strategies/{id}/versions", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id"), PageQuery),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Page<Version>), (status = 404, body = ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Version>>> {
    let versions = store::strategies::versions(&state.store, id).await?;
    Ok(ApiJson(q.page_by_id(versions, |v| v.id, Version::from)?))
}

/// A clone's name, parameters and symbols (each defaults to the source's).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    pub symbols: Option<Vec<String>>,
}

/// A new strategy with a copy of this one's current version, configured like it except for
/// what the request changes.
#[utoipa::path(post, path = "/api/strategies/{id}/clone", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    request_body = CloneRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 201, body = StrategyView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn clone_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<CloneRequest>,
) -> ApiResult<(StatusCode, ApiJson<StrategyView>)> {
    let record = make_clone(&state, &p, id, req).await?;
    announce_clone(&state, &p, id, &record);
    Ok((StatusCode::CREATED, ApiJson(view(record, None))))
}

/// Store a clone of strategy `id` (its current version, configured like it except for what
/// `req` changes); the caller announces it ([`announce_clone`]) or deletes it again.
pub(crate) async fn make_clone(
    state: &AppState,
    p: &crate::auth::Principal,
    id: i64,
    req: CloneRequest,
) -> ApiResult<store::strategies::StrategyRecord> {
    let source = store::strategies::get(&state.store, id).await?;
    let info = info_of(&source.current_version)?;
    let name = match &req.name {
        Some(n) => check_name(n)?,
        None => check_name(&format!("{} (copy)", source.strategy.name))?,
    };
    let given = match &req.params {
        Some(v) => params_from_json(&info, v)?,
        None => Vec::new(),
    };
    let params = resolve(&info, carried_params(&info, &source.instance.params), given)?;
    let symbols = req.symbols.unwrap_or(source.instance.symbols.clone());
    check_symbols("symbols", &symbols)?;
    if req.params.is_some() {
        check_configuration(state, source.current_version.id, &params, &symbols).await?;
    }
    let v = &source.current_version;
    let component = store::strategies::component(&state.store, v.id).await?;
    let record = store::strategies::create(
        &state.store,
        &NewStrategy {
            name: &name,
            description: &source.strategy.description,
            owner_id: Some(p.user_id),
            source: "clone",
            cloned_from: Some(id),
        },
        &NewVersion {
            content_sha256: &v.content_sha256,
            contract_version: &v.contract_version,
            describe: &v.describe,
            component: &component,
            size: None,
            created_by: Some(p.user_id),
        },
        &params_to_json(&params),
        &symbols,
    )
    .await?;
    Ok(record)
}

/// Announce a clone stored by [`make_clone`], once nothing can undo it any more.
pub(crate) fn announce_clone(
    state: &AppState,
    p: &crate::auth::Principal,
    source: i64,
    record: &store::strategies::StrategyRecord,
) {
    let new_id = record.strategy.id;
    publish(
        state,
        new_id,
        json!({"event": "strategy.created", "strategy_id": new_id,
               "name": record.strategy.name, "version": 1, "cloned_from": source,
               "by": p.username}),
    );
}

/// Parameters and symbols for the default instance.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureRequest {
    /// `{"fast": 10, …}`: checked against the version's `describe`; parameters not named keep
    /// their current values.
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// Symbols to trade (absent: unchanged): at most 1000 different ones, each 1 to 32
    /// letters, digits or `. _ - / : ^ =`.
    #[schema(max_items = 1000, inline, value_type = Option<std::collections::BTreeSet<crate::api_types::Symbol>>)]
    pub symbols: Option<Vec<String>>,
}

/// Configure the default instance. Parameters are checked against what the component
/// declares (unknown names, wrong types, out-of-range values are refused naming
/// `params.<name>`) and then by the strategy itself; the resolved parameters are returned.
#[utoipa::path(put, path = "/api/strategies/{id}/configure", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    request_body = ConfigureRequest,
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn configure_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ConfigureRequest>,
) -> ApiResult<ApiJson<Instance>> {
    require_owner(&state, &p, id, "configure").await?;
    let record = store::strategies::get(&state.store, id).await?;
    let info = info_of(&record.current_version)?;
    let given = match &req.params {
        Some(v) => params_from_json(&info, v)?,
        None => Vec::new(),
    };
    let params = resolve(&info, carried_params(&info, &record.instance.params), given)?;
    let symbols = req.symbols.unwrap_or(record.instance.symbols.clone());
    check_symbols("symbols", &symbols)?;
    check_configuration(&state, record.current_version.id, &params, &symbols).await?;
    let instance =
        store::strategies::configure(&state.store, id, &params_to_json(&params), &symbols).await?;
    publish(
        &state,
        id,
        json!({"event": "strategy.configured", "strategy_id": id,
               "params": instance.params, "symbols": instance.symbols}),
    );
    Ok(ApiJson(instance.into()))
}

/// Traders act only on their own strategies (and their instances); admins on all. A
/// strategy with no owner was made by the server itself, so only admins change it.
pub(crate) async fn require_owner(
    state: &AppState,
    p: &crate::auth::Principal,
    strategy_id: i64,
    action: &str,
) -> ApiResult<()> {
    let s = store::strategies::strategy(&state.store, strategy_id).await?;
    if p.role >= Role::Admin || s.owner_id == Some(p.user_id) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "only the owner of strategy {strategy_id} or an admin may {action} it"
    )))
}

/// Enable the default instance (the live engine runs enabled instances). It needs at least
/// one symbol.
#[utoipa::path(post, path = "/api/strategies/{id}/enable", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn enable_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Instance>> {
    require_owner(&state, &p, id, "enable").await?;
    let current = store::strategies::instance(&state.store, id).await?;
    if current.symbols.is_empty() {
        return Err(ApiError::validation(
            "symbols",
            format!(
                "strategy {id} has no symbols to trade: set them with PUT /api/strategies/{id}/configure before enabling it"
            ),
        ));
    }
    // Start it live first: a version or configuration the engine refuses stays disabled.
    match state.live.enable(id).await {
        Ok(()) | Err(LiveError::AlreadyRunning(_)) => {}
        Err(e) => return Err(live_error(e)),
    }
    let instance = store::strategies::set_status(&state.store, id, "enabled", None).await?;
    publish(
        &state,
        id,
        json!({"event": "strategy.enabled", "strategy_id": id, "status": instance.status,
               "symbols": instance.symbols, "by": p.username}),
    );
    Ok(ApiJson(instance.into()))
}

/// Disable the default instance.
#[utoipa::path(post, path = "/api/strategies/{id}/disable", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody)))]
async fn disable_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Instance>> {
    require_owner(&state, &p, id, "disable").await?;
    match state
        .live
        .disable(id, &format!("disabled by {}", p.username))
        .await
    {
        Ok(()) | Err(LiveError::NotRunning(_)) => {}
        Err(e) => return Err(live_error(e)),
    }
    let instance = store::strategies::set_status(&state.store, id, "disabled", None).await?;
    publish(
        &state,
        id,
        json!({"event": "strategy.disabled", "strategy_id": id, "status": instance.status,
               "by": p.username}),
    );
    Ok(ApiJson(instance.into()))
}

/// What a deletion removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
    /// Backtests of the strategy that were kept (detached from it).
    pub backtests_kept: usize,
}

/// Delete a strategy with its versions and instance; its backtests are kept. Only its owner
/// or an admin may delete it.
#[utoipa::path(delete, path = "/api/strategies/{id}", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["trader"]), ("api_key" = ["trader"])),
    responses((status = 200, body = Deleted), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_strategy(
    State(state): State<AppState>,
    Caller(p): Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Deleted>> {
    require_owner(&state, &p, id, "delete").await?;
    let s = store::strategies::strategy(&state.store, id).await?;
    let kept = store::backtests::list(&state.store, Some(id), None, i64::MAX)
        .await?
        .len();
    let _ = state.live.disable(id, "strategy deleted").await;
    store::strategies::delete(&state.store, id).await?;
    publish(
        &state,
        id,
        json!({"event": "strategy.deleted", "strategy_id": id, "name": s.name, "by": p.username}),
    );
    Ok(ApiJson(Deleted {
        id,
        deleted: true,
        backtests_kept: kept,
    }))
}

/// How a strategy performed: its backtests (latest, best by Sharpe, every run), its live
/// figures while the live engine runs it, and what its paper trading has booked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Performance {
    pub strategy_id: i64,
    /// Newest finished backtest.
    pub latest: Option<BacktestBrief>,
    /// Finished backtest with the highest Sharpe ratio.
    pub best_by_sharpe: Option<BacktestBrief>,
    /// Every backtest, newest first (at most 200).
    pub runs: Vec<BacktestBrief>,
    /// Live figures while the live engine runs the strategy (equity, cash, `pnl` against the
    /// paper account's starting capital, bars, calls, fuel, traps, orders); null otherwise.
    #[schema(value_type = Option<Object>)]
    pub live: Option<Value>,
    pub live_note: String,
    /// What its live (paper) trading has booked so far, running or not.
    pub paper: PaperResults,
}

/// A strategy's stored paper-trading results: its account's totals, kept as fills are booked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaperResults {
    /// The paper account (`strategy:<id>`).
    pub account: String,
    /// The live engine's starting capital plus the cash its fills moved.
    pub cash: f64,
    /// Realized PnL of its trades, fees apart.
    pub realized_pnl: f64,
    pub fees: f64,
    /// Σ quantity × (mark − entry) over its open positions, at the mark price of
    /// `GET /api/trades` (the live market's last price, else the newest stored close; a
    /// position without either is valued at its entry).
    pub unrealized_pnl: f64,
    /// Σ quantity × mark over its open positions.
    pub market_value: f64,
    /// `cash` + `market_value`.
    pub equity: f64,
    pub open_positions: usize,
}

/// Backtest metrics of a strategy, its live figures while it runs live, and its paper
/// account with the open positions at the mark price (as `GET /api/trades` values them).
#[utoipa::path(get, path = "/api/strategies/{id}/performance", tag = "strategies",
    params(("id" = i64, Path, description = "strategy id")),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Performance), (status = 404, body = ErrorBody)))]
async fn strategy_performance(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<ApiJson<Performance>> {
    store::strategies::strategy(&state.store, id).await?;
    let runs: Vec<BacktestBrief> = store::backtests::list(&state.store, Some(id), None, 200)
        .await?
        .iter()
        .map(BacktestBrief::from)
        .collect();
    let done = || runs.iter().filter(|b| b.status == "done");
    let latest = done().next().cloned();
    let best_by_sharpe = done()
        .filter(|b| b.sharpe.is_some())
        .max_by(|a, b| {
            a.sharpe
                .partial_cmp(&b.sharpe)
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .cloned();
    let running = state
        .live
        .instances()
        .iter()
        .find(|i| i.strategy_id == id)
        .cloned();
    let (live, live_note) = match running {
        Some(i) => {
            let pnl = i.equity - state.live.config().initial_cash;
            let note = match &i.reason {
                Some(why) if i.state != "running" => {
                    format!("{} in the live engine (paper): {why}", i.state)
                }
                _ => "running in the live engine (paper)".to_string(),
            };
            let mut v = serde_json::to_value(&i).map_err(ApiError::internal)?;
            v["pnl"] = json!(pnl);
            (Some(v), note)
        }
        None => (
            None,
            "not running in the live engine: enable it to trade it live; these are backtest results"
                .to_string(),
        ),
    };
    let account = qtm_live::strategy_account(id);
    let totals = store::orders::totals(&state.store, Some(account)).await?;
    let open = store::orders::open_positions(&state.store, Some(account)).await?;
    let marks = crate::marks::marks(&state, open.iter().map(|p| p.symbol.as_str())).await?;
    let (mut unrealized_pnl, mut market_value) = (0.0, 0.0);
    for p in &open {
        let m = marks.get(&p.symbol).map_or(p.avg_price, |m| m.price);
        unrealized_pnl += p.quantity * (m - p.avg_price);
        market_value += p.quantity * m;
    }
    let cash = state.live.config().initial_cash + totals.cash_flow;
    let paper = PaperResults {
        account: account.text(),
        cash,
        realized_pnl: totals.realized_pnl,
        fees: totals.fees,
        unrealized_pnl,
        market_value,
        equity: cash + market_value,
        open_positions: open.len(),
    };
    Ok(ApiJson(Performance {
        strategy_id: id,
        latest,
        best_by_sharpe,
        runs,
        live,
        live_note,
        paper,
    }))
}

// ---------------------------------------------------------------------------------------------
// What users can start from.

/// A kind of strategy the platform knows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyType {
    /// `upload` or `example`.
    pub kind: String,
    pub name: String,
    pub description: String,
    /// How to get a component of this kind.
    pub how: String,
    /// Where its source lives in the repository (examples).
    pub source: Option<String>,
    /// Stored strategies whose code declares this name (examples already uploaded).
    pub uploaded: Vec<i64>,
}

/// The example strategies of the repository, as their `info()` declares them.
fn examples() -> Vec<StrategyInfo> {
    fn int(name: &str, d: i64, min: i64, max: i64, desc: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: desc.into(),
            kind: ParamKind::Int { min, max, step: 1 },
            default: ParamValue::Int(d),
        }
    }
    fn float(name: &str, d: f64, min: f64, max: f64, step: f64, desc: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: desc.into(),
            kind: ParamKind::Float { min, max, step },
            default: ParamValue::Float(d),
        }
    }
    fn choice(name: &str, d: &str, choices: &[&str], desc: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: desc.into(),
            kind: ParamKind::Choice {
                choices: choices.iter().map(|c| c.to_string()).collect(),
            },
            default: ParamValue::Choice(d.into()),
        }
    }
    fn boolean(name: &str, d: bool, desc: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            description: desc.into(),
            kind: ParamKind::Boolean,
            default: ParamValue::Boolean(d),
        }
    }
    let info = |name: &str, description: &str, params: Vec<ParamSpec>| StrategyInfo {
        name: name.into(),
        version: "1.0.0".into(),
        description: description.into(),
        symbols: Vec::new(),
        params,
    };
    // Mirrors strategies/*/src/lib.rs; a stored component's own describe output wins.
    vec![
        info(
            "sma-cross",
            "Moving-average crossover (long_only or flip), fixed or equity sizing",
            vec![
                int("fast", 10, 1, 500, "fast SMA period, bars"),
                int("slow", 30, 2, 2000, "slow SMA period, bars"),
                choice(
                    "mode",
                    "long_only",
                    &["long_only", "flip"],
                    "flat or short on a cross down",
                ),
                choice(
                    "sizing",
                    "fixed",
                    &["fixed", "equity"],
                    "quantity is units (fixed) or a fraction of equity",
                ),
                float(
                    "quantity",
                    1.0,
                    0.0,
                    1e12,
                    1.0,
                    "units, or fraction of equity with sizing=equity",
                ),
            ],
        ),
        info(
            "rsi-reversion",
            "RSI mean reversion with optional bracket exits",
            vec![
                int("period", 14, 2, 200, "RSI period, bars"),
                float("oversold", 30.0, 1.0, 50.0, 1.0, "buy below this RSI"),
                float("overbought", 70.0, 50.0, 99.0, 1.0, "short above this RSI"),
                float(
                    "exit",
                    50.0,
                    1.0,
                    99.0,
                    1.0,
                    "close when RSI crosses back over this",
                ),
                boolean("short", false, "also trade the overbought side"),
                float("quantity", 1.0, 0.0, 1e12, 1.0, "units per trade"),
                float(
                    "stop_loss_pct",
                    0.0,
                    0.0,
                    50.0,
                    0.5,
                    "bracket stop, % from entry; 0 = none",
                ),
                float(
                    "take_profit_pct",
                    0.0,
                    0.0,
                    100.0,
                    0.5,
                    "bracket target, % from entry; 0 = none",
                ),
            ],
        ),
        info(
            "donchian-breakout",
            "Donchian channel breakout with an ATR trailing stop",
            vec![
                int("entry", 20, 2, 500, "channel length for entries, bars"),
                int("atr_period", 14, 2, 200, "ATR period, bars"),
                float(
                    "atr_mult",
                    3.0,
                    0.5,
                    20.0,
                    0.5,
                    "trailing stop distance in ATRs",
                ),
                boolean("short", true, "also break out to the downside"),
                float("quantity", 1.0, 0.0, 1e12, 1.0, "units per trade"),
            ],
        ),
    ]
}

/// Stored strategies per declared code name.
async fn uploaded_by_name(state: &AppState) -> ApiResult<HashMap<String, Vec<i64>>> {
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for r in store::strategies::list(&state.store).await? {
        if let Some(n) = r
            .current_version
            .describe
            .get("name")
            .and_then(Value::as_str)
        {
            out.entry(n.to_string()).or_default().push(r.strategy.id);
        }
    }
    Ok(out)
}

/// The kinds of strategy the platform knows: uploaded components, and the three example
/// strategies of the repository (with how to build them).
#[utoipa::path(get, path = "/api/strategies/types", tag = "strategies",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<StrategyType>)))]
async fn strategy_types(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<StrategyType>>> {
    let uploaded = uploaded_by_name(&state).await?;
    let mut out = vec![StrategyType {
        kind: "upload".into(),
        name: "component".into(),
        description: format!(
            "Any WebAssembly component built against the {}@{} contract (any language with a \
             component toolchain; Rust with qtm-guest-sdk is the supported path)",
            qtm_sandbox::CONTRACT_PACKAGE,
            qtm_sandbox::CONTRACT_VERSION
        ),
        how: "POST /api/strategies with the .wasm as multipart field `file` or raw \
              application/wasm; start from `qtm strategy new <dir>` and build with \
              `qtm strategy build <dir>`"
            .into(),
        source: None,
        uploaded: Vec::new(),
    }];
    for e in examples() {
        out.push(StrategyType {
            kind: "example".into(),
            uploaded: uploaded.get(&e.name).cloned().unwrap_or_default(),
            how: format!(
                "qtm strategy build strategies/{0}, then upload the component it prints",
                e.name
            ),
            source: Some(format!("strategies/{}", e.name)),
            name: e.name,
            description: e.description,
        });
    }
    Ok(ApiJson(out))
}

/// A starting point for a new strategy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Template {
    pub name: String,
    /// `scaffold` (`qtm strategy new`) or `example`.
    pub kind: String,
    pub description: String,
    /// How to create it locally.
    pub how: String,
    /// Declared parameters with types, ranges and defaults (`describe` output).
    #[schema(value_type = Vec<Object>)]
    pub params: Value,
    /// Default values by parameter name.
    #[schema(value_type = Object)]
    pub defaults: Value,
    /// Where `params` came from: `stored-version:<id>` when a component of this name was
    /// uploaded (its own describe output), else `source` (the repository's code).
    pub params_from: String,
}

/// Templates to start from: the `qtm strategy new` scaffold and the three examples, with their
/// parameters and defaults (from an uploaded component's own describe output when there is one).
#[utoipa::path(get, path = "/api/strategies/templates", tag = "strategies",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Vec<Template>)))]
async fn strategy_templates(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<Template>>> {
    let scaffold = StrategyInfo {
        name: "my-strategy".into(),
        version: "0.1.0".into(),
        description: "Long above the moving average, flat below it".into(),
        symbols: Vec::new(),
        params: vec![
            ParamSpec {
                name: "period".into(),
                description: "bars in the average".into(),
                kind: ParamKind::Int {
                    min: 2,
                    max: 500,
                    step: 1,
                },
                default: ParamValue::Int(20),
            },
            ParamSpec {
                name: "quantity".into(),
                description: "units per trade".into(),
                kind: ParamKind::Float {
                    min: 0.0,
                    max: 1e9,
                    step: 1.0,
                },
                default: ParamValue::Float(1.0),
            },
        ],
    };
    let template = |info: &StrategyInfo, kind: &str, how: String, from: String| -> Template {
        let defaults: Vec<Param> = info
            .params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                value: p.default.clone(),
            })
            .collect();
        Template {
            name: info.name.clone(),
            kind: kind.into(),
            description: info.description.clone(),
            how,
            params: serde_json::to_value(&info.params).unwrap_or(Value::Null),
            defaults: params_to_json(&defaults),
            params_from: from,
        }
    };
    let mut out = vec![template(
        &scaffold,
        "scaffold",
        "qtm strategy new <dir> (the folder name becomes the strategy's name), then qtm strategy build <dir>".into(),
        "source".into(),
    )];
    for e in examples() {
        let how = format!("qtm strategy build strategies/{}", e.name);
        let stored = store::strategies::latest_described_as(&state.store, &e.name).await?;
        match stored.and_then(|v| info_of(&v).ok().map(|i| (v.id, i))) {
            Some((vid, info)) => out.push(template(
                &info,
                "example",
                how,
                format!("stored-version:{vid}"),
            )),
            None => out.push(template(&e, "example", how, "source".into())),
        }
    }
    Ok(ApiJson(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sma() -> StrategyInfo {
        examples().into_iter().next().unwrap()
    }

    #[test]
    fn params_are_checked_one_by_one_and_name_the_field() {
        let info = sma();
        let e = params_from_json(&info, &json!({"fast": 0})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("params.fast"));
        assert_eq!(e.message, "parameter `fast` = 0 is outside 1..=500");
        let e = params_from_json(&info, &json!({"nope": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("params.nope"));
        assert!(
            e.message.starts_with("unknown parameter `nope`"),
            "{}",
            e.message
        );
        let e = params_from_json(&info, &json!({"mode": [1]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("params.mode"));
        let e = params_from_json(&info, &json!([1])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("params"));

        let base = carried_params(&info, &json!({"fast": 5, "slow": 50, "gone": 1}));
        let given = params_from_json(&info, &json!({"fast": 12, "quantity": 2})).unwrap();
        let got = params_to_json(&resolve(&info, base, given).unwrap());
        assert_eq!(
            got,
            json!({"fast": 12, "slow": 50, "mode": "long_only", "sizing": "fixed", "quantity": 2.0})
        );
    }

    #[test]
    fn symbols_are_checked() {
        check_symbols("symbols", &["SPY".into(), "BTC/USD".into()]).unwrap();
        let e = check_symbols("symbols", &["SPY".into(), "SPY".into()]).unwrap_err();
        assert_eq!(e.message, "symbol SPY is listed twice");
        assert!(check_symbols("symbols", &["a b".into()]).is_err());
    }
}
