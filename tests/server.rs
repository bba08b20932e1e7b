//! The server end to end: a real server on an ephemeral port with a temporary SQLite file,
//! driven by a real HTTP and WebSocket client.

use std::time::Duration;

use base64::Engine;
use futures_util::SinkExt;
use qtm_tests::server::{ADMIN, JWT_SECRET, TestServer, error_of, next_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// HS256 token over arbitrary claims, signed with `secret`.
fn hs256(secret: &str, claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every operation of the OpenAPI document: (method, path with ids filled in, least role or
/// None when public).
async fn route_table(s: &TestServer) -> Vec<(Method, String, Option<String>)> {
    let (status, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has no security"));
            let role = if security.iter().any(|s| s.as_object().unwrap().is_empty()) {
                None
            } else {
                Some(
                    security[0].as_object().unwrap().values().next().unwrap()[0]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            };
            // Ids that exist nowhere: a permitted caller gets 404/422, never 401/403.
            let concrete = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "999999" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            out.push((m, concrete, role));
        }
    }
    assert!(out.len() >= 20, "suspiciously few routes: {}", out.len());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_bad_tokens_and_enforces_the_role_matrix() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let viewer = s.user_token(&admin, "vic", "viewer").await;
    let (_, me) = s
        .call(Method::GET, "/api/users/profile", Some(&admin), None)
        .await;
    let uid = me["id"].as_i64().unwrap();
    let claims = |exp: i64| json!({"sub": uid.to_string(), "name": "admin", "role": "admin", "typ": "access", "iat": now() - 10, "exp": exp, "jti": "t"});
    let expired = hs256(JWT_SECRET, &claims(now() - 3600));
    let forged = hs256(
        "another-secret-another-secret-another",
        &claims(now() + 600),
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims(now() + 600).to_string())
    );
    let bad_tokens = [
        ("missing", None),
        ("forged", Some(forged.as_str())),
        ("expired", Some(expired.as_str())),
        ("alg none", Some(alg_none.as_str())),
    ];
    let roles = [
        ("viewer", viewer.as_str()),
        ("trader", trader.as_str()),
        ("admin", admin.as_str()),
    ];
    let rank = |r: &str| {
        ["viewer", "trader", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };

    let table = route_table(&s).await;
    let mut checked = 0;
    for (method, path, least) in &table {
        let Some(least) = least else { continue };
        let body = matches!(*method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        for (what, token) in &bad_tokens {
            let (status, resp) = s.call(method.clone(), path, *token, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{what} token on {method} {path}: {resp}"
            );
            assert_eq!(error_of(&resp).0, "unauthorized");
        }
        for (role, token) in roles {
            let (status, resp) = s
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            if rank(role) < rank(least) {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role} on {method} {path} (needs {least}): {resp}"
                );
                assert!(
                    error_of(&resp)
                        .1
                        .contains(&format!("needs the {least} role")),
                    "{resp}"
                );
            } else {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role} on {method} {path} (needs {least}) got {status}: {resp}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} protected routes");
    // The expired token is refused for being expired, and says so.
    let (_, resp) = s
        .call(Method::GET, "/api/users/profile", Some(&expired), None)
        .await;
    assert_eq!(error_of(&resp).1, "token expired: log in again or refresh");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refresh_rotation_and_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    let (status, resp) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "admin", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&resp).1, "wrong username or password");
    let (status, resp) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(
        (status, error_of(&resp).1.as_str()),
        (StatusCode::UNAUTHORIZED, "wrong username or password")
    );

    let t = s.login(ADMIN.0, ADMIN.1).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let (status, t2) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2, "rotated");
    let (status, _) = s
        .call(
            Method::GET,
            "/api/users/profile",
            t2["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Reusing r1 (stolen?) revokes r2 too.
    let (status, resp) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_of(&resp).1.starts_with("refresh token already used"),
        "{resp}"
    );
    let (status, _) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": r2})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the family is revoked");

    // Logout ends a fresh session's refresh token, and its access token at once (not when it
    // expires); the revoked refresh token is told apart from a stolen, reused one.
    let t = s.login(ADMIN.0, ADMIN.1).await;
    let other = s.login(ADMIN.0, ADMIN.1).await;
    let access = t["access_token"].as_str().unwrap();
    let (status, _) = s
        .call(Method::GET, "/api/users/profile", Some(access), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s
        .call(
            Method::POST,
            "/api/auth/logout",
            Some(access),
            Some(json!({"refresh_token": t["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ended =
        "access token ended by a logout or a password or role change: refresh or log in again";
    let (status, body) = s
        .call(Method::GET, "/api/users/profile", Some(access), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_of(&body).1, ended);
    let (status, body) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": t["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_of(&body).1,
        "refresh token revoked (by a logout, a password change or a detected reuse); log in again"
    );
    // Another session's access token ended too, but its refresh token still works.
    let (status, _) = s
        .call(
            Method::GET,
            "/api/users/profile",
            other["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, renewed) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": other["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let renewed = renewed["access_token"].as_str().unwrap().to_string();
    let (status, _) = s
        .call(Method::GET, "/api/users/profile", Some(&renewed), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // A password change ends the access tokens (and the refresh tokens) at once.
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/users/password",
            Some(&renewed),
            Some(json!({"current_password": ADMIN.1, "new_password": "another-password-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .call(Method::GET, "/api/users/profile", Some(&renewed), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_of(&body).1, ended);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_totp_and_audit() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tom", "trader").await;
    // An API key capped below its owner's role.
    let (status, key) = s
        .call(
            Method::POST,
            "/api/users/api-keys",
            Some(&trader),
            Some(json!({"name": "bot", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let k = key["key"].as_str().unwrap();
    let resp = s
        .http
        .get(format!("{}/api/users/profile", s.base))
        .header("X-API-Key", k)
        .send()
        .await
        .unwrap();
    let (status, me) = TestServer::decode(resp).await;
    assert_eq!(
        (status, me["username"].as_str()),
        (StatusCode::OK, Some("tom"))
    );
    let resp = s
        .http
        .get(format!("{}/api/users", s.base))
        .header("X-API-Key", k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (status, resp) = s
        .call(
            Method::POST,
            "/api/users/api-keys",
            Some(&trader),
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(resp["error"]["field"], "role");
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/users/api-keys/{}", key["id"]),
            Some(&trader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let resp = s
        .http
        .get(format!("{}/api/users/profile", s.base))
        .header("X-API-Key", k)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "revoked");

    // TOTP: set up, confirm, and from then on login needs the second step.
    let (status, setup) = s
        .call(Method::POST, "/api/auth/2fa/setup", Some(&trader), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    let url = setup["otpauth_url"].as_str().unwrap();
    let totp = totp_rs::Totp::from_url(url).expect("otpauth url parses");
    let code = totp.generate_current().to_string();
    let (status, r) = s
        .call(
            Method::POST,
            "/api/auth/2fa/enable",
            Some(&trader),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, step1) = s
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "tom", "password": "tom-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(step1["mfa_required"], true);
    assert!(step1.get("access_token").is_none());
    // The code used to enable is spent; a wrong code is refused with the field named.
    let (status, r) = s
        .call(
            Method::POST,
            "/api/auth/login/2fa",
            None,
            Some(json!({"mfa_token": step1["mfa_token"], "code": "000000"})),
        )
        .await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("code"))
    );
    let (status, r) = s
        .call(
            Method::POST,
            "/api/auth/login/2fa",
            None,
            Some(json!({"mfa_token": step1["mfa_token"], "code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code works once: {r}");
    // The mfa token is not an access token.
    let (status, _) = s
        .call(
            Method::GET,
            "/api/users/profile",
            step1["mfa_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every mutating call above left an audit row with who and the outcome.
    let store = &s.server.state.store;
    let rows = qtm_runtime::store::audit::recent(store, 100, None)
        .await
        .unwrap();
    let find = |action: &str, outcome: &str| {
        rows.iter()
            .any(|r| r.action == action && r.outcome == outcome)
    };
    assert!(find("POST /api/users/api-keys", "ok"));
    assert!(find("POST /api/users/api-keys", "rejected"));
    assert!(find("DELETE /api/users/api-keys/{id}", "ok"));
    assert!(find("POST /api/auth/login/2fa", "denied"));
    let login = rows
        .iter()
        .find(|r| r.action == "POST /api/auth/login")
        .unwrap();
    assert_eq!(login.username.as_deref(), Some("tom"));
    assert!(
        rows.iter()
            .all(|r| r.detail.as_deref().is_none_or(|d| !d.contains("password")))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_json_errors() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let post_raw = |path: &str, body: &'static str, ct: &'static str| {
        s.http
            .post(format!("{}{path}", s.base))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let (status, r) = TestServer::decode(
        post_raw("/api/auth/login", "{\"username\": ", "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let (status, r) = TestServer::decode(
        post_raw(
            "/api/auth/login",
            "{\"username\": \"a\"}",
            "application/json",
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_of(&r).1.contains("missing field `password`"), "{r}");
    let (status, r) = TestServer::decode(
        post_raw("/api/auth/login", "x", "text/plain")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // Oversized JSON.
    let big = format!(
        "{{\"username\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(2 << 20)
    );
    // The server may close the connection after refusing an unread body: do not pool it.
    let resp = s
        .http
        .post(format!("{}/api/auth/login", s.base))
        .header("content-type", "application/json")
        .header("connection", "close")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, r) = TestServer::decode(resp).await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Unknown route, wrong method, bad path parameter.
    let (status, r) = s.call(Method::GET, "/api/nope", Some(&admin), None).await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, r) = s
        .call(Method::PATCH, "/api/users/profile", Some(&admin), None)
        .await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (status, r) = s
        .call(
            Method::DELETE,
            "/api/users/api-keys/abc",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, error_of(&r).0.as_str()),
        (StatusCode::NOT_FOUND, "not_found"),
        "an id that is not a number names no resource: {r}"
    );
    // Validation names the field.
    let (status, r) = s
        .call(
            Method::PUT,
            "/api/users/profile",
            Some(&admin),
            Some(json!({"email": "not-an-email"})),
        )
        .await;
    assert_eq!(
        (status, r["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("email"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_docs_and_metrics_are_served() {
    let s = TestServer::start().await;
    let (status, h) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!((status, h["status"].as_str()), (StatusCode::OK, Some("ok")));
    let page = s
        .http
        .get(format!("{}/api/docs", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/api/openapi.json") && page.contains("<title>qtm API</title>"));
    let (status, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/auth/login"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Nested response types are documented too.
    let paper = &doc["components"]["schemas"]["PaperResults"]["properties"];
    assert!(paper["realized_pnl"].is_object(), "{paper}");
    s.call(Method::GET, "/api/system/status", None, None).await;
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("qtm_http_requests_total"),
        "{}",
        &text[..text.len().min(500)]
    );
    assert!(text.contains("route=\"/api/system/status\""));
    s.stop().await;
}

async fn ws_connect(
    s: &TestServer,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}{path}", s.ws_base()))
        .await
        .expect("ws connects");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_auth_subscriptions_and_a_slow_client_does_not_stall_others() {
    use qtm_runtime::api::hub::Topic;
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    // Bad token in the query: refused before the upgrade.
    let err = tokio_tungstenite::connect_async(format!("{}/ws?token=nope", s.ws_base()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Token in the first message.
    let mut ws = ws_connect(&s, "/ws").await;
    ws.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws.send(Message::text(
        json!({"type": "subscribe", "topic": "market-data", "symbols": ["SPY"]}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    // A slow client: subscribed to everything, never reads.
    let mut slow = ws_connect(&s, &format!("/ws/market-data?token={token}")).await;
    assert_eq!(next_json(&mut slow).await["type"], "welcome");
    // A first-message client that sends garbage is told and dropped.
    let mut bad = ws_connect(&s, "/ws").await;
    bad.send(Message::text("{\"type\":\"ping\"}"))
        .await
        .unwrap();
    assert!(
        next_json(&mut bad).await["message"]
            .as_str()
            .unwrap()
            .contains("first message must be")
    );

    let hub = &s.server.state.hub;
    // 30,000 messages of 2 KB: far more than the socket buffers of a client that does not
    // read, so its queue in the hub overflows.
    let n = 30_000u64;
    let pad = "x".repeat(2_000);
    let started = std::time::Instant::now();
    for i in 0..n {
        // The last message is an SPY one, so the SPY-only client sees the end.
        let sym = if i % 2 == (n - 1) % 2 { "SPY" } else { "QQQ" };
        hub.publish(
            Topic::MarketData,
            Some(sym.into()),
            &json!({"i": i, "pad": pad}),
        );
        if i % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Publishing never waited for the slow reader.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // The SPY client sees only SPY, in order, up to the last message.
    let mut got = 0u64;
    let mut last_i = None;
    loop {
        let m = next_json(&mut ws).await;
        match m["type"].as_str() {
            Some("event") => {
                assert_eq!(m["key"], "SPY", "filtered by symbol");
                let i = m["data"]["i"].as_u64().unwrap();
                assert!(last_i.is_none_or(|l| i > l), "in order");
                last_i = Some(i);
                got += 1;
                if i == n - 1 {
                    break;
                }
            }
            Some("lagged") => {}
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert!(got > 0);
    // The slow client finally reads: it skipped ahead with lagged notices instead of holding
    // the others back, and every message is accounted for (received or reported skipped).
    let (mut events, mut skipped, mut notices) = (0u64, 0u64, 0);
    loop {
        let m = next_json(&mut slow).await;
        match m["type"].as_str() {
            Some("event") => {
                events += 1;
                if m["data"]["i"].as_u64() == Some(n - 1) {
                    break;
                }
            }
            Some("lagged") => {
                notices += 1;
                skipped += m["skipped"].as_u64().unwrap();
            }
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert!(
        notices > 0 && skipped > 0,
        "the slow client was told it skipped messages"
    );
    // A few system-health messages may be among the skipped ones.
    assert!(
        (n..n + 5).contains(&(events + skipped)),
        "events {events} + skipped {skipped} vs {n}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_all_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("qtm.db");
    let s = TestServer::start_on(&db, |_| {}).await;
    let admin = s.admin_token().await;
    s.user_token(&admin, "rita", "trader").await;
    let refresh = s.login("rita", "rita-password").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    s.stop().await;
    assert!(db.exists());
    let s = TestServer::start_on(&db, |_| {}).await;
    // The user, her password, her refresh token and the admin all survived.
    s.login("rita", "rita-password").await;
    let (status, _) = s
        .call(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = s
        .call(
            Method::GET,
            "/api/users",
            Some(&s.admin_token().await),
            None,
        )
        .await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2);
    s.stop().await;
}
