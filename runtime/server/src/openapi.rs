//! The OpenAPI document (`GET /api/openapi.json`), generated from the route annotations, and
//! its interactive page (`GET /api/docs`): a self-contained page, no CDN, that lists every
//! operation and can call it with your token.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

use super::state::AppState;

/// The document's fixed part: info and the two ways to authenticate. Paths come from the
/// routes.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("qtm API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Sandboxed algorithmic trading. Authenticate with `POST /api/auth/login` and send \
                     `Authorization: Bearer <access_token>`, or send an API key as `X-API-Key`. \
                     The scopes of each operation's security requirement name the least role \
                     (viewer < trader < admin). Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
    );
    doc
}

/// `/api/openapi.json` and `/api/docs`.
pub fn routes(doc: Arc<str>) -> Router<AppState> {
    Router::new()
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        doc.to_string(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/api/docs", get(|| async { Html(DOCS_PAGE) }))
}

const DOCS_PAGE: &str = include_str!("docs.html");
