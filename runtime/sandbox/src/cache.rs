//! On-disk cache of compiled components (`.cwasm`), keyed by content hash and engine settings.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Path of the cached artifact for `sha256` under `dir`. The engine's compatibility hash is
/// part of the name, so a wasmtime upgrade or a config change never loads a stale artifact.
pub fn artifact_path(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
}

/// Load a cached artifact, if present and loadable.
pub fn load(engine: &Engine, path: &Path) -> Option<Component> {
    // Read into memory rather than `deserialize_file`'s mmap: a cache file truncated by
    // another process while mapped would kill the host with SIGBUS.
    let bytes = std::fs::read(path).ok()?;
    // SAFETY: the cache directory is written only by `store` below, from components this
    // engine compiled; wasmtime additionally checks the header and engine compatibility.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component");
            None
        }
    }
}

/// Write a compiled component atomically (temp file + rename), so a crash never leaves a
/// half-written artifact that a later load would trust.
pub fn store(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("cache path has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
