//! The layering of the host's crates, as Cargo sees it (`cargo metadata`): every dependency
//! between qtm crates must be an arrow of docs/architecture.md, and wasmtime belongs to the
//! sandbox alone. A new `use` across layers fails to compile; a new dependency line fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Every allowed arrow between qtm crates: crate → the qtm crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("qtm-core", &[]),
    ("qtm-market", &["qtm-core"]),
    ("qtm-oms", &["qtm-core"]),
    ("qtm-engine", &["qtm-core", "qtm-oms"]),
    ("qtm-sandbox", &["qtm-core"]),
    (
        "qtm-backtest",
        &["qtm-core", "qtm-market", "qtm-oms", "qtm-engine"],
    ),
    ("qtm-report", &["qtm-core", "qtm-backtest"]),
    ("qtm-store", &["qtm-core", "qtm-market", "qtm-oms"]),
    (
        "qtm-live",
        &[
            "qtm-core",
            "qtm-market",
            "qtm-oms",
            "qtm-engine",
            "qtm-sandbox",
            "qtm-store",
        ],
    ),
    (
        "qtm-server",
        &[
            "qtm-core",
            "qtm-market",
            "qtm-oms",
            "qtm-sandbox",
            "qtm-backtest",
            "qtm-report",
            "qtm-store",
            "qtm-live",
            "qtm-rules-component",
            "qtm-import",
            "qtm-evolve",
        ],
    ),
    (
        "qtm-evolve",
        &[
            "qtm-core",
            "qtm-market",
            "qtm-backtest",
            "qtm-sandbox",
            "qtm-rules",
            "qtm-rules-component",
        ],
    ),
    (
        "qtm-import",
        &[
            "qtm-core",
            "qtm-store",
            "qtm-sandbox",
            "qtm-rules-component",
        ],
    ),
    (
        "qtm-runtime",
        &[
            "qtm-import",
            "qtm-evolve",
            "qtm-core",
            "qtm-market",
            "qtm-oms",
            "qtm-engine",
            "qtm-sandbox",
            "qtm-backtest",
            "qtm-report",
            "qtm-store",
            "qtm-live",
            "qtm-server",
            "qtm-rules",
            "qtm-rules-component",
        ],
    ),
    ("qtm-guest-sdk", &[]),
    ("qtm-test-support", &[]),
    // The rule language: checked on the host, evaluated (feature `eval`) inside the guest on
    // the SDK's indicators.
    ("qtm-rules", &["qtm-guest-sdk"]),
    ("qtm-rules-component", &["qtm-rules"]),
    (
        "qtm-tests",
        &[
            "qtm-runtime",
            "qtm-guest-sdk",
            "qtm-market",
            "qtm-rules",
            "qtm-rules-component",
        ],
    ),
];

/// Crates that may depend on wasmtime (directly): the sandbox alone.
const WASMTIME: &[&str] = &["qtm-sandbox"];

/// The normal and build dependencies of each workspace crate (dev-dependencies are the
/// tests' business).
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut edges = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        edges.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    edges
}

#[test]
fn every_dependency_between_qtm_crates_is_an_allowed_arrow() {
    let edges = workspace_edges();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut forbidden = Vec::new();
    for (krate, deps) in &edges {
        let Some(ok) = allowed.get(krate.as_str()) else {
            forbidden.push(format!(
                "{krate} is not in the layering table (add it to docs/architecture.md and here)"
            ));
            continue;
        };
        for d in deps.iter().filter(|d| edges.contains_key(*d)) {
            if !ok.contains(&d.as_str()) {
                forbidden.push(format!("{krate} → {d}"));
            }
        }
    }
    assert!(forbidden.is_empty(), "forbidden edges: {forbidden:?}");
    // The table is not wider than the crates: every crate it names exists.
    for (krate, _) in ALLOWED {
        assert!(
            edges.contains_key(*krate),
            "{krate} is gone; update the table"
        );
    }
}

#[test]
fn only_the_sandbox_depends_on_wasmtime() {
    let edges = workspace_edges();
    let users: Vec<&String> = edges
        .iter()
        .filter(|(_, deps)| deps.contains("wasmtime"))
        .map(|(k, _)| k)
        .collect();
    for u in &users {
        assert!(WASMTIME.contains(&u.as_str()), "{u} depends on wasmtime");
    }
    assert!(users.iter().any(|u| *u == "qtm-sandbox"));
    // The engine and everything it is built from reach strategies through qtm-core only.
    for krate in [
        "qtm-core",
        "qtm-market",
        "qtm-oms",
        "qtm-engine",
        "qtm-backtest",
        "qtm-rules",
        "qtm-rules-component",
    ] {
        assert!(!edges[krate].contains("wasmtime"), "{krate} → wasmtime");
        assert!(
            !edges[krate].contains("qtm-sandbox"),
            "{krate} → qtm-sandbox"
        );
    }
}

#[test]
fn the_store_has_no_api_schemas() {
    // The API's bodies are the server's own types (`runtime/server/src/api_types`), converted
    // from the rows: a row deriving an OpenAPI schema again would let a column change the API
    // unseen.
    let edges = workspace_edges();
    for api in ["utoipa", "axum"] {
        assert!(!edges["qtm-store"].contains(api), "qtm-store → {api}");
    }
}

#[test]
fn the_server_steers_live_trading_through_its_handle_never_the_engine() {
    let edges = workspace_edges();
    assert!(edges["qtm-server"].contains("qtm-live"));
    assert!(
        !edges["qtm-server"].contains("qtm-engine"),
        "qtm-server → qtm-engine: go through qtm-live"
    );
    // The store is below everything that trades: it stores, it does not run anything.
    for below in ["qtm-engine", "qtm-sandbox", "qtm-live", "qtm-server"] {
        assert!(!edges["qtm-store"].contains(below), "qtm-store → {below}");
    }
}
