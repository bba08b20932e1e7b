use super::tree::{Dec, Unit};
use super::*;

fn long() -> GpConfig {
    GpConfig::default()
}

fn shorts() -> GpConfig {
    GpConfig {
        shorts: true,
        ..GpConfig::default()
    }
}

/// The program checks, plans with no parameters, defines the genome's rules, and the
/// genome is within the limits and free of degenerate constructs.
fn assert_valid(g: &RuleGenome, cfg: &GpConfig) {
    let text = g.to_rules();
    let program = match qtm_rules::check(&text) {
        Ok(p) => p,
        Err(d) => panic!("{text}\n{d:?}"),
    };
    if let Err(e) = program.plan(&[]) {
        panic!("{text}\n{e}");
    }
    assert_eq!(program.defined_rules(), g.defined_rules(), "{text}");
    let (max_depth, max_nodes) = cfg.limits();
    assert!(g.nodes() <= max_nodes, "{} nodes\n{text}", g.nodes());
    assert!(g.depth() <= max_depth, "depth {}\n{text}", g.depth());
    assert!(g.depth() >= 2);
    assert!(g.trees().all(|t| !t.degenerate()), "{text}");
    assert!(g.trees().all(|t| t.kind() == Kind::Bool), "{text}");
    assert!(g.rules[0].is_some(), "{text}");
    assert!(g.distinct_rules(), "{text}");
    assert_eq!(g.rules[2].is_some(), cfg.shorts, "{text}");
}

#[test]
fn random_genomes_and_their_offspring_all_check() {
    let mut checked = 0;
    for (c, cfg) in [long(), shorts()].iter().enumerate() {
        let mut prev: Option<RuleGenome> = None;
        for i in 0..1100u64 {
            let mut rng = Rng::keyed(1, &[c as u64, i]);
            let g = RuleGenome::random(&mut rng, cfg);
            assert_valid(&g, cfg);
            let m = g.mutate(&mut rng, cfg);
            assert_valid(&m, cfg);
            if let Some(p) = &prev {
                let (a, b) = g.crossover(p, &mut rng, cfg);
                assert_valid(&a, cfg);
                assert_valid(&b, cfg);
                checked += 2;
            }
            checked += 2;
            prev = Some(g);
        }
    }
    assert!(checked > 4000, "{checked}");
}

/// Generations of crossover and mutation without selection drift towards the limits,
/// where trees are largest and deepest: they must hold there too.
#[test]
fn evolved_populations_stay_valid_at_the_limits() {
    for cfg in [
        long(),
        shorts(),
        GpConfig {
            max_depth: 3,
            max_nodes: 8,
            shorts: true,
        },
        GpConfig {
            max_depth: 1,
            max_nodes: 0,
            shorts: false,
        },
        GpConfig {
            max_depth: 100,
            max_nodes: 10_000,
            shorts: true,
        },
    ] {
        let mut rng = Rng::new(7);
        let mut pop: Vec<RuleGenome> = (0..40)
            .map(|_| RuleGenome::random(&mut rng, &cfg))
            .collect();
        let mut largest = 0;
        for _ in 0..25 {
            let mut next = Vec::new();
            while next.len() < pop.len() {
                // Bias towards larger parents, so the limits are actually reached.
                let a = &pop[rng.index(pop.len())];
                let b = &pop[rng.index(pop.len())];
                let a = if a.nodes() >= b.nodes() { a } else { b };
                let c = &pop[rng.index(pop.len())];
                let (x, y) = a.crossover(c, &mut rng, &cfg);
                next.push(x.mutate(&mut rng, &cfg));
                next.push(y);
            }
            for g in &next {
                assert_valid(g, &cfg);
                largest = largest.max(g.nodes());
            }
            pop = next;
        }
        let (_, max_nodes) = cfg.limits();
        assert!(
            largest * 2 > max_nodes.min(80),
            "{cfg:?}: largest {largest}"
        );
    }
}

#[test]
fn the_same_stream_gives_the_same_genomes_offspring_and_text() {
    let run = |seed: u64| {
        let mut rng = Rng::new(seed);
        let a = RuleGenome::random(&mut rng, &shorts());
        let b = RuleGenome::random(&mut rng, &shorts());
        let (c, d) = a.crossover(&b, &mut rng, &shorts());
        let m = c.mutate(&mut rng, &shorts());
        let text: String = [&a, &b, &c, &d, &m].iter().map(|g| g.to_rules()).collect();
        (vec![a, b, c, d, m], text)
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42).1, run(43).1);
}

