//! Operations endpoints outside the API's auth: `GET /health` for load balancers and
//! `GET /metrics` in Prometheus text format, plus the middleware that counts and times every
//! request.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use super::state::AppState;

/// The process-wide Prometheus recorder (installed once; every server in the process shares
/// it, as the `metrics` facade is global).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
            }
            handle
        })
        .clone()
}

/// `/health` and `/metrics`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render))
}

/// The live engine thread counts as stuck when its heartbeat is older than this: it stamps
/// it at least every 250 ms when idle and between chunks of bars, and one strategy call
/// lasts at most its 500 ms deadline.
pub const ENGINE_STALE: std::time::Duration = std::time::Duration::from_secs(2);

/// `ok`, `stalled` (heartbeat older than [`ENGINE_STALE`]) or `stopped`, from the age of
/// the engine thread's heartbeat (`None`: the thread has returned).
pub fn engine_health(heartbeat_age: Option<std::time::Duration>) -> &'static str {
    match heartbeat_age {
        None => "stopped",
        Some(age) if age > ENGINE_STALE => "stalled",
        Some(_) => "ok",
    }
}

/// Readiness: 200 when the database answers and the live engine thread is alive, else 503
/// with what is wrong.
async fn health(State(state): State<AppState>) -> Response {
    let db_ok = sqlx_ping(&state).await;
    let age = state.live.heartbeat_age();
    let engine = engine_health(age);
    let ok = db_ok && engine == "ok";
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": if db_ok { "ok" } else { "unreachable" },
        "engine": engine,
        "engine_heartbeat_age_ms": age.map(|a| a.as_millis() as u64),
        "uptime_secs": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn sqlx_ping(state: &AppState) -> bool {
    qtm_store::settings::get(&state.store, "jwt_secret")
        .await
        .is_ok()
}

async fn render(State(state): State<AppState>) -> Response {
    metrics::gauge!("qtm_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    metrics::gauge!("qtm_ws_clients").set(state.hub.receivers() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Count and time each request by route pattern (never by raw path, which would let clients
/// create unbounded label sets).
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("qtm_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("qtm_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::engine_health;

    #[test]
    fn the_engine_is_stalled_past_two_seconds_without_a_heartbeat() {
        assert_eq!(engine_health(Some(Duration::ZERO)), "ok");
        assert_eq!(engine_health(Some(Duration::from_millis(2000))), "ok");
        assert_eq!(engine_health(Some(Duration::from_millis(2001))), "stalled");
        assert_eq!(engine_health(None), "stopped");
    }
}
