//! `qtm strategy new`: a strategy crate that builds as it is.

use std::path::{Path, PathBuf};

use super::ToolchainError;

/// The guest SDK next to this runtime's sources, used when no other path is given.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")
}

/// Create a strategy crate named after the last component of `dir`.
///
/// `sdk` is the path of the `qtm-guest-sdk` crate to depend on (default: the one this binary
/// was built with). Refuses to overwrite an existing folder.
pub fn scaffold_strategy(dir: &Path, sdk: Option<&Path>) -> Result<(), ToolchainError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .ok_or_else(|| {
            ToolchainError::Invalid(format!(
                "`{}`: a strategy name starts with a letter and has only letters, digits, - and _",
                dir.display()
            ))
        })?;
    if dir.exists() {
        return Err(ToolchainError::Invalid(format!(
            "{} already exists",
            dir.display()
        )));
    }
    let sdk = sdk.map(Path::to_path_buf).unwrap_or_else(default_sdk_path);
    let sdk = sdk.canonicalize().map_err(|e| {
        ToolchainError::Invalid(format!(
            "guest SDK not found at {} ({e}); pass --sdk <path to guest-sdk>",
            sdk.display()
        ))
    })?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ToolchainError::Io { path, source }
    };
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(io(&src))?;
    let manifest = MANIFEST
        .replace("{name}", name)
        .replace("{sdk}", &sdk.display().to_string().replace('\\', "/"));
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(io(dir))?;
    std::fs::write(src.join("lib.rs"), LIB.replace("{name}", name)).map_err(io(&src))?;
    std::fs::write(dir.join(".gitignore"), "/target\n").map_err(io(dir))?;
    Ok(())
}

const MANIFEST: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
qtm-guest-sdk = { path = "{sdk}" }

# A strategy crate is its own workspace, so it builds wherever it lives.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const LIB: &str = r#"//! {name}: a qtm strategy. Build it with `qtm strategy build .`
use qtm_guest_sdk::prelude::*;

/// Goes long when the close is above its moving average, flat when below.
pub struct MyStrategy {
    average: Sma,
    quantity: f64,
    long: bool,
}

impl Strategy for MyStrategy {
    fn info() -> Info {
        Info::new("{name}", "0.1.0")
            .description("Long above the moving average, flat below it")
            .param(ParamSpec::int("period", 20, 2, 500, 1).describe("bars in the average"))
            .param(ParamSpec::float("quantity", 1.0, 0.0, 1e9, 1.0).describe("units per trade"))
    }

    fn new(params: &Params, _symbols: &[String]) -> Result<Self, String> {
        Ok(Self {
            average: Sma::new(params.int("period")? as usize),
            quantity: params.float("quantity")?,
            long: false,
        })
    }

    fn on_bar(&mut self, ctx: &mut Context, symbol: SymbolId, bar: &Bar) {
        let Some(average) = self.average.update(bar.close) else { return };
        let name = ctx.symbol(symbol).to_string();
        if bar.close > average && !self.long {
            self.long = ctx.buy(&name, self.quantity).is_ok();
        } else if bar.close < average && self.long {
            self.long = ctx.sell(&name, self.quantity).is_err();
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut w = StateWriter::new();
        self.average.save(&mut w);
        w.bool(self.long);
        w.finish()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let mut r = StateReader::new(state);
        self.average.load(&mut r)?;
        self.long = r.bool()?;
        Ok(r.expect_end()?)
    }
}

qtm_guest_sdk::export_strategy!(MyStrategy);
"#;
