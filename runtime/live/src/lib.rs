//! Live paper trading: the engine core of the backtest driven by wall-clock feeds.
//!
//! One thread owns the [`Engine`](qtm_engine::Engine) and handles, in order, bars from the
//! feeds and commands (enable, disable, swap, clone, halt). Swaps and clones happen between two
//! bars, so every bar reaches each instance exactly once. What the engine publishes goes to a
//! recorder task that writes it to the store (each fill with its order and position in one
//! transaction) and only then broadcasts it as a [`LiveEvent`]; the feed's per-symbol cursor
//! moves once the effects of a bar are stored, so a restart resumes after the last stored bar.
//! The bars themselves are journalled with the cursor, so a restarted instance is restored
//! from its snapshot and replayed the bars it had seen since (orders held back) before the
//! feed resumes.
//! Slow or trapping strategies cost only their own fuel and deadline: they run one after the
//! other in the engine thread, each bounded by the sandbox.
//!
//! Orders placed through the API are an account of the same engine ([`manual`]): admitted
//! and put on the same exchange by one command to the engine thread, stored and answered by
//! the recorder, filled on the same bars with the same rules as a strategy's orders.
//!
//! Compiling a new version (the slow part of a swap) runs off the engine thread; the engine
//! pauses only for snapshot → restore → replace.

// `println!`/`eprintln!` panic when their reader has gone (`qtm … | head`); the binary's
// commands print through its `cli::out`, and the server ignores a closed stdout.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cpu;
mod feed;
mod instances;
pub mod manual;
mod marks;
mod record;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};

pub use cpu::{CpuCaps, DEFAULT_SHARE_CAP, DEFAULT_WINDOW_SECS};
pub use feed::{Feed, FeedOut, FeedTask, ReplayFeed};
pub use manual::{ManualChange, ManualOrder};
pub use marks::{LiveMark, Marks};
pub use qtm_core::model::{SECONDS_PER_DAY, day_start};

use qtm_core::model::{Bar, LogLevel, Side};
use qtm_core::vocab::OrderStatus;
use qtm_engine::EngineConfig;
use qtm_oms::risk::RiskLimits;
use qtm_sandbox::Sandbox;
use qtm_store::{self as store, Store, StoreError};
use worker::Command;

/// The reason the kill switch gives the orders it cancels.
pub use qtm_engine::KILL_SWITCH_CANCEL;
use qtm_oms::oms::SavedGuard;
pub use worker::host_bounds;

/// Settings of the live engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveConfig {
    /// Fill rules and costs, as in a backtest (one bar at a time: no batches live).
    pub engine: EngineConfig,
    /// Starting capital of each instance's paper account and of each user's manual account.
    pub initial_cash: f64,
    /// How often every running instance's state is snapshotted to the store.
    pub snapshot_every_secs: f64,
    /// Limits of each instance's own account and of each manual account, applied before the
    /// account-wide ones (which
    /// the live engine reads from the store and keeps in its [`qtm_oms::oms::AccountGuard`]).
    pub limits: RiskLimits,
    /// Most of the engine thread's time one instance may take over `cpu_window_secs`, as a
    /// fraction (0.2 is 20 %); past it the instance is disabled. 1 or more: no cap.
    pub cpu_share_cap: f64,
    /// The sliding window the CPU share is measured over, seconds.
    pub cpu_window_secs: f64,
    /// Caps of their own (fractions) for some instances, by instance id.
    pub cpu_share_caps: std::collections::BTreeMap<i64, f64>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig {
                batch: false,
                ..EngineConfig::default()
            },
            initial_cash: 100_000.0,
            snapshot_every_secs: 30.0,
            limits: RiskLimits::default(),
            cpu_share_cap: DEFAULT_SHARE_CAP,
            cpu_window_secs: DEFAULT_WINDOW_SECS,
            cpu_share_caps: Default::default(),
        }
    }
}

impl LiveConfig {
    /// The CPU share caps these settings give.
    pub fn cpu_caps(&self) -> CpuCaps {
        let window = if self.cpu_window_secs.is_finite() && self.cpu_window_secs > 0.0 {
            Duration::from_secs_f64(self.cpu_window_secs.min(86_400.0))
        } else {
            Duration::from_secs_f64(DEFAULT_WINDOW_SECS)
        };
        CpuCaps {
            share_cap: self.cpu_share_cap,
            window,
            per_instance: self.cpu_share_caps.clone(),
        }
    }

    /// Take the CPU share caps of `caps`.
    pub fn set_cpu_caps(&mut self, caps: &CpuCaps) {
        self.cpu_share_cap = caps.share_cap;
        self.cpu_window_secs = caps.window.as_secs_f64();
        self.cpu_share_caps = caps.per_instance.clone();
    }
}

