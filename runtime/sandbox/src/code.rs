//! The wasmtime engine, and compiled strategy code ready to instantiate.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{self, ContractVersion, StrategyPre};
use super::config::SandboxConfig;
use super::error::SandboxError;
use super::gate::{self, GateReport};
use super::host::{DetachedHost, HostState};
use super::instance::StrategyInstance;
use super::{cache, convert};
use qtm_core::model::{Param, StrategyInfo};

/// Advances the engine's epoch on a background thread: the clock behind every deadline.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("qtm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The strategy runtime: one wasmtime engine, its linker and settings. Cheap to share.
pub struct Sandbox {
    pub(super) engine: Engine,
    linker: Linker<HostState>,
    config: Arc<SandboxConfig>,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Set up the engine: Cranelift, fuel, epochs, and the pooling allocator if configured.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            // Concurrency support adds ~270 ns to every component call; strategies are sync.
            .concurrency_support(false)
            .max_wasm_stack(512 << 10);
        if config.pool_slots > 0 {
            let l = &config.limits;
            let slots = config.pool_slots;
            let mut p = PoolingAllocationConfig::default();
            p.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(l.instances as u32))
                .total_memories(slots.saturating_mul(l.memories as u32))
                .total_tables(slots.saturating_mul(l.tables as u32))
                .max_core_instances_per_component(l.instances as u32)
                .max_memories_per_component(l.memories as u32)
                .max_tables_per_component(l.tables as u32)
                .max_memory_size(l.memory_bytes)
                .table_elements(l.table_elements);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        }
        let engine = Engine::new(&c).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Self {
            engine,
            linker,
            config: Arc::new(config),
            _ticker: ticker,
        })
    }

    /// The settings this sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Check, compile (or load from the cache) and describe a component.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<StrategyCode>, SandboxError> {
        let report = gate::check(bytes, &self.config)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let started = Instant::now();
        let cached_path = self
            .config
            .cache_dir
            .as_deref()
            .map(|d| cache::artifact_path(d, &self.engine, &sha256));
        let (component, from_cache) = match cached_path
            .as_deref()
            .and_then(|p| cache::load(&self.engine, p))
        {
            Some(c) => (c, true),
            None => {
                let c = Component::new(&self.engine, bytes)
                    .map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
                if let Some(p) = &cached_path
                    && let Err(e) = cache::store(&c, p)
                {
                    tracing::warn!(error = %e, "could not cache the compiled component");
                }
                (c, false)
            }
        };
        let mut code = self.load_compiled(bytes, component, report)?;
        if let Some(c) = Arc::get_mut(&mut code) {
            c.compile_time = started.elapsed();
            c.from_cache = from_cache;
        }
        Ok(code)
    }

    /// Link and describe a component compiled (or deserialized) from `bytes`, which passed
    /// the gate with `report`.
    pub(super) fn load_compiled(
        &self,
        bytes: &[u8],
        component: Component,
        report: GateReport,
    ) -> Result<Arc<StrategyCode>, SandboxError> {
        let started = Instant::now();
        let sha256 = hex::encode(Sha256::digest(bytes));
        // The gate matched the component to an entry of `SUPPORTED_VERSIONS`, which are
        // exactly the versions with bindings (a unit test of the gate holds them equal).
        let version = ContractVersion::compatible(report.supported_version).ok_or_else(|| {
            SandboxError::Refused(format!("unsupported contract {}", report.contract))
        })?;
        let pre = StrategyPre::new(&self.linker, &component, version)
            .map_err(|e| SandboxError::Refused(format!("{e:#}")))?;
        let mut code = StrategyCode {
            sha256,
            report,
            info: None,
            compile_time: started.elapsed(),
            from_cache: false,
            from_variant: false,
            pre,
            engine: self.engine.clone(),
            config: self.config.clone(),
        };
        let info = code.describe()?;
        code.info = Some(info);
        Ok(Arc::new(code))
    }

    /// [`Sandbox::load`] a component from a file.
    pub fn load_file(&self, path: &Path) -> Result<Arc<StrategyCode>, SandboxError> {
        let bytes = std::fs::read(path).map_err(|source| SandboxError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&bytes)
    }
}

/// A compiled, checked and described strategy component.
pub struct StrategyCode {
    sha256: String,
    report: GateReport,
    info: Option<StrategyInfo>,
    compile_time: Duration,
    from_cache: bool,
    pub(super) from_variant: bool,
    pub(super) pre: StrategyPre,
    pub(super) engine: Engine,
    pub(super) config: Arc<SandboxConfig>,
}

impl std::fmt::Debug for StrategyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyCode")
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl StrategyCode {
    /// Hex SHA-256 of the component bytes: the code's identity.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// What the upload gate found.
    pub fn gate(&self) -> &GateReport {
        &self.report
    }
    /// The strategy's own description.
    pub fn info(&self) -> &StrategyInfo {
        self.info.as_ref().expect("described at load")
    }
    /// Time to compile, or to load from the cache.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    /// The contract version the component was built for.
    pub fn contract_version(&self) -> ContractVersion {
        self.pre.version()
    }
    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
    /// Whether the code was not compiled but made from a base's compiled code with other
    /// data ([`Sandbox::load_variant`]).
    pub fn from_variant(&self) -> bool {
        self.from_variant
    }

    /// The strategy's description, refused when the call fails or breaks the caps.
    fn describe(&self) -> Result<StrategyInfo, SandboxError> {
        let mut inst = StrategyInstance::bare(self)
            .map_err(|e| SandboxError::Refused(format!("describe failed: {e}")))?;
        let info = inst
            .call(&mut DetachedHost, 0, |b, s| b.describe(s))
            .map_err(|e| SandboxError::Refused(format!("describe failed: {e}")))?;
        convert::info_from_wit(info).map_err(SandboxError::Refused)
    }

    /// A new instance with `params` (validated against the description, defaults filled in)
    /// trading `symbols` (the description's defaults when empty).
    pub fn instantiate(
        self: &Arc<Self>,
        params: &[Param],
        symbols: &[String],
    ) -> Result<StrategyInstance, SandboxError> {
        let params = self
            .info()
            .resolve_params(params)
            .map_err(SandboxError::Configure)?;
        let symbols = if symbols.is_empty() {
            self.info().symbols.clone()
        } else {
            symbols.to_vec()
        };
        StrategyInstance::configured(self.clone(), params, symbols)
    }
}
