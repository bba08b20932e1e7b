//! What the engine publishes: typed events for reports, persistence, WebSocket streams.

use serde::{Deserialize, Serialize};

use crate::model::{EquityPoint, OrderRequest, Side};

/// A fill as the engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillEvent {
    pub account: usize,
    pub order_id: u64,
    pub symbol: String,
    pub side: Side,
    pub quantity: f64,
    pub price: f64,
    pub fee: f64,
    pub ts: i64,
    pub tag: Option<String>,
}

/// Why a strategy stopped or resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyState {
    Running,
    /// Stopped by a risk kill switch; its orders were cancelled.
    Halted,
    /// Stopped by the sandbox (trap, broken limit).
    Disabled,
}

/// Everything the engine tells the outside world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    OrderAccepted {
        account: usize,
        order_id: u64,
        ts: i64,
        request: OrderRequest,
    },
    OrderRejected {
        account: usize,
        ts: i64,
        reason: String,
        request: OrderRequest,
    },
    OrderCancelled {
        account: usize,
        order_id: u64,
        ts: i64,
        reason: String,
    },
    Fill(FillEvent),
    Position {
        account: usize,
        symbol: String,
        quantity: f64,
        avg_price: f64,
        ts: i64,
    },
    /// Equity of one account (`Some`) or of all accounts together (`None`).
    Equity {
        account: Option<usize>,
        point: EquityPoint,
    },
    RiskAlert {
        account: usize,
        ts: i64,
        kind: String,
        message: String,
    },
    StrategyStatus {
        account: usize,
        ts: i64,
        state: StrategyState,
        reason: String,
    },
}

/// A consumer of engine events. The engine never blocks on it: sinks that forward to slow
/// consumers must buffer or drop.
pub trait EventSink {
    fn publish(&mut self, event: Event);
}

/// Keeps every event; for tests and small runs.
#[derive(Debug, Default)]
pub struct EventLog(pub Vec<Event>);

impl EventSink for EventLog {
    fn publish(&mut self, event: Event) {
        self.0.push(event);
    }
}

/// Forwards events to a channel (the report writer, the server). A full or closed channel
/// drops the event rather than stall the engine.
#[derive(Debug)]
pub struct ChannelSink(pub std::sync::mpsc::SyncSender<Event>);

impl EventSink for ChannelSink {
    fn publish(&mut self, event: Event) {
        let _ = self.0.try_send(event);
    }
}

/// Drops everything (benchmarks).
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn publish(&mut self, _: Event) {}
}
