//! Signals received through the webhooks.

use serde::Serialize;
use utoipa::ToSchema;

use qtm_store::signals as rows;

/// A stored signal.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredSignal {
    pub id: i64,
    /// The webhook source it came through (`POST /api/webhooks/{source}`).
    pub source: String,
    pub name: String,
    pub value: f64,
    /// Event time, unix seconds (the receive time if the sender gave none).
    pub ts: i64,
    /// When the server received it, unix seconds.
    pub received_at: i64,
    /// The signal object as received.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<rows::StoredSignal> for StoredSignal {
    fn from(s: rows::StoredSignal) -> Self {
        StoredSignal {
            id: s.id,
            source: s.source,
            name: s.name,
            value: s.value,
            ts: s.ts,
            received_at: s.received_at,
            payload: s.payload,
        }
    }
}
