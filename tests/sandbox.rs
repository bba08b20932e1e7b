//! The sandbox with real guests: loading, the upload gate, parameters, calls, batching,
//! limits, snapshots and the compiled-component cache.

use std::sync::Arc;
use std::time::Instant;

use qtm_runtime::model::{Param, ParamKind, ParamValue, Quantity};
use qtm_runtime::sandbox::gate::GateReason;
use qtm_runtime::sandbox::{
    ContractVersion, Limits, Sandbox, SandboxConfig, SandboxError, StrategyCode, TrapReason,
};
use qtm_tests::{RecordingHost, bundled, bundled_slice, component, guests, read_bars};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

fn load(sb: &Sandbox, guest: &str) -> Arc<StrategyCode> {
    sb.load(&component(guest)).unwrap()
}

fn p(name: &str, v: ParamValue) -> Param {
    Param {
        name: name.into(),
        value: v,
    }
}

fn sma_params(mode: &str) -> Vec<Param> {
    vec![
        p("fast", ParamValue::Int(10)),
        p("slow", ParamValue::Int(30)),
        p("mode", ParamValue::Choice(mode.into())),
        p("quantity", ParamValue::Float(5.0)),
    ]
}

#[test]
fn sma_cross_describes_itself_and_passes_the_gate() {
    let sb = sandbox();
    let code = load(&sb, guests::SMA_CROSS);
    let info = code.info();
    assert_eq!(info.name, "sma-cross");
    let names: Vec<&str> = info.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["fast", "slow", "mode", "sizing", "quantity"]);
    assert_eq!(
        info.params[0].kind,
        ParamKind::Int {
            min: 1,
            max: 500,
            step: 1
        }
    );
    assert_eq!(
        info.params[2].default,
        ParamValue::Choice("long_only".into())
    );
    let gate = code.gate();
    assert_eq!(gate.contract, "qtm:strategy@0.2.0");
    assert_eq!(
        (gate.version.as_str(), gate.supported_version),
        ("0.2.0", "0.2.0")
    );
    assert_eq!(
        gate.imports,
        ["qtm:strategy/types@0.2.0", "qtm:strategy/host@0.2.0"]
    );
    assert_eq!(gate.exports, ["qtm:strategy/guest@0.2.0"]);
    assert_eq!(code.contract_version(), ContractVersion::V0_2);
    assert!(gate.functions > 10);
    assert_eq!(code.sha256().len(), 64);
    // sma-cross sets `HANDLES_FILLS = false`; the hint survives componentization.
    assert!(!gate.hints.on_fill);
    assert!(load(&sb, guests::RSI_REVERSION).gate().hints.on_fill);
}

#[test]
fn every_example_strategy_loads_and_configures_with_defaults() {
    let sb = sandbox();
    for (guest, name) in [
        (guests::SMA_CROSS, "sma-cross"),
        (guests::RSI_REVERSION, "rsi-reversion"),
        (guests::DONCHIAN_BREAKOUT, "donchian-breakout"),
    ] {
        let code = load(&sb, guest);
        assert_eq!(code.info().name, name);
        let inst = code.instantiate(&[], &["SPY".into()]).unwrap();
        assert!(inst.is_active());
        assert_eq!(inst.params().len(), code.info().params.len());
    }
}

/// The gate's reasons for refusing `bytes`.
fn refusal(sb: &Sandbox, bytes: &[u8]) -> (Vec<GateReason>, String) {
    match sb.load(bytes).unwrap_err() {
        SandboxError::Gate(e) => (e.reasons().to_vec(), SandboxError::Gate(e).to_string()),
        other => panic!("not a gate refusal: {other}"),
    }
}

