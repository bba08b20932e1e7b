//! Live trading: the swap log, and the live engine's events about manual orders as the
//! streams carry them.

use serde::Serialize;
use utoipa::ToSchema;

use super::orders::{FillRecord, Order};
use super::risk::{Halt, RiskAlert};
use qtm_live::LiveEvent;
use qtm_store::live as rows;

/// One hot swap as it is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SwapRecord {
    pub id: i64,
    pub strategy_id: i64,
    /// Version numbers (not ids).
    pub from_version: Option<i64>,
    pub to_version: i64,
    /// `ok` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    /// How long the engine stood still for the swap, microseconds.
    pub pause_us: Option<f64>,
    pub user_id: Option<i64>,
    pub created_at: i64,
}

impl From<rows::SwapRecord> for SwapRecord {
    fn from(s: rows::SwapRecord) -> Self {
        SwapRecord {
            id: s.id,
            strategy_id: s.strategy_id,
            from_version: s.from_version,
            to_version: s.to_version,
            outcome: s.outcome,
            reason: s.reason,
            pause_us: s.pause_us,
            user_id: s.user_id,
            created_at: s.created_at,
        }
    }
}

/// The events of [`LiveEvent`] that carry store rows, with the rows as the API shows them.
/// The stream forwarder publishes these in their place, so a column added to the orders
/// table does not reach WebSocket clients through the live engine's events. Same names and
/// tags as [`LiveEvent`]'s variants.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ManualEvent {
    /// A manual order filled in the live engine, in part or in whole: the order as it stands
    /// after the fill, and the fill.
    OrderFilled { order: Order, fill: FillRecord },
    /// A manual order the live engine ended unfilled.
    OrderCancelled { order: Order },
    /// An order the exchange placed for a manual one: the exits of a filled bracket.
    OrderAccepted { order: Order },
    /// A risk alert about the manual account (a margin call), as stored.
    ManualAlert { alert: RiskAlert },
    /// The account's own loss limits fired: trading is halted as by the kill switch.
    KillSwitch { halt: Halt, alert: RiskAlert },
}

impl ManualEvent {
    /// The API form of `event`, if it is one that carries store rows.
    pub fn of(event: &LiveEvent) -> Option<ManualEvent> {
        Some(match event {
            LiveEvent::OrderFilled { order, fill } => ManualEvent::OrderFilled {
                order: order.into(),
                fill: fill.into(),
            },
            LiveEvent::OrderCancelled { order } => ManualEvent::OrderCancelled {
                order: order.into(),
            },
            LiveEvent::OrderAccepted { order } => ManualEvent::OrderAccepted {
                order: order.into(),
            },
            LiveEvent::ManualAlert { alert } => ManualEvent::ManualAlert {
                alert: alert.into(),
            },
            LiveEvent::KillSwitch { halt, alert } => ManualEvent::KillSwitch {
                halt: halt.into(),
                alert: alert.into(),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_types::orders::tests::{fill_row, order_row};
    use qtm_store::risk;

    // The live engine's own serialization of these events is what WebSocket clients received
    // before the forwarder converted them: the converted events must read the same.
    #[test]
    fn manual_events_read_as_the_live_engine_serialized_them() {
        let halt = risk::Halt {
            scope: "account".into(),
            reason: "daily loss".into(),
            halted_by: None,
            halted_at: 5,
        };
        let alert = risk::RiskAlert {
            id: 3,
            ts: 5,
            scope: "account".into(),
            kind: "kill_switch".into(),
            message: "daily loss".into(),
            strategy_id: None,
        };
        let events = [
            LiveEvent::OrderFilled {
                order: order_row(),
                fill: fill_row(),
            },
            LiveEvent::OrderCancelled { order: order_row() },
            LiveEvent::OrderAccepted { order: order_row() },
            LiveEvent::ManualAlert {
                alert: alert.clone(),
            },
            LiveEvent::KillSwitch { halt, alert },
        ];
        for e in &events {
            let manual = ManualEvent::of(e).expect("carries rows");
            assert_eq!(
                serde_json::to_value(&manual).unwrap(),
                serde_json::to_value(e).unwrap()
            );
        }
        let bar = LiveEvent::Bar {
            symbol: "SPY".into(),
            seq: 1,
            bar: qtm_core::model::Bar {
                ts: 1,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 0.0,
            },
        };
        assert_eq!(ManualEvent::of(&bar), None);
    }
}
