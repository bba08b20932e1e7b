//! Host bindings, one module per released contract version, each generated from its frozen
//! folder in `wit/` (the model is Zed's extension host). The host implements the latest
//! version; older ones share its `types` (unchanged since 0.1.0) and adapt the rest in their
//! own module. The gate reads the version a component was built for, and [`StrategyPre`] picks
//! the matching bindings.

pub mod since_v0_1_0;
pub mod since_v0_2_0;

pub use since_v0_2_0 as latest;

use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::host::HostState;

/// A contract version this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContractVersion {
    /// `qtm:strategy@0.1.0`: push batches (`load-bars`/`resume`). Run one call per bar, where
    /// no look-ahead is possible.
    V0_1,
    /// `qtm:strategy@0.2.0`: bars pulled one at a time (`on-bars` + `next-bar`).
    V0_2,
}

impl ContractVersion {
    /// Every version this host runs, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1, ContractVersion::V0_2];

    /// The semver text, as in the WIT package name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => "0.1.0",
            ContractVersion::V0_2 => "0.2.0",
        }
    }

    /// The version `text` is compatible with under the component model's semver rule (same
    /// major, and for 0.x the same minor): `0.1.7` runs on the 0.1.0 bindings.
    pub fn compatible(text: &str) -> Option<Self> {
        let parse = |v: &str| -> Option<(u64, u64)> {
            let mut it = v.split(['.', '-', '+']);
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        let (major, minor) = parse(text)?;
        Self::ALL.into_iter().find(|v| {
            let (a, b) = parse(v.as_str()).expect("released versions parse");
            major == a && (major != 0 || minor == b)
        })
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Add every version's imports to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)?;
    Ok(())
}

/// A component pre-linked against the bindings of its contract version.
pub enum StrategyPre {
    V0_1(since_v0_1_0::StrategyPre<HostState>),
    V0_2(since_v0_2_0::StrategyPre<HostState>),
}

impl StrategyPre {
    /// Pre-link `component`, built for `version`.
    pub fn new(
        linker: &Linker<HostState>,
        component: &Component,
        version: ContractVersion,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match version {
            ContractVersion::V0_1 => Self::V0_1(since_v0_1_0::StrategyPre::new(pre)?),
            ContractVersion::V0_2 => Self::V0_2(since_v0_2_0::StrategyPre::new(pre)?),
        })
    }

    /// Instantiate into `store`.
    pub fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Self::V0_1(p) => Bindings::V0_1(p.instantiate(store)?),
            Self::V0_2(p) => Bindings::V0_2(p.instantiate(store)?),
        })
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        match self {
            Self::V0_1(p) => p.instance_pre().component(),
            Self::V0_2(p) => p.instance_pre().component(),
        }
    }

    /// The contract version.
    pub fn version(&self) -> ContractVersion {
        match self {
            Self::V0_1(_) => ContractVersion::V0_1,
            Self::V0_2(_) => ContractVersion::V0_2,
        }
    }
}

/// An instantiated guest's exports, of whichever version it was built for. The calls the
/// versions share take and return the latest types.
pub enum Bindings {
    V0_1(since_v0_1_0::Strategy),
    V0_2(since_v0_2_0::Strategy),
}

use latest::qtm::strategy::types as wit;

macro_rules! dispatch {
    ($self:ident, $g:ident => $call:expr) => {
        match $self {
            Bindings::V0_1(b) => {
                let $g = b.qtm_strategy_guest();
                $call
            }
            Bindings::V0_2(b) => {
                let $g = b.qtm_strategy_guest();
                $call
            }
        }
    };
}

impl Bindings {
    /// `describe`.
    pub fn describe(&self, s: &mut Store<HostState>) -> wasmtime::Result<wit::StrategyInfo> {
        dispatch!(self, g => g.call_describe(s))
    }
    /// `configure`.
    pub fn configure(
        &self,
        s: &mut Store<HostState>,
        params: &[wit::Param],
        symbols: &[String],
    ) -> wasmtime::Result<Result<(), String>> {
        dispatch!(self, g => g.call_configure(&mut *s, params, symbols))
    }
    /// `on-bar`.
    pub fn on_bar(
        &self,
        s: &mut Store<HostState>,
        symbol_id: u32,
        bar: wit::Bar,
    ) -> wasmtime::Result<()> {
        dispatch!(self, g => g.call_on_bar(&mut *s, symbol_id, bar))
    }
    /// `on-tick`.
    pub fn on_tick(&self, s: &mut Store<HostState>, tick: wit::Tick) -> wasmtime::Result<()> {
        dispatch!(self, g => g.call_on_tick(&mut *s, tick))
    }
    /// `on-fill`.
    pub fn on_fill(&self, s: &mut Store<HostState>, fill: &wit::Fill) -> wasmtime::Result<()> {
        dispatch!(self, g => g.call_on_fill(&mut *s, fill))
    }
    /// `on-timer`.
    pub fn on_timer(&self, s: &mut Store<HostState>, now_ns: i64) -> wasmtime::Result<()> {
        dispatch!(self, g => g.call_on_timer(&mut *s, now_ns))
    }
    /// `on-bars` (0.2.0 and later); `None` for versions without it.
    pub fn on_bars(&self, s: &mut Store<HostState>) -> Option<wasmtime::Result<()>> {
        match self {
            Bindings::V0_1(_) => None,
            Bindings::V0_2(b) => Some(b.qtm_strategy_guest().call_on_bars(s)),
        }
    }
    /// `snapshot`.
    pub fn snapshot(&self, s: &mut Store<HostState>) -> wasmtime::Result<Vec<u8>> {
        dispatch!(self, g => g.call_snapshot(&mut *s))
    }
    /// `restore`.
    pub fn restore(
        &self,
        s: &mut Store<HostState>,
        state: &[u8],
    ) -> wasmtime::Result<Result<(), String>> {
        dispatch!(self, g => g.call_restore(&mut *s, state))
    }
}