#[test]
fn incompatible_contract_version_is_refused_naming_both_versions() {
    // The component exports 0.3.0's `strategy` instead of `guest`: what 0.3.0 exports is not
    // this host's to judge, so the version is the one reason.
    let (reasons, msg) = refusal(&sandbox(), &component(guests::WRONG_CONTRACT));
    assert_eq!(
        reasons,
        [GateReason::UnsupportedVersion {
            version: "0.3.0".into()
        }]
    );
    assert_eq!(
        msg,
        "component refused: component was built for contract qtm:strategy@0.3.0, \
         but this host implements qtm:strategy@0.1.0 and qtm:strategy@0.2.0\n   \
         fix: rebuild it against qtm:strategy@0.1.0 and qtm:strategy@0.2.0 (this host's \
         wit/since_v*/strategy.wit, or the qtm-guest-sdk of the same release)"
    );
}

#[test]
fn forbidden_import_is_refused_naming_the_import() {
    let (reasons, msg) = refusal(&sandbox(), &component(guests::FORBIDDEN_IMPORT));
    assert_eq!(
        reasons,
        [GateReason::ForeignImport {
            import: "qtm:strategy/socket@0.1.0".into()
        }]
    );
    assert!(msg.contains("`qtm:strategy/socket@0.1.0`"), "{msg}");
    assert!(msg.contains("outside the qtm contract"), "{msg}");
}

/// A WASI program where a strategy should be: every problem in one refusal, numbered, each
/// with what to do.
#[test]
fn wasi_imports_and_wrong_exports_are_all_listed_in_one_refusal() {
    let (reasons, msg) = refusal(&sandbox(), &component(guests::WASI_COMMAND));
    assert_eq!(
        reasons,
        [
            GateReason::MissingExport {
                interface: "guest",
                exports: vec!["wasi:cli/run@0.2.0".into()]
            },
            GateReason::WasiImports {
                imports: vec![
                    "wasi:cli/environment@0.2.0".into(),
                    "wasi:random/random@0.2.0".into()
                ]
            },
        ]
    );
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 5, "{msg}");
    assert_eq!(lines[0], "component refused: 2 problems:");
    assert_eq!(
        lines[1],
        "1. component does not export `qtm:strategy/guest`; exports: [wasi:cli/run@0.2.0]"
    );
    assert!(lines[2].contains("`wasi:cli/run`"), "{msg}");
    assert!(
        lines[3].starts_with(
            "2. component imports WASI (`wasi:cli/environment@0.2.0`, \
             `wasi:random/random@0.2.0`), which is outside the qtm contract"
        ),
        "{msg}"
    );
    for fix in [2, 4] {
        assert!(lines[fix].starts_with("   fix: "), "{msg}");
    }
    assert!(
        lines[4]
            .contains("build for wasm32-unknown-unknown, or for componentize-py use --stub-wasi"),
        "{msg}"
    );
}

#[test]
fn too_many_core_instances_are_refused_naming_the_limit_and_how_to_raise_it() {
    // componentize-py 0.25 with --stub-wasi makes 38 core instances.
    assert!(Limits::default().instances >= 64);
    let bytes = component(guests::SMA_CROSS);
    let made = load(&sandbox(), guests::SMA_CROSS).gate().core_instances;
    assert!(made >= 2, "{made}");
    let sb = Sandbox::new(SandboxConfig {
        limits: Limits {
            instances: made as usize - 1,
            ..Limits::default()
        },
        ..Default::default()
    })
    .unwrap();
    let (reasons, msg) = refusal(&sb, &bytes);
    assert_eq!(
        reasons,
        [GateReason::TooManyInstances {
            count: made,
            limit: made as usize - 1
        }]
    );
    assert!(msg.contains("`Limits::instances`"), "{msg}");
    assert!(msg.contains("QTM_MAX_CORE_INSTANCES"), "{msg}");
    // At the limit it loads and runs.
    let sb = Sandbox::new(SandboxConfig {
        limits: Limits {
            instances: made as usize,
            ..Limits::default()
        },
        ..Default::default()
    })
    .unwrap();
    assert!(
        sb.load(&bytes)
            .unwrap()
            .instantiate(&[], &["SPY".into()])
            .is_ok()
    );
}

