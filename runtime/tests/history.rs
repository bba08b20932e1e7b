//! `recent-bars` through the real engine: every account sees each bar once, and never a bar
//! after its own, however many accounts share the symbol and however the bars are batched.

use std::sync::{Arc, Mutex};

use qtm_runtime::engine::{Engine, EngineConfig, StrategyRunner};
use qtm_runtime::events::EventLog;
use qtm_runtime::model::{Bar, Fill, OrderRequest, Quantity, Side};
use qtm_runtime::risk::RiskLimits;
use qtm_runtime::sandbox::StrategyHost;

/// Records the closes `recent-bars` returns for X on every bar and fill; buys X once, on its
/// first bar of X.
struct Looker {
    count: u32,
    bought: bool,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Looker {
    fn look(&self, host: &mut dyn StrategyHost, when: String) {
        let closes: Vec<f64> = host
            .recent_bars("X", self.count)
            .unwrap_or_default()
            .iter()
            .map(|b| b.close)
            .collect();
        self.seen
            .lock()
            .unwrap()
            .push(format!("{when}: {closes:?}"));
    }
}

impl StrategyRunner for Looker {
    fn on_bar(&mut self, host: &mut dyn StrategyHost, _: u32, bar: &Bar) -> Result<(), String> {
        self.look(host, format!("bar {}", bar.close));
        // X's bars are the ones below 1,000.
        if !self.bought && bar.close < 1_000.0 {
            self.bought = true;
            let _ = host.submit_order(OrderRequest::market("X", Side::Buy, Quantity::Units(1.0)));
        }
        Ok(())
    }
    fn on_fill(&mut self, host: &mut dyn StrategyHost, _: u32, f: &Fill) -> Result<(), String> {
        self.look(host, format!("fill @ {}", f.price));
        Ok(())
    }
}

fn bar(i: i64) -> Bar {
    let p = 100.0 + i as f64;
    Bar {
        ts: 1_700_000_000 + i * 60,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: 1.0,
    }
}

/// Three accounts on X and Y; five bars of each, fed in `batches`. Returns what each saw.
fn run(batches: &[&[i64]], history: usize) -> Vec<Vec<String>> {
    let mut log = EventLog::default();
    let config = EngineConfig {
        history,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, vec!["X".into(), "Y".into()], &mut log);
    let seen: Vec<Arc<Mutex<Vec<String>>>> = (0..3).map(|_| Default::default()).collect();
    for (i, s) in seen.iter().enumerate() {
        let looker = Looker {
            count: 3,
            bought: false,
            seen: s.clone(),
        };
        engine
            .add_strategy(
                &format!("looker-{i}"),
                Box::new(looker),
                &["X".into(), "Y".into()],
                10_000.0,
                RiskLimits::default(),
            )
            .unwrap();
    }
    for batch in batches {
        // Y's bar first: its close (1,000 + i) must never show up as X's.
        let bars: Vec<(usize, Bar)> = batch
            .iter()
            .flat_map(|&i| {
                let mut y = bar(i);
                y.close += 900.0;
                [(1, y), (0, bar(i))]
            })
            .collect();
        engine.process(&bars);
    }
    seen.iter().map(|s| s.lock().unwrap().clone()).collect()
}

fn x_views() -> Vec<String> {
    vec![
        "bar 1000: []".into(),
        "bar 100: [100.0]".into(),
        "bar 1001: [100.0]".into(),
        "fill @ 101: [100.0, 101.0]".into(),
        "bar 101: [100.0, 101.0]".into(),
        "bar 1002: [100.0, 101.0]".into(),
        "bar 102: [100.0, 101.0, 102.0]".into(),
        "bar 1003: [100.0, 101.0, 102.0]".into(),
        "bar 103: [101.0, 102.0, 103.0]".into(),
        "bar 1004: [101.0, 102.0, 103.0]".into(),
        "bar 104: [102.0, 103.0, 104.0]".into(),
    ]
}

#[test]
fn every_account_sees_each_bar_once_and_none_after_its_own() {
    // Y's bar comes first at each time, so it sees X up to the previous time. The buy on X's
    // first bar fills on its next, before the strategy sees that bar: the fill sees it.
    let one_by_one = run(&[&[0], &[1], &[2], &[3], &[4]], 256);
    let all_at_once = run(&[&[0, 1, 2, 3, 4]], 256);
    for views in [&one_by_one, &all_at_once] {
        for (account, seen) in views.iter().enumerate() {
            assert_eq!(seen, &x_views(), "account {account}");
        }
    }
}

#[test]
fn recent_bars_is_capped_by_the_configured_history_whatever_the_batch() {
    let all_at_once = run(&[&[0, 1, 2, 3, 4]], 2);
    let last = all_at_once[2].last().unwrap();
    assert_eq!(last, "bar 104: [103.0, 104.0]");
    let one_by_one = run(&[&[0], &[1], &[2], &[3], &[4]], 2);
    assert_eq!(one_by_one[2].last().unwrap(), "bar 104: [103.0, 104.0]");
}
