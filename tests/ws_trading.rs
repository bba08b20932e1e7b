//! `/ws/trading`: manual orders placed, modified and cancelled over a WebSocket get the answers
//! REST gives (the same stored order, the same error codes and texts), fills are pushed, bad
//! messages are answered and never end the session, and only callers who may place orders over
//! REST may connect. Runs on the bundled SPY data alone (last stored close 126.54).

use futures_util::{SinkExt, StreamExt};
use qtm_runtime::store::{self, market};
use qtm_tests::server::{TestServer, TradingWs, error_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

/// The `/ws/trading` message cap (`runtime/server/src/ws/trading.rs`).
const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// A server whose store holds SPY's first 50 bundled bars, with an admin, a trader (tina) and
/// a viewer (vic): (server, admin token, trader token, viewer token).
async fn desk() -> (TestServer, String, String, String) {
    let s = TestServer::start().await;
    market::import_csv(
        &s.server.state.store,
        &qtm_tests::bundled_slice(50),
        &market::ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .expect("SPY imports");
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let viewer = s.user_token(&admin, "vic", "viewer").await;
    (s, admin, trader, viewer)
}

/// The `{"error"}` of a WebSocket error answer: (status, code, message, field).
#[track_caller]
fn ws_error(answer: &Value) -> (u64, String, String, Option<String>) {
    assert_eq!(answer["type"], "error", "{answer}");
    let (code, message) = error_of(answer);
    let field = answer["error"]["field"].as_str().map(str::to_string);
    (answer["status"].as_u64().unwrap(), code, message, field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_placed_modified_and_cancelled_with_the_rest_answers() {
    let (s, admin, trader, _) = desk().await;
    let mut ws = TradingWs::connect(&s, &format!("token={trader}")).await;
    assert_eq!(
        ws.welcome,
        json!({"type": "welcome", "user": "tina", "role": "trader",
               "max_message_bytes": MAX_MESSAGE_BYTES})
    );

    // Place: the stored order, as `GET /api/orders/{id}` shows it.
    let placed = ws
        .request(
            json!({"type": "place", "order": {"symbol": "SPY", "side": "buy",
            "quantity": 2, "type": "limit", "limit_price": 50.0, "tag": "ws"}}),
        )
        .await;
    assert_eq!(
        (&placed["type"], &placed["action"]),
        (&json!("order"), &json!("placed")),
        "{placed}"
    );
    let order = &placed["order"];
    let id = order["id"].as_i64().unwrap();
    let (st, stored) = s
        .call(
            Method::GET,
            &format!("/api/orders/{id}"),
            Some(&trader),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Booked to tina's own account.
    let tina = store::users::by_name(&s.server.state.store, "tina")
        .await
        .unwrap()
        .unwrap();
    let tinas = format!("user:{}", tina.id);
    assert_eq!(*order, stored);
    assert_eq!(
        (
            order["status"].as_str(),
            order["account"].as_str(),
            order["quantity"].as_f64(),
            order["limit_price"].as_f64(),
            order["tag"].as_str()
        ),
        (
            Some("accepted"),
            Some(tinas.as_str()),
            Some(2.0),
            Some(50.0),
            Some("ws")
        )
    );

    // Modify: quantity and limit price change; the order keeps working.
    let modified = ws
        .request(json!({"type": "modify", "order_id": id,
                        "changes": {"quantity": 3, "limit_price": 51.5}}))
        .await;
    assert_eq!(modified["action"], "modified", "{modified}");
    assert_eq!(
        (
            modified["order"]["quantity"].as_f64(),
            modified["order"]["limit_price"].as_f64(),
            modified["order"]["status"].as_str()
        ),
        (Some(3.0), Some(51.5), Some("accepted"))
    );

    // Cancel, with the reason REST records.
    let cancelled = ws
        .request(json!({"type": "cancel", "order_id": id, "reason": "changed my mind"}))
        .await;
    assert_eq!(cancelled["action"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["order"]["status"], "cancelled");
    assert_eq!(
        cancelled["order"]["reason"],
        "cancelled by tina: changed my mind"
    );

    // Errors carry REST's status, code and text: cancelling twice, modifying a cancelled
    // order, an unknown order, a bad field.
    let again = ws.request(json!({"type": "cancel", "order_id": id})).await;
    let (st, rest) = s
        .call(
            Method::POST,
            &format!("/api/orders/{id}/cancel"),
            Some(&trader),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{rest}");
    let (status, code, message, _) = ws_error(&again);
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert_eq!(message, error_of(&rest).1);
    let (status, code, message, _) = ws_error(
        &ws.request(json!({"type": "modify", "order_id": id, "changes": {"quantity": 5}}))
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert_eq!(
        message,
        format!(
            "order {id} is cancelled, not working: only accepted or partially filled orders can be modified"
        )
    );
    let (status, code, message, _) = ws_error(
        &ws.request(json!({"type": "cancel", "order_id": 999_999}))
            .await,
    );
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (404, "not_found", "order 999999 not found")
    );
    let bad = json!({"symbol": "SPY", "side": "buy", "quantity": -1});
    let (status, code, message, field) = ws_error(
        &ws.request(json!({"type": "place", "order": bad.clone()}))
            .await,
    );
    let (st, rest) = s
        .call(Method::POST, "/api/orders", Some(&trader), Some(bad))
        .await;
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (422, "validation", Some("quantity"))
    );
    assert_eq!(st.as_u16() as u64, status);
    assert_eq!(
        message,
        "quantity must be a positive number of units, got -1"
    );
    assert_eq!(message, error_of(&rest).1);

    // An account limit: refused with REST's `risk_rejected` text, stored as rejected.
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/risk/parameters",
            Some(&admin),
            Some(json!({"max_order_quantity": 0.5})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, refused) = ws
        .place(json!({"symbol": "SPY", "side": "buy", "quantity": 1}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, message) = error_of(&refused);
    assert_eq!(code, "risk_rejected");
    assert!(
        message.starts_with(
            "order rejected by the risk checks: order quantity 1 exceeds max_order_quantity 0.5"
        ) && message.contains("(stored as order "),
        "{message}"
    );
    let (st, body) = s
        .call(
            Method::PUT,
            "/api/risk/parameters",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // A market order fills on the next bar; the fill is pushed to the session.
    let (st, market_order) = ws
        .place(json!({"symbol": "SPY", "side": "buy", "quantity": 4}))
        .await;
    assert_eq!(st, StatusCode::OK, "{market_order}");
    let mid = market_order["id"].as_i64().unwrap();
    let (st, body) = s
        .call(
            Method::POST,
            "/api/market",
            Some(&admin),
            Some(
                json!({"bars": [{"symbol": "SPY", "ts": 2_000_000_000, "open": 100.0,
                "high": 101.0, "low": 99.0, "close": 100.5, "volume": 1000.0}]}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let update = ws
        .update_where(|u| u["event"] == "filled" && u["order"]["id"] == mid)
        .await;
    let slip = s.server.state.live.config().engine.exchange.slippage_bps / 1e4;
    assert_eq!(update["order"]["status"], "filled", "{update}");
    assert_eq!(update["order"]["filled_qty"].as_f64(), Some(4.0));
    assert_eq!(update["fill"]["quantity"].as_f64(), Some(4.0), "{update}");
    let price = update["fill"]["price"].as_f64().unwrap();
    assert!((price - 100.0 * (1.0 + slip)).abs() < 1e-9, "{update}");

    // Each order message leaves the audit row of the REST call it stands for.
    let rows = store::audit::recent(&s.server.state.store, 1000, None)
        .await
        .unwrap();
    let via_ws = |action: &str, status: i64| {
        rows.iter().any(|r| {
            r.action == action
                && r.status == status
                && r.detail.as_deref() == Some("via /ws/trading")
                && r.username.as_deref() == Some("tina")
        })
    };
    assert!(via_ws("POST /api/orders", 200));
    assert!(via_ws("POST /api/orders", 422));
    assert!(via_ws("PUT /api/orders/{id}", 200));
    assert!(via_ws("POST /api/orders/{id}/cancel", 200));
    assert!(via_ws("POST /api/orders/{id}/cancel", 409));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_answered_with_what_was_wrong_and_the_session_goes_on() {
    let (s, _, trader, _) = desk().await;
    let mut ws = TradingWs::connect(&s, &format!("token={trader}")).await;
    let cases: [(String, u64, &str, &str); 9] = [
        (
            "{\"type\": \"place\"".into(),
            400,
            "malformed_json",
            "message is not valid JSON: EOF while parsing an object at line 1 column 16",
        ),
        (
            "not json".into(),
            400,
            "malformed_json",
            "message is not valid JSON: expected ident at line 1 column 2",
        ),
        (
            "[1, 2]".into(),
            422,
            "validation",
            "bad message: invalid type: sequence, expected an object with a \"type\" at line 1 column 0",
        ),
        (
            r#"{"order": {}}"#.into(),
            422,
            "validation",
            "message has no \"type\": send place, cancel, modify, auth or ping",
        ),
        (
            r#"{"type": "launch"}"#.into(),
            422,
            "validation",
            "unknown message type \"launch\": send place, cancel, modify, auth or ping",
        ),
        (
            r#"{"type": "place"}"#.into(),
            422,
            "validation",
            "bad place message: missing field `order`",
        ),
        (
            r#"{"type": "place", "order": {"symbol": "SPY", "side": "buy", "quantity": 1, "colour": "red"}}"#.into(),
            422,
            "validation",
            "bad place message: unknown field `colour`, expected one of `symbol`, `side`, `quantity`, `type`, `limit_price`, `stop_price`, `time_in_force`, `take_profit`, `stop_loss`, `tag`",
        ),
        (
            r#"{"type": "cancel", "order_id": "seven"}"#.into(),
            422,
            "validation",
            "bad cancel message: invalid type: string \"seven\", expected i64",
        ),
        (
            r#"{"type": "ping", "request_id": {"nested": true}}"#.into(),
            422,
            "validation",
            "request_id must be a string of at most 64 characters or an integer",
        ),
    ];
    for (text, status, code, message) in cases {
        let answer = ws.send_text(text.clone()).await;
        let got = ws_error(&answer);
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            (status, code, message),
            "{text}"
        );
        assert_eq!(answer["request_id"], Value::Null, "{answer}");
    }

    // One byte over the cap: refused unread, and the session stays.
    let pad = "x".repeat(MAX_MESSAGE_BYTES);
    let big = json!({"type": "ping", "pad": pad}).to_string();
    let (status, code, message, _) = ws_error(&ws.send_text(big.clone()).await);
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    assert_eq!(
        message,
        format!(
            "message of {} bytes exceeds the 16384-byte limit of /ws/trading",
            big.len()
        )
    );
    let pong = ws.request(json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    let pong = ws
        .send_text(json!({"type": "ping", "request_id": 42}).to_string())
        .await;
    assert_eq!(pong, json!({"type": "pong", "request_id": 42}));

    // Past the transport's cap (the server's body limit, 1 MiB) the rest of the frame cannot
    // be skipped: the session ends, saying why when the client can still read it.
    // The server may close while the frame is still going out; a broken pipe on sending is
    // the session ending too.
    let huge = "y".repeat(2 << 20);
    let mut ended = ws.socket().send(Message::Text(huge.into())).await.is_err();
    while !ended {
        let Ok(next) =
            tokio::time::timeout(std::time::Duration::from_secs(10), ws.socket().next()).await
        else {
            break;
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(ws_error(&v).1, "payload_too_large", "{v}");
            }
            Some(Ok(Message::Close(frame))) => {
                if let Some(f) = frame {
                    assert_eq!(u16::from(f.code), 1009, "{f:?}");
                }
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the connection ends past the transport cap");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_callers_who_may_place_orders_over_rest_may_trade_here() {
    let (s, admin, trader, viewer) = desk().await;
    let url = |q: &str| format!("{}/ws/trading{q}", s.ws_base());
    let http_error = |e: tungstenite::Error| match e {
        tungstenite::Error::Http(resp) => {
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                .expect("a JSON error body");
            (resp.status().as_u16(), body)
        }
        other => panic!("not an HTTP refusal: {other}"),
    };

    // A viewer's token, a forged token: refused before the upgrade, as REST refuses them.
    let e = tokio_tungstenite::connect_async(url(&format!("?token={viewer}")))
        .await
        .unwrap_err();
    let (st, body) = http_error(e);
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        error_of(&body),
        (
            "forbidden".into(),
            "POST /api/orders needs the trader role; you are viewer".into()
        )
    );
    let (st, rest) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&viewer),
            Some(json!({"symbol": "SPY", "side": "buy", "quantity": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(error_of(&rest), error_of(&body));
    let e = tokio_tungstenite::connect_async(url("?token=not-a-token"))
        .await
        .unwrap_err();
    let (st, body) = http_error(e);
    assert_eq!((st, error_of(&body).0.as_str()), (401, "unauthorized"));

    // No credentials: the first message must authenticate.
    let (mut ws, _) = tokio_tungstenite::connect_async(url("")).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "place", "order": {"symbol": "SPY", "side": "buy", "quantity": 1}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = qtm_tests::server::next_json(&mut ws).await;
    assert_eq!(
        first,
        json!({"type": "error", "status": 401, "message": "the first message must be {\"type\":\"auth\",\"token\":…}",
               "error": {"code": "unauthorized", "message": "the first message must be {\"type\":\"auth\",\"token\":…}"}})
    );
    // A viewer authenticating by message is refused and the connection closed.
    let (mut ws, _) = tokio_tungstenite::connect_async(url("")).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": viewer}).to_string().into(),
    ))
    .await
    .unwrap();
    let (status, code, message, _) = ws_error(&qtm_tests::server::next_json(&mut ws).await);
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            403,
            "forbidden",
            "POST /api/orders needs the trader role; you are viewer"
        )
    );
    // Nothing was stored for any of them.
    let (_, orders) = s.call(Method::GET, "/api/orders", Some(&admin), None).await;
    assert_eq!(orders["items"], json!([]));

    // A trader's API key trades; the trader authenticating by message trades.
    let (st, key) = s
        .call(
            Method::POST,
            "/api/users/api-keys",
            Some(&trader),
            Some(json!({"name": "bot", "role": "trader"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let mut by_key =
        TradingWs::connect(&s, &format!("api_key={}", key["key"].as_str().unwrap())).await;
    let (st, body) = by_key
        .place(json!({"symbol": "SPY", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 60}))
        .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{body}"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url("")).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "auth", "token": trader}).to_string().into(),
    ))
    .await
    .unwrap();
    let welcome = qtm_tests::server::next_json(&mut ws).await;
    assert_eq!(
        (&welcome["type"], &welcome["role"]),
        (&json!("welcome"), &json!("trader"))
    );

    // Demoted while connected: the role change ended the session's access token, so the next
    // order is refused at once, as REST refuses it.
    let mut session = TradingWs::connect(&s, &format!("token={trader}")).await;
    let (_, users) = s.call(Method::GET, "/api/users", Some(&admin), None).await;
    let tina = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "tina")
        .expect("tina is listed")["id"]
        .as_i64()
        .unwrap();
    let (st, body) = s
        .call(
            Method::PUT,
            &format!("/api/users/{tina}/role"),
            Some(&admin),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = session
        .place(json!({"symbol": "SPY", "side": "buy", "quantity": 1}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        error_of(&body).1,
        "access token ended by a logout or a password or role change: refresh or log in again"
    );
    let (st, body) = by_key
        .place(json!({"symbol": "SPY", "side": "buy", "quantity": 1}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    // A token of another user does not take over the session.
    let (status, code, _, _) = ws_error(
        &session
            .request(json!({"type": "auth", "token": admin}))
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let (_, orders) = s.call(Method::GET, "/api/orders", Some(&admin), None).await;
    assert_eq!(
        orders["items"].as_array().map(Vec::len),
        Some(1),
        "{orders}"
    );
    s.stop().await;
}
