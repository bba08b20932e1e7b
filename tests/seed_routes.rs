//! The product seeds' routes and streams (`docs/server.md`, "Seed routes") against a real
//! server: each summary is checked against the routes it sums (`/api/trades`, the fills, the
//! risk routes), each alias against what it stands for, and each stream preset by what it
//! delivers. The market is two small series imported into the server's store and moved by
//! bars posted to the ingest bridge, so every fill price is known.

use std::time::Duration;

use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use qtm_runtime::api::hub::Topic;
use qtm_runtime::store::{self, market::ImportOptions};
use qtm_tests::server::{TestServer, error_of, next_json};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const DAY: i64 = 86_400;
/// A UTC midnight (2023-11-14): the first imported bar.
const D0: i64 = 1_699_920_000;

/// Write `rows` (ts, open, high, low, close) as a bar CSV and import it as `symbol`.
async fn import(s: &TestServer, dir: &std::path::Path, symbol: &str, rows: &[(i64, [f64; 4])]) {
    let mut csv = String::from("ts,open,high,low,close,volume\n");
    for (ts, [o, h, l, c]) in rows {
        csv.push_str(&format!("{ts},{o},{h},{l},{c},1000\n"));
    }
    let path = dir.join(format!("{symbol}.csv"));
    std::fs::write(&path, csv).unwrap();
    store::market::import_csv(
        &s.server.state.store,
        &path,
        &ImportOptions {
            symbol: symbol.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("import {symbol}: {e}"));
}

/// A server with SEED (closes 100, 101, 102) and SEEB (50, 51, 52) imported, and an admin,
/// two traders and a viewer.
struct Desk {
    s: TestServer,
    admin: String,
    trader: String,
    other: String,
    viewer: String,
    _dir: tempfile::TempDir,
}

impl Desk {
    async fn open() -> Desk {
        Self::on(TestServer::start().await).await
    }

    async fn on(s: TestServer) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let day = |k: i64| D0 + k * DAY;
        import(
            &s,
            dir.path(),
            "SEED",
            &[
                (day(0), [100.0, 101.0, 99.0, 100.0]),
                (day(1), [100.0, 102.0, 99.0, 101.0]),
                (day(2), [101.0, 103.0, 100.0, 102.0]),
            ],
        )
        .await;
        import(
            &s,
            dir.path(),
            "SEEB",
            &[
                (day(0), [50.0, 51.0, 49.0, 50.0]),
                (day(1), [50.0, 52.0, 49.0, 51.0]),
                (day(2), [51.0, 53.0, 50.0, 52.0]),
            ],
        )
        .await;
        let admin = s.admin_token().await;
        let trader = s.user_token(&admin, "tina", "trader").await;
        let other = s.user_token(&admin, "otto", "trader").await;
        let viewer = s.user_token(&admin, "vic", "viewer").await;
        Desk {
            s,
            admin,
            trader,
            other,
            viewer,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let (st, body) = self
            .s
            .call(Method::GET, path, Some(&self.viewer), None)
            .await;
        assert_eq!(st, StatusCode::OK, "GET {path}: {body}");
        body
    }

    async fn call(
        &self,
        m: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.s.call(m, path, Some(token), body).await
    }

    /// One bar of each `(symbol, [o, h, l, c])` through the bridge at `ts`, then wait until
    /// the engine handled them and the recorder stored what they did.
    async fn bars(&self, ts: i64, bars: &[(&str, [f64; 4])]) {
        let bars: Vec<Value> = bars
            .iter()
            .map(|(symbol, [o, h, l, c])| {
                json!({"symbol": symbol, "ts": ts, "open": o, "high": h, "low": l, "close": c, "volume": 500})
            })
            .collect();
        let (st, body) = self
            .call(
                Method::POST,
                "/api/market",
                &self.trader,
                Some(json!({"bars": bars})),
            )
            .await;
        assert_eq!(st, StatusCode::ACCEPTED, "{body}");
        self.s.server.state.live.flush().await.unwrap();
    }

    /// The one open trade of `symbol`.
    async fn open_trade(&self, symbol: &str) -> Value {
        let trades = self.get(&format!("/api/trades?symbol={symbol}")).await;
        let items = trades["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{trades}");
        items[0].clone()
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!(
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs())),
        "{a} != {b}"
    );
}