/// Why a live operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The engine thread is gone (shut down).
    #[error("the live engine is not running")]
    Stopped,
    /// A symbol the engine does not trade.
    #[error(
        "symbol {0:?} is not traded by the live engine (symbols come from the assets in the database when it starts)"
    )]
    UnknownSymbol(String),
    /// The strategy is not running live.
    #[error("strategy {0} is not running live: enable it first")]
    NotRunning(i64),
    /// The strategy already runs live.
    #[error("strategy {0} is already running live")]
    AlreadyRunning(i64),
    /// The strategy (code, configuration or state) refused to start or swap.
    #[error("{0}")]
    Refused(String),
    /// A bar that is not a bar.
    #[error("{0}")]
    BadBar(String),
    /// The recorder could not store what the engine did (the reason is the store's).
    #[error("storing failed: {0}")]
    NotStored(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What clients see of the live engine, published after it is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A bar entered the engine; `seq` counts the bars of `symbol` from 1.
    Bar { symbol: String, seq: u64, bar: Bar },
    /// An order a strategy placed (`accepted`) or the risk engine refused (`rejected`), or
    /// one that was cancelled.
    Order {
        strategy_id: i64,
        order_id: i64,
        symbol: String,
        side: Side,
        quantity: f64,
        order_type: store::orders::OrderType,
        status: OrderStatus,
        reason: Option<String>,
        ts: i64,
    },
    /// An execution, with the trade (position) it belongs to.
    Fill {
        strategy_id: i64,
        order_id: i64,
        fill_id: i64,
        position_id: Option<i64>,
        symbol: String,
        side: Side,
        quantity: f64,
        price: f64,
        fee: f64,
        ts: i64,
    },
    /// A position after a fill.
    Position {
        strategy_id: i64,
        symbol: String,
        quantity: f64,
        avg_price: f64,
        ts: i64,
    },
    /// An instance's equity after the bars of a batch.
    Equity {
        strategy_id: i64,
        ts: i64,
        equity: f64,
        cash: f64,
    },
    RiskAlert {
        strategy_id: i64,
        kind: String,
        message: String,
        ts: i64,
    },
    /// An instance started, stopped, was halted, trapped, swapped or cloned.
    Status {
        strategy_id: i64,
        status: String,
        reason: String,
        version: Option<i64>,
        pause_us: Option<f64>,
    },
    /// A line the strategy logged.
    Log {
        strategy_id: i64,
        ts: i64,
        level: LogLevel,
        message: String,
    },
    /// A manual order (placed through the API) filled in the live engine, in part or in
    /// whole: the order as it stands after the fill, and the fill.
    OrderFilled {
        order: store::orders::Order,
        fill: store::orders::FillRecord,
    },
    /// A manual order the live engine ended unfilled: expired, its one-cancels-other
    /// sibling filled, not enough buying power when it came to fill, or the kill switch.
    OrderCancelled { order: store::orders::Order },
    /// An order the exchange placed for a manual one: the exits of a filled bracket.
    OrderAccepted { order: store::orders::Order },
    /// A manual account's position in a symbol after one of its fills, as the fills of that
    /// bar left it (0 once closed).
    ManualPosition {
        /// Which manual account (`user:<id>`, or `manual` of earlier versions).
        account: store::orders::AccountId,
        symbol: String,
        /// Signed units.
        quantity: f64,
        avg_price: f64,
        ts: i64,
    },
    /// A risk alert about a manual account (a margin call), as stored.
    ManualAlert { alert: store::risk::RiskAlert },
    /// The account's own loss limits fired: trading is halted as by the kill switch.
    KillSwitch {
        halt: store::risk::Halt,
        alert: store::risk::RiskAlert,
    },
}

impl LiveEvent {
    /// The strategy the event is about, if any.
    pub fn strategy_id(&self) -> Option<i64> {
        match self {
            LiveEvent::Bar { .. }
            | LiveEvent::OrderFilled { .. }
            | LiveEvent::OrderCancelled { .. }
            | LiveEvent::OrderAccepted { .. }
            | LiveEvent::ManualPosition { .. }
            | LiveEvent::ManualAlert { .. }
            | LiveEvent::KillSwitch { .. } => None,
            LiveEvent::Order { strategy_id, .. }
            | LiveEvent::Fill { strategy_id, .. }
            | LiveEvent::Position { strategy_id, .. }
            | LiveEvent::Equity { strategy_id, .. }
            | LiveEvent::RiskAlert { strategy_id, .. }
            | LiveEvent::Status { strategy_id, .. }
            | LiveEvent::Log { strategy_id, .. } => Some(*strategy_id),
        }
    }
}

/// A running instance as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveInstance {
    pub strategy_id: i64,
    pub instance_id: i64,
    /// Version number it runs.
    pub version: i64,
    pub symbols: Vec<String>,
    /// `running`, `halted` or `disabled` (trapped, or over its CPU share cap).
    pub state: String,
    /// Why it is halted or disabled (the trap, the kill switch, the CPU share); null while it
    /// runs.
    pub reason: Option<String>,
    pub equity: f64,
    pub cash: f64,
    /// Bars delivered to it since it started in this process.
    pub bars: u64,
    /// Sandbox accounting: calls, fuel, traps.
    pub calls: u64,
    pub fuel: u64,
    pub traps: u64,
    pub orders: u64,
    /// Its share of the engine thread's time over the CPU window, percent.
    pub cpu_share_pct: f64,
    /// The share past which it is disabled, percent.
    pub cpu_share_cap_pct: f64,
}

