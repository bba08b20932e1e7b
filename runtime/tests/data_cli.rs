//! `qtm data import` and `qtm data list`, run as a user would, on real data.

use std::process::{Command, Output};

#[path = "support/data.rs"]
mod data;

fn qtm(args: &[&str], db_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qtm"));
    cmd.args(args).env_remove("QTM_DATABASE_URL");
    if let Some(url) = db_env {
        cmd.env("QTM_DATABASE_URL", url);
    }
    cmd.output().expect("run qtm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn import_list_reimport_and_a_bad_file() {
    let (Some(goog), Some(eurusd)) = (
        data::peer_file_or_skip("goog_1d.csv"),
        data::peer_file_or_skip("eurusd_1h.csv"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("qtm.db").display());
    let rows = std::fs::read_to_string(&goog).unwrap().lines().count() - 1;

    // The symbol comes from the file name; the database from the flag.
    let out = qtm(
        &[
            "data",
            "import",
            goog.to_str().unwrap(),
            "--database-url",
            &url,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("imported {rows} rows into GOOG from ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({rows} new, 0 replaced)")),
        "{stdout}"
    );
    assert!(
        stdout.contains("2004-08-19 00:00 .. 2013-03-01 00:00"),
        "{stdout}"
    );

    // Again, through the environment: nothing new.
    let out = qtm(&["data", "import", goog.to_str().unwrap()], Some(&url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "(0 new, {rows} replaced); GOOG now has {rows} bars"
        )),
        "{}",
        text(&out.stdout)
    );

    // Named options.
    let out = qtm(
        &[
            "data",
            "import",
            eurusd.to_str().unwrap(),
            "--symbol",
            "eur-usd",
            "--name",
            "Euro",
            "--asset-class",
            "fx",
            "--currency",
            "usd",
            "--database-url",
            &url,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = qtm(&["data", "list"], Some(&url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("symbol"), "{list}");
    let eur: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&eur[..5], ["EUR-USD", "fx", "USD", "5000", "1h"], "{list}");
    let goog_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &goog_row[..5],
        ["GOOG", "equity", "USD", &rows.to_string(), "1d"],
        "{list}"
    );

    // A bad row on line 4: the error names the file and line, and nothing is left behind.
    let bad = dir.path().join("bad_1d.csv");
    std::fs::write(
        &bad,
        "ts,open,high,low,close,volume\n86400,10,11,9,10,5\n172800,10,11,9,10,5\n259200,10,11,9,ten,5\n",
    )
    .unwrap();
    let out = qtm(
        &[
            "data",
            "import",
            bad.to_str().unwrap(),
            "--database-url",
            &url,
        ],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:4: close", bad.display())),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    let out = qtm(&["data", "list", "--database-url", &url], None);
    assert!(!text(&out.stdout).contains("BAD"), "{}", text(&out.stdout));

    // Bad options are named.
    let out = qtm(
        &[
            "data",
            "import",
            goog.to_str().unwrap(),
            "--asset-class",
            "bond",
            "--database-url",
            &url,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown asset class \"bond\""),
        "{}",
        text(&out.stderr)
    );
    let out = qtm(
        &[
            "data",
            "import",
            goog.to_str().unwrap(),
            "--symbol",
            "A/B",
            "--database-url",
            &url,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("symbol: symbol \"A/B\" contains '/'"),
        "{}",
        text(&out.stderr)
    );
}
