//! A throwaway PostgreSQL server for tests, shared by the runtime's unit tests and the
//! integration tests (`tests/src/lib.rs` includes this file by path), so it uses nothing but
//! the standard library and `tempfile`.
//!
//! The first call in a test process runs `initdb` and starts a server (the Debian binaries
//! under `/usr/lib/postgresql/<version>/bin`, or `QTM_PG_BIN`) in a temporary directory,
//! listening on 127.0.0.1 on a free port; every call then creates a fresh database. PostgreSQL
//! refuses to run as root, so as root its commands run as the `postgres` system user. A
//! watchdog process stops the server and removes the directory once the test process is gone,
//! however it ended (test harnesses exit without running destructors, and a crash or a kill
//! would skip them anyway).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The running server of this process.
struct Server {
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database on this process's test server, or why there is none
/// (PostgreSQL not installed, or it failed to start): callers print
/// `skipped: PostgreSQL not installed (…)` and pass.
pub fn database_url() -> Result<String, String> {
    let server = SERVER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    server.psql(&format!("CREATE DATABASE {name}"))?;
    Ok(format!(
        "postgres://postgres@127.0.0.1:{}/{name}",
        server.port
    ))
}

/// The message a test prints when it skips for want of PostgreSQL.
pub fn skip_message(why: &str) -> String {
    format!("skipped: PostgreSQL not installed ({why})")
}

/// Print [`skip_message`] where it is seen: to the stderr handle itself, since libtest
/// captures what the print macros write in passing tests.
pub fn print_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{}", skip_message(why));
}

impl Server {
    /// `program` from the server's binaries, run as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        command(&self.bin, program, self.as_root)
    }

    fn psql(&self, sql: &str) -> Result<(), String> {
        let psql = if self.bin.join("psql").exists() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

fn command(bin: &Path, program: &str, as_root: bool) -> Command {
    let path = bin.join(program);
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `QTM_PG_BIN`, else the newest Debian
/// install, else `pg_config --bindir`.
fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("QTM_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!("no initdb in QTM_PG_BIN={}", dir.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").exists() {
            return Ok(bin);
        }
    }
    Err("no initdb under /usr/lib/postgresql/*/bin or from pg_config; install the postgresql package or set QTM_PG_BIN".into())
}

/// Whether this process runs as root (the owner of `/proc/self` is who we are).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn start() -> Result<Server, String> {
    let bin = find_bin()?;
    let as_root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("qtm-test-pg")
        .tempdir()
        .map_err(|e| format!("a temporary directory: {e}"))?
        // The watchdog removes it: this process never runs destructors of statics.
        .keep();
    if as_root {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:").arg(&dir);
                c
            },
            "chown of the test server's directory to postgres",
        )?;
    }
    let data = dir.join("data");
    let mut initdb = command(&bin, "initdb", as_root);
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
    ]);
    run(initdb, "initdb")?;
    let port = free_port()?;
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB",
        dir.display()
    );
    let mut pg_ctl = command(&bin, "pg_ctl", as_root);
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-o", &options, "-w", "-t", "60", "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = run(pg_ctl, "pg_ctl start");
    // Set up even when the start failed: a half-started server is stopped too.
    watchdog(&bin, &dir, &data, as_root)?;
    started.map_err(|e| {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    Ok(Server { bin, port, as_root })
}

/// A process of its own (outside the test's process group, so a Ctrl-C reaches it only
/// through our exit) that waits for this process to end, then stops the server at once and
/// removes its directory.
fn watchdog(bin: &Path, dir: &Path, data: &Path, as_root: bool) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_root {
        format!("runuser -u postgres -- '{}'", pg_ctl.display())
    } else {
        format!("'{}'", pg_ctl.display())
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
         {stop} -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the test server's watchdog: {e}"))
}
