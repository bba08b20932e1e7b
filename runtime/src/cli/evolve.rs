//! `qtm evolve`: breed a strategy's parameters or rule programs by genetic search and report
//! the champion with the statistics of overfitting (docs/evolution.md).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::out::outln;
use crate::backtest::RunSettings;
use crate::exchange::FillMode;
use crate::report::{self, ReportInput};
use crate::sandbox::{Limits, Sandbox, SandboxConfig};
use qtm_evolve::evaluate::{Evaluator, Market, Period, Subject, symbol_of};
use qtm_evolve::genome::{ParamSpace, Space};
use qtm_evolve::gp::GpConfig;
use qtm_evolve::run::{self as evolution, Checkpoint, Split};
use qtm_evolve::search::{Candidate, Objective, SearchConfig};

/// What `--objective` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum ObjectiveArg {
    /// Annualized Sharpe ratio.
    Sharpe,
    /// Annualized Sortino ratio.
    Sortino,
    /// CAGR over maximum drawdown.
    Calmar,
    /// Total return.
    Return,
    /// NSGA-II: return, drawdown and size.
    Multi,
}

/// What `--walk-forward` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum WalkForward {
    /// The training window slides: the same length before each test segment.
    Rolling,
    /// The training window grows: everything before each test segment.
    Anchored,
}

/// Arguments of `qtm evolve`.
#[derive(Debug, Clone, Args, Serialize, Deserialize, PartialEq)]
pub struct EvolveArgs {
    /// Search the parameters of this strategy component (.wasm).
    #[arg(long, conflicts_with_all = ["rules", "gp"])]
    strategy: Option<PathBuf>,
    /// Search the parameters of this rule program (.rules).
    #[arg(long, value_name = "FILE.rules", conflicts_with = "gp")]
    rules: Option<PathBuf>,
    /// Search rule programs themselves (genetic programming); the champion is a .rules file.
    #[arg(long)]
    gp: bool,
    /// CSV bars (`ts,open,high,low,close,volume`); repeat for several symbols.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// Symbol of each --data file, in order (default: the file name up to the first `_`).
    #[arg(long)]
    symbol: Vec<String>,
    /// Hold a parameter at a value instead of searching it (NAME=VALUE); repeat.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Search a numeric parameter only within LO..HI (inside its declared range); repeat.
    #[arg(long = "gene", value_name = "NAME=LO..HI")]
    genes: Vec<String>,
    /// Candidates per generation.
    #[arg(long, default_value_t = 40)]
    population: usize,
    /// Generations, the random first one included.
    #[arg(long, default_value_t = 20)]
    generations: usize,
    /// Seed of every random choice: the same seed, settings and data give the same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the search maximizes on the training period.
    #[arg(long, value_enum, default_value = "sharpe")]
    objective: ObjectiveArg,
    /// Threads evaluating candidates [default: the machine's cores]. The result does not
    /// depend on it.
    #[arg(long)]
    workers: Option<usize>,
    /// Islands the population is split into (ring migration between them) [default: one per
    /// 8 candidates, at most 4].
    #[arg(long)]
    islands: Option<usize>,
    /// Training period, ISO dates FROM..TO (both included). With --test.
    #[arg(long, value_name = "FROM..TO", requires = "test")]
    train: Option<String>,
    /// Test period, ISO dates FROM..TO, after the training period. With --train.
    #[arg(long, value_name = "FROM..TO", requires = "train")]
    test: Option<String>,
    /// Walk-forward instead of one split: the champion of each fold's training window is
    /// tested on the segment after it, and the test segments are concatenated.
    #[arg(long, value_enum, conflicts_with_all = ["train", "test"], requires = "folds")]
    walk_forward: Option<WalkForward>,
    /// Folds of --walk-forward.
    #[arg(long)]
    folds: Option<usize>,
    /// Starting cash.
    #[arg(long, default_value_t = 10_000.0)]
    cash: f64,
    /// Commission as a fraction of notional (0.001 = 0.1 %).
    #[arg(long, default_value_t = 0.0)]
    commission: f64,
    /// Slippage on market and stop fills, basis points against the trader.
    #[arg(long, default_value_t = 0.0)]
    slippage_bps: f64,
    /// --gp: deepest rule tree.
    #[arg(long, default_value_t = 8)]
    max_depth: usize,
    /// --gp: most nodes of a program.
    #[arg(long, default_value_t = 40)]
    max_nodes: usize,
    /// Fitness subtracted per rule node (--gp): among equals, the smaller program wins.
    #[arg(long, default_value_t = 0.002)]
    parsimony: f64,
    /// Fuel per strategy call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    #[serde(skip)]
    json: bool,
    /// Write the ledger of every candidate (ledger.csv), the result (result.json), an HTML
    /// report (report.html), the champion and a checkpoint after every generation to DIR.
    #[arg(long, value_name = "DIR")]
    #[serde(skip)]
    out: Option<PathBuf>,
    /// Resume the run whose --out was DIR from its last whole generation; the result is the
    /// one the run would have given uninterrupted. Its settings are the saved ones.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Also write the champion where `qtm import` and `POST /api/strategies` take it: a
    /// `.rules` file (with --rules, the program with the champion's values as defaults).
    #[arg(long, requires = "out")]
    #[serde(skip)]
    promote: bool,
}

