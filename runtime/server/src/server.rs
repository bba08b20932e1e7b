//! Start-up and shutdown: open the store, create the first admin, load keys and limits, build
//! the app, listen, and on a signal finish in-flight requests and close the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::api_types::live::ManualEvent;
use super::auth::jwt::JwtKeys;
use super::auth::{Role, password, random_token};
use super::config::ServerConfig;
use super::hub::Topic;
use super::state::AppState;
use super::telemetry;
use qtm_live::{CpuCaps, LiveConfig, LiveEngine, LiveEvent, ReplaySettings};
use qtm_oms::risk::RiskLimits;
use qtm_sandbox::Sandbox;
use qtm_store::{self as store, Store};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("{0}")]
    Setup(String),
}

/// A server running in this process.
pub struct RunningServer {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The shared state (tests read the store through it).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
    forwarder: JoinHandle<()>,
}

/// Longest the server waits for in-flight requests once it is told to stop; the rest are
/// cut off, so a stuck request cannot hold a shutdown past its bound.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl RunningServer {
    /// Stop accepting, finish in-flight requests (at most [`DRAIN_TIMEOUT`]), store what the
    /// live engine did, close the store.
    pub async fn stop(mut self) {
        // The engine drops its backlog first, so requests waiting on it are answered
        // (refused) while the server drains instead of after it.
        self.state.live.begin_shutdown();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still running {} s after the shutdown began were cut off",
                DRAIN_TIMEOUT.as_secs()
            );
            self.task.abort();
        }
        self.ticker.abort();
        // Snapshots and everything the engine did are stored before the store closes.
        self.state.live.shutdown().await;
        self.forwarder.abort();
        self.state.store.close().await;
    }
}

/// What the first start printed about the admin account.
#[derive(Debug, Clone, PartialEq)]
pub enum Bootstrap {
    /// Users already existed.
    Existing,
    /// Created from `QTM_ADMIN_USER` / `QTM_ADMIN_PASSWORD`.
    FromEnv { username: String },
    /// Created with a generated password, shown once.
    Generated { username: String, password: String },
}

/// Build the state and start listening; `shutdown` resolving stops the server gracefully.
pub async fn start(config: ServerConfig) -> Result<(RunningServer, Bootstrap), ServeError> {
    start_with(config, |k| std::env::var(k).ok()).await
}

/// [`start`] with the admin bootstrap variables read through `var` (tests pass their own).
pub async fn start_with(
    config: ServerConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Result<(RunningServer, Bootstrap), ServeError> {
    let store = Store::open(&config.database_url).await?;
    // Rule programs (uploaded as text, imported, evolved) are stored as deltas against the
    // evaluator they are all written into.
    store
        .set_component_reference(qtm_rules_component::reference_component())
        .await?;
    let bootstrap = bootstrap_admin(&store, &var).await?;
    let secret = match &config.jwt_secret {
        Some(s) if s.len() >= 32 => s.clone(),
        Some(_) => {
            return Err(ServeError::Setup(
                "QTM_JWT_SECRET must have at least 32 characters".into(),
            ));
        }
        None => store::settings::get_or_insert(&store, "jwt_secret", || random_token("")).await?,
    };
    let sandbox =
        Arc::new(Sandbox::new(config.sandbox()).map_err(|e| ServeError::Sandbox(e.to_string()))?);
    let risk = store::risk::account_limits(&store)
        .await?
        .unwrap_or_else(RiskLimits::default);
    store::modules::seed(&store).await?;
    if config.demo_data {
        import_demo_data(&store).await?;
    }
    // A backtest that was running when the previous process died will never finish.
    store::backtests::fail_interrupted(&store).await?;
    let live = start_live(&store, &sandbox, &risk, &config).await?;
    let bridge_on = store::modules::get(&store, "ingest-bridge").await?.enabled;
    let state = AppState::new(
        store,
        config.clone(),
        JwtKeys::new(secret.as_bytes()),
        sandbox,
        live,
        risk,
        telemetry::prometheus(),
    );
    state.set_ingest_enabled(bridge_on);
    let forwarder = spawn_live_forwarder(state.clone());
    let app = super::app(state.clone()).map_err(ServeError::Setup)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let (tx, rx) = oneshot::channel::<()>();
    let ticker = spawn_health_ticker(state.clone());
    let listener = without_nagle(listener);
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await
    });
    Ok((
        RunningServer {
            addr,
            state,
            shutdown: Some(tx),
            task,
            ticker,
            forwarder,
        },
        bootstrap,
    ))
}

/// The demo data embedded in the binary: SPY minute bars of 2011 (Apache-2.0, `data/README.md`).
const DEMO_CSV_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/spy_1m_2011.csv.gz"));

