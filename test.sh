#!/usr/bin/env bash
# Runs every test: installs what a fresh machine lacks, then the workspace tests (which build
# the guest strategies for wasm32-unknown-unknown themselves) and the guests' own lints.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# Release, like `./run.sh`: the two share one build (same profile, same features), and the
# tests run faster. `cargo test -p <crate>` (debug, incremental) suits quick iterations.
cargo test --workspace --release
