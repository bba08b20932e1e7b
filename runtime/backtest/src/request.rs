//! A backtest's settings as users give them (cash, costs, fill model), checked and turned into
//! a [`BacktestConfig`]. `qtm backtest` and `POST /api/backtests` both go through here, so a
//! run from the command line and one through the API with the same inputs are the same run.

use serde::{Deserialize, Serialize};

use super::BacktestConfig;
use qtm_oms::exchange::FillMode;
use qtm_oms::risk::RiskLimits;

/// Cash, costs and fill model of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSettings {
    /// Starting cash.
    pub cash: f64,
    /// Commission as a fraction of notional (0.001 = 0.1 %).
    pub commission: f64,
    /// Fixed fee per order, on its first fill.
    pub fixed_fee: f64,
    /// Slippage on market and stop fills, basis points against the trader.
    pub slippage_bps: f64,
    /// When market orders fill.
    pub fill: FillMode,
    /// Fill at most this fraction of a bar's volume per order per bar.
    pub volume_participation: Option<f64>,
    /// Gross exposure allowed as a multiple of equity.
    pub max_leverage: f64,
    /// Close positions still open at the end at the last close, with commission.
    pub close_at_end: bool,
    /// Exact batches of bars per component call (same results as one call per bar, faster).
    pub batch: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            cash: 10_000.0,
            commission: 0.0,
            fixed_fee: 0.0,
            slippage_bps: 0.0,
            fill: FillMode::NextOpen,
            volume_participation: None,
            max_leverage: 1.0,
            close_at_end: false,
            batch: true,
        }
    }
}

/// A setting that is out of bounds: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting's name as in [`RunSettings`] (`slippage_bps`).
    pub field: &'static str,
    /// What is wrong, starting lower-case (`must be a non-negative number, got -1`).
    pub message: String,
}

impl RunSettings {
    /// Refuse costs that are negative or not numbers. (Cash is checked by [`super::run`].)
    pub fn check_costs(&self) -> Result<(), SettingError> {
        for (field, v) in [
            ("commission", self.commission),
            ("slippage_bps", self.slippage_bps),
            ("fixed_fee", self.fixed_fee),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SettingError {
                    field,
                    message: format!("must be a non-negative number, got {v}"),
                });
            }
        }
        Ok(())
    }

    /// The engine configuration for these settings and `risk` limits.
    pub fn config(&self, risk: RiskLimits) -> BacktestConfig {
        let mut config = BacktestConfig {
            cash: self.cash,
            risk,
            close_at_end: self.close_at_end,
            ..Default::default()
        };
        let ex = &mut config.engine.exchange;
        ex.commission = self.commission;
        ex.fixed_fee = self.fixed_fee;
        ex.slippage_bps = self.slippage_bps;
        ex.volume_participation = self.volume_participation;
        ex.max_leverage = self.max_leverage;
        ex.fill = self.fill;
        config.engine.batch = self.batch;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_checked_and_mapped_onto_the_engine() {
        let s = RunSettings {
            cash: 5_000.0,
            commission: 0.001,
            slippage_bps: 2.0,
            fill: FillMode::Close,
            close_at_end: true,
            batch: false,
            ..Default::default()
        };
        s.check_costs().unwrap();
        let c = s.config(RiskLimits::default());
        assert_eq!(c.cash, 5_000.0);
        assert!(c.close_at_end && !c.engine.batch);
        assert_eq!(c.engine.exchange.commission, 0.001);
        assert_eq!(c.engine.exchange.slippage_bps, 2.0);
        assert_eq!(c.engine.exchange.fill, FillMode::Close);
        let e = RunSettings {
            slippage_bps: -1.0,
            ..Default::default()
        }
        .check_costs()
        .unwrap_err();
        assert_eq!(
            (e.field, e.message.as_str()),
            ("slippage_bps", "must be a non-negative number, got -1")
        );
    }
}
