//! A sandboxed component as the engine's [`StrategyRunner`].

use super::{SandboxError, StrategyInstance};
use qtm_core::model::{Bar, Fill};
use qtm_core::strategy::{InstanceStats, StrategyHost, StrategyRunner};

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