/// Import the embedded demo data when the database has no bars at all, so a fresh server has a
/// market to replay wherever it was started. A database with any bars is left alone.
async fn import_demo_data(store: &Store) -> Result<(), ServeError> {
    if !store::market::list_assets(store).await?.is_empty() {
        return Ok(());
    }
    let csv = std::io::BufReader::new(flate2::read::GzDecoder::new(DEMO_CSV_GZ));
    let reader = qtm_market::BarReader::from_reader(csv, "bundled spy_1m_2011.csv")
        .map_err(|e| ServeError::Setup(format!("the embedded demo data: {e}")))?;
    let opts = store::market::ImportOptions {
        symbol: "SPY".into(),
        name: Some("SPDR S&P 500 ETF (demo data, 2011 minute bars)".into()),
        asset_class: Some(store::market::AssetClass::Index),
        currency: None,
    };
    let summary = store::market::import_bars(store, reader, &opts)
        .await
        .map_err(|e| ServeError::Setup(format!("importing the embedded demo data: {e}")))?;
    tracing::info!(
        bars = summary.rows,
        "empty database: imported the embedded demo data (SPY 2011 minute bars)"
    );
    Ok(())
}

/// Run until `signal` resolves (Ctrl-C / SIGTERM for `qtm serve`).
pub async fn serve_until(
    config: ServerConfig,
    signal: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (server, bootstrap) = start(config).await?;
    let url = format!("http://{}", server.addr);
    match bootstrap {
        Bootstrap::Existing => {}
        Bootstrap::FromEnv { username } => {
            say(format_args!(
                "created admin user {username:?} (password from QTM_ADMIN_PASSWORD)"
            ));
        }
        Bootstrap::Generated { username, password } => {
            say(format_args!(
                "created admin user {username:?} with password {password}\n\
                 (shown once; set QTM_ADMIN_PASSWORD to choose it)"
            ));
        }
    }
    say(format_args!(
        "qtm listening on {url}  (API docs: {url}/api/docs, log in: POST {url}/api/auth/login)"
    ));
    tracing::info!(%url, "listening");
    signal.await;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// A line for whoever watches the server's stdout. When nobody reads it (a closed pipe), the
/// server goes on; `println!` would panic.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

async fn bootstrap_admin(
    store: &Store,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Bootstrap, ServeError> {
    if store::users::count(store).await? > 0 {
        return Ok(Bootstrap::Existing);
    }
    let username = var("QTM_ADMIN_USER").unwrap_or_else(|| "admin".into());
    let (pw, generated) = match var("QTM_ADMIN_PASSWORD") {
        Some(p) => {
            password::validate(&p)
                .map_err(|e| ServeError::Setup(format!("QTM_ADMIN_PASSWORD: {}", e.message)))?;
            (p, false)
        }
        None => (random_token("")[..20].to_string(), true),
    };
    let hash = password::hash(pw.clone())
        .await
        .map_err(|e| ServeError::Setup(e.message))?;
    store::users::create(store, &username, &hash, Role::Admin.as_str()).await?;
    Ok(if generated {
        Bootstrap::Generated {
            username,
            password: pw,
        }
    } else {
        Bootstrap::FromEnv { username }
    })
}

/// Publish a `system-health` message every few seconds while anyone listens.
fn spawn_health_ticker(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            if state.hub.receivers() == 0 {
                continue;
            }
            let status = super::routes::system::snapshot(&state).await;
            state.hub.publish(Topic::SystemHealth, None, &status);
        }
    })
}

/// Start the live engine with the `live-engine` module's settings, and the replay feed when
/// its module is enabled (and `replay` allows it).
async fn start_live(
    store: &Store,
    sandbox: &Arc<Sandbox>,
    limits: &RiskLimits,
    server: &ServerConfig,
) -> Result<LiveEngine, ServeError> {
    let engine_module = store::modules::get(store, "live-engine").await?;
    let mut config = LiveConfig {
        limits: qtm_live::host_bounds(limits),
        ..LiveConfig::default()
    };
    if let Some(c) = engine_module
        .config
        .get("initial_cash")
        .and_then(|v| v.as_f64())
    {
        config.initial_cash = c;
    }
    if let Some(s) = engine_module
        .config
        .get("snapshot_every_secs")
        .and_then(|v| v.as_f64())
    {
        config.snapshot_every_secs = s;
    }
    config.set_cpu_caps(&CpuCaps::from_settings(&engine_module.config));
    let live = LiveEngine::start(store.clone(), sandbox.clone(), config)
        .await
        .map_err(|e| ServeError::Setup(format!("live engine: {e}")))?;
    let feed = store::modules::get(store, "replay-feed").await?;
    if server.replay && feed.enabled {
        let mut settings: ReplaySettings = serde_json::from_value(feed.config.clone())
            .map_err(|e| ServeError::Setup(format!("replay-feed settings: {e}")))?;
        settings.data_dir = server.data_dir.clone();
        if let Err(e) = live.start_replay(&settings).await {
            tracing::warn!(error = %e, "the replay feed did not start");
        }
    }
    Ok(live)
}

/// `listener` with `TCP_NODELAY` on every accepted connection. Without it a stream's small
/// frames wait behind the one before them for the client's delayed ACK (up to 40 ms on
/// Linux): `cargo bench -p qtm-tests --bench live_ws` read bars from `/ws/market-data` at
/// p50 6.5 ms and p99 23 ms with it off, 0.17 and 0.66 ms with it on.
fn without_nagle(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    })
}

