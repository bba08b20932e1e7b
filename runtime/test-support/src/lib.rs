//! Fixture files and market data for tests.

use std::path::PathBuf;

/// Bundled and peer data, found as every test crate finds them.
#[path = "../../tests/support/data.rs"]
mod data;

pub use data::{bundled, peer_file_or_skip};

/// Write `body` to `name` inside a fresh tempdir; keep the returned dir alive while the file
/// is used.
pub fn fixture(name: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixture_in(&dir, name, body);
    (dir, path)
}

/// Write `body` to `name` inside `dir`.
pub fn fixture_in(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write fixture");
    path
}