/// The checkpoint file in an --out directory.
const CHECKPOINT: &str = "checkpoint.json";

#[derive(Serialize, Deserialize)]
struct SavedRun {
    args: EvolveArgs,
    /// The component's or program's SHA-256 and the data files' SHA-256: a resumed run must
    /// search the same thing over the same bars.
    inputs: Value,
    checkpoint: Checkpoint,
}

fn parse_genes(raw: &[String]) -> Result<Vec<(String, f64, f64)>> {
    raw.iter()
        .map(|g| {
            let bad = || format!("--gene `{g}`: expected NAME=LO..HI (numbers)");
            let (name, range) = g.split_once('=').with_context(bad)?;
            let (lo, hi) = range.split_once("..").with_context(bad)?;
            let lo: f64 = lo.trim().parse().ok().with_context(bad)?;
            let hi: f64 = hi.trim().parse().ok().with_context(bad)?;
            Ok((name.trim().to_string(), lo, hi))
        })
        .collect()
}

/// `YYYY-MM-DD` as the unix time of the day's start (UTC).
fn parse_date(s: &str, flag: &str) -> Result<i64> {
    let bad = || format!("{flag} `{s}`: expected ISO dates FROM..TO like 2004-08-19..2010-12-31");
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!(bad())
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().ok().with_context(bad)?,
        m.parse().ok().with_context(bad)?,
        d.parse().ok().with_context(bad)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!(bad());
    }
    Ok(qtm_core::calendar::days_from_civil(y, m, d) * qtm_core::calendar::DAY)
}

/// `FROM..TO` as a period covering both days whole.
fn parse_period(s: &str, flag: &str) -> Result<Period> {
    let (a, b) = s.split_once("..").with_context(|| {
        format!("{flag} `{s}`: expected ISO dates FROM..TO like 2004-08-19..2010-12-31")
    })?;
    let from = parse_date(a, flag)?;
    let to = parse_date(b, flag)? + qtm_core::calendar::DAY - 1;
    if to < from {
        bail!("{flag} `{s}`: the period ends before it starts");
    }
    Ok(Period { from, to })
}

