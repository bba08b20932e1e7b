//! `qtm strategy …`: scaffold, build, componentize and inspect strategy components.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde::Serialize;

use super::out::outln;
use crate::model::StrategyInfo;
use crate::sandbox::gate::{GateReport, Hints};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::toolchain;

#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Create a strategy crate that builds as it is.
    New {
        /// Folder to create; its name is the strategy's name.
        dir: PathBuf,
        /// Path of the qtm-guest-sdk crate (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a strategy crate for wasm32-unknown-unknown and componentize it; prints the path.
    Build {
        /// The strategy crate's folder.
        dir: PathBuf,
        /// Cargo target directory (default: the crate's own).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Turn a core module built with the guest SDK into a component.
    Componentize {
        /// The core module (`.wasm` from cargo).
        input: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Show what a component declares: description, contract, imports, size, compile time.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: StrategyCommand) -> Result<()> {
    match cmd {
        StrategyCommand::New { dir, sdk } => {
            toolchain::scaffold_strategy(&dir, sdk.as_deref())?;
            outln!("created {}", dir.display())?;
            outln!("build it with: qtm strategy build {}", dir.display())?;
            Ok(())
        }
        StrategyCommand::Build { dir, target_dir } => {
            for out in toolchain::build_strategy(&dir, target_dir.as_deref())? {
                outln!("{}", out.component.display())?;
            }
            Ok(())
        }
        StrategyCommand::Componentize { input, output } => {
            let module =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let component = toolchain::componentize(&module)?;
            std::fs::write(&output, component)
                .with_context(|| format!("writing {}", output.display()))?;
            outln!("{}", output.display())?;
            Ok(())
        }
        StrategyCommand::Inspect { file, json } => inspect(file, json),
    }
}

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    sha256: &'a str,
    size: usize,
    contract: &'a str,
    imports: &'a [String],
    exports: &'a [String],
    functions: u32,
    core_instances: u32,
    hints: Hints,
    compile_ms: f64,
    describe: &'a StrategyInfo,
}

fn inspect(file: PathBuf, json: bool) -> Result<()> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let code = sandbox.load_file(&file)?;
    let GateReport {
        size,
        contract,
        imports,
        exports,
        functions,
        core_instances,
        hints,
        ..
    } = code.gate();
    let report = Inspection {
        file: file.display().to_string(),
        sha256: code.sha256(),
        size: *size,
        contract,
        imports,
        exports,
        functions: *functions,
        core_instances: *core_instances,
        hints: *hints,
        compile_ms: code.compile_time().as_secs_f64() * 1e3,
        describe: code.info(),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let info = report.describe;
    outln!("{} {}  ({})", info.name, info.version, report.file)?;
    if !info.description.is_empty() {
        outln!("  {}", info.description)?;
    }
    outln!("contract   {}", report.contract)?;
    outln!(
        "size       {} bytes, {} functions, {} core instances",
        report.size,
        report.functions,
        report.core_instances
    )?;
    outln!("compile    {:.1} ms", report.compile_ms)?;
    outln!("sha256     {}", report.sha256)?;
    outln!("imports    {}", report.imports.join(", "))?;
    if !report.hints.on_fill {
        outln!("hints      ignores fills (on-fill is never called)")?;
    }
    outln!(
        "symbols    {}",
        if info.symbols.is_empty() {
            "-".into()
        } else {
            info.symbols.join(", ")
        }
    )?;
    outln!("parameters")?;
    for p in &info.params {
        let kind = match &p.kind {
            crate::model::ParamKind::Int { min, max, step } => {
                format!("int {min}..={max} step {step}")
            }
            crate::model::ParamKind::Float { min, max, step } => {
                format!("float {min}..={max} step {step}")
            }
            crate::model::ParamKind::Boolean => "bool".into(),
            crate::model::ParamKind::Choice { choices } => format!("one of {}", choices.join("|")),
        };
        outln!(
            "  {:<12} {:<28} default {:<10} {}",
            p.name,
            kind,
            p.default.to_string(),
            p.description
        )?;
    }
    Ok(())
}