/// The outcome of a hot swap.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SwapOutcome {
    pub strategy_id: i64,
    pub from_version: i64,
    pub to_version: i64,
    /// How long the engine stood still: snapshot → restore → replace, microseconds.
    pub pause_us: f64,
    /// Time to load and instantiate the new version, off the engine thread, milliseconds.
    pub prepare_ms: f64,
}

/// How a clone starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloneStart {
    /// A new instance with no state.
    Fresh,
    /// The source's state at the moment of the clone.
    FromSnapshot,
}

/// Where the replay feed reads its bars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplaySource {
    /// The price history in the database (`qtm data import`).
    #[default]
    Database,
    /// The CSV files of the server's data directory (`--data-dir`), one symbol per file, the
    /// symbol taken from the file name as in `qtm backtest --data`.
    Files,
}

/// The replay's default longest wait between two bars of a symbol: at the default 60× a
/// minute bar is a second apart, so a closed market costs one bar interval.
pub const DEFAULT_MAX_PAUSE_SECS: f64 = 1.0;

/// Settings of the replay feed module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplaySettings {
    pub source: ReplaySource,
    /// Symbols to replay (every asset, or every file, when empty).
    pub symbols: Vec<String>,
    /// Recorded time per wall time.
    pub speed: f64,
    #[serde(rename = "loop")]
    pub looped: bool,
    /// Longest wait for a symbol's next bar, in wall seconds: longer recorded gaps (nights,
    /// weekends, sparse extended hours) are shortened to it so the market keeps moving.
    /// `null`: the recorded gaps, divided by `speed`.
    pub max_pause_secs: Option<f64>,
    /// The folder `source: files` reads (the server's data directory; not a module setting,
    /// so a client cannot point the server at arbitrary paths).
    #[serde(skip)]
    pub data_dir: std::path::PathBuf,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        Self {
            source: ReplaySource::Database,
            symbols: Vec::new(),
            speed: 60.0,
            looped: true,
            max_pause_secs: Some(DEFAULT_MAX_PAUSE_SECS),
            data_dir: std::path::PathBuf::from("data"),
        }
    }
}

/// The live engine: a cheap handle on the engine thread, the recorder and the feeds.
#[derive(Clone)]
pub struct LiveEngine(Arc<Shared>);

struct Shared {
    commands: std::sync::mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<LiveEvent>>,
    symbols: Arc<[String]>,
    store: Store,
    sandbox: Arc<Sandbox>,
    codes: instances::CodeCache,
    config: LiveConfig,
    feeds: Mutex<HashMap<String, watch::Sender<bool>>>,
    control: Arc<worker::Control>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    recorder: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The paper account strategy `strategy_id` trades in live (`strategy:<id>`).
pub fn strategy_account(strategy_id: i64) -> qtm_store::orders::AccountId {
    instances::account(strategy_id)
}

/// Events buffered per subscriber of [`LiveEngine::subscribe`]. A bar reaching 10,000
/// instances publishes an equity event for each of them at once, plus their fills: the buffer
/// holds such a burst whole, so a subscriber that keeps up on average loses nothing.
pub const EVENT_CAPACITY: usize = 32_768;

impl LiveEngine {
    /// Start the engine over the symbols in the store, resume the instances that were enabled
    /// (from their last snapshot, with their stored positions, then replayed the journalled
    /// bars they had handled since; resting orders of the previous run are cancelled, since
    /// the paper exchange that held them is gone), start the manual account with its stored
    /// cash and positions and put its working orders on the exchange again, and continue every symbol's sequence
    /// numbers after its stored cursor.
    pub async fn start(
        store: Store,
        sandbox: Arc<Sandbox>,
        config: LiveConfig,
    ) -> Result<LiveEngine, LiveError> {
        let symbols: Arc<[String]> = store::live::symbols(&store).await?.into();
        let cursors = store::live::cursors(&store).await?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let manual = manual_setup(&store, &config, &cursors).await?;
        let manual_index = manual::ManualIndex::default();
        let (records, records_rx) = std::sync::mpsc::channel();
        let (commands, commands_rx) = std::sync::mpsc::channel();
        let stored_seq: HashMap<String, u64> = cursors
            .iter()
            .map(|(s, c)| (s.clone(), c.seq.max(0) as u64))
            .collect();
        let (journal_newest, journal) = store::live::journal(&store).await?;
        let journal_before = journal_newest.map(|id| (id, stored_seq.clone()));
        let control = Arc::new(worker::Control::new(config.cpu_caps()));
        let account = account_risk(&store).await?;
        let worker = worker::spawn(
            config.clone(),
            symbols.to_vec(),
            stored_seq,
            worker::Channels {
                commands: commands_rx,
                out: records,
                market: events.clone(),
            },
            control.clone(),
            worker::AccountSetup {
                limits: account.0,
                saved: account.1,
                manual,
                manual_index: manual_index.clone(),
            },
        )
        .map_err(|e| LiveError::Refused(format!("starting the live engine thread: {e}")))?;
        let recorder = {
            let (store, events) = (store.clone(), events.clone());
            let rt = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("qtm-live-recorder".into())
                .spawn(move || {
                    record::run(store, records_rx, events, rt, journal_before, manual_index)
                })
                .map_err(|e| LiveError::Refused(format!("starting the live recorder: {e}")))?
        };
        let live = LiveEngine(Arc::new(Shared {
            commands,
            events,
            symbols,
            store,
            sandbox,
            codes: Default::default(),
            config,
            feeds: Mutex::new(HashMap::new()),
            control,
            worker: Mutex::new(Some(worker)),
            recorder: Mutex::new(Some(recorder)),
        }));
        let enabled = store::live::enabled_strategies(&live.0.store).await?;
        for id in enabled {
            if let Err(e) = live.resume(id, &journal).await {
                tracing::warn!(strategy = id, error = %e, "could not resume a live strategy");
                let _ = store::strategies::set_status(
                    &live.0.store,
                    id,
                    "failed",
                    Some(&format!("could not resume after a restart: {e}")),
                )
                .await;
            }
        }
        Ok(live)
    }

