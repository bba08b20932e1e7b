//! The server: REST under `/api`, WebSocket streams under `/ws`, the OpenAPI document and its
//! interactive page, `/health` and `/metrics`. It sits on top of the store and the engine and
//! never reaches inside either: it calls store functions, starts backtests and reads events.
//!
//! Layout: [`auth`] (who is calling, the access gate), [`routes`] (one file per area),
//! [`api_types`] (the bodies the routes answer with, apart from the store's rows),
//! [`backtest_jobs`] (records the backtest queue's jobs), [`ws`] (streams), [`hub`] (the fan-out the streams read), [`openapi`] (the document and
//! page), [`server`] (start-up, bootstrap, shutdown).

// `println!`/`eprintln!` panic when their reader has gone (`qtm … | head`); the binary's
// commands print through its `cli::out`, and the server ignores a closed stdout.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api_types;
pub mod auth;
pub mod backtest_jobs;
pub mod cache;
pub mod config;
pub mod error;
pub mod hub;
pub mod json;
pub mod marks;
pub mod openapi;
pub mod paging;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;
mod unread_body;
pub mod ws;

pub use config::ServerConfig;
pub use server::{RunningServer, ServeError, start};
pub use state::AppState;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;

use auth::access::{AccessTable, gate};
use error::ApiError;

/// Every `/api` route with its OpenAPI entry, before the gate is applied.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(auth::routes::router())
        .merge(routes::users::router())
        .merge(routes::system::router())
        .merge(routes::market::router())
        .merge(routes::strategies::router())
        .merge(routes::imports::router())
        .merge(routes::backtests::router())
        .merge(routes::risk::router())
        .merge(routes::orders::router())
        .merge(routes::modules::router())
        .merge(routes::signals::router())
        .merge(routes::live::router())
        // The product seeds' routes (docs/server.md, "Seed routes").
        .merge(routes::seeds::router())
        .merge(routes::summaries::router())
        .merge(routes::portfolio::router())
        .merge(routes::notifications::router())
        .merge(routes::plugins::router())
}

/// The whole HTTP application for `state`. Fails only if a route's access rule is malformed,
/// which the test suite catches.
pub fn app(state: AppState) -> Result<Router, String> {
    let (api, doc) = api_routes().split_for_parts();
    let mut doc_json = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
    openapi::complete(&mut doc_json)?;
    state.set_access(AccessTable::from_openapi(&doc_json)?);
    let api = api.route_layer(from_fn_with_state(state.clone(), gate));
    let doc_text: std::sync::Arc<str> = serde_json::to_string_pretty(&doc_json)
        .map_err(|e| e.to_string())?
        .into();
    let router = Router::new()
        .merge(api)
        .merge(openapi::routes(doc_text))
        .merge(ws::routes())
        .merge(telemetry::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(from_fn(unread_body::close_if_unread))
        .layer(cors(&state.config.cors_origins))
        .layer(from_fn(telemetry::track))
        .with_state(state);
    Ok(router)
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
        ]);
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        base.allow_origin(AllowOrigin::list(list))
    }
}