fn sum(items: &Value, key: &str) -> f64 {
    items.as_array().unwrap().iter().map(|t| f(&t[key])).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_portfolio_and_analytics_agree_with_the_trades_they_sum() {
    let d = Desk::open().await;

    // The MT4-style trade is a manual market order, bracket and tag included.
    let (st, ticket) = d
        .call(
            Method::POST,
            "/api/trade",
            &d.trader,
            Some(json!({"symbol": "SEED", "type": "buy", "lots": 10, "stopLoss": 90, "takeProfit": 130, "comment": "seed-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ticket}");
    assert_eq!(ticket["success"], true);
    let id = ticket["ticket"].as_i64().unwrap();
    let order = &ticket["order"];
    assert_eq!(order["id"], id);
    assert_eq!(
        (&order["type"], &order["side"], f(&order["quantity"])),
        (&json!("market"), &json!("buy"), 10.0)
    );
    assert_eq!(
        (f(&order["stop_loss"]), f(&order["take_profit"])),
        (90.0, 130.0)
    );
    assert_eq!(order["tag"], "seed-1");
    let orders = d.get("/api/orders?status=working").await;
    let listed = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .expect("the trade's order is in /api/orders");
    assert_eq!(listed, order);
    // snake_case aliases, and a short sale.
    let (st, short) = d
        .call(
            Method::POST,
            "/api/trade",
            &d.trader,
            Some(json!({"symbol": "SEEB", "type": "sell", "lots": 5, "stop_loss": 60, "take_profit": 40})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{short}");
    assert_eq!(
        (
            f(&short["order"]["stop_loss"]),
            f(&short["order"]["take_profit"])
        ),
        (60.0, 40.0)
    );
    // Errors are the one error shape, naming the seed's fields.
    for (body, field) in [
        (json!({"symbol": "SEED", "type": "buy", "lots": 0}), "lots"),
        (json!({"symbol": "SEED", "type": "hold", "lots": 1}), "type"),
        (
            json!({"symbol": "SEED", "type": "buy", "lots": 1, "comment": "x".repeat(65)}),
            "comment",
        ),
        (
            json!({"symbol": "SEED", "type": "buy", "lots": 1, "stopLoss": 120, "takeProfit": 110}),
            "takeProfit",
        ),
        (
            json!({"symbol": "NOPE", "type": "buy", "lots": 1}),
            "symbol",
        ),
    ] {
        let (st, e) = d
            .call(Method::POST, "/api/trade", &d.trader, Some(body.clone()))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(error_of(&e).0, "validation");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (st, _) = d
        .call(
            Method::POST,
            "/api/trade",
            &d.viewer,
            Some(json!({"symbol": "SEED", "type": "buy", "lots": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Both fill at the next bar's open; then the short is closed on the bar after.
    d.bars(
        D0 + 3 * DAY,
        &[
            ("SEED", [104.0, 106.0, 103.0, 105.0]),
            ("SEEB", [52.0, 53.0, 51.0, 52.5]),
        ],
    )
    .await;
    let seeb = d.open_trade("SEEB").await;
    let (st, c) = d
        .call(
            Method::POST,
            &format!("/api/trades/{}/close", seeb["id"]),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    d.bars(
        D0 + 4 * DAY,
        &[
            ("SEED", [105.0, 107.0, 104.0, 106.0]),
            ("SEEB", [51.0, 52.0, 50.0, 51.5]),
        ],
    )
    .await;

    let all = d.get("/api/trades?status=all&limit=1000").await;
    let open = d.get("/api/trades").await;
    let fills = d.get("/api/trades/fills?limit=1000").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(open["items"].as_array().unwrap().len(), 1, "{open}");
    assert_eq!(fills["items"].as_array().unwrap().len(), 3, "{fills}");
    let seed = &open["items"][0];
    assert_eq!(
        (&seed["symbol"], f(&seed["quantity"])),
        (&json!("SEED"), 10.0)
    );
    assert_eq!(
        f(&seed["mark_price"]),
        106.0,
        "marked at the last bar's close"
    );
    let realized = sum(&all["items"], "realized_pnl");
    let unrealized = sum(&open["items"], "unrealized_pnl");
    let fees = sum(&fills["items"], "fee");
    // No fees or slippage on the test server: the short made 5 × (52 − 51), the long is
    // 10 × (106 − 104) up.
    close(realized, 5.0);
    close(unrealized, 20.0);
    assert_eq!(fees, 0.0);

    // The recent trades are /api/trades?status=all.
    assert_eq!(d.get("/api/trades/recent?limit=1000").await, all);
    let first = d.get("/api/trades/recent?limit=1").await;
    assert_eq!(first["items"][0], all["items"][0]);
    let rest = d
        .get(&format!(
            "/api/trades/recent?limit=1&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (&rest["items"][0], &rest["next_cursor"]),
        (&all["items"][1], &Value::Null)
    );

    // PnL: the sums of those lists.
    let pnl = d.get("/api/pnl/summary").await;
    close(f(&pnl["realized_pnl"]), realized);
    close(f(&pnl["unrealized_pnl"]), unrealized);
    close(f(&pnl["total_pnl"]), realized + unrealized);
    close(f(&pnl["fees"]), fees);
    close(f(&pnl["net_pnl"]), realized + unrealized - fees);
    assert_eq!(pnl["open_trades"], 1);
    let accounts = pnl["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{pnl}");
    // The trader's own account (`user:<id>`) holds the manual trades.
    assert!(
        seed["account"].as_str().unwrap().starts_with("user:"),
        "{seed}"
    );
    assert_eq!(accounts[0]["account"], seed["account"]);
    close(f(&accounts[0]["realized_pnl"]), realized);
    close(f(&accounts[0]["unrealized_pnl"]), unrealized);

    // The open trades summed up.
    let active = d.get("/api/trades/active/summary").await;
    assert_eq!(
        (
            &active["open_trades"],
            &active["long_trades"],
            &active["short_trades"]
        ),
        (&json!(1), &json!(1), &json!(0))
    );
    close(f(&active["gross_exposure"]), f(&seed["market_value"]).abs());
    close(f(&active["net_exposure"]), f(&seed["market_value"]));
    close(f(&active["unrealized_pnl"]), unrealized);
    let row = &active["symbols"][0];
    assert_eq!(
        (&row["symbol"], &row["trades"], f(&row["quantity"])),
        (&json!("SEED"), &json!(1), 10.0)
    );
    assert_eq!(row["mark_source"], "live");

    // The portfolio: the manual account's cash is what its fills moved.
    let initial = d.s.server.state.live.config().initial_cash;
    let flow: f64 = fills["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let v = f(&x["quantity"]) * f(&x["price"]);
            if x["side"] == "buy" { -v } else { v }
        })
        .sum();
    let portfolio = d.get("/api/portfolio").await;
    let manual = &portfolio["accounts"][0];
    assert_eq!(manual["account"], seed["account"]);
    assert_eq!(portfolio["accounts"].as_array().unwrap().len(), 1);
    close(f(&manual["cash"]), initial + flow - fees);
    close(f(&manual["cash"]), initial - 1040.0 + 260.0 - 255.0);
    close(f(&manual["market_value"]), f(&seed["market_value"]));
    close(
        f(&manual["equity"]),
        initial + flow - fees + f(&seed["market_value"]),
    );
    close(f(&manual["unrealized_pnl"]), unrealized);
    close(f(&manual["realized_pnl"]), realized);
    assert_eq!(manual["positions"][0]["trade_id"], seed["id"]);
    close(f(&portfolio["totals"]["equity"]), f(&manual["equity"]));
    assert_eq!(portfolio["live_data"], true);

    // Analytics: the closed short is the one closed trade; its result decides win or loss.
    let perf = d.get("/api/analytics/performance").await;
    let closed_trade = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "closed")
        .unwrap();
    let result = f(&closed_trade["realized_pnl"]) - f(&closed_trade["fees"]);
    let stats = &perf["book"]["closed"];
    assert_eq!(stats["trades"], 1, "{perf}");
    assert_eq!(
        (stats["wins"].as_i64(), stats["losses"].as_i64()),
        if result > 0.0 {
            (Some(1), Some(0))
        } else {
            (Some(0), Some(1))
        }
    );
    close(f(&stats["avg_trade"]), result);
    assert_eq!(
        f(&stats["win_rate_pct"]),
        if result > 0.0 { 100.0 } else { 0.0 }
    );
    close(f(&perf["book"]["equity"]), f(&manual["equity"]));
    close(f(&perf["book"]["unrealized_pnl"]), unrealized);
    assert_eq!(perf["accounts"][0]["account"], seed["account"]);
    assert_eq!(perf["strategies"], json!([]));

    // The dashboard: the same figures.
    let dash = d.get("/api/dashboard/summary").await;
    assert_eq!(dash["trades"]["open"], 1);
    let today = dash["as_of"].as_i64().unwrap() / DAY * DAY;
    let closed_today = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["closed_at"].as_i64().is_some_and(|c| c >= today))
        .count();
    assert_eq!(dash["trades"]["closed_today"], closed_today);
    for k in [
        "realized_pnl",
        "unrealized_pnl",
        "total_pnl",
        "fees",
        "net_pnl",
    ] {
        close(f(&dash["pnl"][k]), f(&pnl[k]));
    }
    assert_eq!(dash["strategies"]["total"], 0);
    assert_eq!(
        (&dash["risk"]["halted"], &dash["system"]["status"]),
        (&json!(false), &json!("ok"))
    );
    assert_eq!(dash["system"]["live_data"], true);

    // The risk dashboard is the union of the risk routes.
    let (st, _) = d
        .call(
            Method::POST,
            "/api/risk/halt",
            &d.admin,
            Some(json!({"reason": "seed test"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let risk = d.get("/api/risk/dashboard").await;
    let metrics = d.get("/api/risk/metrics").await;
    let exposure = d.get("/api/risk/exposure").await;
    let parameters = d.get("/api/risk/parameters").await;
    let alerts = d.get("/api/risk/alerts").await;
    for k in [
        "equity",
        "cash",
        "gross_exposure",
        "unrealized_pnl",
        "realized_pnl",
        "fees",
        "halted",
    ] {
        assert_eq!(risk["metrics"][k], metrics[k], "{k}");
    }
    assert_eq!(risk["exposure"]["symbols"], exposure["symbols"]);
    assert_eq!(risk["parameters"], parameters);
    assert_eq!(risk["kill_switch"]["halted"], true);
    assert!(
        risk["kill_switch"]["halt"]["reason"]
            .as_str()
            .unwrap()
            .contains("seed test")
    );
    assert_eq!(risk["alerts"], alerts["items"]);
    assert_eq!(risk["alerts"][0]["kind"], "kill_switch");
    assert_eq!(
        d.get("/api/dashboard/summary").await["risk"]["halted"],
        true
    );

    // The coin state: the assets at their marks, live.
    let coins = d.get("/api/coinstate").await;
    let assets = d.get("/api/market/assets").await;
    assert_eq!(
        (&coins["live_data"], &coins["source"]),
        (&json!(true), &json!("live"))
    );
    let symbols = coins["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 2);
    for (c, a) in symbols.iter().zip(assets["items"].as_array().unwrap()) {
        assert_eq!(c["symbol"], a["symbol"]);
        for k in [
            "last_price",
            "change_pct",
            "volume_24h",
            "high_24h",
            "low_24h",
        ] {
            assert_eq!(c[k], a[k], "{k}");
        }
        assert_eq!(
            (&c["mark_ts"], &c["source"]),
            (&json!(D0 + 4 * DAY), &json!("live"))
        );
    }
    assert_eq!(symbols[0]["last_price"], 51.5);
    assert!((coins["timestamp"].as_i64().unwrap() - dash["as_of"].as_i64().unwrap()).abs() < 60);

    // Health is public, with the seeds' fields.
    let (st, health) = d.s.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(st, StatusCode::OK, "{health}");
    assert_eq!(
        (&health["status"], &health["live_data"]),
        (&json!("healthy"), &json!(true))
    );
    assert!(health["uptime_s"].is_u64());
    let stamp = health["timestamp"].as_str().unwrap();
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trades_stoploss_is_placed_replaced_cancelled_and_fills() {
    let d = Desk::open().await;
    let (st, t) = d
        .call(
            Method::POST,
            "/api/trade",
            &d.trader,
            Some(json!({"symbol": "SEED", "type": "buy", "lots": 4})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    d.bars(D0 + 3 * DAY, &[("SEED", [104.0, 106.0, 103.0, 105.0])])
        .await;
    let trade = d.open_trade("SEED").await;
    let id = trade["id"].as_i64().unwrap();
    let path = format!("/api/trades/{id}/stoploss");

    // No stop yet; unknown trades are 404 too.
    let (st, _) = d.call(Method::GET, &path, &d.viewer, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = d
        .call(
            Method::PUT,
            "/api/trades/999999/stoploss",
            &d.trader,
            Some(json!({"stop_price": 90})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // A stop above the mark (105) would sell at once: refused, naming the field.
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"stop_price": 106})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("stop_price")),
        "{e}"
    );
    let (st, _) = d
        .call(
            Method::PUT,
            &path,
            &d.viewer,
            Some(json!({"stop_price": 95})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Placed: a stop sell of the whole quantity, tagged with the trade.
    let (st, stop) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"stop_price": 95})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{stop}");
    assert_eq!(
        (
            &stop["type"],
            &stop["side"],
            f(&stop["quantity"]),
            f(&stop["stop_price"])
        ),
        (&json!("stop"), &json!("sell"), 4.0, 95.0)
    );
    assert_eq!(
        (&stop["tag"], &stop["account"], &stop["status"]),
        (
            &json!(format!("stoploss:{id}")),
            &trade["account"],
            &json!("accepted")
        )
    );
    let stop_id = stop["id"].as_i64().unwrap();
    assert_eq!(d.get(&path).await, stop);
    // Replaced in place, by PUT or POST.
    let (st, moved) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"stop_price": 97})),
        )
        .await;
    assert_eq!(
        (st, moved["id"].as_i64(), f(&moved["stop_price"])),
        (StatusCode::OK, Some(stop_id), 97.0),
        "{moved}"
    );
    let (st, moved) = d
        .call(
            Method::POST,
            &path,
            &d.trader,
            Some(json!({"stop_price": 98})),
        )
        .await;
    assert_eq!(
        (st, moved["id"].as_i64(), f(&moved["stop_price"])),
        (StatusCode::OK, Some(stop_id), 98.0),
        "{moved}"
    );
    let working: Vec<i64> = d.get("/api/orders?status=working").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(working, [stop_id], "one stop order, not two");
    // Only its placer (or an admin) changes or cancels it.
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.other,
            Some(json!({"stop_price": 96})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, e) = d.call(Method::DELETE, &path, &d.other, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (st, cancelled) = d.call(Method::DELETE, &path, &d.trader, None).await;
    assert_eq!(
        (st, &cancelled["status"]),
        (StatusCode::OK, &json!("cancelled")),
        "{cancelled}"
    );
    assert_eq!(cancelled["id"], stop_id);
    let (st, _) = d.call(Method::GET, &path, &d.viewer, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = d.call(Method::DELETE, &path, &d.trader, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Placed again, it protects the trade: a bar through the stop closes it.
    let (st, stop) = d
        .call(
            Method::POST,
            &path,
            &d.admin,
            Some(json!({"stop_price": 100})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{stop}");
    d.bars(D0 + 4 * DAY, &[("SEED", [101.0, 102.0, 98.0, 99.0])])
        .await;
    let (_, closed) = d
        .call(Method::GET, &format!("/api/trades/{id}"), &d.viewer, None)
        .await;
    assert_eq!(closed["status"], "closed", "{closed}");
    let (_, filled) = d
        .call(
            Method::GET,
            &format!("/api/orders/{}", stop["id"]),
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(filled["status"], "filled", "{filled}");
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"stop_price": 90})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    d.s.stop().await;
}

fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_hook(s: &TestServer, path: &str, secret: &str, body: &Value) -> (StatusCode, Value) {
    let body = body.to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let resp = s
        .http
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/json")
        .header("X-QTM-Timestamp", &ts)
        .header("X-QTM-Signature", sign(secret, &ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    TestServer::decode(resp).await
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_filter_by_min_confidence_in_full_pages_and_webhooks_have_v1_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_on(&dir.path().join("qtm.db"), |c| {
        c.webhook_secrets
            .insert("glassnode".into(), "gn-secret".into());
    })
    .await;
    let token = s.admin_token().await;
    let signal =
        |name: &str, confidence: Value| json!({"name": name, "value": 1, "confidence": confidence});
    // Through the alias: the same signature check, the same receipt.
    let (st, receipt) = post_hook(
        &s,
        "/api/v1/webhooks/whale-alert",
        "whsec-test",
        &json!({"signals": [signal("a", json!(0.9)), signal("b", json!(0.7)), signal("c", json!(0.69)),
            signal("d", json!("0.95")), {"name": "e", "value": 2}]}),
    )
    .await;
    assert_eq!(
        (st, &receipt["received"]),
        (StatusCode::OK, &json!(5)),
        "{receipt}"
    );
    let (st, _) = post_hook(
        &s,
        "/api/webhooks/glassnode",
        "gn-secret",
        &signal("glassnode.mvrv", json!(1)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = post_hook(
        &s,
        "/api/v1/webhooks/glassnode",
        "gn-secret",
        &signal("sopr", json!(0.71)),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // The alias refuses what the route refuses.
    let (st, e) = post_hook(
        &s,
        "/api/v1/webhooks/whale-alert",
        "wrong",
        &signal("x", json!(1)),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    let (st, _) = post_hook(&s, "/api/v1/webhooks/nobody", "x", &signal("x", json!(1))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let get = |path: String| {
        let (s, token) = (&s, &token);
        async move {
            let (st, body) = s.call(Method::GET, &path, Some(token), None).await;
            (st, body)
        }
    };
    let (st, all) = get("/api/signals?min_confidence=0.7".into()).await;
    assert_eq!(st, StatusCode::OK, "{all}");
    assert_eq!(names(&all), ["sopr", "glassnode.mvrv", "b", "a"]);
    assert_eq!(
        names(&get("/api/signals?min_confidence=0".into()).await.1).len(),
        5
    );
    assert_eq!(
        names(&get("/api/signals?min_confidence=1".into()).await.1),
        ["glassnode.mvrv"]
    );
    assert_eq!(
        names(&get("/api/signals".into()).await.1).len(),
        7,
        "no filter without it"
    );
    // Pages are full: the filter is in the query, before the limit.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/signals?min_confidence=0.7&limit=3&cursor={c}"),
            None => "/api/signals?min_confidence=0.7&limit=3".into(),
        };
        let page = get(path).await.1;
        let n = names(&page);
        paged.extend(n.clone());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(n.len(), 3, "a page before the last is full");
                cursor = Some(c.to_string());
            }
            None => break,
        }
    }
    assert_eq!(paged, names(&all));
    for bad in ["1.5", "-0.1", "NaN"] {
        let (st, e) = get(format!("/api/signals?min_confidence={bad}")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
        assert_eq!(e["error"]["field"], "min_confidence");
    }
    let (st, e) = get("/api/signals?min_confidence=high".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");

    // Glassnode: its source or its names.
    assert_eq!(
        names(&get("/api/signals/glassnode".into()).await.1),
        ["sopr", "glassnode.mvrv"]
    );

    // The webhook types, with how to sign.
    let (_, types) = get("/api/v1/webhooks".into()).await;
    let items = types["items"].as_array().unwrap();
    let of = |t: &str| {
        items
            .iter()
            .find(|i| i["type"] == t)
            .unwrap_or_else(|| panic!("{t}: {types}"))
    };
    assert_eq!(
        (
            &of("whale-alert")["configured"],
            &of("glassnode")["configured"]
        ),
        (&json!(true), &json!(true))
    );
    assert_eq!(of("funding")["configured"], false);
    assert_eq!(
        of("glassnode")["categories"],
        json!(["onchain", "glassnode"])
    );
    assert_eq!(
        of("whale-alert")["secret_env"],
        "QTM_WEBHOOK_SECRET_WHALE_ALERT"
    );
    assert_eq!(of("whale-alert")["url"], "/api/v1/webhooks/whale-alert");
    let listed: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    s.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(s: &TestServer, path: &str, token: &str) -> (Ws, Value) {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}{path}?token={token}", s.ws_base()))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{path}: {welcome}");
    (ws, welcome)
}

/// The next event (other messages skipped).
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == "event" {
            return m;
        }
    }
}

/// The next event this test published (a `probe`; the server's own, such as the
/// `system-health` ticker's, skipped).
async fn next_probe(ws: &mut Ws) -> Value {
    loop {
        let m = next_event(ws).await;
        if m["data"].get("probe").is_some() {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_presets_deliver_their_topics_and_are_counted() {
    let s = TestServer::start().await;
    let token = s.admin_token().await;
    let presets: [(&str, &[&str]); 6] = [
        (
            "/api/ws/dashboard",
            &[
                "pnl",
                "trades",
                "strategy-updates",
                "risk-alerts",
                "system-health",
            ],
        ),
        ("/api/ws/trades/active", &["trades"]),
        ("/api/ws/pnl", &["pnl"]),
        ("/api/ws/notifications", &["notifications", "risk-alerts"]),
        ("/ws/feed", &["market-data"]),
        ("/ws/ai", &["notifications"]),
    ];
    let mut clients = Vec::new();
    for (path, topics) in presets {
        let (ws, welcome) = ws(&s, path, &token).await;
        let mut subscribed: Vec<&str> = welcome["subscribed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        subscribed.sort();
        let mut want = topics.to_vec();
        want.sort();
        assert_eq!(subscribed, want, "{path}");
        clients.push((path, topics, ws));
    }
    // `/ws/trading` is still the trading session, not a topic stream.
    let (mut trading, _) =
        tokio_tungstenite::connect_async(format!("{}/ws/trading?token={token}", s.ws_base()))
            .await
            .unwrap();
    let welcome = next_json(&mut trading).await;
    assert_eq!(
        (&welcome["type"], &welcome["max_message_bytes"]),
        (&json!("welcome"), &json!(16384)),
        "{welcome}"
    );
    // A preset authenticates by first message too.
    let (mut late, _) = tokio_tungstenite::connect_async(format!("{}/api/ws/pnl", s.ws_base()))
        .await
        .unwrap();
    late.send(Message::text(
        json!({"type": "auth", "token": token}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut late).await["subscribed"], json!(["pnl"]));

    let stats = s
        .call(Method::GET, "/api/v1/websocket/stats", Some(&token), None)
        .await
        .1;
    for (path, _, _) in &clients {
        // `/api/ws/pnl` has the client that authenticated by message too.
        let n = if *path == "/api/ws/pnl" { 2 } else { 1 };
        assert_eq!(stats["connections_by_path"][*path], n, "{path}: {stats}");
    }
    assert_eq!(stats["connections_by_path"]["/ws/trading"], 1);
    assert_eq!(stats["connections"], 8);
    let subscribers = |topic: &str| {
        stats["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == topic)
            .unwrap()["subscribers"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (
            subscribers("pnl"),
            subscribers("notifications"),
            subscribers("market-data")
        ),
        (3, 2, 1)
    );

    // Each preset hears an event of each of its topics, and nothing of the others: the events
    // go out one topic at a time, each followed by a marker every client hears.
    let hub = &s.server.state.hub;
    for topic in Topic::ALL {
        hub.publish(topic, Some("k".into()), &json!({"probe": topic.as_str()}));
        for (path, topics, ws) in clients.iter_mut() {
            if topics.contains(&topic.as_str()) {
                let e = next_probe(ws).await;
                assert_eq!(
                    (e["topic"].as_str(), &e["data"]["probe"]),
                    (Some(topic.as_str()), &json!(topic.as_str())),
                    "{path}"
                );
            }
        }
    }
    for (path, topics, ws) in clients.iter_mut() {
        // Nothing else is queued: the next event is the next one of its own topics.
        hub.publish(
            Topic::parse(topics[0]).unwrap(),
            None,
            &json!({"probe": "last"}),
        );
        let e = next_probe(ws).await;
        assert_eq!(
            e["data"]["probe"], "last",
            "{path} got another topic's event: {e}"
        );
    }
    let stats = s
        .call(Method::GET, "/api/v1/websocket/stats", Some(&token), None)
        .await
        .1;
    // 11 probes of the presets' own topics and 6 last ones, at least.
    assert!(stats["messages_sent"].as_u64().unwrap() >= 17, "{stats}");
    drop(clients);
    drop(late);
    let mut stats = Value::Null;
    for _ in 0..50 {
        stats = s
            .call(Method::GET, "/api/v1/websocket/stats", Some(&token), None)
            .await
            .1;
        if stats["connections"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["connections"], 1, "only /ws/trading is left: {stats}");
    assert_eq!(stats["connections_by_path"], json!({"/ws/trading": 1}));
    assert_eq!(stats["connections_opened"], 8);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_active_parameters_their_stream_and_notifications() {
    let d = Desk::open().await;
    let upload = |token: String| {
        let s = &d.s;
        async move {
            let (st, created) = s
                .upload_strategy(&token, qtm_tests::component(qtm_tests::guests::SMA_CROSS))
                .await;
            assert_eq!(st, StatusCode::CREATED, "{created}");
            created["id"].as_i64().unwrap()
        }
    };
    let mine = upload(d.trader.clone()).await;
    let theirs = upload(d.other.clone()).await;

    // `active` is a list of its own, not strategy "active" of the id route.
    let active = d.get("/api/strategies/active").await;
    assert_eq!(active, json!({"items": [], "next_cursor": null}));

    // The parameters with their declared schema.
    let params = d.get(&format!("/api/strategies/{mine}/parameters")).await;
    assert_eq!(params["strategy_id"], mine);
    let fast = params["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fast")
        .unwrap();
    assert_eq!(
        (
            &fast["type"],
            f(&fast["min"]),
            f(&fast["max"]),
            &fast["default"],
            &fast["value"]
        ),
        (&json!("int"), 1.0, 500.0, &json!(10), &json!(10))
    );
    let mode = params["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "mode")
        .unwrap();
    assert_eq!(mode["choices"], json!(["long_only", "flip"]));
    assert_eq!(params["params"]["slow"], 30);
    let (st, _) = d
        .call(
            Method::GET,
            "/api/strategies/999999/parameters",
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The stream of one strategy hears only its own updates.
    let (mut ws_mine, _) = ws(&d.s, &format!("/api/ws/strategies/{mine}"), &d.viewer).await;
    let err = tokio_tungstenite::connect_async(format!(
        "{}/api/ws/strategies/999999?token={}",
        d.s.ws_base(),
        d.viewer
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");

    // Changing the parameters is configuring: same checks, same owner rule, same answer.
    let path = format!("/api/strategies/{mine}/parameters");
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.other,
            Some(json!({"params": {"fast": 7}})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert!(error_of(&e).1.contains("only the owner of strategy"), "{e}");
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"params": {"fast": 0}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("params.fast")),
        "{e}"
    );
    let (st, e) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"params": {"fast": 40}})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "fast ≥ slow, refused by the strategy: {e}"
    );
    // Theirs changes first: the stream of mine must not hear it.
    let (st, _) = d
        .call(
            Method::PUT,
            &format!("/api/strategies/{theirs}/parameters"),
            &d.other,
            Some(json!({"params": {"fast": 8}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, instance) = d
        .call(
            Method::PUT,
            &path,
            &d.trader,
            Some(json!({"params": {"fast": 7}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{instance}");
    assert_eq!(
        (&instance["params"]["fast"], &instance["params"]["slow"]),
        (&json!(7), &json!(30))
    );
    let e = next_event(&mut ws_mine).await;
    assert_eq!(
        (&e["topic"], &e["key"]),
        (&json!("strategy-updates"), &json!(mine.to_string())),
        "{e}"
    );
    assert_eq!(
        (&e["data"]["event"], &e["data"]["params"]["fast"]),
        (&json!("strategy.configured"), &json!(7))
    );
    assert_eq!(d.get(&path).await["params"]["fast"], 7);

    // Enabled, it is active.
    let (st, _) = d
        .call(
            Method::PUT,
            &format!("/api/strategies/{mine}/configure"),
            &d.trader,
            Some(json!({"symbols": ["SEED"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = d
        .call(
            Method::POST,
            &format!("/api/strategies/{mine}/enable"),
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{e}");
    let active = d.get("/api/strategies/active").await;
    let all = d.get("/api/strategies").await;
    let listed = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == mine)
        .unwrap();
    assert_eq!(active["items"], json!([listed]));
    let dash = d.get("/api/dashboard/summary").await;
    assert_eq!(
        (&dash["strategies"]["total"], &dash["strategies"]["enabled"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(dash["strategies"]["disabled"], 1);
    let perf = d.get("/api/analytics/performance").await;
    assert_eq!(perf["strategies"].as_array().unwrap().len(), 2);
    assert_eq!(
        perf["strategies"][0]["paper"]["account"],
        format!("strategy:{mine}")
    );

    // Notifications: the lifecycle calls and an alert, newest first, paged without overlap.
    let (st, _) = d.call(Method::POST, "/api/risk/halt", &d.admin, None).await;
    assert_eq!(st, StatusCode::OK);
    let feed = d.get("/api/notifications?limit=1000").await;
    let items = feed["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "kill_switch", "{feed}");
    assert_eq!(items[0]["severity"], "critical");
    let enabled = items
        .iter()
        .find(|n| n["kind"] == "strategy.enabled")
        .expect("the enable");
    assert_eq!(enabled["strategy_id"], mine);
    assert_eq!(enabled["message"], format!("tina enabled strategy {mine}"));
    for k in ["strategy.created", "strategy.configured"] {
        assert!(kinds.contains(&k), "{k}: {kinds:?}");
    }
    // Two uploads, three configurations (two by /parameters, one by /configure), one enable,
    // one halt: refused calls are not notifications.
    assert_eq!(
        kinds.iter().filter(|k| **k == "strategy.created").count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "strategy.configured")
            .count(),
        3
    );
    assert!(
        items
            .windows(2)
            .all(|w| w[0]["ts"].as_i64() >= w[1]["ts"].as_i64())
    );
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => {
                d.get(&format!("/api/notifications?limit=2&cursor={c}"))
                    .await
            }
            None => d.get("/api/notifications?limit=2").await,
        };
        paged.extend(page["items"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(&paged, items);
    let (st, e) = d
        .call(
            Method::GET,
            "/api/notifications?cursor=nope",
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor"))
    );
    d.s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_the_modules_and_quotes_are_ingested_at_their_mid() {
    let d = Desk::open().await;
    let plugins = d.get("/api/v1/plugins").await;
    let modules = d.get("/api/modules").await;
    let items = plugins["items"].as_array().unwrap();
    assert_eq!(items.len(), modules.as_array().unwrap().len());
    let of = |name: &str| {
        items
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {plugins}"))
    };
    for (name, t) in [
        ("replay-feed", "data_source"),
        ("ingest-bridge", "data_source"),
        ("signal-webhooks", "data_source"),
        ("live-engine", "engine"),
    ] {
        assert_eq!(of(name)["type"], t, "{name}");
        assert_eq!(of(name)["enabled"], true);
    }
    let first = d.get("/api/v1/plugins?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert!(first["next_cursor"].is_string());

    // Executing reports the module's state; a disabled one is a conflict.
    let (st, run) = d
        .call(
            Method::POST,
            "/api/v1/plugins/signal-webhooks/execute",
            &d.trader,
            Some(json!({"input": {"x": 1}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{run}");
    assert_eq!(
        (&run["action"], &run["input"]),
        (&json!("status"), &json!({"x": 1}))
    );
    assert_eq!(
        run["result"]["config"]["sources"],
        json!(["whale-alert", "funding", "onchain"])
    );
    let (st, _) = d
        .call(
            Method::POST,
            "/api/v1/plugins/signal-webhooks/execute",
            &d.viewer,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = d
        .call(
            Method::POST,
            "/api/v1/plugins/nothing/execute",
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = d
        .call(
            Method::PUT,
            "/api/modules/signal-webhooks/toggle",
            &d.admin,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = d
        .call(
            Method::POST,
            "/api/v1/plugins/signal-webhooks/execute",
            &d.trader,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");

    // A quote in the seeds' shape is a tick at its mid price, at its time.
    let mut rx = d.s.server.state.hub.subscribe();
    let (st, got) = d
        .call(
            Method::POST,
            "/api/market",
            &d.trader,
            Some(json!({"symbol": "SEED", "bid": 103.0, "ask": 103.5, "spread": 0.5,
                "time": "2023-11-17T10:30:45Z", "volume": 125, "high": 104, "low": 101, "open": 102})),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{got}");
    assert_eq!(got, json!({"bars": 0, "ticks": 0, "quotes": 1}));
    d.s.server.state.live.flush().await.unwrap();
    let coins = d.get("/api/coinstate").await;
    let seed = coins["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["symbol"] == "SEED")
        .unwrap();
    assert_eq!(
        (f(&seed["last_price"]), &seed["source"]),
        (103.25, &json!("live"))
    );
    assert_eq!(seed["mark_ts"], 1_700_217_045);
    let bar = loop {
        let m = rx.recv().await.unwrap();
        if m.topic == Topic::MarketData {
            break serde_json::from_str::<Value>(&m.json).unwrap();
        }
    };
    assert_eq!(bar["key"], "SEED");
    // A batch's `quotes` too, and bad quotes name their field; batches are as they were.
    let (st, got) = d
        .call(Method::POST, "/api/market", &d.trader, Some(json!({"quotes": [{"symbol": "SEEB", "bid": 52, "ask": 52.2, "ts": 1_700_217_100}]})))
        .await;
    assert_eq!(
        (st, got),
        (
            StatusCode::ACCEPTED,
            json!({"bars": 0, "ticks": 0, "quotes": 1})
        )
    );
    for (body, field) in [
        (
            json!({"symbol": "SEED", "bid": 104, "ask": 103}),
            "quotes[0].ask",
        ),
        (
            json!({"symbol": "SEED", "bid": 104, "ask": 105, "time": "yesterday"}),
            "quotes[0].time",
        ),
        (json!({"symbol": "SEED", "bid": "104", "ask": 105}), "bid"),
        (
            json!({"symbol": "SEED", "bid": 104, "ask": 105, "colour": "red"}),
            ".",
        ),
    ] {
        let (st, e) = d
            .call(Method::POST, "/api/market", &d.trader, Some(body.clone()))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        if field != "." {
            assert_eq!(e["error"]["field"], field, "{body}: {e}");
        }
    }
    let (st, got) = d
        .call(
            Method::POST,
            "/api/market",
            &d.trader,
            Some(json!({"ticks": [{"symbol": "SEED", "ts": 1_700_217_200, "price": 103.0}]})),
        )
        .await;
    assert_eq!(
        (st, got),
        (StatusCode::ACCEPTED, json!({"bars": 0, "ticks": 1}))
    );
    let (st, e) = d
        .call(
            Method::POST,
            "/api/market",
            &d.trader,
            Some(json!({"bars": [{"symbol": "SEED"}]})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("bars[0]")),
        "{e}"
    );
    d.s.stop().await;
}
