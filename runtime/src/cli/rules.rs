//! `qtm rules check`: check a rule program and print its typed parameters, or every problem
//! as `FILE:line:col: message`. Also the shared step of `qtm backtest --rules`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use super::out::outln;
use qtm_rules_component::{Compiled, Diagnostic};

/// `qtm rules …`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a .rules file: exit 0 and print its typed parameters, or print every problem as
    /// `FILE:line:col: message` and exit 1.
    Check {
        /// The rule program.
        file: PathBuf,
    },
}

/// Run `qtm rules …`.
pub fn run(cmd: RulesCommand) -> Result<()> {
    match cmd {
        RulesCommand::Check { file } => {
            let text = read(&file)?;
            match qtm_rules::check_bytes(&text) {
                Ok(program) => {
                    outln!("{}: ok", file.display())?;
                    let width = program
                        .params()
                        .iter()
                        .map(|p| p.name.len())
                        .max()
                        .unwrap_or(0);
                    for p in program.params() {
                        outln!("  param {:<width$}  {}", p.name, p.describe())?;
                    }
                    outln!("  rules {}", program.defined_rules().join(", "))?;
                    Ok(())
                }
                Err(diags) => fail(&file, &diags),
            }
        }
    }
}

fn read(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// Print every diagnostic as `FILE:line:col: message` on stderr and fail.
fn fail<T>(file: &Path, diags: &[Diagnostic]) -> Result<T> {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{}:{d}", file.display());
    }
    let n = diags.len();
    bail!(
        "{}: {n} problem{}",
        file.display(),
        if n == 1 { "" } else { "s" }
    )
}

/// Check `file` and build its component (named after the file), or print its problems.
pub fn compile_file(file: &Path) -> Result<Compiled> {
    let text = read(file)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rules".into());
    qtm_rules_component::compile(&name, &text).or_else(|diags| fail(file, &diags))
}
