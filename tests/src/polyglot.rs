//! Guests written in Python and JavaScript, built with their own toolchains when a test asks.
//!
//! `strategies/python/sma-cross` is componentized with componentize-py (pinned in its
//! `requirements.txt`, installed into a venv) and `strategies/js/sma-cross` with componentize-qjs
//! (pinned in its `package-lock.json`, installed with `npm ci`), both with WASI stubbed out so
//! the components import nothing but the contract. Everything lives under the target dir
//! (`guests::POLYGLOT_DIR`): the venv and `node_modules` keyed by a hash of their pins, each
//! component keyed by a hash of its sources, the WIT and the pins, so a later run only hashes.
//!
//! When a toolchain is missing or its install fails (no `python3`, no venv module, no `npm`, no
//! network), the component is unavailable: [`python_sma_cross`] and [`js_sma_cross`] print
//! `skipped: <reason>` and return `None`, and the test returns without failing, unless
//! `QTM_REQUIRE_POLYGLOT=1` is set, which turns the skip into a failure. A failing build with an
//! installed toolchain (a broken source) always fails.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::guests::POLYGLOT_DIR;

/// The component, or why its toolchain is unavailable here. A broken build panics instead.
type Built = Result<Vec<u8>, String>;

/// The Python sma-cross component, or `None` (after printing why) when its toolchain cannot
/// be installed here.
pub fn python_sma_cross() -> Option<Vec<u8>> {
    static BUILT: OnceLock<Built> = OnceLock::new();
    available("Python sma-cross", BUILT.get_or_init(build_python))
}

/// The JavaScript sma-cross component, or `None` (after printing why) when its toolchain cannot
/// be installed here.
pub fn js_sma_cross() -> Option<Vec<u8>> {
    static BUILT: OnceLock<Built> = OnceLock::new();
    available("JavaScript sma-cross", BUILT.get_or_init(build_js))
}

