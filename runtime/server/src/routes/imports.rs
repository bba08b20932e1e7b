//! `POST /api/strategies/import`: SQL import (`qtm_import`) over HTTP, from a database URL or
//! an uploaded SQLite file.

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::access::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody, json_object};
use crate::hub::Topic;
use crate::state::AppState;
use qtm_import::{FieldMap, ImportError, ImportOptions, ImportReport};

/// The import route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_strategies))
}

/// An import from a database the server can reach.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// `sqlite://path` (a file the server can read) or `postgres://user:password@host/db`;
    /// opened read-only. Never stored or shown with its credentials.
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// One `SELECT`. Columns: `name` (required); `rules`, `template` (+ `params`) or `wasm`;
    /// `symbols`; `key` (row identity, default `name`); `description`.
    #[schema(min_length = 1, max_length = 65536)]
    pub query: String,
    /// Fields read from other columns: `{"name": "title"}`.
    #[schema(value_type = Option<Object>)]
    pub map: Option<Value>,
    /// Import the good rows even when others are rejected (default false: all or nothing).
    pub partial: Option<bool>,
    /// Check and report only (default false).
    pub dry_run: Option<bool>,
}

/// The multipart form: a SQLite file and the query.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read field by field; this only documents the form.
pub struct ImportForm {
    /// The SQLite database file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// One `SELECT`.
    query: String,
    /// JSON object of field → column.
    map: Option<String>,
    /// `true` to import the good rows even when others are rejected.
    partial: Option<String>,
    /// `true` to check and report only.
    dry_run: Option<String>,
}

/// A rejected row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRejected {
    /// The row's key (or `row N`).
    pub row: String,
    /// What was wrong (rule errors at `line:col`).
    pub error: String,
}

/// A strategy an import made, changed or kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedStrategyView {
    /// Null in a dry run for a strategy that would be created.
    pub id: Option<i64>,
    pub name: String,
    /// The row's key.
    pub row: String,
    /// `created`, `updated` or `unchanged`.
    pub outcome: String,
    pub version: Option<i64>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReportView {
    /// New strategies and new versions.
    pub imported: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// At most 1000 listed; `rejected_count` counts them all.
    pub rejected: Vec<ImportRejected>,
    pub rejected_count: u64,
    pub strategies: Vec<ImportedStrategyView>,
    /// Rows the query gave.
    pub rows: u64,
    /// Whether anything was stored.
    pub committed: bool,
    pub dry_run: bool,
    /// The source without credentials (`upload:<file>` for an uploaded file).
    pub source: String,
    pub elapsed_s: f64,
    pub rows_per_sec: f64,
}

impl From<ImportReport> for ImportReportView {
    fn from(r: ImportReport) -> Self {
        ImportReportView {
            imported: r.imported,
            created: r.created,
            updated: r.updated,
            unchanged: r.unchanged,
            rejected: r
                .rejected
                .into_iter()
                .map(|x| ImportRejected {
                    row: x.row,
                    error: x.error,
                })
                .collect(),
            rejected_count: r.rejected_count,
            strategies: r
                .strategies
                .into_iter()
                .map(|s| ImportedStrategyView {
                    id: s.id,
                    name: s.name,
                    row: s.row,
                    outcome: s.outcome.to_string(),
                    version: s.version,
                })
                .collect(),
            rows: r.rows,
            committed: r.committed,
            dry_run: r.dry_run,
            source: r.source,
            elapsed_s: r.elapsed_s,
            rows_per_sec: r.rows_per_sec,
        }
    }
}

/// Import strategies from SQL rows (admin): JSON `{url, query, map, partial, dry_run}`, or a
/// multipart form with a SQLite `file` and `query`. Every row is checked like an upload; all
/// or nothing unless `partial`; the same rows again are `unchanged`; a changed row becomes a
/// new version of its strategy. 200 with the report when the import ran as asked (a dry run,
/// or rows stored); 422 with the error and the same report as `report` when an
/// all-or-nothing import had rejected rows (nothing stored), or the query, map or source is
/// refused. Imported strategies belong to the caller.
#[utoipa::path(post, path = "/api/strategies/import", tag = "strategies",
    request_body(content((ImportRequest = "application/json"), (ImportForm = "multipart/form-data"))),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
    responses((status = 200, body = ImportReportView),
        (status = 422, description = "rejected rows (nothing stored; the report is in `report`), or a refused query, map or source", body = ErrorBody)))]
