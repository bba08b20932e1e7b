//! Counters of the WebSocket side, read by `GET /api/v1/websocket/stats`: connections open
//! per path, subscriptions per topic, messages published and sent, lag notices. Each is an
//! atomic bumped where the thing happens (the per-path table, a small map behind a mutex, is
//! touched only when a connection opens or closes), so counting costs the streams nothing
//! measurable.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hub::Topic;

/// The counters (one set per hub, so per server).
#[derive(Debug, Default)]
pub struct WsStats {
    /// Open connections by the path they connected to (`/ws`, `/ws/market-data`,
    /// `/api/ws/dashboard`, `/ws/trading`, …).
    open: Mutex<BTreeMap<String, u64>>,
    /// Connections ever opened.
    opened: AtomicU64,
    /// Per topic (in [`Topic::ALL`] order): sessions subscribed to it now.
    subscribed: [AtomicI64; Topic::ALL.len()],
    /// Per topic: events published on it.
    published: [AtomicU64; Topic::ALL.len()],
    /// Per topic: wall time of the newest event published on it, unix ms (0: none yet).
    last_published_ms: [AtomicI64; Topic::ALL.len()],
    /// Event frames written to stream clients.
    sent: AtomicU64,
    /// `lagged` notices written to stream clients.
    lagged_notices: AtomicU64,
    /// Messages those notices reported skipped.
    skipped: AtomicU64,
}

fn index(topic: Topic) -> usize {
    Topic::ALL.iter().position(|t| *t == topic).unwrap_or(0)
}

/// Bit `i` set for the `i`-th topic of [`Topic::ALL`].
pub(crate) fn mask<'a>(topics: impl IntoIterator<Item = &'a Topic>) -> u8 {
    topics.into_iter().fold(0, |m, t| m | (1 << index(*t)))
}

impl WsStats {
    /// Count a connection to `path` as open until the returned guard drops.
    pub fn open<'a>(&'a self, path: &str) -> OpenConnection<'a> {
        *self.lock().entry(path.to_string()).or_default() += 1;
        self.opened.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            stats: self,
            path: path.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A session's subscriptions went from the topics of mask `before` to those of `after`.
    pub(crate) fn resubscribed(&self, before: u8, after: u8) {
        for (i, counter) in self.subscribed.iter().enumerate() {
            let (was, is) = (before & (1 << i) != 0, after & (1 << i) != 0);
            if was != is {
                counter.fetch_add(if is { 1 } else { -1 }, Ordering::Relaxed);
            }
        }
    }

    /// An event was published on `topic`.
    pub(crate) fn published(&self, topic: Topic) {
        let i = index(topic);
        self.published[i].fetch_add(1, Ordering::Relaxed);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last_published_ms[i].store(now_ms, Ordering::Relaxed);
    }

    /// `n` event frames were written to a client.
    pub(crate) fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// A `lagged` notice reporting `skipped` messages was written to a client.
    pub(crate) fn lagged(&self, skipped: u64) {
        self.lagged_notices.fetch_add(1, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
    }

    /// Wall time of the newest event on `topic`, unix ms.
    pub fn last_published_ms(&self, topic: Topic) -> Option<i64> {
        Some(self.last_published_ms[index(topic)].load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let open: BTreeMap<String, u64> = self
            .lock()
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        StatsSnapshot {
            connections: open.values().sum(),
            connections_by_path: open,
            connections_opened: self.opened.load(Ordering::Relaxed),
            topics: Topic::ALL
                .iter()
                .enumerate()
                .map(|(i, t)| TopicStats {
                    topic: *t,
                    subscribers: self.subscribed[i].load(Ordering::Relaxed).max(0) as u64,
                    published: self.published[i].load(Ordering::Relaxed),
                    last_published_ms: Some(self.last_published_ms[i].load(Ordering::Relaxed))
                        .filter(|t| *t > 0),
                })
                .collect(),
            messages_sent: self.sent.load(Ordering::Relaxed),
            lagged_notices: self.lagged_notices.load(Ordering::Relaxed),
            messages_skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

/// A connection counted open; dropping it counts it closed.
#[derive(Debug)]
pub struct OpenConnection<'a> {
    stats: &'a WsStats,
    path: String,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.stats.lock().get_mut(&self.path) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The counters of one topic.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TopicStats {
    pub topic: Topic,
    /// Stream sessions subscribed to it now.
    pub subscribers: u64,
    /// Events published on it since the server started (whether anyone listened or not).
    pub published: u64,
    /// Wall time of the newest of them, unix milliseconds; null before the first.
    pub last_published_ms: Option<i64>,
}

/// `GET /api/v1/websocket/stats`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StatsSnapshot {
    /// WebSocket connections open now (streams, `/ws/trading` and `/ws/ingest`).
    pub connections: u64,
    /// The same by the path connected to (`/ws`, `/ws/market-data`, `/api/ws/dashboard`,
    /// `/api/ws/strategies/{id}`, `/ws/trading`, …); paths with none open are left out.
    pub connections_by_path: BTreeMap<String, u64>,
    /// Connections opened since the server started (authenticated ones).
    pub connections_opened: u64,
    /// Per topic, in the order `market-data`, `strategy-updates`, `trades`, `pnl`,
    /// `risk-alerts`, `system-health`, `notifications`.
    pub topics: Vec<TopicStats>,
    /// Event frames written to stream clients since the server started.
    pub messages_sent: u64,
    /// `{"type":"lagged"}` notices written to stream clients that fell behind.
    pub lagged_notices: u64,
    /// Messages those notices reported skipped.
    pub messages_skipped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_while_open_and_subscriptions_follow_their_topics() {
        let s = WsStats::default();
        let a = s.open("/ws/feed");
        let b = s.open("/ws/feed");
        let c = s.open("/api/ws/pnl");
        assert_eq!(s.snapshot().connections, 3);
        assert_eq!(s.snapshot().connections_by_path["/ws/feed"], 2);
        drop(b);
        drop(c);
        let snap = s.snapshot();
        assert_eq!(snap.connections, 1);
        assert!(!snap.connections_by_path.contains_key("/api/ws/pnl"));
        assert_eq!(snap.connections_opened, 3);
        drop(a);

        let pnl_trades = mask(&[Topic::Pnl, Topic::Trades]);
        s.resubscribed(0, pnl_trades);
        s.resubscribed(0, mask(&[Topic::Pnl]));
        s.resubscribed(pnl_trades, mask(&[Topic::Trades]));
        let subs = |t: Topic| s.snapshot().topics[index(t)].subscribers;
        assert_eq!((subs(Topic::Pnl), subs(Topic::Trades)), (1, 1));
        s.published(Topic::Pnl);
        s.sent(3);
        s.lagged(7);
        let snap = s.snapshot();
        assert_eq!(snap.topics[index(Topic::Pnl)].published, 1);
        assert!(s.last_published_ms(Topic::Pnl).is_some());
        assert_eq!(s.last_published_ms(Topic::Trades), None);
        assert_eq!(
            (
                snap.messages_sent,
                snap.lagged_notices,
                snap.messages_skipped
            ),
            (3, 1, 7)
        );
    }
}
