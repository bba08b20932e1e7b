//! Where tests find market data, the one way every test crate uses (`qtm-tests`, the runtime's
//! unit and integration tests include this file):
//!
//! - bundled: the repository's `data/` folder (`spy_1m_2011.csv`), always there. Tests that
//!   only need real bars use it, so a clone alone passes its tests.
//! - peer: the fixtures the peer comparisons were made on (`goog_1d.csv`, `eurusd_1h.csv`, …),
//!   kept outside the repository: `$QTM_DATA_DIR` if set, else `../shared/data` next to the
//!   repository root. A `QTM_DATA_DIR` naming a missing folder means "no peer data", which is
//!   how to run as a bare clone would. A test needing a missing peer file prints
//!   `skipped: <test>: <why>` and passes.
//!
//! Paths start at the repository root: the first folder holding `wit/` at or above the
//! including crate's manifest folder (crates sit one or two levels below it).

#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's root folder.
pub fn repository_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("wit").is_dir())
        .map_or_else(|| manifest.join(".."), PathBuf::from)
}

/// The repository's bundled data folder, `data/`.
pub fn bundled_data() -> PathBuf {
    repository_root().join("data")
}

/// A file of [`bundled_data`].
pub fn bundled(name: &str) -> PathBuf {
    bundled_data().join(name)
}

/// Where peer data is looked for, and how to name that place in a message.
fn peer_location() -> (PathBuf, String) {
    match std::env::var_os("QTM_DATA_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let shown = format!("$QTM_DATA_DIR ({})", dir.display());
            (dir, shown)
        }
        None => (
            repository_root().join("../shared/data"),
            "../shared/data".into(),
        ),
    }
}

/// The peer data folder, or `None` when it does not exist.
pub fn peer_data() -> Option<PathBuf> {
    let dir = peer_location().0;
    dir.is_dir().then_some(dir)
}

/// The peer file `name`, or `None` when it is missing.
pub fn peer_file(name: &str) -> Option<PathBuf> {
    let path = peer_location().0.join(name);
    path.is_file().then_some(path)
}

/// The peer file `name`; when it is missing, prints why the calling test skips and returns
/// `None` (the test then returns and passes).
pub fn peer_file_or_skip(name: &str) -> Option<PathBuf> {
    let found = peer_file(name);
    if found.is_none() {
        skip(&missing_peer(name));
    }
    found
}

/// Why the peer file `name` cannot be used.
pub fn missing_peer(name: &str) -> String {
    let (_, shown) = peer_location();
    if std::env::var_os("QTM_DATA_DIR").is_some() {
        format!("{shown}/{name} not found")
    } else {
        format!("{shown}/{name} not found (set QTM_DATA_DIR)")
    }
}

/// Print `skipped: <test>: <why>` where `cargo test` shows it.
pub fn skip(why: &str) {
    use std::io::Write;
    // libtest runs each test on a thread named after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    // To the stderr handle itself: libtest captures `eprintln!` of passing tests, and a skip
    // must be seen.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}