/// Run `qtm evolve`.
pub fn run(mut args: EvolveArgs) -> Result<()> {
    let json_out = args.json;
    let promote = args.promote;
    let workers = args.workers;
    let (out_dir, saved) = match args.resume.clone() {
        Some(dir) => {
            let path = dir.join(CHECKPOINT);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let saved: SavedRun = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a checkpoint of qtm evolve", path.display()))?;
            if !args.data.is_empty() {
                let mut given = args.clone();
                given.workers = saved.args.workers;
                if given != saved.args {
                    bail!(
                        "--resume {}: the run was started with other settings; resume with \
                         `qtm evolve --resume {}` alone (optionally --workers, --json)",
                        dir.display(),
                        dir.display()
                    );
                }
            }
            args = saved.args.clone();
            (Some(dir), Some(saved))
        }
        None => (args.out.clone(), None),
    };
    if workers.is_some() {
        args.workers = workers;
    }
    let kinds = [args.strategy.is_some(), args.rules.is_some(), args.gp]
        .iter()
        .filter(|k| **k)
        .count();
    if kinds != 1 {
        bail!("give one of --strategy FILE.wasm, --rules FILE.rules or --gp");
    }
    if args.data.is_empty() {
        bail!("give at least one --data FILE.csv");
    }
    if !args.symbol.is_empty() && args.symbol.len() != args.data.len() {
        bail!(
            "{} --symbol values for {} --data files; give one per file or none",
            args.symbol.len(),
            args.data.len()
        );
    }
    let files: Vec<(String, PathBuf)> = args
        .data
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                args.symbol.get(i).cloned().unwrap_or_else(|| symbol_of(p)),
                p.clone(),
            )
        })
        .collect();
    let market = Market::load(&files).map_err(anyhow::Error::msg)?;

    let settings = RunSettings {
        cash: args.cash,
        commission: args.commission,
        fixed_fee: 0.0,
        slippage_bps: args.slippage_bps,
        fill: FillMode::NextOpen,
        volume_participation: None,
        max_leverage: 1.0,
        close_at_end: false,
        batch: true,
    };
    if let Err(e) = settings.check_costs() {
        bail!("--{} {}", e.field.replace('_', "-"), e.message);
    }
    let config = settings.config(Default::default());
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut limits = Limits::default();
    if let Some(f) = args.fuel {
        limits.fuel_per_call = f;
    }
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        limits,
        // Every program of --gp is new: caching their compiled code would only fill the disk.
        cache_dir: if args.gp {
            None
        } else {
            crate::sandbox::default_cache_dir()
        },
        pool_slots: (workers as u32 * 4).max(8),
        ..Default::default()
    })?);
    let (subject, space, program_hash, name) = if args.gp {
        let gp = GpConfig {
            max_depth: args.max_depth,
            max_nodes: args.max_nodes,
            ..GpConfig::default()
        };
        (
            Subject::rules(sandbox.clone()).map_err(anyhow::Error::msg)?,
            Space::Rules(gp),
            String::new(),
            "gp".to_string(),
        )
    } else {
        let code =
            super::backtest::load_code(&sandbox, args.strategy.as_deref(), args.rules.as_deref())?;
        let space = ParamSpace::new(
            &code.info().params,
            &super::backtest::parse_params(&args.params)?,
            &parse_genes(&args.genes)?,
        )
        .map_err(anyhow::Error::msg)?;
        let hash = code.sha256().to_string();
        let name = code.info().name.clone();
        (
            Subject::Component {
                code,
                space: space.clone(),
            },
            Space::Params(space),
            hash,
            name,
        )
    };
    let objective = match args.objective {
        ObjectiveArg::Sharpe => Objective::Sharpe,
        ObjectiveArg::Sortino => Objective::Sortino,
        ObjectiveArg::Calmar => Objective::Calmar,
        ObjectiveArg::Return => Objective::Return,
        ObjectiveArg::Multi => Objective::Multi,
    };
    let mut search = SearchConfig::new(args.population, args.generations, args.seed, objective);
    search.workers = workers;
    if let Some(i) = args.islands {
        search.islands = i;
    }
    search.parsimony = if args.gp { args.parsimony } else { 0.0 };
    search.check().map_err(anyhow::Error::msg)?;
    let split = match (&args.train, &args.test, args.walk_forward) {
        (Some(train), Some(test), _) => Split::Holdout {
            train: parse_period(train, "--train")?,
            test: parse_period(test, "--test")?,
        },
        (_, _, Some(mode)) => Split::WalkForward {
            anchored: mode == WalkForward::Anchored,
            folds: args.folds.unwrap_or(0),
        },
        _ => Split::default_for(&market.times()).map_err(anyhow::Error::msg)?,
    };
    let periods = split.periods(&market.times()).map_err(anyhow::Error::msg)?;
    let inputs = json!({
        "engine_version": env!("CARGO_PKG_VERSION"),
        "strategy": name,
        "strategy_sha256": program_hash,
        "data": market.files.iter().zip(&market.symbols).zip(&market.hashes).zip(&market.bars)
            .map(|(((f, s), h), b)| json!({"file": f.display().to_string(), "symbol": s, "sha256": h, "bars": b.len()}))
            .collect::<Vec<_>>(),
    });
    let resume = match saved {
        Some(s) => {
            if s.inputs != inputs {
                bail!(
                    "--resume: the strategy or the data changed since the run started (saved {}, now {})",
                    s.inputs,
                    inputs
                );
            }
            Some(s.checkpoint)
        }
        None => None,
    };
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let evaluator = Evaluator {
        subject,
        market,
        config,
    };
    let total = (args.generations * periods.len()) as u64;
    let bar = (std::io::stderr().is_terminal() && !json_out).then(|| {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} gen {pos}/{len}  {msg}  {elapsed} (eta {eta})",
            )
            .expect("valid template"),
        );
        pb
    });
    let mut save_error: Option<anyhow::Error> = None;
    let folds_n = periods.len();
    let result = evolution::run(
        &search,
        &space,
        &evaluator,
        &split,
        resume,
        None,
        &mut |cp, report| {
            if let Some(pb) = &bar {
                pb.set_position((report.fold * args.generations + report.generation) as u64);
                pb.set_message(format!(
                    "{}best {:.3}  median {:.3}  diversity {:.2}  {:.0} evals/s",
                    if folds_n > 1 {
                        format!("fold {}/{folds_n}  ", report.fold + 1)
                    } else {
                        String::new()
                    },
                    report.best,
                    report.median,
                    report.diversity,
                    report.evaluations_per_sec
                ));
            }
            if let Some(dir) = &out_dir
                && save_error.is_none()
                && let Err(e) = save_checkpoint(dir, &args, &inputs, cp)
            {
                save_error = Some(e);
            }
        },
    );
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    if let Some(e) = save_error {
        return Err(e);
    }
    let result = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut doc = result.json.clone();
    if let Some(o) = doc.as_object_mut() {
        o.insert(
            "manifest".into(),
            json!({
                "engine_version": inputs["engine_version"],
                "strategy": inputs["strategy"],
                "strategy_sha256": inputs["strategy_sha256"],
                "data": inputs["data"],
                "splits": periods.iter().map(|(tr, te)| json!({"train": tr, "test": te})).collect::<Vec<_>>(),
                "config": {
                    "search": search,
                    "split": split,
                    "cash": args.cash,
                    "commission": args.commission,
                    "slippage_bps": args.slippage_bps,
                    "space": space,
                },
            }),
        );
    }
    if let Some(dir) = &out_dir {
        write_outputs(dir, &args, &doc, &result, promote)?;
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        print_summary(&doc, &result.champion, &result.warnings)?;
    }
    Ok(())
}

