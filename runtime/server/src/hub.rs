//! The stream hub: everything WebSocket clients can watch is published here once, serialized
//! once, and fanned out through a bounded broadcast channel. Publishing never waits: a client
//! that falls behind loses the oldest messages (and is told so), it never slows a publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

/// Messages buffered per subscriber before the slowest start to skip ahead.
pub const HUB_CAPACITY: usize = 4096;

/// The streams clients subscribe to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    MarketData,
    StrategyUpdates,
    Trades,
    Pnl,
    RiskAlerts,
    SystemHealth,
    Notifications,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 7] = [
        Topic::MarketData,
        Topic::StrategyUpdates,
        Topic::Trades,
        Topic::Pnl,
        Topic::RiskAlerts,
        Topic::SystemHealth,
        Topic::Notifications,
    ];

    /// The wire name (`market-data`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::MarketData => "market-data",
            Topic::StrategyUpdates => "strategy-updates",
            Topic::Trades => "trades",
            Topic::Pnl => "pnl",
            Topic::RiskAlerts => "risk-alerts",
            Topic::SystemHealth => "system-health",
            Topic::Notifications => "notifications",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One published message, already serialized.
#[derive(Debug)]
pub struct HubMessage {
    pub topic: Topic,
    /// The symbol or strategy id the message is about, for subscription filters.
    pub key: Option<String>,
    /// The JSON text sent to clients: `{"type":"event","topic":…,"seq":…,"key":…,"data":…}`.
    pub json: axum::extract::ws::Utf8Bytes,
}

/// The hub.
pub struct Hub {
    tx: broadcast::Sender<Arc<HubMessage>>,
    seq: AtomicU64,
    /// Counters of the streams (`GET /api/v1/websocket/stats`).
    pub stats: crate::ws::stats::WsStats,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(HUB_CAPACITY);
        Hub {
            tx,
            seq: AtomicU64::new(0),
            stats: Default::default(),
        }
    }

    /// Publish `data` on `topic`; returns the message's sequence number. Never blocks.
    pub fn publish(&self, topic: Topic, key: Option<String>, data: &impl Serialize) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        #[derive(Serialize)]
        struct Wire<'a, T> {
            r#type: &'static str,
            topic: &'static str,
            seq: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
            ts_ms: i64,
            data: &'a T,
        }
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let json = serde_json::to_string(&Wire {
            r#type: "event",
            topic: topic.as_str(),
            seq,
            key: key.as_deref(),
            ts_ms,
            data,
        })
        .unwrap_or_else(|e| format!(r#"{{"type":"error","message":"unserializable event: {e}"}}"#));
        metrics::counter!("qtm_ws_published_total", "topic" => topic.as_str()).increment(1);
        self.stats.published(topic);
        // No subscribers is not an error.
        let _ = self.tx.send(Arc::new(HubMessage {
            topic,
            key,
            json: json.into(),
        }));
        seq
    }

    /// Send `json`, a message that is not an event (no sequence number), to every client
    /// subscribed to `topic`, whatever keys it filters on.
    pub fn notice(&self, topic: Topic, json: String) {
        let _ = self.tx.send(Arc::new(HubMessage {
            topic,
            key: None,
            json: json.into(),
        }));
    }

    /// A new receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubMessage>> {
        self.tx.subscribe()
    }

    /// Number of connected receivers.
    pub fn receivers(&self) -> usize {
        self.tx.receiver_count()
    }
}
