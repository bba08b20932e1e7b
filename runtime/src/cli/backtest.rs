//! `qtm backtest`: run a strategy component over CSV bars and report.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::out::outln;
use crate::backtest::{
    self, BacktestConfig, BacktestOutcome, DataSource, RunOptions, RunSettings, TimeLimit,
};
use crate::engine::WriterSink;
use crate::exchange::FillMode;
use crate::market::symbol_from_path;
use crate::model::{Param, ParamValue};
use crate::report::{self, ReportInput};
use crate::risk::RiskLimits;
use crate::sandbox::{Limits, Sandbox, SandboxConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Fill {
    /// Market orders fill at the next bar's open.
    NextOpen,
    /// Market orders fill at the close of the bar they were placed on.
    Close,
}

/// Arguments of `qtm backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The strategy component (.wasm).
    #[arg(long, required_unless_present = "rules", conflicts_with = "rules")]
    strategy: Option<PathBuf>,
    /// A rule program (.rules, docs/rules.md) instead of a component: checked, then run
    /// inside the sandbox as a component of its own.
    #[arg(long, value_name = "FILE.rules")]
    rules: Option<PathBuf>,
    /// CSV bars (`ts,open,high,low,close,volume`); repeat for a multi-symbol backtest.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Symbol of each --data file, in order (default: the file name up to the first `_`).
    #[arg(long)]
    symbol: Vec<String>,
    /// Strategy parameter as name=value; repeat.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Starting cash.
    #[arg(long, default_value_t = 10_000.0)]
    cash: f64,
    /// Commission as a fraction of notional (0.001 = 0.1 %).
    #[arg(long, default_value_t = 0.0)]
    commission: f64,
    /// Fixed fee per order, on its first fill.
    #[arg(long, default_value_t = 0.0)]
    fixed_fee: f64,
    /// Slippage on market and stop fills, basis points against the trader.
    #[arg(long, default_value_t = 0.0)]
    slippage_bps: f64,
    /// When market orders fill.
    #[arg(long, value_enum, default_value = "next-open")]
    fill: Fill,
    /// Fill at most this fraction of a bar's volume per order per bar (partial fills).
    #[arg(long)]
    volume_participation: Option<f64>,
    /// Close positions still open at the end at the last close, with commission.
    #[arg(long)]
    close_at_end: bool,
    /// Print a JSON object instead of the summary table.
    #[arg(long)]
    json: bool,
    /// Write the trade list as CSV.
    #[arg(long)]
    trades_out: Option<PathBuf>,
    /// Write the equity curve (ts,equity) as CSV.
    #[arg(long)]
    equity_out: Option<PathBuf>,
    /// Write an HTML report with equity, drawdown and price-with-trades charts.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write every log line the strategy writes to FILE as it writes it
    /// (`ts<TAB>level<TAB>message`); in memory only the newest 1,000 are kept.
    #[arg(long, value_name = "FILE")]
    log_out: Option<PathBuf>,
    /// Stop the run with an error after this many seconds of wall time [default: 3600; 0 = the
    /// default].
    #[arg(long, value_name = "N")]
    max_seconds: Option<u64>,
    /// Risk limits from a TOML file (fields as in `RiskLimits`); flags below override it.
    #[arg(long)]
    risk: Option<PathBuf>,
    /// Risk: largest order, in units.
    #[arg(long)]
    max_order_quantity: Option<f64>,
    /// Risk: largest order notional (units × price).
    #[arg(long)]
    max_order_notional: Option<f64>,
    /// Risk: largest absolute position per symbol, in units.
    #[arg(long)]
    max_position: Option<f64>,
    /// Risk: largest sum of |position × price| over symbols.
    #[arg(long)]
    max_gross_exposure: Option<f64>,
    /// Risk: most resting orders at once.
    #[arg(long)]
    max_open_orders: Option<usize>,
    /// Host bound: most resting orders at once per strategy (default 1000).
    #[arg(long)]
    max_resting_orders: Option<usize>,
    /// Host bound: most resting orders in one OCO group (default 16).
    #[arg(long)]
    max_oco_orders: Option<usize>,
    /// Risk: most orders accepted per --order-window-secs of market time.
    #[arg(long)]
    max_orders_per_window: Option<u32>,
    /// Risk: window of the order-rate limit, seconds (default 60).
    #[arg(long)]
    order_window_secs: Option<i64>,
    /// Risk: limit and stop prices must lie within this % of the last price.
    #[arg(long)]
    price_collar_pct: Option<f64>,
    /// Risk: halt when equity falls this much below the day's opening equity.
    #[arg(long)]
    max_daily_loss: Option<f64>,
    /// Risk: halt when equity falls this many percent below its peak.
    #[arg(long)]
    max_drawdown_pct: Option<f64>,
    /// Gross exposure allowed as a multiple of equity.
    #[arg(long, default_value_t = 1.0)]
    max_leverage: f64,
    /// One component call per bar instead of exact batches (slower; same results).
    #[arg(long)]
    no_batch: bool,
    /// Fuel per strategy call.
    #[arg(long)]
    fuel: Option<u64>,
    /// Folder for compiled components (.cwasm), reused across runs [default: qtm/components in
    /// the user's cache directory].
    #[arg(long, env = "QTM_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the component afresh and cache nothing (overrides `--cache-dir`).
    #[arg(long)]
    no_cache: bool,
}