async fn import_strategies(
    State(state): State<AppState>,
    Caller(p): Caller,
    req: Request,
) -> ApiResult<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // An uploaded file lives as long as this request.
    let mut upload_dir: Option<tempfile::TempDir> = None;
    let mut opts = if content_type.starts_with("multipart/form-data") {
        read_form(&state, req, &mut upload_dir).await?
    } else {
        let body = axum::body::Bytes::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let r: ImportRequest = json_object(&body)?;
        let mut o = ImportOptions::new(r.url, r.query);
        if let Some(m) = &r.map {
            o.map =
                FieldMap::from_json(m).map_err(|e| ApiError::validation("map", e.to_string()))?;
        }
        o.partial = r.partial.unwrap_or(false);
        o.dry_run = r.dry_run.unwrap_or(false);
        if !o.url.starts_with("postgres") && upload_dir.is_none() {
            // A server-side file path is the admin's to name; still never a URL with options.
            check_sqlite_url(&o.url)?;
        }
        o
    };
    opts.user_id = Some(p.user_id);
    let report = qtm_import::import(&state.store, &state.sandbox, &opts)
        .await
        .map_err(import_error)?;
    drop(upload_dir);
    if report.committed && report.imported > 0 {
        state.hub.publish(
            Topic::Notifications,
            None,
            &json!({"event": "strategies.imported", "imported": report.imported,
                    "source": report.source,
                    "message": format!("{} imported {} strateg{} from {}", p.username, report.imported,
                        if report.imported == 1 { "y" } else { "ies" }, report.source)}),
        );
    }
    let failed = report.rejected_count > 0 && !opts.partial;
    let view = ImportReportView::from(report);
    if failed {
        let message = format!(
            "{} of {} rows rejected; nothing was imported (fix them, or import with partial)",
            view.rejected_count, view.rows
        );
        let body = json!({
            "error": {"code": "validation", "message": message, "field": "rows"},
            "report": view,
        });
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response());
    }
    Ok(axum::Json(view).into_response())
}

fn check_sqlite_url(url: &str) -> ApiResult<()> {
    if url.starts_with("sqlite:") {
        Ok(())
    } else {
        Err(ApiError::validation(
            "url",
            "url must be sqlite://path or postgres://user:password@host/database",
        ))
    }
}

fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Query(m) => ApiError::validation("query", m),
        ImportError::Columns(m) => ApiError::validation("map", m),
        ImportError::Source(m) => ApiError::validation("url", m),
        other => ApiError::internal(other),
    }
}

async fn read_form(
    state: &AppState,
    mut req: Request,
    dir: &mut Option<tempfile::TempDir>,
) -> ApiResult<ImportOptions> {
    let limit = state.config.max_upload_bytes;
    DefaultBodyLimit::max(limit).apply(&mut req);
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
    let (mut file, mut file_name, mut query, mut map, mut partial, mut dry_run) =
        (None, None, None, None, false, false);
    while let Some(field) = form.next_field().await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("upload too large: the limit is {limit} bytes (max_upload_bytes)"),
            )
        } else {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    })? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            file_name = field.file_name().map(str::to_string);
        }
        let data = field.bytes().await.map_err(|e| {
            ApiError::bad_request(format!(
                "malformed multipart field `{name}`: {}",
                e.body_text()
            ))
        })?;
        let text = || {
            String::from_utf8(data.to_vec()).map_err(|_| {
                ApiError::validation(name.clone(), format!("`{name}` is not UTF-8 text"))
            })
        };
        match name.as_str() {
            "file" => file = Some(data.clone()),
            "query" => query = Some(text()?),
            "map" => {
                let v: Value = serde_json::from_str(&text()?)
                    .map_err(|e| ApiError::validation("map", format!("map is not JSON: {e}")))?;
                map = Some(
                    FieldMap::from_json(&v)
                        .map_err(|e| ApiError::validation("map", e.to_string()))?,
                );
            }
            "partial" => partial = text()?.trim() == "true",
            "dry_run" => dry_run = text()?.trim() == "true",
            other => {
                return Err(ApiError::validation(
                    other,
                    format!(
                        "unknown form field `{other}`: send file, query, map, partial, dry_run"
                    ),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| {
        ApiError::validation("file", "the form has no `file` (a SQLite database)")
    })?;
    let query = query.ok_or_else(|| ApiError::validation("query", "the form has no `query`"))?;
    let tmp = tempfile::tempdir().map_err(ApiError::internal)?;
    let path = tmp.path().join("upload.db");
    tokio::fs::write(&path, &file)
        .await
        .map_err(ApiError::internal)?;
    let mut opts = ImportOptions::new(format!("sqlite://{}", path.display()), query);
    let shown: String = file_name
        .unwrap_or_else(|| "upload.db".into())
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .take(100)
        .collect();
    opts.source_label = Some(format!("upload:{shown}"));
    opts.map = map.unwrap_or_default();
    opts.partial = partial;
    opts.dry_run = dry_run;
    *dir = Some(tmp);
    Ok(opts)
}
