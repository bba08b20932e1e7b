//! SQL import end to end: rows of a real SQLite file and a real PostgreSQL server become
//! ordinary strategies (`qtm_import`, `qtm import sql`, `POST /api/strategies/import`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use qtm_runtime::import as qtm_import;
use qtm_runtime::sandbox::{Sandbox, SandboxConfig};
use qtm_runtime::store::{self, Store};
use qtm_tests::guests;
use qtm_tests::server::{TestServer, qtm_binary};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection, Executor};

const TABLE: &str = "CREATE TABLE strategies (name TEXT, rules TEXT, template TEXT, params TEXT, wasm BLOB, symbols TEXT, key TEXT)";

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../strategies/rules/examples")
            .join(name),
    )
    .unwrap()
}

/// A row: name, rules, template, params, wasm, symbols, key.
type Row = (
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

fn rules_row(name: &str, rules: &str, symbols: &str) -> Row {
    (
        Some(name.into()),
        Some(rules.as_bytes().to_vec()),
        None,
        None,
        None,
        Some(symbols.into()),
        None,
    )
}

async fn sqlite_source(path: &Path, rows: &[Row]) {
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    c.execute("DROP TABLE IF EXISTS strategies").await.unwrap();
    c.execute(TABLE).await.unwrap();
    for r in rows {
        // Rule text goes in as text (or, when not UTF-8, as the raw bytes SQLite keeps).
        let q =
            sqlx::query("INSERT INTO strategies VALUES ($1, CAST($2 AS TEXT), $3, $4, $5, $6, $7)")
                .bind(&r.0)
                .bind(&r.1)
                .bind(&r.2)
                .bind(&r.3)
                .bind(&r.4)
                .bind(&r.5)
                .bind(&r.6);
        q.execute(&mut c).await.unwrap();
    }
    c.close().await.unwrap();
}

async fn dest() -> (tempfile::TempDir, Store, Arc<Sandbox>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("qtm.db").display());
    let store = Store::open(&url).await.unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    (dir, store, sandbox)
}

