//! The CPU share cap: how much of the engine thread's time each live instance takes over a
//! sliding window, and the cap it may not go over.
//!
//! Instances run one after the other on one thread, so an instance that takes most of it
//! delays every bar of every neighbour, even when each of its calls stays under its fuel and
//! deadline. The share is measured against the window's length (the thread's wall time), not
//! against the thread's busy time: an idle engine, or an instance alone on a quiet engine,
//! cannot reach the cap by doing a little work while nothing else runs, and a single call
//! (at most its 500 ms deadline) is 10 % of the default 5 s window, half the default 20 % cap.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// The default cap: a fifth of the engine thread per instance.
pub const DEFAULT_SHARE_CAP: f64 = 0.20;

/// The default window the share is measured over.
pub const DEFAULT_WINDOW_SECS: f64 = 5.0;

/// Buckets per window: the window slides in steps of a tenth of its length.
const BUCKETS: usize = 10;

/// The caps in force, changed while the engine runs (`POST /api/modules/live-engine/configure`).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuCaps {
    /// Most of the thread's time one instance may take over the window, as a fraction (0.2 is
    /// 20 %); 1 or more is no cap.
    pub share_cap: f64,
    /// The window's length.
    pub window: Duration,
    /// Caps of their own for some instances (by instance id), in place of `share_cap`.
    pub per_instance: BTreeMap<i64, f64>,
}

impl Default for CpuCaps {
    fn default() -> Self {
        Self {
            share_cap: DEFAULT_SHARE_CAP,
            window: Duration::from_secs_f64(DEFAULT_WINDOW_SECS),
            per_instance: BTreeMap::new(),
        }
    }
}

impl CpuCaps {
    /// The cap of instance `instance_id`.
    pub fn cap_of(&self, instance_id: i64) -> f64 {
        self.per_instance
            .get(&instance_id)
            .copied()
            .unwrap_or(self.share_cap)
    }

    /// The caps the `live-engine` module's settings give: `cpu_share_cap_pct` (percent),
    /// `cpu_window_secs` and `cpu_share_cap_pct_by_instance` (`{"<instance id>": percent}`).
    /// Settings that are absent or unusable keep their defaults (the module's settings are
    /// checked when they are changed; this only reads them).
    pub fn from_settings(config: &Value) -> CpuCaps {
        let mut caps = CpuCaps::default();
        let pct = |v: &Value| v.as_f64().filter(|p| p.is_finite() && *p > 0.0);
        if let Some(p) = config.get("cpu_share_cap_pct").and_then(pct) {
            caps.share_cap = p / 100.0;
        }
        if let Some(w) = config
            .get("cpu_window_secs")
            .and_then(Value::as_f64)
            .filter(|w| w.is_finite() && *w > 0.0 && *w <= 86_400.0)
        {
            caps.window = Duration::from_secs_f64(w);
        }
        if let Some(m) = config
            .get("cpu_share_cap_pct_by_instance")
            .and_then(Value::as_object)
        {
            for (k, v) in m {
                if let (Ok(id), Some(p)) = (k.parse::<i64>(), pct(v)) {
                    caps.per_instance.insert(id, p / 100.0);
                }
            }
        }
        caps
    }
}

/// One instance's use of the thread over the last window, in buckets of a tenth of it.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuMeter {
    /// The account's busy time when last read (the engine's counter only grows).
    seen_ns: u64,
    /// Per bucket: its number (time / bucket length) and the nanoseconds spent in it.
    buckets: [(u64, u64); BUCKETS],
    /// The bucket length the buckets were filled with (the window can change).
    bucket_ns: u64,
}

impl CpuMeter {
    /// A meter that counts from the account's busy time `busy_ns` on.
    pub(crate) fn starting_at(busy_ns: u64) -> Self {
        Self {
            seen_ns: busy_ns,
            ..Self::default()
        }
    }