    /// The store it records to.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The symbols with stored history when it started (what the replay can play).
    pub fn symbols(&self) -> &[String] {
        &self.0.symbols
    }

    /// Its settings.
    pub fn config(&self) -> &LiveConfig {
        &self.0.config
    }

    /// Every event from now on (after it is stored).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.0.events.subscribe()
    }

    fn send(&self, c: Command) -> Result<(), LiveError> {
        self.0.commands.send(c).map_err(|_| LiveError::Stopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, LiveError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| LiveError::Stopped)
    }

    /// Feed bars (the bridge and the feeds use this). Every symbol must be a valid symbol
    /// name (a new one joins the engine) and every bar well formed; otherwise nothing is sent.
    pub fn ingest(&self, bars: Vec<(String, Bar)>) -> Result<(), LiveError> {
        for (i, (s, b)) in bars.iter().enumerate() {
            if store::market::normalize_symbol(s).as_deref() != Ok(s.as_str()) {
                return Err(LiveError::UnknownSymbol(s.clone()));
            }
            if let Err(e) = check_bar(b) {
                return Err(LiveError::BadBar(format!("bar {i} ({s}): {e}")));
            }
        }
        if bars.is_empty() {
            return Ok(());
        }
        if self.0.control.stopping() {
            return Err(LiveError::Stopped);
        }
        self.send(Command::Bars(bars))
    }

    /// Start the strategy's default instance as stored (its version, parameters, symbols).
    pub async fn enable(&self, strategy_id: i64) -> Result<(), LiveError> {
        self.start_stored(strategy_id, worker::StartState::Fresh, &|_| Vec::new())
            .await
    }

    /// [`LiveEngine::enable`] after a restart: from the stored snapshot, with working orders
    /// of the previous run cancelled.
    async fn resume(
        &self,
        strategy_id: i64,
        journal: &HashMap<String, Vec<(u64, Bar)>>,
    ) -> Result<(), LiveError> {
        let account = instances::account(strategy_id);
        for o in store::orders::working(&self.0.store, Some(account)).await? {
            let _ = store::orders::cancel(
                &self.0.store,
                o.id,
                "live engine restarted: resting orders of the previous run are not carried over",
            )
            .await;
        }
        let (state, seen) = match store::live::snapshot(&self.0.store, strategy_id).await? {
            Some(s) => (
                worker::StartState::Restore(s),
                store::live::snapshot_seqs(&self.0.store, strategy_id).await?,
            ),
            None => (worker::StartState::Fresh, None),
        };
        let replay = |symbols: &[String]| match &seen {
            Some(seen) => replay_since(journal, symbols, seen),
            None => Vec::new(),
        };
        self.start_stored(strategy_id, state, &replay).await
    }

    /// Start a stored strategy with the account's stored positions and cash: the starting
    /// capital plus the cash flow of its fills.
    async fn start_stored(
        &self,
        strategy_id: i64,
        state: worker::StartState,
        replay: &ReplayFor<'_>,
    ) -> Result<(), LiveError> {
        let spec = instances::build(
            &self.0.store,
            &self.0.sandbox,
            &self.0.codes,
            strategy_id,
            None,
        )
        .await?;
        let account = instances::account(strategy_id);
        let positions = instances::carried_positions(&self.0.store, account).await?;
        let cash = self.0.config.initial_cash
            + store::orders::cash_flow(&self.0.store, Some(account))
                .await?
                .0;
        let replay = replay(&spec.symbols);
        if !replay.is_empty() {
            tracing::info!(
                strategy = strategy_id,
                bars = replay.len(),
                "replaying the bars handled since the last snapshot"
            );
        }
        self.ask(|reply| Command::Start {
            spec: Box::new(spec),
            cash,
            positions,
            state,
            replay,
            reply,
        })
        .await?
    }