/// The strategy of `--strategy FILE.wasm` or `--rules FILE.rules` (checked and built into a
/// component), loaded into `sandbox`.
pub(super) fn load_code(
    sandbox: &Sandbox,
    strategy: Option<&std::path::Path>,
    rules: Option<&std::path::Path>,
) -> Result<std::sync::Arc<crate::sandbox::StrategyCode>> {
    Ok(match (strategy, rules) {
        (_, Some(rules)) => {
            let component = super::rules::compile_file(rules)?;
            sandbox
                .load(&component.component)
                .with_context(|| format!("loading the component of {}", rules.display()))?
        }
        (Some(path), None) => sandbox
            .load_file(path)
            .with_context(|| format!("loading {}", path.display()))?,
        (None, None) => bail!("give --strategy FILE.wasm or --rules FILE.rules"),
    })
}

/// `--param NAME=VALUE` flags as parameters (values as text; the strategy's declared types
/// convert them).
pub(super) fn parse_params(raw: &[String]) -> Result<Vec<Param>> {
    raw.iter()
        .map(|p| {
            let (name, value) = p
                .split_once('=')
                .with_context(|| format!("--param `{p}`: expected NAME=VALUE"))?;
            Ok(Param {
                name: name.trim().to_string(),
                value: ParamValue::Choice(value.trim().to_string()),
            })
        })
        .collect()
}

fn risk_limits(args: &BacktestArgs) -> Result<RiskLimits> {
    let mut limits = match &args.risk {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: invalid risk limits", path.display()))?
        }
        None => RiskLimits::default(),
    };
    macro_rules! over {
        ($($f:ident),*) => { $( if args.$f.is_some() { limits.$f = args.$f; } )* };
    }
    over!(
        max_order_quantity,
        max_order_notional,
        max_position,
        max_gross_exposure,
        max_open_orders,
        max_resting_orders,
        max_oco_orders,
        max_orders_per_window,
        order_window_secs,
        price_collar_pct,
        max_daily_loss,
        max_drawdown_pct
    );
    limits.validate().map_err(anyhow::Error::msg)?;
    Ok(limits)
}

/// Wall-time limit of `qtm backtest` without `--max-seconds`: generous for any honest run, but a
/// strategy that crawls cannot hold the machine forever.
pub const DEFAULT_MAX_SECONDS: u64 = 3600;

