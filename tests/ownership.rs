//! Access per owner, generated from the router: every operation that changes one strategy or
//! one of its instances is called by a trader who does not own it and must be refused (403),
//! and by its owner, who must not be. The operations come from the OpenAPI document the
//! server serves, so a route added later is covered the day it is added: it fails here until
//! it checks its owner or is listed below as open to every trader.

use qtm_tests::guests;
use qtm_tests::server::{TestServer, error_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Operations any trader may call on another's strategy, and why.
const OPEN_TO_EVERY_TRADER: [(&str, &str); 2] = [
    // A clone is a new strategy owned by its caller, made from what every viewer can read.
    ("POST", "/api/strategies/{id}/clone"),
    ("POST", "/api/strategy-instances/{id}/clone"),
];

fn is_owned_resource(path: &str) -> bool {
    path.starts_with("/api/strategies/{id}") || path.starts_with("/api/strategy-instances/{id}")
}

async fn call(s: &TestServer, token: &str, method: &str, path: &str) -> (StatusCode, Value) {
    let url = format!("{}{path}", s.base);
    let method: Method = method.parse().unwrap();
    let req = s.http.request(method, &url).bearer_auth(token);
    let req = if path.ends_with("/versions") {
        req.multipart(
            reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(qtm_tests::component(guests::SMA_CROSS))
                    .file_name("v2.wasm"),
            ),
        )
    } else if path.ends_with("/configure") {
        req.json(&json!({"symbols": ["SPY"]}))
    } else if path.ends_with("/rollback") {
        req.json(&json!({"version": 1}))
    } else {
        req
    };
    TestServer::decode(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traders_change_only_their_own_strategies_and_instances() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let owner = s.user_token(&admin, "olga", "trader").await;
    let other = s.user_token(&admin, "oscar", "trader").await;
    let (status, created) = s
        .upload_strategy(&owner, qtm_tests::component(guests::SMA_CROSS))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let strategy = created["id"].as_i64().unwrap();
    let (_, view) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{strategy}"),
            Some(&owner),
            None,
        )
        .await;
    let instance = view["instance"]["id"].as_i64().expect("an instance id");

    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !is_owned_resource(path) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            if method == "GET" {
                continue;
            }
            let id = if path.starts_with("/api/strategy-instances") {
                instance
            } else {
                strategy
            };
            let concrete = path.replace("{id}", &id.to_string());
            let (status, body) = call(&s, &other, &method, &concrete).await;
            let open = OPEN_TO_EVERY_TRADER.contains(&(method.as_str(), path.as_str()));
            let admin_only = op["security"][0]["bearer"][0] == "admin";
            if open {
                assert_ne!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} let a trader act on another's strategy: {body}"
                );
                if !admin_only {
                    assert!(
                        error_of(&body).1.contains("only the owner of strategy"),
                        "{method} {path}: {body}"
                    );
                }
            }
            // Its owner is not refused as a non-owner (deleting is left to the end).
            if !admin_only && method != "DELETE" {
                let (status, body) = call(&s, &owner, &method, &concrete).await;
                assert!(
                    status != StatusCode::FORBIDDEN,
                    "{method} {path} refused the owner: {body}"
                );
            }
            checked.push(format!("{method} {path}"));
        }
    }
    // The routes this was written against are all among them.
    for route in [
        "PUT /api/strategies/{id}/configure",
        "POST /api/strategies/{id}/versions",
        "POST /api/strategies/{id}/enable",
        "POST /api/strategies/{id}/disable",
        "DELETE /api/strategies/{id}",
        "POST /api/strategy-instances/{id}/swap",
        "POST /api/strategy-instances/{id}/rollback",
    ] {
        assert!(
            checked.iter().any(|c| c == route),
            "{route} not checked: {checked:?}"
        );
    }
    // An admin may act on anyone's strategy.
    let (status, body) = call(&s, &admin, "DELETE", &format!("/api/strategies/{strategy}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