    /// Start strategy `strategy_id` (a clone stored with its own parameters and symbols)
    /// next to the running `source`, fresh or from the source's state at this moment. It
    /// receives the next bar of its symbols.
    pub async fn clone_running(
        &self,
        source: i64,
        strategy_id: i64,
        start: CloneStart,
    ) -> Result<(), LiveError> {
        let state = match start {
            CloneStart::Fresh => worker::StartState::Fresh,
            CloneStart::FromSnapshot => worker::StartState::CloneOf(source),
        };
        // A clone has its own account with no fills yet: the starting capital, flat.
        self.start_stored(strategy_id, state, &|_| Vec::new()).await
    }

    /// Stop a running instance: its orders are cancelled and its state is snapshotted.
    pub async fn disable(&self, strategy_id: i64, reason: &str) -> Result<(), LiveError> {
        let reason = reason.to_string();
        self.ask(|reply| Command::Stop {
            strategy_id,
            reason,
            reply,
        })
        .await?
    }

    /// Hot swap: load and instantiate `version` (a version number of the strategy; its
    /// current version when `None`) off the engine thread, then swap it in between two bars
    /// with the running state. On failure the old code keeps running and the reason is
    /// returned and broadcast. Every attempt is recorded.
    pub async fn swap(
        &self,
        strategy_id: i64,
        version: Option<i64>,
        user_id: Option<i64>,
    ) -> Result<SwapOutcome, LiveError> {
        let started = std::time::Instant::now();
        let running = self
            .status()
            .await?
            .into_iter()
            .find(|i| i.strategy_id == strategy_id)
            .ok_or(LiveError::NotRunning(strategy_id))?;
        // By default the newest version: uploads do not move a running instance (only a swap
        // does), so the newest is the one waiting to be swapped in.
        let to = match version {
            Some(v) => v,
            None => store::strategies::versions(&self.0.store, strategy_id)
                .await?
                .iter()
                .map(|v| v.version)
                .max()
                .unwrap_or(running.version),
        };
        let record = |outcome: &'static str, reason: Option<String>, pause: Option<f64>| {
            let store = self.0.store.clone();
            let from = running.version;
            async move {
                let _ = store::live::record_swap(
                    &store,
                    &store::live::NewSwap {
                        strategy_id,
                        from_version: Some(from),
                        to_version: to,
                        outcome,
                        reason: reason.as_deref(),
                        pause_us: pause,
                        user_id,
                    },
                )
                .await;
            }
        };
        let spec = match instances::build(
            &self.0.store,
            &self.0.sandbox,
            &self.0.codes,
            strategy_id,
            Some(to),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                record("failed", Some(e.to_string()), None).await;
                self.announce_failed_swap(strategy_id, to, &e.to_string());
                return Err(e);
            }
        };
        let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
        let version_id = spec.version_id;
        let result = self
            .ask(|reply| Command::Swap {
                spec: Box::new(spec),
                reply,
            })
            .await?;
        match result {
            Ok((from, pause)) => {
                let pause_us = pause.as_secs_f64() * 1e6;
                store::live::set_version(&self.0.store, strategy_id, version_id).await?;
                record("ok", None, Some(pause_us)).await;
                Ok(SwapOutcome {
                    strategy_id,
                    from_version: from,
                    to_version: to,
                    pause_us,
                    prepare_ms,
                })
            }
            Err(reason) => {
                record("failed", Some(reason.clone()), None).await;
                self.announce_failed_swap(strategy_id, to, &reason);
                Err(LiveError::Refused(reason))
            }
        }
    }

    fn announce_failed_swap(&self, strategy_id: i64, to: i64, reason: &str) {
        let _ = self.0.events.send(Arc::new(LiveEvent::Status {
            strategy_id,
            status: "swap_failed".into(),
            reason: format!(
                "swap to version {to} failed, the running version keeps running: {reason}"
            ),
            version: Some(to),
            pause_us: None,
        }));
    }

    /// Halt one running strategy, or all of them (account-level kill switch): their orders
    /// are cancelled and they stop trading. Returns the strategies halted.
    pub async fn halt(
        &self,
        strategy_id: Option<i64>,
        reason: &str,
    ) -> Result<Vec<i64>, LiveError> {
        let reason = reason.to_string();
        self.ask(|reply| Command::Halt {
            strategy_id,
            reason,
            reply,
        })
        .await
    }

    /// Release the account's kill switch in the engine (new orders are judged again); returns
    /// the reason it had. The store's halt row is the caller's to remove.
    pub async fn resume_account(&self) -> Result<Option<String>, LiveError> {
        self.ask(|reply| Command::ResumeAccount { reply }).await
    }

    /// Put account-wide limits in force for the next order of every source; new instances
    /// take their per-account host bounds (`max_resting_orders`, `max_oco_orders`). A rate
    /// limit counts the orders of every source the store holds in its window from now on.
    pub async fn set_account_limits(&self, limits: RiskLimits) -> Result<(), LiveError> {
        let window = rate_window(&self.0.store, &limits).await?;
        self.ask(|reply| Command::SetAccountLimits {
            limits,
            window,
            reply,
        })
        .await
    }

    /// Place a manual order: on the engine thread it is judged (the manual account's own host
    /// bounds, then the account-wide limits, order-rate window and kill switch, with every
    /// strategy's orders) and, if it passes, put on the exchange in the same step; the
    /// recorder stores it and the answer is the stored row, `accepted` or `rejected` (with
    /// the reason). It fills from the next bar of its symbol on.
    pub async fn place_manual(
        &self,
        order: ManualOrder,
    ) -> Result<store::orders::Order, LiveError> {
        self.ask(|reply| Command::PlaceManual {
            order: Box::new(order),
            reply,
        })
        .await?
    }

    /// Cancel a manual order: taken off the exchange, then cancelled in the store (the
    /// store's answer: `NotFound`, or `Conflict` when it is not working any more). Cancels
    /// and fills go through the engine thread in order, so a cancel cannot race a fill.
    pub async fn cancel_manual(
        &self,
        id: i64,
        reason: &str,
    ) -> Result<store::orders::Order, LiveError> {
        let reason = reason.to_string();
        self.ask(|reply| Command::CancelManual { id, reason, reply })
            .await?
    }

    /// Change a working manual order's total quantity or prices. The changed order is judged
    /// again as a replacement (it does not count as an extra open order or towards the order
    /// rate): `Ok(Err(reason))` when refused, the order then unchanged.
    pub async fn modify_manual(
        &self,
        change: ManualChange,
    ) -> Result<Result<store::orders::Order, String>, LiveError> {
        self.ask(|reply| Command::ModifyManual {
            change: Box::new(change),
            reply,
        })
        .await?
    }

    /// The running instances, asked of the engine thread: exact, but it waits behind every
    /// bar and command queued before it. Readers that must not wait use
    /// [`LiveEngine::instances`].
    pub async fn status(&self) -> Result<Vec<LiveInstance>, LiveError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The instances as the engine thread last published them, without waiting for it: after
    /// every start, stop, swap and halt (before the caller hears back), at once when one
    /// traps or goes over its CPU cap, and otherwise at most 0.1 s old while someone reads it
    /// (1 s while nobody does), whatever is queued.
    pub fn instances(&self) -> Arc<Vec<LiveInstance>> {
        self.0.control.instances()
    }

    /// How long ago the engine thread last showed it is alive (it does every loop turn, at
    /// least every 250 ms when idle, and between chunks of bars); `None` once it has stopped.
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.0.control.heartbeat_age()
    }

    /// The last price of every symbol the engine has handled a bar of since it started, as
    /// the engine thread publishes it with each chunk of bars (never waiting for it).
    pub fn marks(&self) -> &Marks {
        self.0.control.marks()
    }

    /// The CPU share caps in force.
    pub fn cpu_caps(&self) -> CpuCaps {
        self.0.control.caps()
    }

    /// Change the CPU share caps; they apply from the next bars on.
    pub fn set_cpu_caps(&self, caps: CpuCaps) {
        self.0.control.set_caps(caps);
    }

    /// Wait until everything the engine did so far is stored and broadcast (and in the list
    /// [`LiveEngine::instances`] reads).
    pub async fn flush(&self) -> Result<(), LiveError> {
        let done = self.ask(|reply| Command::Flush { reply }).await?;
        done.await.map_err(|_| LiveError::Stopped)
    }

    /// Snapshot every running instance to the store now.
    pub async fn snapshot_all(&self) -> Result<(), LiveError> {
        self.ask(|reply| Command::SnapshotAll { reply }).await?;
        self.flush().await
    }

    /// Run `feed` until it ends or [`LiveEngine::stop_feed`] stops it (a feed of the same
    /// name is stopped first).
    pub fn run_feed(&self, feed: Box<dyn Feed>) {
        let name = feed.name();
        let (tx, rx) = watch::channel(false);
        if let Some(old) = self
            .0
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.clone(), tx)
        {
            let _ = old.send(true);
        }
        let out = FeedOut {
            engine: self.clone(),
        };
        tokio::spawn(async move {
            match feed.run(out, rx).await {
                Ok(()) => tracing::info!(feed = %name, "feed ended"),
                Err(e) => tracing::warn!(feed = %name, error = %e, "feed stopped"),
            }
        });
    }

    /// Stop the feed named `name` (a module id); whether one was running.
    pub fn stop_feed(&self, name: &str) -> bool {
        self.0
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
            .map(|tx| tx.send(true))
            .is_some()
    }

    /// Replay the store's price history (the default feed) or the data directory's files with
    /// `settings`, each symbol from where its cursor stopped.
    pub async fn start_replay(&self, settings: &ReplaySettings) -> Result<(), LiveError> {
        let cursors = store::live::cursors(&self.0.store).await?;
        let series = match settings.source {
            ReplaySource::Database => self.stored_series(&settings.symbols).await?,
            ReplaySource::Files => {
                let dir = settings.data_dir.clone();
                let wanted = settings.symbols.clone();
                tokio::task::spawn_blocking(move || file_series(&dir, &wanted))
                    .await
                    .map_err(|e| LiveError::Refused(format!("reading the replay files: {e}")))??
            }
        };
        let resume_after = cursors.into_iter().map(|(s, c)| (s, c.ts)).collect();
        self.run_feed(Box::new(ReplayFeed {
            series,
            speed: settings.speed,
            looped: settings.looped,
            max_pause: settings.max_pause_secs,
            resume_after,
        }));
        Ok(())
    }

    async fn stored_series(
        &self,
        symbols: &[String],
    ) -> Result<Vec<(String, Vec<Bar>)>, LiveError> {
        let wanted: Vec<String> = if symbols.is_empty() {
            self.0.symbols.to_vec()
        } else {
            symbols.to_vec()
        };
        let mut series = Vec::new();
        for s in wanted {
            if !self.0.symbols.contains(&s) {
                return Err(LiveError::UnknownSymbol(s));
            }
            let bars = store::live::history_after(&self.0.store, &s, None).await?;
            series.push((s, bars));
        }
        Ok(series)
    }

    /// First step of a shutdown, at once: the feeds stop, and the engine thread drops the
    /// bars still queued (after the chunk it is in) and refuses new instances and swaps, so
    /// requests waiting on it are answered promptly.
    pub fn begin_shutdown(&self) {
        let names: Vec<String> = self
            .0
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for n in names {
            self.stop_feed(&n);
        }
        self.0.control.begin_stopping();
    }

    /// Stop the feeds, drop the bars still queued, snapshot every instance, store everything
    /// the engine did and stop the engine and the recorder. It takes the chunk of bars the
    /// engine is in (each strategy's call is bounded by its deadline), the snapshots and
    /// the recorder's last commits, whatever was queued.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        if let Ok(stored) = self.ask(|reply| Command::Shutdown { reply }).await {
            let _ = stored.await;
        }
        for handle in [&self.0.worker, &self.0.recorder] {
            let h = handle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(h) = h {
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
        }
    }
}

