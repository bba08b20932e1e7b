//! Market data and signals against a real server: real CSV files imported into its SQLite
//! database with the library import, numbers checked against the CSV rows themselves, and
//! webhooks signed as a sender would sign them.

use std::path::Path;

use hmac::{Hmac, Mac};
use qtm_runtime::market::load_bars;
use qtm_runtime::model::Bar;
use qtm_runtime::store::market::{self, BarQuery, ImportOptions};
use qtm_runtime::store::{self, Store, StoreError};
use qtm_tests::server::{TestServer, error_of, next_json};
use qtm_tests::{bundled, require_peer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DAY: i64 = 86_400;

async fn import(store: &Store, path: &Path, symbol: &str) -> market::ImportSummary {
    market::import_csv(
        store,
        path,
        &ImportOptions {
            symbol: symbol.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("import {}: {e}", path.display()))
}

/// What `GET /api/market/assets` must say about a series, computed from its rows.
struct Expected {
    bars: usize,
    first: i64,
    last: i64,
    last_close: f64,
    ref_ts: i64,
    ref_close: f64,
    change_pct: f64,
    volume_24h: f64,
}

fn expected(bars: &[Bar]) -> Expected {
    let last = bars.last().unwrap();
    // The previous UTC calendar day's close.
    let today = last.ts - last.ts.rem_euclid(DAY);
    let reference = bars
        .iter()
        .rev()
        .find(|b| b.ts < today)
        .expect("more than a day of data");
    Expected {
        bars: bars.len(),
        first: bars[0].ts,
        last: last.ts,
        last_close: last.close,
        ref_ts: reference.ts,
        ref_close: reference.close,
        change_pct: 100.0 * (last.close / reference.close - 1.0),
        volume_24h: bars
            .iter()
            .filter(|b| b.ts > last.ts - DAY)
            .map(|b| b.volume)
            .sum(),
    }
}

#[track_caller]
fn check_asset(a: &Value, e: &Expected, interval: i64) {
    assert_eq!(a["bars"], e.bars as i64, "{a}");
    assert_eq!(a["first_ts"], e.first, "{a}");
    assert_eq!(a["last_ts"], e.last, "{a}");
    assert_eq!(a["interval_s"], interval, "{a}");
    assert_eq!(a["last_price"].as_f64(), Some(e.last_close), "{a}");
    assert_eq!(a["ref_ts"], e.ref_ts, "{a}");
    assert_eq!(a["ref_price"].as_f64(), Some(e.ref_close), "{a}");
    let change = a["change_pct"].as_f64().unwrap();
    assert!(
        (change - e.change_pct).abs() < 1e-9,
        "{change} vs {}",
        e.change_pct
    );
    assert_eq!(a["volume_24h"].as_f64(), Some(e.volume_24h), "{a}");
}

/// Resample by hand: bucket = ts minus its remainder from the origin.
fn aggregate(bars: &[Bar], from: i64, to: i64, interval: i64, origin: i64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for b in bars.iter().filter(|b| b.ts >= from && b.ts <= to) {
        let start = b.ts - (b.ts - origin).rem_euclid(interval);
        match out.last_mut() {
            Some(o) if o.ts == start => {
                o.high = o.high.max(b.high);
                o.low = o.low.min(b.low);
                o.close = b.close;
                o.volume += b.volume;
            }
            _ => out.push(Bar { ts: start, ..*b }),
        }
    }
    out
}

fn bars_of(body: &Value) -> Vec<Bar> {
    body["bars"]
        .as_array()
        .unwrap_or_else(|| panic!("no bars: {body}"))
        .iter()
        .map(|b| Bar {
            ts: b["ts"].as_i64().unwrap(),
            open: b["open"].as_f64().unwrap(),
            high: b["high"].as_f64().unwrap(),
            low: b["low"].as_f64().unwrap(),
            close: b["close"].as_f64().unwrap(),
            volume: b["volume"].as_f64().unwrap(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_assets_heatmap_and_symbols_match_the_csv() {
    let goog_path = require_peer!("goog_1d.csv");
    let eur_path = require_peer!("eurusd_1h.csv");
    let s = TestServer::start().await;
    let store = &s.server.state.store;
    let admin = s.admin_token().await;
    let viewer = s.user_token(&admin, "vera", "viewer").await;
    let spy_path = bundled("spy_1m_2011.csv");
    let goog = load_bars(&goog_path).unwrap();
    let spy = load_bars(&spy_path).unwrap();
    let g = import(store, &goog_path, "GOOG").await;
    assert_eq!((g.rows, g.new_bars), (goog.len() as u64, goog.len() as u64));
    // The symbol is uppercased: "spy" files the bars under SPY.
    let sp = import(store, &spy_path, "spy").await;
    assert_eq!(sp.asset.symbol, "SPY");

    let (status, assets) = s
        .call(Method::GET, "/api/market/assets", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{assets}");
    let list = assets["items"].as_array().unwrap();
    assert_eq!(
        list.iter()
            .map(|a| a["symbol"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["GOOG", "SPY"]
    );
    // Daily data: the reference is the previous bar.
    let eg = expected(&goog);
    assert_eq!(eg.ref_ts, goog[goog.len() - 2].ts);
    check_asset(&list[0], &eg, DAY);
    // Minute data: the reference is the last bar of the day before the last bar's day.
    let es = expected(&spy);
    assert!(es.ref_ts < spy[spy.len() - 2].ts);
    check_asset(&list[1], &es, 60);
    assert_eq!(list[1]["asset_class"], "equity");
    assert_eq!(list[1]["source"], "csv:spy_1m_2011.csv");

    // A bot's API key reads the same.
    let (status, key) = s
        .call(
            Method::POST,
            "/api/users/api-keys",
            Some(&viewer),
            Some(json!({"name": "chart-bot"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let resp = s
        .http
        .get(format!("{}/api/market/assets", s.base))
        .header("X-API-Key", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let (status, by_key) = TestServer::decode(resp).await;
    assert_eq!((status, &by_key), (StatusCode::OK, &assets));
    let (status, _) = s.call(Method::GET, "/api/market/assets", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, symbols) = s
        .call(Method::GET, "/api/symbols", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(symbols["next_cursor"], Value::Null);
    assert_eq!(
        symbols["items"],
        json!([
            {"symbol": "GOOG", "name": "GOOG", "asset_class": "equity", "currency": "USD"},
            {"symbol": "SPY", "name": "SPY", "asset_class": "equity", "currency": "USD"},
        ])
    );

    // An fx series joins the heatmap in its own group.
    let eur = load_bars(&eur_path).unwrap();
    import(store, &eur_path, "EURUSD").await;
    let ee = expected(&eur);
    let (status, heat) = s
        .call(Method::GET, "/api/market/heatmap", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{heat}");
    let max_abs = [eg.change_pct, es.change_pct, ee.change_pct]
        .iter()
        .fold(0.0f64, |m, c| m.max(c.abs()));
    assert!((heat["max_abs_change_pct"].as_f64().unwrap() - max_abs).abs() < 1e-9);
    let groups = heat["groups"].as_array().unwrap();
    assert_eq!(groups[0]["asset_class"], "equity");
    assert_eq!(groups[1]["asset_class"], "fx");
    assert_eq!(groups.len(), 2);
    let mut tiles = 0;
    for (symbol, e) in [("GOOG", &eg), ("SPY", &es), ("EURUSD", &ee)] {
        let tile = groups
            .iter()
            .flat_map(|g| g["assets"].as_array().unwrap())
            .find(|t| t["symbol"] == symbol)
            .unwrap();
        let intensity = tile["intensity"].as_f64().unwrap();
        assert!((intensity - e.change_pct / max_abs).abs() < 1e-9, "{tile}");
        assert!((-1.0..=1.0).contains(&intensity));
        tiles += 1;
    }
    assert_eq!(tiles, 3);
    let avg = (eg.change_pct + es.change_pct) / 2.0;
    assert!((groups[0]["avg_change_pct"].as_f64().unwrap() - avg).abs() < 1e-9);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_resample_like_a_hand_aggregation_and_bad_queries_name_the_field() {
    let goog_path = require_peer!("goog_1d.csv");
    let s = TestServer::start().await;
    let store = &s.server.state.store;
    let token = s.admin_token().await;
    let spy = load_bars(bundled("spy_1m_2011.csv")).unwrap();
    let goog = load_bars(&goog_path).unwrap();
    import(store, &bundled("spy_1m_2011.csv"), "SPY").await;
    import(store, &goog_path, "GOOG").await;
    let get = |path: String| {
        let token = token.clone();
        let s = &s;
        async move { s.call(Method::GET, &path, Some(&token), None).await }
    };

    // Two trading days of SPY in 5-minute buckets, starting mid-bucket.
    let from = spy[100].ts + 120;
    let to = spy[0].ts + 2 * DAY;
    let (status, body) = get(format!(
        "/api/market/spy/bars?from={from}&to={to}&interval=5m"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let want = aggregate(&spy, from, to, 300, 0);
    assert!(want.len() > 100, "{}", want.len());
    assert_eq!(bars_of(&body), want);
    assert_eq!(body["symbol"], "SPY");
    assert_eq!(body["interval_s"], 300);
    assert_eq!(body["resampled"], true);
    assert_eq!(body["count"], want.len());
    assert_eq!(body["truncated"], false);

    // Hourly and seconds spellings agree.
    let (_, hourly) = get(format!(
        "/api/market/SPY/bars?from={from}&to={to}&interval=1h"
    ))
    .await;
    let (_, secs) = get(format!(
        "/api/market/SPY/bars?from={from}&to={to}&interval=3600"
    ))
    .await;
    assert_eq!(bars_of(&hourly), aggregate(&spy, from, to, 3600, 0));
    assert_eq!(hourly["bars"], secs["bars"]);

    // Weekly GOOG: weeks start on Monday (1970-01-05 = 4 days after the epoch).
    let (status, weekly) = get("/api/market/GOOG/bars?interval=1w".into()).await;
    assert_eq!(status, StatusCode::OK);
    let want = aggregate(&goog, i64::MIN, i64::MAX, 7 * DAY, 4 * DAY);
    assert_eq!(bars_of(&weekly), want);
    assert_eq!(want.len(), weekly["count"].as_u64().unwrap() as usize);

    // Raw bars, a range with no resampling.
    let (_, raw) = get(format!(
        "/api/market/GOOG/bars?from={}&to={}",
        goog[10].ts, goog[19].ts
    ))
    .await;
    assert_eq!(bars_of(&raw), goog[10..20].to_vec());
    assert_eq!(raw["interval_s"], DAY);
    assert_eq!(raw["resampled"], false);

    // SPY has 31,757 bars: one request returns at most 10,000 and says where to go on.
    let (_, page) = get("/api/market/SPY/bars".into()).await;
    assert_eq!(page["count"], 10_000);
    assert_eq!(page["truncated"], true);
    assert_eq!(page["next_from"], spy[10_000].ts);
    assert_eq!(bars_of(&page), spy[..10_000].to_vec());
    let (_, next) = get(format!(
        "/api/market/SPY/bars?from={}&limit=3",
        spy[10_000].ts
    ))
    .await;
    assert_eq!(bars_of(&next), spy[10_000..10_003].to_vec());
    // A truncated resampled page continues at a bucket start.
    let (_, daily) = get("/api/market/SPY/bars?interval=1d&limit=2".into()).await;
    let all_days = aggregate(&spy, i64::MIN, i64::MAX, DAY, 0);
    assert_eq!(bars_of(&daily), all_days[..2].to_vec());
    assert_eq!(daily["next_from"], all_days[2].ts);
    // The library gives the same page the route does.
    let lib = market::bars(
        store,
        "SPY",
        BarQuery {
            from: None,
            to: None,
            interval_s: Some(DAY),
            limit: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(lib.bars, all_days[..2].to_vec());

    // Bad requests.
    let (status, body) = get("/api/market/NOPE/bars".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (code, message) = error_of(&body);
    assert_eq!(code, "not_found");
    assert!(message.contains("unknown symbol \"NOPE\""), "{message}");
    // An empty range is an empty answer, not an error (the contract cannot relate two fields).
    let (status, body) = get("/api/market/GOOG/bars?from=200&to=100".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 0, "{body}");
    for (query, field, says) in [
        ("interval=05m", "interval", "must not start with a zero"),
        ("interval=5x", "interval", "unknown unit \"x\""),
        ("interval=0", "interval", "between 1 second and 366 days"),
        ("limit=0", "limit", "between 1 and 10000"),
        ("limit=10001", "limit", "between 1 and 10000"),
    ] {
        let (status, body) = get(format!("/api/market/GOOG/bars?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
        assert!(error_of(&body).1.contains(says), "{query}: {body}");
    }
    let (status, body) = get("/api/market/GOOG/bars?from=yesterday".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).1.contains("from"), "{body}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_names_file_and_line_and_an_import_is_all_or_nothing() {
    let s = TestServer::start().await;
    let store = &s.server.state.store;
    let token = s.admin_token().await;
    let dir = tempfile::tempdir().unwrap();

    // A new symbol: the bad row on line 4 (high below low) leaves no asset and no bars.
    let bad = dir.path().join("bad_1m.csv");
    std::fs::write(
        &bad,
        "ts,open,high,low,close,volume\n60,10,11,9,10,5\n120,10,11,9,10,5\n180,10,9,11,10,5\n240,10,11,9,10,5\n",
    )
    .unwrap();
    let e = market::import_csv(
        store,
        &bad,
        &ImportOptions {
            symbol: "BAD".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains(&format!("{}:4:", bad.display())), "{e}");
    assert!(e.contains("nothing was imported"), "{e}");
    assert!(matches!(
        market::asset(store, "BAD").await,
        Err(StoreError::NotFound(_))
    ));
    let none = market::bars(
        store,
        "BAD",
        BarQuery {
            from: None,
            to: None,
            interval_s: None,
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert!(none.bars.is_empty());
    let (status, _) = s
        .call(Method::GET, "/api/market/BAD/bars", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An existing symbol: 20,000 good rows that would extend SPY, then one bad row far into
    // the file (past the first batches written). SPY stays exactly as it was.
    let spy_path = bundled("spy_1m_2011.csv");
    let spy = load_bars(&spy_path).unwrap();
    import(store, &spy_path, "SPY").await;
    let before = market::asset(store, "SPY").await.unwrap();
    let mut text = std::fs::read_to_string(&spy_path).unwrap();
    let last = spy.last().unwrap();
    for i in 1..=20_000 {
        text.push_str(&format!("{},100,101,99,100,1000\n", last.ts + i * DAY));
    }
    text.push_str(&format!("{},100,101,99,NaN,1000\n", last.ts + 20_001 * DAY));
    let longer = dir.path().join("spy_more.csv");
    std::fs::write(&longer, text).unwrap();
    let e = market::import_csv(
        store,
        &longer,
        &ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    let bad_line = spy.len() + 20_000 + 2;
    assert!(e.contains(&format!("spy_more.csv:{bad_line}:")), "{e}");
    let after = market::asset(store, "SPY").await.unwrap();
    assert_eq!(after, before);
    let (_, tail) = s
        .call(
            Method::GET,
            &format!("/api/market/SPY/bars?from={}", last.ts + DAY),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(tail["count"], 0, "{tail}");

    // Re-importing the same file is idempotent: same counts, same summary.
    let again = import(store, &spy_path, "SPY").await;
    assert_eq!((again.rows, again.new_bars), (spy.len() as u64, 0));
    let mut a = again.asset.clone();
    a.updated_at = before.updated_at;
    assert_eq!(a, before);
    let (_, assets) = s
        .call(Method::GET, "/api/market/assets", Some(&token), None)
        .await;
    assert_eq!(assets["items"][0]["bars"], spy.len());
    s.stop().await;
}

fn sign(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POST a raw body to a webhook with the given timestamp and signature headers.
async fn post_hook(
    s: &TestServer,
    source: &str,
    body: &str,
    ts: Option<&str>,
    sig: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = s
        .http
        .post(format!("{}/api/webhooks/{source}", s.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = ts {
        req = req.header("X-QTM-Timestamp", t);
    }
    if let Some(sig) = sig {
        req = req.header("X-QTM-Signature", sig);
    }
    TestServer::decode(req.send().await.unwrap()).await
}

/// POST `body`, signed now with the test server's whale-alert secret.
async fn post_signed(s: &TestServer, body: &str) -> (StatusCode, Value) {
    let ts = now().to_string();
    let sig = sign("whsec-test", &ts, body);
    post_hook(s, "whale-alert", body, Some(&ts), Some(&sig)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_verify_signatures_window_and_replays_and_signals_are_listed() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let viewer = s.user_token(&admin, "vic", "viewer").await;
    let mut ws = tokio_tungstenite::connect_async(format!(
        "{}/ws/notifications?token={viewer}",
        s.ws_base()
    ))
    .await
    .expect("ws connects")
    .0;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");

    // A good signature: stored, listed, published, and readable by the strategies' lookup.
    let whale_body =
        r#"{"name":"whale.btc","value":1500.5,"ts":1700000000,"from":"unknown","to":"binance"}"#;
    let ts = now().to_string();
    let sig = sign("whsec-test", &ts, whale_body);
    let (status, receipt) = post_hook(&s, "whale-alert", whale_body, Some(&ts), Some(&sig)).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["received"], 1);
    let stored = &receipt["signals"][0];
    assert_eq!(stored["source"], "whale-alert");
    assert_eq!(stored["name"], "whale.btc");
    assert_eq!(stored["value"], 1500.5);
    assert_eq!(stored["ts"], 1_700_000_000);
    assert_eq!(stored["payload"]["to"], "binance");
    let event = next_json(&mut ws).await;
    assert_eq!(event["topic"], "notifications", "{event}");
    assert_eq!(event["key"], "whale.btc");
    assert_eq!(event["data"]["kind"], "signal");
    assert_eq!(event["data"]["signal"]["id"], stored["id"]);

    let (status, whales) = s
        .call(
            Method::GET,
            "/api/signals/whale-activity",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{whales}");
    assert_eq!(whales["items"].as_array().unwrap().len(), 1);
    assert_eq!(whales["items"][0], *stored);
    let (_, funding) = s
        .call(
            Method::GET,
            "/api/signals/funding-rates",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(funding["items"], json!([]));
    let latest = qtm_runtime::store::signals::latest_signal(&s.server.state.store, "whale.btc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.value, 1500.5);
    assert_eq!(latest.ts_ns, 1_700_000_000 * 1_000_000_000);
    assert!(
        latest.payload.contains("\"to\":\"binance\""),
        "{}",
        latest.payload
    );

    // A batch; names decide the category, whatever the source.
    let (status, receipt) = post_signed(
        &s,
        r#"{"signals":[{"name":"funding.btc-perp","value":0.0001},{"name":"onchain.mvrv","value":2.1}]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["received"], 2);
    for (route, name) in [
        ("funding-rates", "funding.btc-perp"),
        ("onchain", "onchain.mvrv"),
    ] {
        let (_, list) = s
            .call(
                Method::GET,
                &format!("/api/signals/{route}"),
                Some(&viewer),
                None,
            )
            .await;
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            1,
            "{route}: {list}"
        );
        assert_eq!(list["items"][0]["name"], name);
    }
    // whale-alert is a whale source: all three came through it, newest first.
    let (_, whales) = s
        .call(
            Method::GET,
            "/api/signals/whale-activity?limit=2",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(
        whales["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["onchain.mvrv", "funding.btc-perp"]
    );
    let (_, named) = s
        .call(
            Method::GET,
            "/api/signals?name=whale.btc",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(named["items"].as_array().unwrap().len(), 1);
    let (_, later) = s
        .call(
            Method::GET,
            &format!("/api/signals?since={}", now() + 3600),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(later["items"], json!([]));
    let (status, body) = s
        .call(
            Method::GET,
            "/api/signals/onchain?limit=0",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "limit");

    // Exact replay of the first request.
    let (status, body) = post_hook(&s, "whale-alert", whale_body, Some(&ts), Some(&sig)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error_of(&body).1.contains("already received"), "{body}");

    // Wrong secret, body changed, timestamp swapped: 401.
    let body2 = r#"{"name":"whale.eth","value":3}"#;
    let t = now().to_string();
    let later_ts = (now() + 1).to_string();
    for (what, ts, sig) in [
        ("wrong secret", t.clone(), sign("other-secret", &t, body2)),
        (
            "other body",
            t.clone(),
            sign("whsec-test", &t, r#"{"name":"x","value":1}"#),
        ),
        ("swapped timestamp", later_ts, sign("whsec-test", &t, body2)),
    ] {
        let (status, resp) = post_hook(&s, "whale-alert", body2, Some(&ts), Some(&sig)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {resp}");
        assert!(
            error_of(&resp).1.contains("does not match"),
            "{what}: {resp}"
        );
    }
    // Missing or malformed headers.
    let (status, resp) = post_hook(&s, "whale-alert", body2, None, Some("sha256=00")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_of(&resp).1.contains("missing X-QTM-Timestamp header"),
        "{resp}"
    );
    let (status, resp) = post_hook(&s, "whale-alert", body2, Some(&t), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_of(&resp).1.contains("missing X-QTM-Signature header"),
        "{resp}"
    );
    let (status, resp) = post_hook(&s, "whale-alert", body2, Some(&t), Some("md5=abc")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&resp).1.contains("sha256=<hex>"), "{resp}");
    // Correctly signed but outside the 300 s window (both directions).
    for stale in [now() - 1000, now() + 1000] {
        let st = stale.to_string();
        let (status, resp) = post_hook(
            &s,
            "whale-alert",
            body2,
            Some(&st),
            Some(&sign("whsec-test", &st, body2)),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{resp}");
        assert!(
            error_of(&resp).1.contains("accepted within 300 s"),
            "{resp}"
        );
    }

    // A source without a secret.
    let (status, resp) =
        post_hook(&s, "nobody", body2, Some(&t), Some(&sign("x", &t, body2))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        error_of(&resp).1.contains("QTM_WEBHOOK_SECRET_NOBODY"),
        "{resp}"
    );

    // Signed but malformed: not JSON (400), wrong shape (422 naming the field).
    let (status, resp) = post_signed(&s, "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(error_of(&resp).0, "malformed_json");
    for (body, field) in [
        (r#"{"name":"whale.x"}"#, "value"),
        (r#"{"name":"whale x","value":1}"#, "name"),
        (r#"{"name":"whale.x","value":1,"ts":"noon"}"#, "ts"),
        (
            r#"{"signals":[{"name":"a","value":1},{"value":2}]}"#,
            "signals[1].name",
        ),
        (r#"[1,2]"#, "body"),
    ] {
        let (status, resp) = post_signed(&s, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {resp}");
        assert_eq!(resp["error"]["field"], field, "{body}: {resp}");
    }
    // Nothing of the refused requests was stored.
    let (_, all) = s
        .call(Method::GET, "/api/signals?limit=1000", Some(&viewer), None)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    s.stop().await;
}

/// One value of a JSON body, as a number.
#[track_caller]
fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[track_caller]
fn close_to(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: {a} vs {b}");
}

/// Every REST view that prices a position or shows a price (trades, exposure, assets, the
/// heatmap, a strategy's performance) values at the live market's last price, not at the
/// last imported bar, and they agree; `change_pct` runs from the previous UTC day's close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_values_positions_at_the_live_markets_last_price() {
    let s = TestServer::start().await;
    let store = &s.server.state.store;
    let admin = s.admin_token().await;
    let trader = s.user_token(&admin, "tina", "trader").await;
    let viewer = s.user_token(&admin, "vera", "viewer").await;
    let spy = load_bars(bundled("spy_1m_2011.csv")).unwrap();
    import(store, &bundled("spy_1m_2011.csv"), "SPY").await;
    let stored = spy.last().unwrap();
    let get = |path: String| {
        let viewer = viewer.clone();
        let s = &s;
        async move {
            let (st, body) = s.call(Method::GET, &path, Some(&viewer), None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {body}");
            body
        }
    };

    // A manual position, bought on the first live bar, and a live strategy's position.
    let (st, o) = s
        .call(
            Method::POST,
            "/api/orders",
            Some(&trader),
            Some(json!({"symbol": "SPY", "side": "buy", "quantity": 10})),
        )
        .await;
    assert_eq!(
        (st, o["status"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{o}"
    );
    let describe = json!({});
    let strategy = store::strategies::create(
        store,
        &store::strategies::NewStrategy {
            name: "held",
            description: "",
            owner_id: None,
            source: "upload",
            cloned_from: None,
        },
        &store::strategies::NewVersion {
            content_sha256: "00",
            contract_version: "1",
            describe: &describe,
            component: b"",
            size: None,
            created_by: None,
        },
        &json!({}),
        &["SPY".to_string()],
    )
    .await
    .unwrap();
    let sid = strategy.strategy.id;
    let account = format!("strategy:{sid}");
    let held = store::orders::insert(
        store,
        &store::orders::NewOrder {
            account: qtm_runtime::live::strategy_account(sid),
            symbol: "SPY".into(),
            side: qtm_runtime::model::Side::Buy,
            order_type: qtm_runtime::store::orders::OrderType::Market,
            quantity: 4.0,
            time_in_force: qtm_runtime::model::TimeInForce::Gtc,
            status: store::orders::OrderStatus::Accepted,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    store::orders::record_fill(store, held.id, 4.0, 130.0, 0.5, stored.ts)
        .await
        .unwrap();

    // The live market trades the next UTC day, well away from the last imported close.
    let day1 = stored.ts - stored.ts.rem_euclid(DAY) + DAY;
    assert!(stored.ts < day1);
    let ingest = |bars: Value| {
        let trader = trader.clone();
        let s = &s;
        async move {
            let (st, body) = s
                .call(
                    Method::POST,
                    "/api/market",
                    Some(&trader),
                    Some(json!({"bars": bars})),
                )
                .await;
            assert_eq!(st, StatusCode::ACCEPTED, "{body}");
            let live = &s.server.state.live;
            live.flush().await.unwrap();
        }
    };
    let t1 = day1 + 13 * 3_600 + 1_800;
    ingest(json!([
        {"symbol": "SPY", "ts": t1, "open": 133.0, "high": 134.0, "low": 132.9, "close": 133.5, "volume": 1e4},
        {"symbol": "SPY", "ts": t1 + 60, "open": 133.5, "high": 135.2, "low": 133.4, "close": 135.0, "volume": 1e4},
    ]))
    .await;

    // Checks every view at `price` and the change against `reference` (at `ref_ts`).
    let check = |price: f64, ts: i64, ref_ts: i64, reference: f64| {
        let get = &get;
        let (account, sid) = (account.clone(), sid);
        async move {
            let change = 100.0 * (price / reference - 1.0);
            let trades = get("/api/trades?status=open".into()).await;
            let trades = trades["items"].as_array().unwrap();
            assert_eq!(trades.len(), 2, "{trades:?}");
            let mut upnl = 0.0;
            let mut quantity = 0.0;
            for t in trades {
                close_to(num(&t["mark_price"], "mark_price"), price, "trade mark");
                assert_eq!(
                    (t["mark_ts"].as_i64(), t["mark_source"].as_str()),
                    (Some(ts), Some("live")),
                    "{t}"
                );
                let (q, avg) = (
                    num(&t["quantity"], "quantity"),
                    num(&t["avg_price"], "avg_price"),
                );
                close_to(
                    num(&t["unrealized_pnl"], "unrealized_pnl"),
                    q * (price - avg),
                    "trade upnl",
                );
                close_to(
                    num(&t["market_value"], "market_value"),
                    q * price,
                    "trade value",
                );
                upnl += q * (price - avg);
                quantity += q;
            }
            assert_eq!(quantity, 14.0);

            let x = get("/api/risk/exposure".into()).await;
            let g = &x["symbols"][0];
            assert_eq!(
                (g["symbol"].as_str(), g["mark_source"].as_str()),
                (Some("SPY"), Some("live")),
                "{x}"
            );
            close_to(num(&g["mark_price"], "mark_price"), price, "exposure mark");
            assert_eq!(g["mark_ts"].as_i64(), Some(ts));
            close_to(
                num(&g["notional"], "notional"),
                14.0 * price,
                "exposure notional",
            );
            close_to(
                num(&g["unrealized_pnl"], "unrealized_pnl"),
                upnl,
                "exposure upnl",
            );
            let m = get("/api/risk/metrics".into()).await;
            close_to(
                num(&m["unrealized_pnl"], "unrealized_pnl"),
                upnl,
                "metrics upnl",
            );
            close_to(
                num(&m["gross_exposure"], "gross_exposure"),
                14.0 * price,
                "metrics gross",
            );

            let assets = get("/api/market/assets".into()).await;
            let a = &assets["items"][0];
            assert_eq!(
                (a["symbol"].as_str(), a["price_source"].as_str()),
                (Some("SPY"), Some("live")),
                "{a}"
            );
            close_to(num(&a["last_price"], "last_price"), price, "asset price");
            assert_eq!(
                (a["price_ts"].as_i64(), a["ref_ts"].as_i64()),
                (Some(ts), Some(ref_ts)),
                "{a}"
            );
            close_to(
                num(&a["ref_price"], "ref_price"),
                reference,
                "asset reference",
            );
            close_to(num(&a["change_pct"], "change_pct"), change, "asset change");
            assert_ne!(num(&a["change_pct"], "change_pct"), 0.0);

            let heat = get("/api/market/heatmap".into()).await;
            let tile = &heat["groups"][0]["assets"][0];
            assert_eq!(tile["symbol"], "SPY", "{heat}");
            close_to(num(&tile["last_price"], "last_price"), price, "tile price");
            close_to(
                num(&tile["change_pct"], "change_pct"),
                change,
                "tile change",
            );
            close_to(
                num(&heat["max_abs_change_pct"], "max_abs"),
                change.abs(),
                "heatmap scale",
            );

            let perf = get(format!("/api/strategies/{sid}/performance")).await;
            let paper = &perf["paper"];
            let held = get(format!("/api/trades?account={account}")).await;
            let held = &held["items"][0];
            close_to(
                num(&paper["unrealized_pnl"], "unrealized_pnl"),
                4.0 * (price - 130.0),
                "paper upnl",
            );
            close_to(
                num(&paper["unrealized_pnl"], "unrealized_pnl"),
                num(&held["unrealized_pnl"], "trade upnl"),
                "paper vs trade",
            );
            close_to(
                num(&paper["market_value"], "market_value"),
                4.0 * price,
                "paper value",
            );
            close_to(
                num(&paper["equity"], "equity"),
                num(&paper["cash"], "cash") + 4.0 * price,
                "paper equity",
            );
            assert_eq!(paper["open_positions"], 1);
        }
    };
    // Day 1: the reference is the last imported close, the day before.
    check(135.0, t1 + 60, stored.ts, stored.close).await;
    // Day 2: the live feed's own close of day 1.
    ingest(json!([
        {"symbol": "SPY", "ts": t1 + DAY, "open": 134.0, "high": 134.5, "low": 130.5, "close": 131.0, "volume": 1e4},
    ]))
    .await;
    check(131.0, t1 + DAY, t1 + 60, 135.0).await;

    // The document describes the new fields.
    let (_, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    let schemas = &doc["components"]["schemas"];
    let text = |v: &Value| v.to_string();
    assert!(text(&schemas["AssetView"]).contains("price_source"));
    assert!(text(&schemas["Trade"]).contains("mark_source"));
    assert!(text(&schemas["PaperResults"]).contains("unrealized_pnl"));
    assert!(text(&doc["paths"]["/api/market/assets"]).contains("previous UTC calendar day"));
    s.stop().await;
}