fn save_checkpoint(dir: &Path, args: &EvolveArgs, inputs: &Value, cp: &Checkpoint) -> Result<()> {
    let saved = SavedRun {
        args: args.clone(),
        inputs: inputs.clone(),
        checkpoint: cp.clone(),
    };
    let path = dir.join(CHECKPOINT);
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    // Written aside and renamed: a run killed mid-write leaves the previous checkpoint whole.
    std::fs::write(&tmp, serde_json::to_vec(&saved)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_outputs(
    dir: &Path,
    args: &EvolveArgs,
    doc: &Value,
    result: &evolution::EvolveResult,
    promote: bool,
) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("result.json", serde_json::to_string_pretty(doc)?.as_bytes())?;
    let mut csv = String::from(
        "hash,generation,seen,parents,fitness,total_return_pct,sharpe,daily_sharpe,max_drawdown_pct,trades,size,error,candidate\n",
    );
    for c in &result.ledger {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            c.hash,
            c.generation,
            c.seen,
            c.parents.join(" "),
            c.fitness.map_or(String::new(), |f| f.to_string()),
            c.total_return_pct,
            c.sharpe,
            c.daily_sharpe,
            c.max_drawdown_pct,
            c.trades,
            c.size,
            csv_field(c.error.as_deref().unwrap_or("")),
            csv_field(&c.text),
        ));
    }
    write("ledger.csv", csv.as_bytes())?;
    write_report(dir, doc, result)?;
    if let qtm_evolve::genome::Genome::Rules(r) = &result.champion.genome {
        write("champion.rules", r.to_rules().as_bytes())?;
    }
    if promote && let (Some(rules), Some(params)) = (&args.rules, doc["best"]["params"].as_object())
    {
        let text = std::fs::read_to_string(rules)
            .with_context(|| format!("reading {}", rules.display()))?;
        write("champion.rules", with_defaults(&text, params).as_bytes())?;
    }
    Ok(())
}

