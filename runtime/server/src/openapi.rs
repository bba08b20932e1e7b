//! The OpenAPI document (`GET /api/openapi.json`), generated from the route annotations, and
//! its interactive page (`GET /api/docs`): a self-contained page, no CDN, that lists every
//! operation and can call it with your token.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{Value, json};
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

/// The error statuses every operation shares because a layer in front of its handler answers
/// them (the extractors, the access gate, the rate limiter, the body limit), added to each
/// operation where it applies, and a description on every response: route annotations state
/// only what their own handler answers. Fails on an operationId used twice, which generated
/// clients cannot tell apart.
pub fn complete(doc: &mut Value) -> Result<(), String> {
    let mut operation_ids = std::collections::HashMap::new();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return Err("the OpenAPI document has no paths".into());
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            let where_ = format!("{} {path}", method.to_ascii_uppercase());
            if let Some(id) = op.get("operationId").and_then(Value::as_str)
                && let Some(first) = operation_ids.insert(id.to_string(), where_.clone())
            {
                return Err(format!(
                    "operationId `{id}` is used by {first} and {where_}"
                ));
            }
            complete_operation(op, path.contains('{'));
        }
    }
    Ok(())
}

const HTTP_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn complete_operation(op: &mut Value, has_path_params: bool) {
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|reqs| {
            !reqs
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
    let has_body = op.get("requestBody").is_some();
    let has_query = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let mut shared: Vec<(u16, &str)> = vec![
        (
            400,
            "The request is malformed: a query value of the wrong type, or a body that does not \
             parse.",
        ),
        (
            429,
            "Too many requests from this caller (`rate_limit_per_sec`); retry after the \
             `Retry-After` seconds.",
        ),
        (500, "Internal error; the server logged its cause."),
    ];
    if secured {
        shared.push((
            401,
            "No credentials, or an access token or API key that is malformed, expired or \
             revoked.",
        ));
        shared.push((
            403,
            "The caller's role is below the operation's (see its security scopes), or the \
             resource belongs to another user.",
        ));
    }
    if has_path_params {
        shared.push((
            404,
            "No resource with that identifier (an id that is not a 64-bit integer names none).",
        ));
    }
    if has_body {
        shared.push((413, "The body is larger than the server accepts."));
        shared.push((422, "A value is invalid; `field` names it."));
    }
    if has_body {
        shared.push((
            415,
            "The body's `Content-Type` is none of the operation's request media types.",
        ));
    }
    if has_query {
        shared.push((422, "A value is invalid; `field` names it."));
    }
    let Some(responses) = op
        .as_object_mut()
        .map(|o| o.entry("responses").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (status, description) in shared {
        responses.entry(status.to_string()).or_insert_with(|| {
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            })
        });
    }
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if response
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            let phrase = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Response");
            response.insert("description".into(), Value::String(phrase.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_gets_the_shared_statuses_and_every_response_a_description() {
        let mut doc = json!({"paths": {
            "/api/things/{id}": {"put": {
                "operationId": "put_thing",
                "security": [{"bearer": ["trader"]}],
                "parameters": [{"name": "id", "in": "path"}],
                "requestBody": {"content": {"application/json": {}}},
                "responses": {"200": {"content": {}}, "404": {"description": "gone"}},
            }},
            "/api/open": {"get": {"operationId": "open", "security": [{}], "responses": {}}},
        }});
        complete(&mut doc).unwrap();
        let put = &doc["paths"]["/api/things/{id}"]["put"]["responses"];
        let mut statuses: Vec<&String> = put.as_object().unwrap().keys().collect();
        statuses.sort();
        assert_eq!(
            statuses,
            [
                "200", "400", "401", "403", "404", "413", "415", "422", "429", "500"
            ]
        );
        assert_eq!(put["200"]["description"], "OK");
        assert_eq!(
            put["404"]["description"], "gone",
            "a route's own text is kept"
        );
        let open = &doc["paths"]["/api/open"]["get"]["responses"];
        assert!(
            open.get("401").is_none(),
            "a public operation cannot answer 401"
        );
        assert!(open.get("404").is_none());
        assert!(open.get("400").is_some());
    }

    #[test]
    fn an_operation_id_used_twice_is_refused_with_both_places() {
        let mut doc = json!({"paths": {
            "/a": {"post": {"operationId": "configure"}},
            "/b": {"post": {"operationId": "configure"}},
        }});
        let err = complete(&mut doc).unwrap_err();
        assert!(err.contains("POST /a") && err.contains("POST /b"), "{err}");
    }
}