fn available(what: &str, built: &Built) -> Option<Vec<u8>> {
    match built {
        Ok(wasm) => Some(wasm.clone()),
        Err(why) => {
            if std::env::var_os("QTM_REQUIRE_POLYGLOT").is_some_and(|v| v == "1") {
                panic!("{what}: {why} (QTM_REQUIRE_POLYGLOT=1)");
            }
            eprintln!("skipped: {what}: {why}");
            None
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wit_dir() -> PathBuf {
    repo().join("wit/since_v0.2.0")
}

fn build_python() -> Built {
    let src = repo().join("strategies/python/sma-cross");
    let cache = Path::new(POLYGLOT_DIR);
    fs::create_dir_all(cache).expect("create the polyglot cache dir");
    let _lock = lock(cache, "python");
    let requirements = src.join("requirements.txt");
    let out = cache.join(format!(
        "sma-cross-py-{}.wasm",
        hash(&[&src, &wit_dir()], &["__pycache__"])
    ));
    if let Ok(wasm) = fs::read(&out) {
        return Ok(wasm);
    }

    let venv =
        python_venv(&requirements).map_err(|e| format!("cannot install componentize-py: {e}"))?;

    let t = Instant::now();
    // componentize-py writes `__pycache__` beside the sources: build from a copy.
    let app = cache.join("py-src");
    let _ = fs::remove_dir_all(&app);
    copy_tree(&src, &app, "__pycache__");
    let tmp = temp_path(&out);
    run(Command::new(venv.join("bin/componentize-py"))
        .env("VIRTUAL_ENV", &venv)
        .current_dir(cache)
        .arg("-d")
        .arg(wit_dir())
        .args(["-w", "strategy", "componentize", "--stub-wasi", "-p"])
        .arg(&app)
        .arg("app")
        .arg("-o")
        .arg(&tmp))
    .unwrap_or_else(|e| panic!("componentize-py failed on {}: {e}", src.display()));
    eprintln!(
        "polyglot: Python sma-cross componentized in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(publish(&tmp, &out))
}

/// A Python venv with the pinned `requirements` installed, under the polyglot cache and keyed
/// by their hash (installed once; later calls only hash), or why it cannot be made here.
pub fn python_venv(requirements: &Path) -> Result<PathBuf, String> {
    let cache = Path::new(POLYGLOT_DIR);
    fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let _lock = lock(cache, "venv");
    let venv = cache.join(format!("py-venv-{}", hash(&[requirements], &[])));
    let installed = venv.join(".installed");
    if !installed.exists() {
        let t = Instant::now();
        let _ = fs::remove_dir_all(&venv);
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        run(Command::new(&python).arg("-m").arg("venv").arg(&venv))
            .map_err(|e| format!("cannot create a Python venv: {e}"))?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--quiet", "-r"])
            .arg(requirements))
        .map_err(|e| format!("cannot install {}: {e}", requirements.display()))?;
        fs::write(&installed, "").map_err(|e| format!("cannot mark the venv installed: {e}"))?;
        eprintln!(
            "polyglot: {} installed in {:.1} s",
            requirements.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(venv)
}

fn build_js() -> Built {
    let src = repo().join("strategies/js/sma-cross");
    let cache = Path::new(POLYGLOT_DIR);
    fs::create_dir_all(cache).expect("create the polyglot cache dir");
    let _lock = lock(cache, "js");
    let out = cache.join(format!(
        "sma-cross-js-{}.wasm",
        hash(&[&src, &wit_dir()], &["node_modules"])
    ));
    if let Ok(wasm) = fs::read(&out) {
        return Ok(wasm);
    }

    let (manifest, lockfile) = (src.join("package.json"), src.join("package-lock.json"));
    let tools = cache.join(format!("js-tools-{}", hash(&[&manifest, &lockfile], &[])));
    let installed = tools.join(".installed");
    if !installed.exists() {
        let t = Instant::now();
        let _ = fs::remove_dir_all(&tools);
        fs::create_dir_all(&tools).expect("create the npm folder");
        for f in [&manifest, &lockfile] {
            fs::copy(f, tools.join(f.file_name().unwrap())).expect("copy the npm manifest");
        }
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&tools))
        .map_err(|e| format!("cannot install componentize-qjs with npm: {e}"))?;
        fs::write(&installed, "").expect("mark node_modules installed");
        eprintln!(
            "polyglot: componentize-qjs installed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    let t = Instant::now();
    let tmp = temp_path(&out);
    run(Command::new("node")
        .arg(tools.join("node_modules/componentize-qjs/bin/componentize-qjs"))
        .current_dir(&tools)
        .arg("--wit")
        .arg(wit_dir())
        .arg("--js")
        .arg(src.join("sma-cross.js"))
        .args(["--world", "strategy", "--stub-wasi", "--sync", "-o"])
        .arg(&tmp))
    .unwrap_or_else(|e| panic!("componentize-qjs failed on {}: {e}", src.display()));
    eprintln!(
        "polyglot: JavaScript sma-cross componentized in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(publish(&tmp, &out))
}

/// Run a command to completion; `Err` says why it could not start or what it printed.
fn run(cmd: &mut Command) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .map_err(|e| format!("`{program}` could not be run ({e})"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "`{program}` exited with {}:\n{}",
        out.status,
        tail.join("\n")
    ))
}

/// A hex prefix of the SHA-256 of every file under `paths` (names and contents, in order),
/// skipping folders named in `skip`.
fn hash(paths: &[&Path], skip: &[&str]) -> String {
    fn add(h: &mut Sha256, base: &Path, path: &Path, skip: &[&str]) {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for e in entries {
                let name = e.file_name().unwrap().to_string_lossy();
                if skip.contains(&name.as_ref()) || name.ends_with(".wasm") {
                    continue;
                }
                add(h, base, &e, skip);
            }
        } else {
            let rel = path.strip_prefix(base).unwrap_or(path);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
    }
    let mut h = Sha256::new();
    for p in paths {
        add(&mut h, p.parent().unwrap_or(p), p, skip);
    }
    hex::encode(&h.finalize()[..8])
}

/// Held while a toolchain is installed or a component built, so that test processes running
/// side by side (nextest) do not build into the same folder at once.
fn lock(cache: &Path, name: &str) -> File {
    let f = File::create(cache.join(format!(".{name}.lock"))).expect("create the lock file");
    f.lock().expect("lock the polyglot cache");
    f
}

/// Copy the files under `from` into `to`, skipping folders named `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &str) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            if path.file_name().unwrap() != skip {
                copy_tree(&path, &target, skip);
            }
        } else {
            fs::copy(&path, &target).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

fn temp_path(out: &Path) -> PathBuf {
    out.with_extension(format!("wasm.{}.tmp", std::process::id()))
}

/// Move a finished build into place, drop the builds of older sources, and return its bytes.
fn publish(tmp: &Path, out: &Path) -> Vec<u8> {
    fs::rename(tmp, out).expect("move the component into the cache");
    let name = out.file_name().unwrap().to_string_lossy();
    let stem = &name[..name.rfind('-').unwrap() + 1];
    for entry in fs::read_dir(out.parent().unwrap()).unwrap().flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other.starts_with(stem) && other.ends_with(".wasm") && other != name {
            let _ = fs::remove_file(entry.path());
        }
    }
    fs::read(out).expect("read the built component")
}
