//! Access per owner, generated from the router: every operation that changes one owned
//! resource (a strategy, its instance, a backtest, a manual order, a trade of a user's
//! account) is called by a trader who does not own it and must be refused (403), and by its
//! owner, who must not be. The operations come from the OpenAPI document the server serves,
//! so a route added later is covered the day it is added: it fails here until it checks its
//! owner or is listed below as open to every trader.

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

/// The owned resources: the path every operation on one starts with, and the words of the
/// refusal a trader gets who does not own it.
const OWNED: [(&str, &str); 5] = [
    ("/api/strategies/{id}", "only the owner of strategy"),
    ("/api/strategy-instances/{id}", "only the owner of strategy"),
    ("/api/backtests/{id}", "only the user who started backtest"),
    ("/api/orders/{id}", "was placed by another user"),
    ("/api/trades/{id}", "in another user's account"),
];

/// Call `method` `path` (the document's `template` with its id filled in) with a body the
/// operation takes, so that what is checked is the owner, not the body.
async fn call(
    s: &TestServer,
    token: &str,
    method: &str,
    template: &str,
    path: &str,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", s.base);
    let method: Method = method.parse().unwrap();
    let put = method == Method::PUT;
    let req = s.http.request(method, &url).bearer_auth(token);
    let req = if template.ends_with("/stoploss") {
        req.json(&json!({"stop_price": 1.0}))
    } else if put && template == "/api/orders/{id}" {
        req.json(&json!({"quantity": 2.0}))
    } else if path.ends_with("/versions") {
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
async fn traders_change_only_their_own_strategies_instances_backtests_orders_and_trades() {
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
    qtm_runtime::store::market::import_csv(
        &s.server.state.store,
        &qtm_tests::bundled_slice(50),
        &qtm_runtime::store::market::ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .expect("SPY imports");
    let (status, queued) = s
        .call(
            Method::POST,
            "/api/backtests",
            Some(&owner),
            Some(json!({"strategy_id": strategy, "symbols": ["SPY"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let backtest = queued["id"].as_i64().unwrap();
    // A working order, and a trade: a market buy filled by the next bar.
    let (status, limit) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&owner),
            Some(json!({"symbol": "SPY", "side": "buy", "quantity": 1.0, "type": "limit", "limit_price": 1.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{limit}");
    let order = limit["id"].as_i64().unwrap();
    let (status, bought) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&owner),
            Some(json!({"symbol": "SPY", "side": "buy", "quantity": 1.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bought}");
    let bar = json!({"symbol": "SPY", "ts": 2_000_000_000, "open": 100.0, "high": 100.0,
                     "low": 100.0, "close": 100.0, "volume": 1000.0});
    let (status, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&admin),
            Some(json!({"bars": [bar]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    s.server.state.live.flush().await.unwrap();
    let (_, trades) = s
        .call(
            Method::GET,
            &format!(
                "/api/trades?account={}",
                bought["account"].as_str().unwrap()
            ),
            Some(&owner),
            None,
        )
        .await;
    let trade = trades["items"][0]["id"].as_i64().expect("a trade id");

    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some((prefix, refusal)) = OWNED.iter().find(|(p, _)| path.starts_with(p)) else {
            continue;
        };
        let id = match *prefix {
            "/api/strategy-instances/{id}" => instance,
            "/api/backtests/{id}" => backtest,
            "/api/orders/{id}" => order,
            "/api/trades/{id}" => trade,
            _ => strategy,
        };
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            if method == "GET" {
                continue;
            }
            let concrete = path.replace("{id}", &id.to_string());
            let (status, body) = call(&s, &other, &method, path, &concrete).await;
            let open = OPEN_TO_EVERY_TRADER.contains(&(method.as_str(), path.as_str()));
            let admin_only = op["security"][0]["bearer"][0] == "admin";
            if open {
                assert_ne!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} let a trader act on another's resource: {body}"
                );
                if !admin_only {
                    assert!(
                        error_of(&body).1.contains(refusal),
                        "{method} {path}: {body}"
                    );
                }
            }
            // Its owner is not refused as a non-owner (deleting is left to the end).
            if !admin_only && method != "DELETE" {
                let (status, body) = call(&s, &owner, &method, path, &concrete).await;
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
        "POST /api/backtests/{id}/cancel",
        "PUT /api/orders/{id}",
        "POST /api/orders/{id}/cancel",
        "POST /api/trades/{id}/close",
        "PUT /api/trades/{id}/stoploss",
        "DELETE /api/trades/{id}/stoploss",
    ] {
        assert!(
            checked.iter().any(|c| c == route),
            "{route} not checked: {checked:?}"
        );
    }
    // An admin may act on anyone's strategy.
    let (status, body) = call(
        &s,
        &admin,
        "DELETE",
        "/api/strategies/{id}",
        &format!("/api/strategies/{strategy}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
