//! `qtm strategy build`: cargo for `wasm32-unknown-unknown`, then componentize.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ToolchainError, componentize};

/// Where a build put its outputs.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The component, ready to upload or backtest.
    pub component: PathBuf,
    /// The core module cargo produced.
    pub module: PathBuf,
}

/// Build the strategy crate in `dir` in release mode and componentize every cdylib it makes.
///
/// `target_dir` defaults to cargo's own choice. Returns one output per wasm library built.
pub fn build_strategy(
    dir: &Path,
    target_dir: Option<&Path>,
) -> Result<Vec<BuildOutput>, ToolchainError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(ToolchainError::Invalid(format!(
            "{} has no Cargo.toml; pass the strategy crate's folder",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = target_dir {
        cmd.arg("--target-dir").arg(t);
    }
    // Flags meant for the host build (e.g. from an enclosing build script) must not leak in.
    cmd.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        // Clippy on the host workspace must not lint (and fail) the guests' build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS");
    let out = cmd.output().map_err(ToolchainError::Spawn)?;
    if !out.status.success() {
        return Err(ToolchainError::Cargo {
            status: out.status.to_string(),
        });
    }
    let mut outputs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = msg["target"]["crate_types"]
            .as_array()
            .is_some_and(|t| t.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten() {
            let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) else {
                continue;
            };
            let module = PathBuf::from(f);
            outputs.push(BuildOutput {
                component: write_component(&module)?,
                module,
            });
        }
    }
    if outputs.is_empty() {
        return Err(ToolchainError::NoArtifact(dir.display().to_string()));
    }
    Ok(outputs)
}

/// `<release>/foo.wasm` → `<release>/component/foo.wasm`.
fn write_component(module: &Path) -> Result<PathBuf, ToolchainError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ToolchainError::Io { path, source }
    };
    let bytes = std::fs::read(module).map_err(io(module))?;
    let component = componentize(&bytes)?;
    let dir = module.parent().unwrap_or(Path::new(".")).join("component");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(module.file_name().unwrap_or_default());
    std::fs::write(&path, component).map_err(io(&path))?;
    Ok(path)
}