#[test]
fn core_modules_and_garbage_are_refused_with_a_hint() {
    let sb = sandbox();
    let core = std::fs::read(guests::SMA_CROSS).unwrap();
    let e = sb.load(&core).unwrap_err().to_string();
    assert!(
        e.contains("core WebAssembly module, not a component"),
        "{e}"
    );
    assert!(e.contains("qtm strategy componentize"), "{e}");
    let e = sb.load(b"not wasm at all").unwrap_err().to_string();
    assert!(e.contains("missing the \\0asm header"), "{e}");
    let mut truncated = component(guests::SMA_CROSS);
    truncated.truncate(truncated.len() / 2);
    let e = sb.load(&truncated).unwrap_err().to_string();
    assert!(
        e.starts_with("component refused: malformed component"),
        "{e}"
    );
}

#[test]
fn oversized_components_are_refused_before_compiling() {
    let config = SandboxConfig {
        max_component_bytes: 10_000,
        ..Default::default()
    };
    let e = Sandbox::new(config)
        .unwrap()
        .load(&component(guests::SMA_CROSS))
        .unwrap_err();
    assert!(
        e.to_string().contains("larger than the 10000 byte limit"),
        "{e}"
    );
}

#[test]
fn the_host_validates_parameters_against_describe() {
    let sb = sandbox();
    let code = load(&sb, guests::SMA_CROSS);
    let e = code
        .instantiate(&[p("fast", ParamValue::Int(0))], &[])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the strategy refused its configuration: parameter `fast` = 0 is outside 1..=500"
    );
    let e = code
        .instantiate(&[p("speed", ParamValue::Int(3))], &[])
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown parameter `speed` for sma-cross"),
        "{e}"
    );
    // Valid per spec, refused by the strategy's own rule: its message comes through.
    let e = code
        .instantiate(
            &[
                p("fast", ParamValue::Int(40)),
                p("slow", ParamValue::Int(30)),
            ],
            &[],
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the strategy refused its configuration: fast (40) must be shorter than slow (30)"
    );
}

/// Run sma-cross over real bars one call per bar, and again batched; both must place the
/// same orders on the same bars, and the same number the native crossover logic finds.
#[test]
fn batched_bars_give_exactly_the_per_bar_orders_on_real_data() {
    let bars = read_bars(&bundled("spy_1m_2011.csv"));
    let sb = sandbox();
    let code = load(&sb, guests::SMA_CROSS);
    let symbols = vec!["SPY".to_string()];

    let mut per_bar_host = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    let mut per_bar = code.instantiate(&sma_params("flip"), &symbols).unwrap();
    let mut order_bars = Vec::new();
    for (i, bar) in bars.iter().enumerate() {
        let before = per_bar_host.orders.len();
        per_bar.on_bar(&mut per_bar_host, 0, bar).unwrap();
        if per_bar_host.orders.len() > before {
            order_bars.push(i as u32);
        }
    }

    let mut host = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    let mut batched = code.instantiate(&sma_params("flip"), &symbols).unwrap();
    host.bars = bars.iter().map(|b| (0, *b)).collect();
    let mut acted_at = Vec::new();
    let mut done = 0u64;
    loop {
        let before = host.orders.len();
        let n = batched.on_bars(&mut host).unwrap();
        if n == 0 {
            break;
        }
        done += n;
        if host.orders.len() > before {
            // The pull ended right after the bar that placed the order.
            acted_at.push((done - 1) as u32);
            assert_eq!(host.order_at.last(), Some(&(done as u32)));
        } else {
            assert!(
                host.bars.is_empty(),
                "a pull without orders takes every bar"
            );
        }
    }
    assert_eq!(done, bars.len() as u64);
    assert_eq!(host.orders, per_bar_host.orders);
    assert_eq!(acted_at, order_bars);
    assert_eq!(batched.stats().bars, bars.len() as u64);

    let mut native = qtm_tests::sma_crossover::Crossover::new(10, 30);
    let mut last = None;
    let crosses = bars
        .iter()
        .filter_map(|b| native.update(b.close))
        .filter(|c| last.replace(*c) != Some(*c))
        .count();
    // In flip mode every cross that changes the side is one order; a repeated cross in the
    // same direction (possible after fast == slow) agrees with the side and is ignored.
    assert_eq!(host.orders.len(), crosses);
    assert!(
        crosses > 500,
        "spy_1m_2011 should cross often, got {crosses}"
    );
    // The first signal may open a short; reversals trade twice the quantity.
    assert!(
        host.orders
            .iter()
            .skip(1)
            .all(|o| o.quantity == Quantity::Units(10.0))
    );
    let first = &host.orders[0];
    assert_eq!(first.quantity, Quantity::Units(5.0));
    assert!(host.orders.windows(2).all(|w| w[0].side != w[1].side));
}