/// A rule program with each `param NAME = kind(default, …)` default replaced by `values`.
fn with_defaults(text: &str, values: &serde_json::Map<String, Value>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let replaced = trimmed.strip_prefix("param ").and_then(|rest| {
            let (name, def) = rest.split_once('=')?;
            let value = values.get(name.trim())?;
            let open = def.find('(')?;
            let after = &def[open + 1..];
            let first_end = after.find([',', ')'])?;
            let value = match value {
                Value::String(s) => format!("\"{s}\""),
                v => v.to_string(),
            };
            Some(format!(
                "param {} ={}({value}{}",
                name.trim(),
                &def[..open],
                &after[first_end..]
            ))
        });
        out.push_str(replaced.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn write_report(dir: &Path, doc: &Value, result: &evolution::EvolveResult) -> Result<()> {
    let num = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x:.4}"),
        None => "–".into(),
    };
    let mut summary: Vec<(String, String)> = vec![
        (
            "verdict".into(),
            if result.warnings.is_empty() {
                "passes".into()
            } else {
                result.warnings.join(" · ")
            },
        ),
        (
            "test return".into(),
            format!("{} %", num(&doc["best"]["test"]["total_return_pct"])),
        ),
        ("test Sharpe".into(), num(&doc["best"]["test"]["sharpe"])),
        ("train Sharpe".into(), num(&doc["best"]["train"]["sharpe"])),
        (
            "buy & hold test return".into(),
            format!(
                "{} %",
                num(&doc["buy_and_hold"]["test"]["total_return_pct"])
            ),
        ),
        (
            "random search test Sharpe".into(),
            num(&doc["random_search"]["test"]["sharpe"]),
        ),
    ];
    for k in [
        "psr",
        "dsr",
        "min_trl",
        "pbo",
        "spa_pvalue",
        "n_trials",
        "n_distinct",
        "n_effective",
        "evaluations_per_sec",
    ] {
        summary.push((k.into(), num(&doc[k])));
    }
    summary.push((
        "trades sha256 (test)".into(),
        doc["best"]["trades_sha256"].as_str().unwrap_or("").into(),
    ));
    let params: Vec<(String, String)> = vec![
        ("champion".into(), result.champion.text.clone()),
        ("seed".into(), doc["seed"].to_string()),
        (
            "objective".into(),
            doc["objective"].as_str().unwrap_or("").into(),
        ),
    ];
    let equity: Vec<_> = result
        .test
        .iter()
        .flat_map(|e| e.equity.iter().copied())
        .collect();
    let trades: Vec<_> = result
        .test
        .iter()
        .flat_map(|e| e.trades.iter().cloned())
        .collect();
    let curve = report::chart_curve(&equity[..], report::CHART_BUCKETS);
    report::write_html(
        &ReportInput {
            title: "qtm evolve: the champion on the test period",
            summary: &summary,
            params: &params,
            equity: &curve,
            prices: &[],
            trades: &trades,
        },
        &dir.join("report.html"),
    )
    .with_context(|| format!("writing {}", dir.join("report.html").display()))
}

fn print_summary(doc: &Value, champion: &Candidate, warnings: &[String]) -> Result<()> {
    let num = |v: &Value| match v.as_f64() {
        Some(x) => format!("{x:.3}"),
        None => "–".into(),
    };
    outln!(
        "champion  {}",
        champion
            .text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    outln!(
        "  train   Sharpe {}  return {} %",
        num(&doc["best"]["train"]["sharpe"]),
        num(&doc["best"]["train"]["total_return_pct"])
    )?;
    outln!(
        "  test    Sharpe {}  return {} %  trades {}  sha256 {}",
        num(&doc["best"]["test"]["sharpe"]),
        num(&doc["best"]["test"]["total_return_pct"]),
        doc["best"]["test"]["n_trades"],
        doc["best"]["trades_sha256"].as_str().unwrap_or("")
    )?;
    outln!(
        "  buy & hold test return {} %; random search ({} evaluations) test Sharpe {}",
        num(&doc["buy_and_hold"]["test"]["total_return_pct"]),
        doc["random_search"]["evaluations"],
        num(&doc["random_search"]["test"]["sharpe"])
    )?;
    outln!(
        "  PSR {}  DSR {}  MinTRL {} days  PBO {}  SPA p {}",
        num(&doc["psr"]),
        num(&doc["dsr"]),
        num(&doc["min_trl"]),
        num(&doc["pbo"]),
        num(&doc["spa_pvalue"])
    )?;
    outln!(
        "  trials {} ({} distinct, {} effective); {} evaluations at {} /s",
        doc["n_trials"],
        doc["n_distinct"],
        doc["n_effective"],
        doc["evaluations"],
        num(&doc["evaluations_per_sec"])
    )?;
    if warnings.is_empty() {
        outln!("verdict: passes (DSR ≥ 0.95, PBO ≤ 0.5, beats the equal-budget random search)")?;
    } else {
        for w in warnings {
            outln!("warning: {w}")?;
        }
    }
    Ok(())
}
