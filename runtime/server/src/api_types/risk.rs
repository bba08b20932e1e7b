//! Risk: alerts and the kill switch.

use serde::Serialize;
use utoipa::ToSchema;

use qtm_store::risk as rows;

/// One risk alert: a rejected order, a kill switch engaged or released.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RiskAlert {
    pub id: i64,
    /// Unix seconds.
    pub ts: i64,
    /// `account` or `strategy:<id>`.
    pub scope: String,
    /// `order_rejected`, `kill_switch`, `kill_switch_released`, …
    pub kind: String,
    pub message: String,
    pub strategy_id: Option<i64>,
}

impl From<rows::RiskAlert> for RiskAlert {
    fn from(a: rows::RiskAlert) -> Self {
        RiskAlert {
            id: a.id,
            ts: a.ts,
            scope: a.scope,
            kind: a.kind,
            message: a.message,
            strategy_id: a.strategy_id,
        }
    }
}

impl From<&rows::RiskAlert> for RiskAlert {
    fn from(a: &rows::RiskAlert) -> Self {
        a.clone().into()
    }
}

/// A kill switch in force.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Halt {
    /// `account` or `strategy:<id>`.
    pub scope: String,
    pub reason: String,
    pub halted_by: Option<i64>,
    /// Unix seconds.
    pub halted_at: i64,
}

impl From<rows::Halt> for Halt {
    fn from(h: rows::Halt) -> Self {
        Halt {
            scope: h.scope,
            reason: h.reason,
            halted_by: h.halted_by,
            halted_at: h.halted_at,
        }
    }
}

impl From<&rows::Halt> for Halt {
    fn from(h: &rows::Halt) -> Self {
        h.clone().into()
    }
}
