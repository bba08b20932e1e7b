//! The `qtm` binary with its stdout closed by the reader, as in `qtm strategy inspect … | head`:
//! no command may panic, and each must end with success (or SIGPIPE).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use qtm_tests::{component, guests};

fn qtm() -> Command {
    qtm_tests::qtm_command()
}

/// Start `cmd` with stdout a pipe whose read end is closed at once, before the child can write.
fn spawn_with_stdout_closed(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child
}

fn ended_cleanly(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        const SIGPIPE: i32 = 13;
        if status.signal() == Some(SIGPIPE) {
            return true;
        }
    }
    status.success()
}

#[track_caller]
fn assert_clean(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked at"),
        "`qtm {what}` panicked on a closed stdout: {stderr}"
    );
    assert!(
        ended_cleanly(out.status),
        "`qtm {what}` ended with {} on a closed stdout: {stderr}",
        out.status
    );
}

/// Run `qtm args…` to completion with stdout closed and check it ended cleanly.
fn run_closed(args: &[&str]) {
    let out = spawn_with_stdout_closed(qtm().args(args))
        .wait_with_output()
        .unwrap();
    assert_clean(&args.join(" "), &out);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first `rows` bars of the bundled SPY data, in `dir`.
fn small_csv(dir: &Path, rows: usize) -> PathBuf {
    let repo_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/spy_1m_2011.csv");
    let text = std::fs::read_to_string(repo_data).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 1).collect();
    let file = dir.join("spy_1m.csv");
    std::fs::write(&file, head.join("\n") + "\n").unwrap();
    file
}

#[test]
fn help_and_version_survive_a_closed_stdout() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["help", "backtest"],
        &["strategy", "--help"],
        &["backtest", "--help"],
        &["data", "--help"],
        &["serve", "--help"],
    ] {
        run_closed(args);
    }
}

#[test]
fn strategy_commands_survive_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("sma.wasm");
    std::fs::write(&wasm, component(guests::SMA_CROSS)).unwrap();
    run_closed(&["strategy", "inspect", path(&wasm)]);
    run_closed(&["strategy", "inspect", "--json", path(&wasm)]);
    let out = dir.path().join("out.wasm");
    run_closed(&[
        "strategy",
        "componentize",
        guests::SMA_CROSS,
        "-o",
        path(&out),
    ]);
    assert!(out.exists(), "componentize still wrote its output");
    run_closed(&["strategy", "new", path(&dir.path().join("my-strategy"))]);
}

#[test]
fn backtest_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("sma.wasm");
    std::fs::write(&wasm, component(guests::SMA_CROSS)).unwrap();
    let csv = small_csv(dir.path(), 2_000);
    for json in [true, false] {
        let mut args = vec!["backtest", "--strategy", path(&wasm), "--data", path(&csv)];
        if json {
            args.push("--json");
        }
        run_closed(&args);
    }
}

#[test]
fn data_commands_survive_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let csv = small_csv(dir.path(), 500);
    let url = format!("sqlite://{}", path(&dir.path().join("qtm.db")));
    run_closed(&["data", "import", path(&csv), "--database-url", &url]);
    // The import finished although nobody read its report.
    let listed = qtm()
        .args(["data", "list", "--database-url", &url])
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("SPY"));
    run_closed(&["data", "list", "--database-url", &url]);
}

/// The server prints its address (and a generated admin password) to stdout: nobody reading
/// must neither panic nor stop it.
#[test]
fn serve_keeps_running_with_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let url = format!("sqlite://{}", path(&dir.path().join("qtm.db")));
    let mut child = spawn_with_stdout_closed(
        qtm()
            .args(["serve", "--listen", &listen, "--database-url", &url])
            .args(["--data-dir", path(dir.path())])
            .env("QTM_REPLAY", "false"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the server exited with {status} before listening: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The banner follows the bind; give it time to hit the closed pipe.
    std::thread::sleep(Duration::from_millis(500));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert!(alive, "the server stopped: {} {stderr}", out.status);
}

/// `qtm watch` prints a stream of a running server one message a line (the README's
/// walkthrough uses it instead of a WebSocket client), says why it cannot connect, and ends
/// quietly when its reader goes away.
#[test]
fn watch_prints_a_stream_and_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let url = format!("sqlite://{}", path(&dir.path().join("qtm.db")));
    let mut server = qtm()
        .args(["serve", "--listen", &listen, "--database-url", &url])
        .args(["--data-dir", path(dir.path())])
        .env("QTM_REPLAY", "false")
        .env("QTM_ADMIN_PASSWORD", "admin-password-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = format!("http://{listen}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": "admin-password-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["access_token"].as_str().unwrap().to_string()
    });

    let watch = |extra: &[&str]| {
        qtm()
            .args(["watch", "/ws/trades", "--server", &base, "--count", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = watch(&["--token", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let welcome: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{line}");
    assert_eq!(line.lines().count(), 1);

    // A bad token: refused at the upgrade, and told so without a panic.
    let out = watch(&["--token", "not-a-token"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to ws://") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("panicked at"), "{err}");

    run_closed(&[
        "watch",
        "/ws/trades",
        "--server",
        &base,
        "--token",
        &token,
        "--count",
        "1",
    ]);
    let _ = server.kill();
    let _ = server.wait();
}
