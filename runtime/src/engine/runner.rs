//! The strategy handle the engine drives: a sandboxed component, or native code for trusted
//! built-ins and benchmarks.

use crate::model::{Bar, Fill};
use crate::sandbox::{InstanceStats, SandboxError, StrategyHost, StrategyInstance};

/// A strategy as the engine sees it. Errors are the reason the strategy was stopped.
pub trait StrategyRunner: Send {
    /// Deliver one bar of the strategy's symbol `symbol`.
    fn on_bar(&mut self, host: &mut dyn StrategyHost, symbol: u32, bar: &Bar)
    -> Result<(), String>;
    /// Report a fill of one of its orders.
    fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        fill: &Fill,
    ) -> Result<(), String>;
    /// Whether [`StrategyRunner::on_fill`] does anything; the engine skips the call when not.
    fn wants_fills(&self) -> bool {
        true
    }
    /// Whether [`StrategyRunner::on_bars`] is worth using.
    fn pulls_bars(&self) -> bool {
        false
    }
    /// Pull bars from [`StrategyHost::next_bar`] until it answers `None` or the strategy acts
    /// on a bar (places, cancels or modifies an order), so the host can act before the next
    /// bar exists. Returns how many bars it took.
    fn on_bars(&mut self, _host: &mut dyn StrategyHost) -> Result<u64, String> {
        Err("pulling bars is not supported".into())
    }
    /// The strategy's state, for a hot swap, a clone or crash recovery.
    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        Err("snapshots are not supported".into())
    }
    /// Take over state from [`StrategyRunner::snapshot`].
    fn restore(&mut self, _state: &[u8]) -> Result<(), String> {
        Err("snapshots are not supported".into())
    }
    /// Sandbox accounting (calls, fuel, traps), when the strategy runs in the sandbox.
    fn stats(&self) -> Option<InstanceStats> {
        None
    }
}

fn reason(e: SandboxError) -> String {
    match e {
        SandboxError::Trapped(r) | SandboxError::Disabled(r) => r.to_string(),
        other => other.to_string(),
    }
}

impl StrategyRunner for StrategyInstance {
    fn on_bar(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        bar: &Bar,
    ) -> Result<(), String> {
        StrategyInstance::on_bar(self, host, symbol, bar).map_err(reason)
    }
    fn on_fill(
        &mut self,
        host: &mut dyn StrategyHost,
        symbol: u32,
        fill: &Fill,
    ) -> Result<(), String> {
        StrategyInstance::on_fill(self, host, symbol, fill).map_err(reason)
    }
    fn wants_fills(&self) -> bool {
        self.code().gate().hints.on_fill
    }
    fn pulls_bars(&self) -> bool {
        StrategyInstance::pulls_bars(self)
    }
    fn on_bars(&mut self, host: &mut dyn StrategyHost) -> Result<u64, String> {
        StrategyInstance::on_bars(self, host).map_err(reason)
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, String> {
        StrategyInstance::snapshot(self).map_err(reason)
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        StrategyInstance::restore(self, state).map_err(reason)
    }
    fn stats(&self) -> Option<InstanceStats> {
        Some(StrategyInstance::stats(self))
    }
}