#[test]
fn crossover_exchanges_subtrees_of_the_same_type() {
    let mut rng = Rng::new(3);
    let cfg = long();
    let mut exchanged = 0;
    for _ in 0..200 {
        let a = RuleGenome::random(&mut rng, &cfg);
        let b = RuleGenome::random(&mut rng, &cfg);
        let (c, d) = a.crossover(&b, &mut rng, &cfg);
        if (&c, &d) == (&a, &b) {
            continue;
        }
        exchanged += 1;
        assert_ne!(c, a);
        assert_ne!(d, b);
        // An exchange moves nodes between the offspring, it neither makes nor loses any.
        assert_eq!(c.nodes() + d.nodes(), a.nodes() + b.nodes());
        // Some subtree of `a` and one of the same type of `b` changed places.
        let (pa, pb) = (a.points(), b.points());
        let swapped = pa.iter().any(|p| {
            pb.iter().any(|q| {
                let (mut x, mut y) = (a.clone(), b.clone());
                x.replace(*p, b.subtree(*q).clone());
                y.replace(*q, a.subtree(*p).clone());
                p.kind == q.kind && (&x, &y) == (&c, &d)
            })
        });
        assert!(
            swapped,
            "{}\n{}\n{}\n{}",
            a.to_rules(),
            b.to_rules(),
            c.to_rules(),
            d.to_rules()
        );
    }
    assert!(
        exchanged >= 180,
        "{exchanged} of 200 crossovers exchanged something"
    );
}

#[test]
fn crossover_swaps_types_consistently_in_a_known_pair() {
    // A fixed pair: the exchange keeps each exchanged subtree's type, so every rule of the
    // offspring is still a condition and every numeric operand keeps its unit (the checks
    // in assert_valid and the unit table agree).
    let mut rng = Rng::new(11);
    let a = RuleGenome::random(&mut rng, &long());
    let b = RuleGenome::random(&mut rng, &long());
    let (c, d) = a.crossover(&b, &mut rng, &long());
    assert_ne!((&c, &d), (&a, &b));
    for g in [&c, &d] {
        assert_valid(g, &long());
        let mut points = Vec::new();
        for (i, t) in g.trees().enumerate() {
            t.points(i, &mut points);
        }
        for p in points {
            let node = g.rules[p.rule]
                .as_ref()
                .and_then(|t| t.at(p.index))
                .unwrap();
            assert_eq!(node.kind(), p.kind);
        }
    }
}

#[test]
fn mutation_changes_the_genome_and_every_kind_is_used() {
    let mut rng = Rng::new(5);
    let cfg = long();
    let mut changed = 0;
    let mut shrunk = 0;
    let mut toggled = 0;
    for _ in 0..500 {
        let g = RuleGenome::random(&mut rng, &cfg);
        let m = g.mutate(&mut rng, &cfg);
        changed += usize::from(m != g);
        shrunk += usize::from(m.nodes() < g.nodes());
        toggled += usize::from(m.defined_rules() != g.defined_rules());
    }
    assert!(changed >= 490, "{changed}");
    assert!(shrunk >= 50, "{shrunk}");
    assert!(toggled >= 10, "{toggled}");
}

#[test]
fn programs_mostly_do_something() {
    let mut rng = Rng::new(9);
    let n = 1000;
    let mut both = 0;
    let mut with_indicator = 0;
    for _ in 0..n {
        let g = RuleGenome::random(&mut rng, &long());
        both += usize::from(g.defined_rules() == ["entry_long", "exit_long"]);
        let text = g.to_rules();
        with_indicator += usize::from(
            [
                "sma(", "ema(", "rsi(", "atr(", "macd", "bb_", "highest(", "lowest(",
            ]
            .iter()
            .any(|f| text.contains(f)),
        );
    }
    assert!(
        both * 10 >= n * 8,
        "{both} of {n} have both an entry and an exit"
    );
    assert!(
        with_indicator * 2 >= n,
        "{with_indicator} of {n} use an indicator"
    );

    let mut exits = 0;
    for _ in 0..n {
        let g = RuleGenome::random(&mut rng, &shorts());
        let rules = g.defined_rules();
        assert!(rules.contains(&"entry_long") && rules.contains(&"entry_short"));
        exits += usize::from(rules.contains(&"exit_long") || rules.contains(&"exit_short"));
    }
    assert!(
        exits * 10 >= n * 7,
        "{exits} of {n} short-side programs have an exit"
    );
}

#[test]
fn a_program_reads_like_a_hand_written_one() {
    // Snapshot of one seed's program, for readability: decimals, periods, no extra
    // parentheses, the fixed size rule.
    let g = RuleGenome::random(&mut Rng::new(8), &long());
    let text = g.to_rules();
    assert_eq!(text, SNAPSHOT, "\n{text}");
}