/// Given an instance's symbols, the bars to replay to it before it trades.
type ReplayFor<'a> = dyn Fn(&[String]) -> Vec<(String, Bar)> + Sync + 'a;

/// The journalled bars of `symbols` after the sequence numbers a snapshot has `seen`, in time
/// order: what the instance handled between its snapshot and the stored cursors.
fn replay_since(
    journal: &HashMap<String, Vec<(u64, Bar)>>,
    symbols: &[String],
    seen: &HashMap<String, u64>,
) -> Vec<(String, Bar)> {
    let mut bars: Vec<(i64, usize, u64, &str, Bar)> = Vec::new();
    for (k, s) in symbols.iter().enumerate() {
        // A symbol added after the snapshot was not seen by it: nothing to catch up.
        let (Some(&after), Some(stored)) = (seen.get(s), journal.get(s)) else {
            continue;
        };
        for &(seq, b) in stored.iter().filter(|(q, _)| *q > after) {
            bars.push((b.ts, k, seq, s, b));
        }
    }
    bars.sort_by_key(|(ts, k, seq, _, _)| (*ts, *k, *seq));
    bars.into_iter()
        .map(|(_, _, _, s, b)| (s.to_string(), b))
        .collect()
}

/// Snapshot interval as a duration (at least 10 ms).
fn snapshot_every(config: &LiveConfig) -> Duration {
    Duration::from_secs_f64(config.snapshot_every_secs.max(0.01))
}

