//! `GET /api/system/status`: health, uptime, module statuses, stream clients.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_types::modules::Module;
use crate::error::{ApiJson, ApiResult, ErrorBody};
use crate::state::AppState;
use qtm_store as store;

/// The system routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status))
}

/// What `GET /api/system/status` returns (also published on the `system-health` stream).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemStatus {
    /// `ok`, or `degraded` when the database does not answer or the live engine is stalled
    /// or stopped.
    pub status: String,
    pub version: String,
    pub uptime_secs: u64,
    pub database: String,
    /// The live engine thread: `ok`, `stalled` (no heartbeat for over 2 s) or `stopped`.
    pub engine: String,
    /// Time since the engine thread's last heartbeat, ms (null once it has stopped).
    pub engine_heartbeat_age_ms: Option<u64>,
    /// Connected stream clients.
    pub ws_clients: usize,
    pub modules: Vec<Module>,
}

/// The current status.
pub async fn snapshot(state: &AppState) -> SystemStatus {
    let modules = store::modules::list(&state.store).await;
    let db_ok = modules.is_ok();
    let age = state.live.heartbeat_age();
    let engine = crate::telemetry::engine_health(age);
    SystemStatus {
        status: if db_ok && engine == "ok" {
            "ok"
        } else {
            "degraded"
        }
        .into(),
        engine: engine.into(),
        engine_heartbeat_age_ms: age.map(|a| a.as_millis() as u64),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.started.elapsed().as_secs(),
        database: if db_ok {
            "ok".into()
        } else {
            "unreachable".into()
        },
        ws_clients: state.hub.receivers(),
        modules: modules
            .unwrap_or_default()
            .into_iter()
            .map(Module::from)
            .collect(),
    }
}

/// System health, uptime and module statuses.
#[utoipa::path(get, path = "/api/system/status", tag = "system",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = SystemStatus), (status = 401, body = ErrorBody)))]
async fn status(State(state): State<AppState>) -> ApiResult<ApiJson<SystemStatus>> {
    Ok(ApiJson(snapshot(&state).await))
}
