//! Builds the rules guest (`strategies/rules`) for wasm32-unknown-unknown into OUT_DIR and
//! leaves its core module at `$OUT_DIR/rules.wasm` for `include_bytes!`.
//!
//! The guest depends on `qtm-rules` and the guest SDK, so a change to either (or to the WIT)
//! rebuilds it. The build has its own target dir (beside the host's) and none of the host build's
//! flags: an inherited `CARGO_TARGET_DIR`, `RUSTFLAGS` or clippy wrapper must not reach it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .expect("runtime/rules-component lies two levels below the repository root")
        .to_path_buf();
    for dir in [
        "strategies/rules",
        "strategies/Cargo.toml",
        "strategies/Cargo.lock",
        "runtime/rules/src",
        "runtime/rules/Cargo.toml",
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // The folder beside the host's own target dir where the tests build every guest: the
    // guest build is then incremental across clones and shares the SDK's build with them.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("guests"))
        .unwrap_or_else(|| out_dir.join("guest-target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "rules",
        ])
        .arg("--manifest-path")
        .arg(root.join("strategies/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running cargo to build the rules guest");
    assert!(
        status.success(),
        "building the rules guest (strategies/rules) failed; is the wasm32-unknown-unknown \
         target installed? `rustup target add wasm32-unknown-unknown`"
    );
    let module = target_dir.join("wasm32-unknown-unknown/release/rules.wasm");
    std::fs::copy(&module, out_dir.join("rules.wasm"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", module.display()));
}