/// Publish what the live engine stored on the WebSocket streams: bars on `market-data`
/// (keyed by symbol), orders, fills and positions on `trades`, equity on `pnl`, alerts on
/// `risk-alerts`, status changes and logs on `strategy-updates` (keyed by strategy id).
fn spawn_live_forwarder(state: AppState) -> JoinHandle<()> {
    let rx = state.live.subscribe();
    tokio::spawn(async move { forward_live_events(rx, &state.hub).await })
}

/// The topics live events are published on.
const LIVE_TOPICS: [Topic; 5] = [
    Topic::MarketData,
    Topic::Trades,
    Topic::Pnl,
    Topic::RiskAlerts,
    Topic::StrategyUpdates,
];

/// Forward live events to `hub` until the engine's channel closes. Should the forwarder fall
/// behind the engine's buffer, the events it skipped never reach any client: each stream of
/// live events then carries `{"type":"lagged","topic","skipped","source":"live-engine"}`, so a
/// client knows to read the state again over REST instead of trusting a silent gap.
async fn forward_live_events(
    mut rx: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    hub: &super::hub::Hub,
) {
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "live events skipped by the stream forwarder");
                metrics::counter!("qtm_live_events_skipped_total").increment(n);
                for topic in LIVE_TOPICS {
                    let notice = serde_json::json!({
                        "type": "lagged",
                        "topic": topic.as_str(),
                        "skipped": n,
                        "source": "live-engine",
                    });
                    hub.notice(topic, notice.to_string());
                }
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let (topic, key) = match &*event {
            LiveEvent::Bar { symbol, .. } => (Topic::MarketData, Some(symbol.clone())),
            LiveEvent::Order { strategy_id, .. }
            | LiveEvent::Fill { strategy_id, .. }
            | LiveEvent::Position { strategy_id, .. } => {
                (Topic::Trades, Some(strategy_id.to_string()))
            }
            LiveEvent::Equity { strategy_id, .. } => (Topic::Pnl, Some(strategy_id.to_string())),
            LiveEvent::RiskAlert { strategy_id, .. } => {
                (Topic::RiskAlerts, Some(strategy_id.to_string()))
            }
            LiveEvent::Status { strategy_id, .. } | LiveEvent::Log { strategy_id, .. } => {
                (Topic::StrategyUpdates, Some(strategy_id.to_string()))
            }
            // Manual orders are keyed by symbol on `trades`, as the order routes publish
            // them.
            LiveEvent::OrderFilled { order, .. }
            | LiveEvent::OrderCancelled { order }
            | LiveEvent::OrderAccepted { order } => (Topic::Trades, Some(order.symbol.clone())),
            LiveEvent::ManualPosition { symbol, .. } => (Topic::Trades, Some(symbol.clone())),
            LiveEvent::KillSwitch { .. } | LiveEvent::ManualAlert { .. } => {
                (Topic::RiskAlerts, None)
            }
        };
        // The events that carry store rows go out with the rows as the API shows them.
        match ManualEvent::of(&event) {
            Some(manual) => hub.publish(topic, key, &manual),
            None => hub.publish(topic, key, &*event),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::serve::Listener;

    use qtm_live::LiveEvent;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = raw.local_addr().unwrap();
        let mut listener = super::without_nagle(raw);
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (accepted, _) = listener.accept().await;
        let _client = client.await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[tokio::test]
    async fn a_forwarder_that_falls_behind_tells_every_live_stream_what_it_skipped() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let hub = crate::hub::Hub::new();
        let mut clients = hub.subscribe();
        // Ten bars before the forwarder reads any: it can only read the last four.
        for seq in 1..=10 {
            let bar = qtm_core::model::Bar {
                ts: seq as i64,
                open: 1.0,
                high: 1.0,
                low: 1.0,
                close: 1.0,
                volume: 1.0,
            };
            let symbol = "SPY".to_string();
            tx.send(Arc::new(LiveEvent::Bar { symbol, seq, bar }))
                .unwrap();
        }
        drop(tx);
        super::forward_live_events(rx, &hub).await;
        let mut got = Vec::new();
        while let Ok(m) = clients.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&m.json).unwrap();
            got.push((m.topic.as_str(), v));
        }
        let notices: Vec<_> = got.iter().filter(|(_, v)| v["type"] == "lagged").collect();
        assert_eq!(notices.len(), super::LIVE_TOPICS.len(), "{got:?}");
        for (topic, v) in &notices {
            assert_eq!(v["skipped"], 6);
            assert_eq!(v["source"], "live-engine");
            assert_eq!(v["topic"], *topic);
        }
        let seqs: Vec<u64> = got
            .iter()
            .filter(|(_, v)| v["type"] == "event")
            .map(|(_, v)| v["data"]["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            [7, 8, 9, 10],
            "the notices come first, then what is left"
        );
    }
}
