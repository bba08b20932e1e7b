//! Sandbox configuration: resource limits per instance and engine-wide settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resource limits applied to every strategy instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Fuel (≈ wasm instructions) for one call, re-armed before every call and for every bar
    /// pulled inside `on-bars`, so a bar gets the same budget however it is delivered. Host
    /// work done for the strategy is charged to it too (`caps::FUEL_PER_*`).
    pub fuel_per_call: u64,
    /// Wall-clock backstop for one call or pulled bar (epoch interruption); catches what fuel
    /// cannot.
    pub deadline: Duration,
    /// Linear memory cap per instance, in bytes. Growing past it traps.
    pub memory_bytes: usize,
    /// Table elements cap per table.
    pub table_elements: usize,
    /// Core instances a component may create. Toolchains that link a language runtime make
    /// many (componentize-py 0.25 with `--stub-wasi`: 38); the gate refuses a component that
    /// needs more, instantiation enforces it.
    pub instances: usize,
    /// Tables a component may create.
    pub tables: usize,
    /// Memories a component may create.
    pub memories: usize,
    /// Orders (submit, cancel, modify) one call (or pulled bar) may place before the instance
    /// is disabled.
    pub orders_per_call: u32,
    /// Host calls of any kind one call (or pulled bar) may make before the instance is
    /// disabled.
    pub host_calls_per_call: u32,
    /// Log lines kept per call; the rest are dropped and counted.
    pub log_lines_per_call: u32,
    /// Longest log line kept, in bytes; longer lines are cut.
    pub log_line_bytes: usize,
    /// Largest snapshot accepted, in bytes.
    pub snapshot_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_call: 10_000_000,
            deadline: Duration::from_millis(500),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 64,
            tables: 16,
            memories: 4,
            orders_per_call: 1_000,
            host_calls_per_call: 100_000,
            log_lines_per_call: 100,
            log_line_bytes: 1024,
            snapshot_bytes: 1 << 20,
        }
    }
}

/// Where the `qtm` binary caches compiled components unless told otherwise: `qtm/components`
/// in the user's cache directory (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches`
/// on macOS); `None` where the platform has none. Only the first run of a component pays for
/// Cranelift.
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("qtm").join("components"))
}

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxConfig {
    pub limits: Limits,
    /// Where compiled components (`.cwasm`) are cached by content hash; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast instantiation on slot reuse) with this many instance slots;
    /// 0 uses on-demand allocation.
    pub pool_slots: u32,
    /// How often the epoch advances; the deadline is counted in these ticks.
    pub epoch_tick: Duration,
    /// Largest component accepted by the upload gate, in bytes.
    pub max_component_bytes: usize,
    /// Most functions (core, across all modules) a component may define or import.
    pub max_functions: u32,
    /// Most imports a component may declare.
    pub max_imports: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            pool_slots: 0,
            epoch_tick: Duration::from_millis(1),
            max_component_bytes: 32 << 20,
            max_functions: 100_000,
            max_imports: 64,
        }
    }
}