    /// Take the account's busy time `busy_ns` at engine time `now` (since the engine
    /// started): what it spent since the last reading goes to the bucket of `now`. Returns
    /// the share of `window` spent over the last window.
    pub(crate) fn record(&mut self, busy_ns: u64, now: Duration, window: Duration) -> f64 {
        let spent = busy_ns.saturating_sub(self.seen_ns);
        self.seen_ns = busy_ns;
        let bucket_ns = (window.as_nanos() as u64 / BUCKETS as u64).max(1);
        if bucket_ns != self.bucket_ns {
            self.buckets = Default::default();
            self.bucket_ns = bucket_ns;
        }
        let n = now.as_nanos() as u64 / bucket_ns;
        let slot = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0);
        }
        slot.1 += spent;
        self.share(now, window)
    }

    /// The share of `window` spent over the last window ending at `now`.
    pub(crate) fn share(&self, now: Duration, window: Duration) -> f64 {
        let bucket_ns = (window.as_nanos() as u64 / BUCKETS as u64).max(1);
        if bucket_ns != self.bucket_ns {
            return 0.0;
        }
        let n = now.as_nanos() as u64 / bucket_ns;
        let oldest = n.saturating_sub(BUCKETS as u64 - 1);
        let spent: u64 = self
            .buckets
            .iter()
            .filter(|(b, _)| (oldest..=n).contains(b))
            .map(|(_, ns)| ns)
            .sum();
        spent as f64 / window.as_nanos().max(1) as f64
    }
}

/// Why an instance over its cap is stopped, as users read it.
pub(crate) fn over_cap_reason(share: f64, cap: f64, window: Duration) -> String {
    // A share just over the cap keeps the decimals that show it is over ("5.04 %", not "5 %").
    let mut shown = round(share * 100.0);
    if share > cap && shown.parse::<f64>().is_ok_and(|s| s <= cap * 100.0) {
        shown = format!("{:.2}", share * 100.0);
    }
    format!(
        "cpu share {} % of the engine thread over the last {} s, over the {} % cap",
        shown,
        round(window.as_secs_f64()),
        round(cap * 100.0)
    )
}

/// A figure for a message: whole when it is close to whole, else one decimal.
fn round(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{:.0}", x.round())
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_share_is_the_time_spent_over_the_window_and_old_time_slides_out() {
        let w = Duration::from_secs(5);
        let mut m = CpuMeter::starting_at(7 * MS);
        // 1 s of work spread over the first second: 20 %.
        let mut busy = 7 * MS;
        for t in (100..=1000).step_by(100) {
            busy += 100 * MS;
            m.record(busy, at(t), w);
        }
        assert!((m.share(at(1000), w) - 0.2).abs() < 1e-9);
        // Nothing more: still counted 4 s later, gone once the window has passed it.
        assert!((m.record(busy, at(4900), w) - 0.2).abs() < 1e-9);
        assert!(m.share(at(6100), w) < 1e-9);
        assert_eq!(m.record(busy, at(6100), w), 0.0);
    }

    #[test]
    fn a_call_at_its_deadline_alone_stays_under_the_default_cap() {
        let w = Duration::from_secs_f64(DEFAULT_WINDOW_SECS);
        let mut m = CpuMeter::starting_at(0);
        let share = m.record(500 * MS, at(10_000), w);
        assert!(share < DEFAULT_SHARE_CAP, "{share}");
    }

    #[test]
    fn a_new_window_length_starts_the_count_again() {
        let mut m = CpuMeter::starting_at(0);
        m.record(900 * MS, at(100), Duration::from_secs(1));
        assert_eq!(m.share(at(100), Duration::from_secs(2)), 0.0);
        let s = m.record(1000 * MS, at(200), Duration::from_secs(2));
        assert!((s - 0.05).abs() < 1e-9, "{s}");
    }

    #[test]
    fn settings_give_percentages_as_fractions_and_unusable_ones_keep_the_defaults() {
        let c = CpuCaps::from_settings(&json!({
            "cpu_share_cap_pct": 35,
            "cpu_window_secs": 2.5,
            "cpu_share_cap_pct_by_instance": {"12": 100, "x": 50, "13": -1}
        }));
        assert_eq!(c.share_cap, 0.35);
        assert_eq!(c.window, Duration::from_millis(2500));
        assert_eq!(c.cap_of(12), 1.0);
        assert_eq!(c.cap_of(13), 0.35);
        let d = CpuCaps::from_settings(&json!({"cpu_share_cap_pct": "lots", "cpu_window_secs": 0}));
        assert_eq!(d, CpuCaps::default());
    }

    #[test]
    fn the_reason_names_the_share_the_window_and_the_cap() {
        assert_eq!(
            over_cap_reason(0.6312, 0.2, Duration::from_secs(5)),
            "cpu share 63.1 % of the engine thread over the last 5 s, over the 20 % cap"
        );
        assert_eq!(
            over_cap_reason(0.25, 0.2, Duration::from_millis(2500)),
            "cpu share 25 % of the engine thread over the last 2.5 s, over the 20 % cap"
        );
        assert_eq!(
            over_cap_reason(0.0504, 0.05, Duration::from_secs(1)),
            "cpu share 5.04 % of the engine thread over the last 1 s, over the 5 % cap"
        );
    }
}
