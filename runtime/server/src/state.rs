//! What every handler shares: the store, settings, keys, the stream hub, the sandbox that
//! checks uploads, and the rate limiters.

use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use governor::{DefaultKeyedRateLimiter, Quota};
use metrics_exporter_prometheus::PrometheusHandle;

use super::auth::access::AccessTable;
use super::auth::cache::UserCache;
use super::auth::jwt::JwtKeys;
use super::cache::ResponseCache;
use super::config::ServerConfig;
use super::hub::Hub;
use qtm_live::LiveEngine;
use qtm_oms::risk::RiskLimits;
use qtm_sandbox::Sandbox;
use qtm_store::Store;

/// Shared server state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The fields behind [`AppState`].
pub struct Inner {
    pub store: Store,
    pub config: ServerConfig,
    pub jwt: JwtKeys,
    pub started: Instant,
    pub hub: Hub,
    /// Checks and describes uploaded components (the upload gate), and runs backtests.
    pub sandbox: Arc<Sandbox>,
    /// The live paper engine: enabled strategies trade here.
    pub live: LiveEngine,
    /// Account-level risk limits in force; `PUT /api/risk/parameters` replaces them.
    pub risk: RwLock<RiskLimits>,
    /// Prometheus exposition of the process's metrics.
    pub metrics: PrometheusHandle,
    /// Users the gate read recently.
    pub users: UserCache,
    /// Whether the `ingest-bridge` module takes market data (REST and WebSocket).
    ingest_enabled: AtomicBool,
    /// The body of `GET /api/strategies`, rebuilt when the catalog changes.
    pub strategy_list: ResponseCache,
    /// Backtest jobs queued or running, with their cancel flags.
    pub backtest_jobs: std::sync::Arc<qtm_backtest::jobs::JobQueue>,
    access: OnceLock<AccessTable>,
    api_limiter: Option<DefaultKeyedRateLimiter<String>>,
    login_limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Assemble the state; the access table is set once the router exists.
    pub fn new(
        store: Store,
        config: ServerConfig,
        jwt: JwtKeys,
        sandbox: Arc<Sandbox>,
        live: LiveEngine,
        risk: RiskLimits,
        metrics: PrometheusHandle,
    ) -> Self {
        let api_limiter = NonZeroU32::new(config.rate_limit_per_sec).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let login_limiter = NonZeroU32::new(config.login_per_min).map(|n| {
            // A few quick retries are fine; a steady stream of guesses is not.
            let burst = NonZeroU32::new(n.get().min(5)).unwrap_or(n);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(n).allow_burst(burst))
        });
        let backtest_jobs = qtm_backtest::jobs::JobQueue::per_core(Some(qtm_backtest::TimeLimit {
            limit: config.backtest_timeout(),
            setting: "the server's backtest_timeout_secs".into(),
        }));
        AppState(Arc::new(Inner {
            store,
            config,
            jwt,
            started: Instant::now(),
            hub: Hub::new(),
            sandbox,
            live,
            risk: RwLock::new(risk),
            metrics,
            users: UserCache::default(),
            strategy_list: ResponseCache::default(),
            backtest_jobs,
            ingest_enabled: AtomicBool::new(true),
            access: OnceLock::new(),
            api_limiter,
            login_limiter,
        }))
    }

    /// The access rules (set by the router builder).
    pub fn access(&self) -> &AccessTable {
        self.access.get_or_init(AccessTable::default)
    }

    pub(crate) fn set_access(&self, table: AccessTable) {
        let _ = self.access.set(table);
    }

    /// Whether the ingest bridge is on (its module's switch).
    pub fn ingest_enabled(&self) -> bool {
        self.ingest_enabled.load(Ordering::Relaxed)
    }

    /// Follow the `ingest-bridge` module's switch.
    pub fn set_ingest_enabled(&self, on: bool) {
        self.ingest_enabled.store(on, Ordering::Relaxed);
    }

    /// Whether one more API request from `key` fits the rate limit.
    pub fn allow_request(&self, key: &str) -> bool {
        self.api_limiter
            .as_ref()
            .is_none_or(|l| l.check_key(&key.to_string()).is_ok())
    }

    /// Whether one more login attempt from `key` fits the login limit.
    pub fn allow_login(&self, key: &str) -> bool {
        self.login_limiter
            .as_ref()
            .is_none_or(|l| l.check_key(&key.to_string()).is_ok())
    }
}