/// Run `qtm backtest`.
pub fn run(args: BacktestArgs) -> Result<()> {
    if !args.symbol.is_empty() && args.symbol.len() != args.data.len() {
        bail!(
            "{} --symbol values for {} --data files; give one per file or none",
            args.symbol.len(),
            args.data.len()
        );
    }
    let run_settings = RunSettings {
        cash: args.cash,
        commission: args.commission,
        fixed_fee: args.fixed_fee,
        slippage_bps: args.slippage_bps,
        fill: match args.fill {
            Fill::NextOpen => FillMode::NextOpen,
            Fill::Close => FillMode::Close,
        },
        volume_participation: args.volume_participation,
        max_leverage: args.max_leverage,
        close_at_end: args.close_at_end,
        batch: !args.no_batch,
    };
    if let Err(e) = run_settings.check_costs() {
        bail!("--{} {}", e.field.replace('_', "-"), e.message);
    }
    let sources: Vec<DataSource> = args
        .data
        .iter()
        .enumerate()
        .map(|(i, p)| {
            DataSource::csv(
                args.symbol
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| symbol_from_path(p)),
                p.clone(),
            )
        })
        .collect();
    let mut limits = Limits::default();
    if let Some(f) = args.fuel {
        limits.fuel_per_call = f;
    }
    let sandbox = Sandbox::new(SandboxConfig {
        limits,
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(crate::sandbox::default_cache_dir)
        },
        ..Default::default()
    })?;
    let code = load_code(&sandbox, args.strategy.as_deref(), args.rules.as_deref())?;
    let params = parse_params(&args.params)?;
    let symbols: Vec<String> = sources.iter().map(|s| s.symbol.clone()).collect();
    let instance = code.instantiate(&params, &symbols)?;
    let resolved: Vec<(String, String)> = instance
        .params()
        .iter()
        .map(|p| (p.name.clone(), p.value.to_string()))
        .collect();

    let config = BacktestConfig {
        keep_prices: args.report.is_some(),
        ..run_settings.config(risk_limits(&args)?)
    };

    let bar = (std::io::stdout().is_terminal() && !args.json).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} bars  {per_sec}  {elapsed}")
                .expect("valid template"),
        );
        pb
    });
    let name = code.info().name.clone();
    let log_sink = match &args.log_out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            Some(Box::new(WriterSink::new(std::io::BufWriter::new(file)))
                as Box<dyn crate::engine::LogSink>)
        }
        None => None,
    };
    let max_seconds = match args.max_seconds {
        None | Some(0) => DEFAULT_MAX_SECONDS,
        Some(n) => n,
    };
    let mut progress = |n: u64| {
        if let Some(pb) = &bar {
            pb.set_position(n);
        }
    };
    let options = RunOptions {
        progress: Some(&mut progress),
        log_sink,
        time_limit: Some(TimeLimit {
            limit: Duration::from_secs(max_seconds),
            setting: "--max-seconds".into(),
        }),
        cancel: None,
    };
    let outcome = backtest::run_with(&name, Box::new(instance), &sources, &config, options);
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let outcome = match (outcome, &args.log_out) {
        (Err(e @ backtest::BacktestError::LogOut(_)), Some(path)) => {
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        (outcome, _) => outcome?,
    };

    if let Some(path) = &args.trades_out {
        std::fs::write(path, backtest::trades_csv(&outcome.trades))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.equity_out {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        backtest::write_equity_csv(outcome.equity.iter(), &mut std::io::BufWriter::new(file))
            .and_then(|()| outcome.equity.check())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut settings = resolved.clone();
    settings.extend([
        ("cash".to_string(), args.cash.to_string()),
        ("commission".to_string(), args.commission.to_string()),
        ("slippage_bps".to_string(), args.slippage_bps.to_string()),
        ("fill".to_string(), format!("{:?}", args.fill)),
        (
            "data".to_string(),
            args.data
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ]);
    if let Some(path) = &args.report {
        let summary = summary_rows(&outcome);
        let curve = report::chart_curve(&outcome.equity, report::CHART_BUCKETS);
        let title = format!(
            "{} {} on {}",
            name,
            code.info().version,
            outcome.symbols.join(", ")
        );
        report::write_html(
            &ReportInput {
                title: &title,
                summary: &summary,
                params: &settings,
                equity: &curve,
                prices: &outcome.prices,
                trades: &outcome.trades,
            },
            path,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let mut v = outcome.summary_json();
        if let Some(m) = v.as_object_mut() {
            m.insert("strategy".into(), json!(name));
            m.insert(
                "params".into(),
                json!(
                    resolved
                        .iter()
                        .cloned()
                        .collect::<std::collections::BTreeMap<_, _>>()
                ),
            );
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        outln!(
            "{} on {} — {} bars in {:.2} s",
            name,
            outcome.symbols.join(", "),
            outcome.bars,
            outcome.elapsed.as_secs_f64()
        )?;
        for (k, v) in summary_rows(&outcome) {
            outln!("  {k:<24} {v}")?;
        }
        if let Some(reason) = &outcome.stop_reason {
            outln!("  {:<24} {reason}", "stopped")?;
        }
        if outcome.logs_dropped > 0 {
            let hint = match &args.log_out {
                Some(path) => format!("all in {}", path.display()),
                None => "--log-out FILE keeps them all".into(),
            };
            outln!(
                "  {:<24} {} kept, {} older not kept ({hint})",
                "log lines",
                outcome.logs.len(),
                outcome.logs_dropped
            )?;
        }
    }
    Ok(())
}

fn summary_rows(o: &BacktestOutcome) -> Vec<(String, String)> {
    let m = &o.metrics;
    let pct = |v: f64| format!("{v:.2} %");
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v:.3}")
        } else {
            "∞".into()
        }
    };
    vec![
        ("final equity".into(), format!("{:.2}", m.final_equity)),
        ("total return".into(), pct(m.total_return_pct)),
        (
            "buy & hold return".into(),
            o.buy_and_hold_return_pct.map_or("–".into(), pct),
        ),
        (
            "CAGR".into(),
            if m.cagr_pct.is_finite() {
                pct(m.cagr_pct)
            } else {
                "∞".into()
            },
        ),
        ("volatility (ann.)".into(), pct(m.volatility_ann_pct)),
        ("Sharpe".into(), num(m.sharpe)),
        ("Sortino".into(), num(m.sortino)),
        ("max drawdown".into(), pct(m.max_drawdown_pct)),
        (
            "max drawdown duration".into(),
            format!(
                "{} bars ({:.1} days)",
                m.max_drawdown_duration_bars, m.max_drawdown_duration_days
            ),
        ),
        ("Calmar".into(), num(m.calmar)),
        (
            "trades (closed / open)".into(),
            format!("{} / {}", m.n_trades, m.n_open),
        ),
        ("win rate".into(), pct(m.win_rate_pct)),
        ("profit factor".into(), num(m.profit_factor)),
        ("expectancy".into(), format!("{:.2}", m.expectancy)),
        ("average trade".into(), pct(m.avg_trade_pct)),
        ("exposure".into(), pct(m.exposure_pct)),
        ("VaR 95 % (1 bar)".into(), pct(m.var_95_pct)),
        ("fees".into(), format!("{:.2}", m.fees)),
        ("trades sha256".into(), o.trades_sha256.clone()),
    ]
}