#[test]
fn fuel_is_rearmed_before_every_call() {
    let limits = Limits {
        fuel_per_call: 2_000_000,
        ..Default::default()
    };
    let sb = Sandbox::new(SandboxConfig {
        limits,
        ..Default::default()
    })
    .unwrap();
    let code = load(&sb, guests::HOSTILE);
    let burn = |iterations: i64| {
        code.instantiate(
            &[
                p("attack", ParamValue::Choice("burn".into())),
                p("iterations", ParamValue::Int(iterations)),
            ],
            &[],
        )
        .unwrap()
    };
    let bar = qtm_tests::numbered_bars(1)[0];
    let mut host = RecordingHost::default();
    // Calibrate: fuel per loop iteration, from two measured calls.
    let mut a = burn(10_000);
    a.on_bar(&mut host, 0, &bar).unwrap();
    let mut b = burn(20_000);
    b.on_bar(&mut host, 0, &bar).unwrap();
    let per_iter = (b.stats().last_call_fuel - a.stats().last_call_fuel) as f64 / 10_000.0;
    let base = a.stats().last_call_fuel as f64 - 10_000.0 * per_iter;
    let iterations = ((0.6 * 2_000_000.0 - base) / per_iter) as i64;

    let mut inst = burn(iterations);
    for _ in 0..1_000 {
        inst.on_bar(&mut host, 0, &bar).unwrap();
        let used = inst.stats().last_call_fuel;
        assert!(
            (1_100_000..=1_300_000).contains(&used),
            "used {used} of 2,000,000"
        );
    }
    assert_eq!(inst.stats().calls, 1_001); // configure + 1,000 bars
    assert!(inst.stats().fuel > 1_000 * 1_100_000);

    // Pulled bars get the same budget each: 500 bars at 60 % of it in one call pass (a budget
    // pooled over the call would run out on its second bar).
    let mut pulled = burn(iterations);
    host.bars = std::iter::repeat_n((0, bar), 500).collect();
    assert_eq!(pulled.on_bars(&mut host).unwrap(), 500);
    assert!(pulled.stats().last_call_fuel > 500 * 1_100_000);
    assert_eq!(pulled.stats().bars, 500);

    // The same work at 120 % of the budget is stopped on its first bar, pulled or not.
    let mut over = burn(iterations * 2);
    host.bars = std::iter::repeat_n((0, bar), 5).collect();
    let e = over.on_bars(&mut host).unwrap_err();
    assert!(
        matches!(e, SandboxError::Trapped(TrapReason::OutOfFuel(2_000_000))),
        "{e}"
    );
    assert_eq!(host.pulled, 501, "the trap came on the first pulled bar");
    let mut over = burn(iterations * 2);
    let e = over.on_bar(&mut host, 0, &bar).unwrap_err();
    assert!(
        matches!(e, SandboxError::Trapped(TrapReason::OutOfFuel(2_000_000))),
        "{e}"
    );
}