/// A bar's own consistency: finite, positive prices, low ≤ open/close ≤ high, volume ≥ 0.
pub fn check_bar(b: &Bar) -> Result<(), String> {
    let prices = [b.open, b.high, b.low, b.close];
    if prices.iter().any(|p| !p.is_finite() || *p <= 0.0) {
        return Err(format!(
            "prices must be finite and positive, got open {} high {} low {} close {}",
            b.open, b.high, b.low, b.close
        ));
    }
    if b.high < b.low {
        return Err(format!("high {} is below low {}", b.high, b.low));
    }
    if b.open > b.high || b.open < b.low || b.close > b.high || b.close < b.low {
        return Err(format!(
            "open {} and close {} must lie within low {} and high {}",
            b.open, b.close, b.low, b.high
        ));
    }
    if !b.volume.is_finite() || b.volume < 0.0 {
        return Err(format!(
            "volume must be finite and not negative, got {}",
            b.volume
        ));
    }
    Ok(())
}

/// The bars of every CSV file in `dir` (or of the files for `symbols`), by symbol. A bad file
/// is an error naming the file and line: a replay that silently skipped it would look like a
/// quiet market.
fn file_series(
    dir: &std::path::Path,
    symbols: &[String],
) -> Result<Vec<(String, Vec<Bar>)>, LiveError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LiveError::Refused(format!("replay files: reading {}: {e}", dir.display())))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
        .collect();
    files.sort();
    let mut series: Vec<(String, Vec<Bar>)> = Vec::new();
    for path in files {
        let symbol = qtm_market::symbol_from_path(&path);
        if !symbols.is_empty() && !symbols.contains(&symbol) {
            continue;
        }
        if series.iter().any(|(s, _)| *s == symbol) {
            return Err(LiveError::Refused(format!(
                "replay files: two files in {} are for {symbol}; keep one",
                dir.display()
            )));
        }
        let bars = qtm_market::load_bars(&path)
            .map_err(|e| LiveError::Refused(format!("replay files: {e}")))?;
        series.push((symbol, bars));
    }
    if let Some(missing) = symbols
        .iter()
        .find(|s| !series.iter().any(|(x, _)| x == *s))
    {
        return Err(LiveError::Refused(format!(
            "replay files: no file for {missing} in {}",
            dir.display()
        )));
    }
    if series.is_empty() {
        return Err(LiveError::Refused(format!(
            "replay files: no .csv file in {}",
            dir.display()
        )));
    }
    Ok(series)
}