const SNAPSHOT: &str = "\
# evolved by qtm evolve --gp: 20 nodes, depth 5
entry_long = ema(open, 143) > bb_lower(open, 164, 1.7) or sma(volume, 82) < sma(volume, 14)
exit_long = rsi(sma(ema(volume, 2), 12), 3) > ema(rsi(close, 11), 10)[3]
size = equity_fraction(1.0)
";

#[test]
fn printing_uses_the_fewest_parentheses_and_names_repeats() {
    use super::tree::Field as F;
    let f = |x: F| Node::leaf(Op::Field(x));
    let n = |op: Op, args: Vec<Node>| Node::new(op, args);
    let sma = n(Op::Sma(20), vec![f(F::Close)]);
    let up = n(Op::Gt, vec![f(F::Close), sma.clone()]);
    let body = n(Op::Sub, vec![f(F::Close), f(F::Open)]);
    let wide = n(
        Op::Gt,
        vec![
            n(Op::Abs, vec![body.clone()]),
            n(Op::Scale(Dec::round(1.5, 2)), vec![n(Op::Atr(14), vec![])]),
        ],
    );
    let rsi = n(Op::Rsi(14), vec![f(F::Close)]);
    let low = n(
        Op::Lt,
        vec![rsi, Node::leaf(Op::Const(Unit::Osc, Dec::int(30)))],
    );
    let either = n(Op::Or, vec![up.clone(), low]);
    let entry = n(Op::And, vec![either, n(Op::Not, vec![wide])]);
    let diff = n(
        Op::Sub,
        vec![f(F::Close), n(Op::Sub, vec![f(F::Open), f(F::Low)])],
    );
    let exit = n(
        Op::And,
        vec![
            n(Op::Lookback(1), vec![n(Op::Not, vec![up])]),
            n(Op::Gt, vec![diff, n(Op::Atr(5), vec![])]),
        ],
    );
    let g = RuleGenome {
        rules: [Some(entry), Some(exit), None, None],
    };
    assert_eq!(
        g.to_rules(),
        "# evolved by qtm evolve --gp: 32 nodes, depth 6\n\
         let cond = close > sma(close, 20)\n\
         entry_long = (cond or rsi(close, 14) < 30) and not (abs(close - open) > atr(14) * 1.5)\n\
         exit_long = (not cond)[1] and close - (open - low) > atr(5)\n\
         size = equity_fraction(1.0)\n"
    );
    assert_valid(&g, &long());
}

#[test]
fn small_and_large_limits_are_clamped_and_hold() {
    let tiny = GpConfig {
        max_depth: 0,
        max_nodes: 0,
        shorts: true,
    };
    assert_eq!(tiny.limits(), (2, 12));
    let huge = GpConfig {
        max_depth: 1000,
        max_nodes: 1000,
        shorts: false,
    };
    assert_eq!(huge.limits(), (MAX_DEPTH_CAP, MAX_NODES_CAP));
    let mut rng = Rng::new(1);
    for cfg in [tiny, huge] {
        for _ in 0..200 {
            let g = RuleGenome::random(&mut rng, &cfg);
            assert_valid(&g, &cfg);
            assert_valid(&g.mutate(&mut rng, &cfg), &cfg);
        }
    }
}

#[test]
fn genomes_round_trip_through_json() {
    let mut rng = Rng::new(12);
    for _ in 0..50 {
        let g = RuleGenome::random(&mut rng, &shorts());
        let json = serde_json::to_string(&g).unwrap();
        let back: RuleGenome = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.to_rules(), g.to_rules());
    }
    let cfg: GpConfig = serde_json::from_str(&serde_json::to_string(&shorts()).unwrap()).unwrap();
    assert_eq!(cfg, shorts());
}

#[test]
fn a_header_is_comment_lines() {
    let g = RuleGenome::random(&mut Rng::new(8), &long());
    let text = g.to_rules_with_header("seed 7, generation 12\n\nfitness 1.25 ");
    assert!(
        text.starts_with(
            "# seed 7, generation 12\n#\n# fitness 1.25\n# 20 nodes, depth 5\nentry_long = "
        ),
        "{text}"
    );
    assert_valid(&g, &long());
    assert!(qtm_rules::check(&text).is_ok());
}

#[test]
fn parsimony_penalizes_size() {
    let g = RuleGenome::random(&mut Rng::new(4), &long());
    assert_eq!(g.penalized(1.0, 0.0), 1.0);
    assert!((g.penalized(1.0, 0.01) - (1.0 - 0.01 * g.nodes() as f64)).abs() < 1e-12);
}