#[test]
fn snapshot_restore_round_trips_and_continues_identically() {
    let bars = read_bars(&bundled_slice(2148));
    let sb = sandbox();
    let code = load(&sb, guests::SMA_CROSS);
    let symbols = vec!["SPY".to_string()];
    let mut original = code.instantiate(&sma_params("flip"), &symbols).unwrap();
    let mut host = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    for bar in &bars[..1000] {
        original.on_bar(&mut host, 0, bar).unwrap();
    }
    let state = original.snapshot().unwrap();
    let mut copy = code.instantiate(&sma_params("flip"), &symbols).unwrap();
    copy.restore(&state).unwrap();
    assert_eq!(copy.snapshot().unwrap(), state);

    let mut h1 = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    let mut h2 = RecordingHost {
        fill_instantly: true,
        ..Default::default()
    };
    h1.positions = host.positions.clone();
    h2.positions = host.positions.clone();
    for bar in &bars[1000..] {
        original.on_bar(&mut h1, 0, bar).unwrap();
        copy.on_bar(&mut h2, 0, bar).unwrap();
    }
    assert!(!h1.orders.is_empty());
    assert_eq!(h1.orders, h2.orders);
    assert_eq!(original.snapshot().unwrap(), copy.snapshot().unwrap());

    // A snapshot from other code is refused with the strategy's reason; nothing breaks.
    let e = copy.restore(b"garbage").unwrap_err();
    assert_eq!(
        e.to_string(),
        "restore failed: sma-cross state version 1651663207, expected 1"
    );
    assert!(copy.is_active());
}

#[test]
fn compiled_components_are_cached_on_disk_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let sb = Sandbox::new(config.clone()).unwrap();
    let bytes = component(guests::RSI_REVERSION);
    let first = sb.load(&bytes).unwrap();
    assert!(!first.from_cache());
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(first.sha256()) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A new sandbox (a restarted server) loads the artifact instead of compiling.
    let sb2 = Sandbox::new(config.clone()).unwrap();
    let t = Instant::now();
    let second = sb2.load(&bytes).unwrap();
    assert!(second.from_cache());
    assert!(
        t.elapsed() < first.compile_time() * 4,
        "cache load should be fast"
    );
    assert_eq!(second.info(), first.info());

    // A corrupt artifact is ignored and replaced.
    std::fs::write(&files[0], b"corrupt").unwrap();
    let third = Sandbox::new(config).unwrap().load(&bytes).unwrap();
    assert!(!third.from_cache());
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);
}

#[test]
fn pooled_instances_work_and_an_exhausted_pool_is_a_clean_error() {
    let config = SandboxConfig {
        pool_slots: 4,
        ..Default::default()
    };
    let sb = Sandbox::new(config).unwrap();
    let code = load(&sb, guests::SMA_CROSS);
    // describe's temporary instance has been returned to the pool by now.
    let mut live: Vec<_> = (0..4)
        .map(|_| code.instantiate(&[], &["X".into()]).unwrap())
        .collect();
    let e = code.instantiate(&[], &["X".into()]).unwrap_err();
    assert!(matches!(e, SandboxError::Instantiate(_)), "{e}");
    let mut host = RecordingHost::default();
    for bar in qtm_tests::numbered_bars(50) {
        for inst in &mut live {
            inst.on_bar(&mut host, 0, &bar).unwrap();
        }
    }
    live.pop();
    assert!(
        code.instantiate(&[], &["X".into()]).is_ok(),
        "a freed slot is reused"
    );
}

/// Every guest in `strategies/` is used by some test: a new guest without one fails here.
#[test]
fn every_guest_has_a_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources: String = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs") && !p.ends_with("build.rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(guests::ALL.len() >= 9);
    for name in guests::ALL {
        assert!(
            sources.contains(&format!("guests::{name}")),
            "guest {name} has no test in tests/*.rs"
        );
    }
}