/// The manual accounts as the store has them: for each account with orders, cash (the
/// starting capital plus the cash flow of its fills), open positions (marked at their
/// symbol's stored cursor, else their price) and working orders. An order that cannot be
/// worked any more is cancelled with the reason.
async fn manual_setup(
    store: &Store,
    config: &LiveConfig,
    cursors: &HashMap<String, store::live::Cursor>,
) -> Result<manual::ManualSetup, LiveError> {
    let mut accounts = Vec::new();
    for account in store::orders::manual_accounts(store).await? {
        let cash = config.initial_cash + store::orders::cash_flow(store, Some(account)).await?.0;
        let positions = store::orders::open_positions(store, Some(account))
            .await?
            .into_iter()
            .map(|p| {
                let mark = cursors.get(&p.symbol).map_or(p.avg_price, |c| c.close);
                (p.symbol, p.quantity, p.avg_price, mark)
            })
            .collect();
        let groups = store::orders::working_oco_groups(store, account).await?;
        let mut orders = Vec::new();
        for order in store::orders::working(store, Some(account)).await? {
            let request = manual::request_of(&order)
                .and_then(|r| qtm_oms::exchange::Exchange::validate(&r).map(|()| r));
            match request {
                Ok(mut request) => {
                    request.oco_group = groups.get(&order.id).cloned();
                    orders.push((order, request));
                }
                Err(e) => {
                    let reason =
                        format!("the live engine cannot work this order after a restart: {e}");
                    tracing::warn!(order = order.id, %reason, "manual order dropped");
                    store::orders::cancel(store, order.id, &reason).await?;
                }
            }
        }
        accounts.push(manual::ManualAccountSetup {
            account,
            cash,
            positions,
            orders,
        });
    }
    let clock = cursors.values().map(|c| c.ts).max().unwrap_or(0);
    Ok(manual::ManualSetup { accounts, clock })
}

/// The account-wide limits and risk state of the previous run: its saved state (the day's
/// opening and peak equity), with the halt and the order-rate window taken from the store's
/// own rows, which a crash cannot leave behind.
async fn account_risk(store: &Store) -> Result<(RiskLimits, SavedGuard), LiveError> {
    let limits = store::risk::account_limits(store)
        .await?
        .unwrap_or_default();
    let mut saved: SavedGuard =
        match store::settings::get(store, store::settings::ACCOUNT_RISK).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored account risk state unreadable: starting afresh");
                SavedGuard::default()
            }),
            None => SavedGuard::default(),
        };
    saved.halted = store::risk::halted(store, store::risk::ACCOUNT)
        .await?
        .map(|h| h.reason);
    saved.accepted = rate_window(store, &limits).await?;
    Ok((limits, saved))
}

/// Times of the stored orders (every source, not refused) inside `limits`' order-rate window
/// now; none without a rate limit.
async fn rate_window(store: &Store, limits: &RiskLimits) -> Result<Vec<i64>, LiveError> {
    Ok(match limits.max_orders_per_window {
        Some(_) => {
            let window = limits.order_window_secs.unwrap_or(60);
            store::orders::accepted_since_any(store, store::now() - window + 1).await?
        }
        None => Vec::new(),
    })
}