fn opts(url: &str, partial: bool) -> qtm_import::ImportOptions {
    let mut o = qtm_import::ImportOptions::new(url, "SELECT * FROM strategies");
    o.partial = partial;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_rows_import_once_then_stay_then_version_and_bad_rows_stop_everything() {
    let (dir, store, sandbox) = dest().await;
    let src = dir.path().join("team.db");
    let good = vec![
        rules_row("sma cross", &example("sma-cross.rules"), "SPY"),
        rules_row("rsi", &example("rsi-reversion.rules"), "SPY,QQQ"),
    ];
    sqlite_source(&src, &good).await;
    let url = format!("sqlite://{}", src.display());

    let r = qtm_import::import(&store, &sandbox, &opts(&url, false))
        .await
        .unwrap();
    assert_eq!(
        (r.rows, r.imported, r.created, r.unchanged, r.rejected_count),
        (2, 2, 2, 0, 0)
    );
    assert!(r.committed);
    let id = r.strategies[0].id.unwrap();
    let rec = store::strategies::get(&store, id).await.unwrap();
    assert_eq!(rec.strategy.source, "import");
    assert_eq!(rec.instance.symbols, ["SPY"]);
    assert_eq!(rec.instance.params, json!({"fast": 10, "slow": 30}));
    // The stored describe is what the component itself answers.
    let bytes = store::strategies::component(&store, rec.current_version.id)
        .await
        .unwrap();
    let code = sandbox.load(&bytes).unwrap();
    assert_eq!(
        serde_json::to_value(code.info()).unwrap(),
        rec.current_version.describe
    );
    let p = store::imports::provenance(&store, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.row_key.as_str(), p.query.as_str()),
        ("sma cross", "SELECT * FROM strategies")
    );
    assert_eq!(p.source, url);

    // Stored as a delta against the evaluator: about a kilobyte, not 300.
    let (stored, encoding): (i64, String) = {
        let c = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("qtm.db").display()
        ))
        .unwrap()
        .read_only(true)
        .connect()
        .await;
        let mut c = c.unwrap();
        sqlx::query_as("SELECT LENGTH(bytes), encoding FROM components WHERE sha256 = $1")
            .bind(&rec.current_version.content_sha256)
            .fetch_one(&mut c)
            .await
            .unwrap()
    };
    assert_eq!(encoding, "zstd-dict");
    assert!(
        stored < 8_000,
        "{stored} bytes stored for a {} byte component",
        bytes.len()
    );

    // Again: unchanged. A changed parameter: the next version of the same strategy.
    let again = qtm_import::import(&store, &sandbox, &opts(&url, false))
        .await
        .unwrap();
    assert_eq!((again.imported, again.unchanged), (0, 2));
    let mut changed = good.clone();
    changed[0].3 = Some(r#"{"fast": 5}"#.into());
    sqlite_source(&src, &changed).await;
    let v2 = qtm_import::import(&store, &sandbox, &opts(&url, false))
        .await
        .unwrap();
    assert_eq!((v2.updated, v2.unchanged), (1, 1));
    assert_eq!(v2.strategies[0].id, Some(id));
    assert_eq!(v2.strategies[0].version, Some(2));
    let rec = store::strategies::get(&store, id).await.unwrap();
    assert_eq!(rec.instance.params, json!({"fast": 5, "slow": 30}));

    // One bad row: nothing is stored, and the error names the row and the position.
    let mut bad = changed.clone();
    bad.push(rules_row(
        "broken",
        "entry_long = clos > 1\nsize = units(1)\n",
        "SPY",
    ));
    bad.push(rules_row(
        "fresh",
        &example("donchian-breakout.rules"),
        "SPY",
    ));
    sqlite_source(&src, &bad).await;
    let before = store::strategies::list(&store).await.unwrap().len();
    let r = qtm_import::import(&store, &sandbox, &opts(&url, false))
        .await
        .unwrap();
    assert!(!r.committed);
    assert_eq!(r.rejected_count, 1);
    assert_eq!(r.rejected[0].row, "broken");
    assert!(
        r.rejected[0].error.contains("1:14: unknown name `clos`"),
        "{}",
        r.rejected[0].error
    );
    assert_eq!(store::strategies::list(&store).await.unwrap().len(), before);
    // With partial, the good new row goes in.
    let r = qtm_import::import(&store, &sandbox, &opts(&url, true))
        .await
        .unwrap();
    assert!(r.committed);
    assert_eq!((r.created, r.unchanged, r.rejected_count), (1, 2, 1));
    assert_eq!(
        store::strategies::list(&store).await.unwrap().len(),
        before + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_rows_get_their_own_errors_and_the_source_is_never_written() {
    let (dir, store, sandbox) = dest().await;
    let src = dir.path().join("hostile.db");
    let deep = format!(
        "entry_long = {}close{} > 1\nsize = units(1)\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    let mut rows = vec![
        rules_row("ok", &example("sma-cross.rules"), "SPY"),
        (
            None,
            Some(b"x".to_vec()),
            None,
            None,
            None,
            Some("SPY".into()),
            Some("no-name".into()),
        ),
        rules_row("huge", &"#".repeat(2 << 20), "SPY"),
        rules_row("deep", &deep, "SPY"),
        rules_row(
            "unknown fn",
            "entry_long = foo(close)\nsize = units(1)\n",
            "SPY",
        ),
        rules_row(
            "type error",
            "entry_long = close + 1\nsize = units(1)\n",
            "SPY",
        ),
        rules_row("no symbols", &example("sma-cross.rules"), ""),
        rules_row("bad symbol", &example("sma-cross.rules"), "S P Y"),
        (
            Some("junk wasm".into()),
            None,
            None,
            None,
            Some(b"\0asm junk".to_vec()),
            Some("SPY".into()),
            None,
        ),
        (
            Some("no template".into()),
            None,
            Some("nothing-like-it".into()),
            None,
            None,
            Some("SPY".into()),
            None,
        ),
        rules_row("ok", &example("rsi-reversion.rules"), "SPY"),
    ];
    // Invalid UTF-8 in the rule text, as SQLite keeps it.
    rows.push((
        Some("bad utf8".into()),
        Some(vec![b'e', 0xff, 0xfe]),
        None,
        None,
        None,
        Some("SPY".into()),
        None,
    ));
    sqlite_source(&src, &rows).await;
    let url = format!("sqlite://{}", src.display());
    let r = qtm_import::import(&store, &sandbox, &opts(&url, true))
        .await
        .unwrap();
    let error_of = |row: &str| {
        r.rejected
            .iter()
            .find(|x| x.row == row)
            .map(|x| x.error.clone())
            .unwrap_or_else(|| panic!("{row} not rejected: {:?}", r.rejected))
    };
    assert_eq!(r.created, 1, "{r:?}");
    assert_eq!(error_of("row 2"), "name is empty or NULL");
    assert!(
        error_of("huge").contains("at most 1048576"),
        "{}",
        error_of("huge")
    );
    assert!(
        error_of("deep").starts_with("rules: "),
        "{}",
        error_of("deep")
    );
    assert!(
        error_of("unknown fn").contains("unknown function `foo`"),
        "{}",
        error_of("unknown fn")
    );
    assert!(
        error_of("type error").contains("1:20: `entry_long` must be a bool, found series"),
        "{}",
        error_of("type error")
    );
    assert!(
        error_of("no symbols").starts_with("no symbols"),
        "{}",
        error_of("no symbols")
    );
    assert!(
        error_of("bad symbol").contains("is not valid"),
        "{}",
        error_of("bad symbol")
    );
    assert!(
        error_of("junk wasm").starts_with("wasm: "),
        "{}",
        error_of("junk wasm")
    );
    assert!(
        error_of("no template").contains("no stored strategy describes itself"),
        "{}",
        error_of("no template")
    );
    assert!(
        error_of("ok").contains("appears twice"),
        "{}",
        error_of("ok")
    );
    assert!(
        error_of("bad utf8").contains("invalid UTF-8"),
        "{}",
        error_of("bad utf8")
    );
    assert_eq!(r.rejected_count, 11);

    // Anything but one SELECT is refused before it runs; the source keeps its rows.
    for q in [
        "DELETE FROM strategies",
        "SELECT * FROM strategies; DELETE FROM strategies",
        "UPDATE strategies SET name = 'x'",
    ] {
        let mut o = opts(&url, true);
        o.query = q.into();
        let e = qtm_import::import(&store, &sandbox, &o).await.unwrap_err();
        assert!(e.to_string().starts_with("refused query"), "{q}: {e}");
    }
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&src)
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM strategies")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, rows.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_and_component_rows_use_the_sandbox_gate_and_declared_ranges() {
    let (dir, store, sandbox) = dest().await;
    // The template: an uploaded sma-cross.
    let wasm = qtm_tests::component(guests::SMA_CROSS);
    let code = sandbox.load(&wasm).unwrap();
    let describe = serde_json::to_value(code.info()).unwrap();
    store::strategies::create(
        &store,
        &store::strategies::NewStrategy {
            name: "sma upload",
            description: "",
            owner_id: None,
            source: "upload",
            cloned_from: None,
        },
        &store::strategies::NewVersion {
            content_sha256: code.sha256(),
            contract_version: &code.gate().contract,
            describe: &describe,
            component: &wasm,
            size: None,
            created_by: None,
        },
        &json!({}),
        &["SPY".to_string()],
    )
    .await
    .unwrap();
    let src = dir.path().join("templates.db");
    let t = |name: &str, params: &str| -> Row {
        (
            Some(name.into()),
            None,
            Some("sma-cross".into()),
            Some(params.into()),
            None,
            Some("SPY".into()),
            None,
        )
    };
    let rows = vec![
        t("fast one", r#"{"fast": 5, "slow": 20}"#),
        t("too fast", r#"{"fast": 0}"#),
        (
            Some("blob".into()),
            None,
            None,
            None,
            Some(wasm.clone()),
            Some(r#"["SPY","QQQ"]"#.into()),
            None,
        ),
    ];
    sqlite_source(&src, &rows).await;
    let url = format!("sqlite://{}", src.display());
    let r = qtm_import::import(&store, &sandbox, &opts(&url, true))
        .await
        .unwrap();
    assert_eq!(r.created, 2, "{r:?}");
    assert_eq!(r.rejected[0].row, "too fast");
    assert!(
        r.rejected[0].error.starts_with("params.fast: "),
        "{}",
        r.rejected[0].error
    );
    let fast = store::strategies::get(&store, r.strategies[0].id.unwrap())
        .await
        .unwrap();
    assert_eq!(fast.instance.params["fast"], 5);
    assert_eq!(fast.current_version.content_sha256, code.sha256());
    let blob = store::strategies::get(&store, r.strategies[1].id.unwrap())
        .await
        .unwrap();
    assert_eq!(blob.instance.symbols, ["SPY", "QQQ"]);
    // A dry run stores nothing and says what would happen.
    let mut o = opts(&url, true);
    o.dry_run = true;
    let before = store::strategies::list(&store).await.unwrap().len();
    let d = qtm_import::import(&store, &sandbox, &o).await.unwrap();
    assert_eq!(
        (d.dry_run, d.committed, d.unchanged, d.rejected_count),
        (true, false, 2, 1)
    );
    assert_eq!(store::strategies::list(&store).await.unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_source_is_read_only_and_imports_like_sqlite() {
    let url = match qtm_tests::postgres::database_url() {
        Ok(u) => u,
        Err(why) => {
            qtm_tests::postgres::print_skip(&why);
            return;
        }
    };
    let mut c = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    c.execute("CREATE TABLE team (title TEXT, body TEXT, syms TEXT[], k INT)")
        .await
        .unwrap();
    for (i, (title, file)) in [
        ("sma", "sma-cross.rules"),
        ("donchian", "donchian-breakout.rules"),
    ]
    .iter()
    .enumerate()
    {
        sqlx::query("INSERT INTO team VALUES ($1, $2, $3, $4)")
            .bind(title)
            .bind(example(file))
            .bind(vec!["SPY".to_string()])
            .bind(i as i32 + 1)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let (_dir, store, sandbox) = dest().await;
    let mut o =
        qtm_import::ImportOptions::new(&url, "SELECT title, body, syms, k FROM team ORDER BY k");
    o.map = qtm_import::FieldMap::parse(&["name=title", "rules=body", "symbols=syms", "key=k"])
        .unwrap();
    let r = qtm_import::import(&store, &sandbox, &o).await.unwrap();
    assert_eq!((r.created, r.rejected_count), (2, 0), "{r:?}");
    assert_eq!(r.strategies[1].row, "2");
    assert!(!r.source.contains('@'), "{}", r.source);
    let again = qtm_import::import(&store, &sandbox, &o).await.unwrap();
    assert_eq!(again.unchanged, 2);
    // A data-modifying WITH passes the text check but not the read-only transaction.
    o.query =
        "WITH gone AS (DELETE FROM team RETURNING *) SELECT title AS name, body AS rules FROM gone"
            .into();
    o.map = qtm_import::FieldMap::default();
    let e = qtm_import::import(&store, &sandbox, &o).await.unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM team")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_api_import_and_report_in_the_issues_json() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("team.db");
    sqlite_source(
        &src,
        &[rules_row("api sma", &example("sma-cross.rules"), "SPY")],
    )
    .await;
    let url = format!("sqlite://{}", src.display());

    // The API, JSON: created, then unchanged.
    let body = json!({"url": url, "query": "SELECT * FROM strategies"});
    let (st, r) = s
        .call(
            Method::POST,
            "/api/strategies/import",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (r["imported"].as_u64(), r["rejected"].clone()),
        (Some(1), json!([]))
    );
    let id = r["strategies"][0]["id"].as_i64().unwrap();
    let (_, shown) = s
        .call(
            Method::GET,
            &format!("/api/strategies/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(shown["source"], "import", "{shown}");
    assert_eq!(shown["provenance"]["row_key"], "api sma", "{shown}");
    let (_, r) = s
        .call(
            Method::POST,
            "/api/strategies/import",
            Some(&admin),
            Some(body),
        )
        .await;
    assert_eq!(r["unchanged"], 1, "{r}");
    // All or nothing: a bad row is a 422 with the report.
    sqlite_source(
        &src,
        &[
            rules_row("api sma", &example("sma-cross.rules"), "SPY"),
            rules_row("bad", "size = units(", "SPY"),
        ],
    )
    .await;
    let (st, r) = s
        .call(
            Method::POST,
            "/api/strategies/import",
            Some(&admin),
            Some(json!({"url": url, "query": "SELECT * FROM strategies"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(r["error"]["field"], "rows");
    assert_eq!(r["report"]["rejected"][0]["row"], "bad");
    // A SQLite file uploaded with the query: a dry run that names the upload as the source.
    sqlite_source(
        &src,
        &[rules_row(
            "uploaded",
            &example("rsi-reversion.rules"),
            "QQQ",
        )],
    )
    .await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(&src).unwrap()).file_name("team.db"),
        )
        .text("query", "SELECT * FROM strategies")
        .text("dry_run", "true");
    let resp = s
        .http
        .post(format!("{}/api/strategies/import", s.base))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, r) = TestServer::decode(resp).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (
            &r["source"],
            &r["dry_run"],
            &r["committed"],
            &r["strategies"][0]["outcome"]
        ),
        (
            &json!("upload:team.db"),
            &json!(true),
            &json!(false),
            &json!("created")
        )
    );
    // A trader may not import.
    let trader = s.user_token(&admin, "tina", "trader").await;
    let (st, _) = s
        .call(
            Method::POST,
            "/api/strategies/import",
            Some(&trader),
            Some(json!({"url": url, "query": "SELECT 1"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.stop().await;

    // The CLI, --json, into its own database.
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    sqlite_source(
        &src,
        &[rules_row("cli sma", &example("sma-cross.rules"), "SPY")],
    )
    .await;
    let out = std::process::Command::new(qtm_binary())
        .args([
            "import",
            "sql",
            "--url",
            &url,
            "--query",
            "SELECT * FROM strategies",
            "--database-url",
            &db,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"], 1, "{report}");
    assert_eq!(report["strategies"][0]["name"], "cli sma");
    assert_eq!(report["rejected"], json!([]));
    // A bad row: exit 1, nothing imported, the row named on stderr's summary.
    sqlite_source(&src, &[rules_row("cli bad", "entry_long = 1\n", "SPY")]).await;
    let out = std::process::Command::new(qtm_binary())
        .args([
            "import",
            "sql",
            "--url",
            &url,
            "--query",
            "SELECT * FROM strategies",
            "--database-url",
            &db,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("rejected  row cli bad: rules: "),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 1 rows rejected; nothing was imported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_rows_stream_through_counted_with_their_errors_capped() {
    let (dir, store, sandbox) = dest().await;
    let src = dir.path().join("many.db");
    sqlite_source(&src, &[]).await;
    // 100,000 rows made by the query itself: all but the last a program cut short.
    let good = example("sma-cross.rules").replace('\'', "''");
    let query = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
         SELECT 'row ' || i AS name, CASE WHEN i = 100000 THEN '{good}' ELSE 'entry_long = (' END AS rules, \
         'SPY' AS symbols FROM n"
    );
    let mut o = qtm_import::ImportOptions::new(format!("sqlite://{}", src.display()), query);
    o.partial = true;
    let r = qtm_import::import(&store, &sandbox, &o).await.unwrap();
    assert_eq!(
        (r.rows, r.created, r.rejected_count, r.committed),
        (100_000, 1, 99_999, true)
    );
    // The report keeps the first errors, not every one.
    assert_eq!(r.rejected.len(), qtm_import::MAX_REPORTED_REJECTIONS);
    assert_eq!(r.rejected[0].row, "row 1");
    assert!(
        r.rejected[0].error.starts_with("rules: 1:"),
        "{:?}",
        r.rejected[0]
    );
    assert_eq!(r.strategies[0].row, "row 100000");
    // A row cap stops a query past it, before anything is stored.
    o.max_rows = 50_000;
    let e = qtm_import::import(&store, &sandbox, &o).await.unwrap_err();
    assert!(e.to_string().contains("more than 50000 rows"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_strategy_backtests_trades_live_clones_swaps_and_deletes() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    qtm_runtime::store::market::import_csv(
        &s.server.state.store,
        &qtm_tests::bundled_slice(400),
        &qtm_runtime::store::market::ImportOptions {
            symbol: "SPY".into(),
            ..Default::default()
        },
    )
    .await
    .expect("SPY imports");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("team.db");
    let cross = example("sma-cross.rules");
    sqlite_source(&src, &[rules_row("desk sma", &cross, "SPY")]).await;
    let import =
        json!({"url": format!("sqlite://{}", src.display()), "query": "SELECT * FROM strategies"});
    let (st, r) = s
        .call(
            Method::POST,
            "/api/strategies/import",
            Some(&admin),
            Some(import.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let id = r["strategies"][0]["id"].as_i64().unwrap();
    let call = |method: Method, path: String, body: Option<Value>| {
        let (s, admin) = (&s, &admin);
        async move { s.call(method, &path, Some(admin), body).await }
    };

    // A backtest over the stored bars, as for an uploaded strategy.
    let (st, q) = call(
        Method::POST,
        "/api/backtests".into(),
        Some(json!({"strategy_id": id, "symbols": ["SPY"]})),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{q}");
    let bt = q["id"].as_i64().unwrap();
    let done = loop {
        let (_, b) = call(Method::GET, format!("/api/backtests/{bt}"), None).await;
        match b["status"].as_str() {
            Some("queued" | "running") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            _ => break b,
        }
    };
    assert_eq!(done["status"], "done", "{done}");

    // Live: enabled, then a clone, which is a strategy of its own.
    let (st, e) = call(Method::POST, format!("/api/strategies/{id}/enable"), None).await;
    assert_eq!(st, StatusCode::OK, "{e}");
    let (st, c) = call(
        Method::POST,
        format!("/api/strategies/{id}/clone"),
        Some(json!({"name": "desk sma copy"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_ne!(c["id"].as_i64(), Some(id));

    // Changed rows become version 2, which the running instance swaps to.
    sqlite_source(
        &src,
        &[rules_row(
            "desk sma",
            &cross.replace("int(10,", "int(12,"),
            "SPY",
        )],
    )
    .await;
    let (st, r) = call(Method::POST, "/api/strategies/import".into(), Some(import)).await;
    assert_eq!(
        (st, r["updated"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{r}"
    );
    let (_, view) = call(Method::GET, format!("/api/strategies/{id}"), None).await;
    let instance = view["instance"]["id"].as_i64().expect("an instance");
    let (st, swapped) = call(
        Method::POST,
        format!("/api/strategy-instances/{instance}/swap"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{swapped}");
    assert_eq!(
        (&swapped["from_version"], &swapped["to_version"]),
        (&json!(1), &json!(2))
    );

    let (st, d) = call(Method::DELETE, format!("/api/strategies/{id}"), None).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let (st, _) = call(Method::GET, format!("/api/strategies/{id}"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}
