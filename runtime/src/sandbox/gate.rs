//! The static upload gate: what is checked about a component before anything compiles or runs.
//!
//! It reads the binary without executing it: size, that it is a component (not a core module),
//! the contract version it was built for, every import (anything outside the contract is named
//! and refused), and function and import counts. It is cheap enough to run on every upload.

use serde::Serialize;
use wasmparser::{Encoding, Parser, Payload};

use super::CONTRACT_PACKAGE;
use super::bindings::ContractVersion;
use super::config::SandboxConfig;

/// What the gate learned about a component it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    /// Size of the component in bytes.
    pub size: usize,
    /// The contract it was built for, e.g. `qtm:strategy@0.1.0`.
    pub contract: String,
    /// Every top-level import, as named in the component.
    pub imports: Vec<String>,
    /// Every top-level export.
    pub exports: Vec<String>,
    /// Core functions defined across all modules inside the component.
    pub functions: u32,
    /// Core modules inside the component.
    pub modules: u32,
    /// What the component says about itself in its `qtm:hints` section.
    pub hints: Hints,
}

/// Name of the custom section holding [`Hints`] (the guest SDK's `HINTS_SECTION`).
pub const HINTS_SECTION: &str = "qtm:hints";

/// Optimizations a component allows, read from its `qtm:hints` custom section: UTF-8 lines of
/// `key=value`. Missing, unknown or malformed entries leave the safe default, so a hint can
/// only skip work the strategy said it does not need; a lying component just misses calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hints {
    /// `on-fill=0`: the strategy ignores fills, so `on-fill` is never called.
    pub on_fill: bool,
}

impl Default for Hints {
    fn default() -> Self {
        Self { on_fill: true }
    }
}

impl Hints {
    fn read(&mut self, data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for (key, value) in text.lines().filter_map(|l| l.trim().split_once('=')) {
            match (key.trim(), value.trim()) {
                ("on-fill", "0") => self.on_fill = false,
                ("on-fill", "1") => self.on_fill = true,
                _ => {}
            }
        }
    }
}

/// Check a component against the gate; `Err` says what was wrong.
pub fn check(bytes: &[u8], config: &SandboxConfig) -> Result<GateReport, String> {
    if bytes.len() > config.max_component_bytes {
        return Err(format!(
            "component is {} bytes, larger than the {} byte limit",
            bytes.len(),
            config.max_component_bytes
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("not a WebAssembly binary (missing the \\0asm header)".into());
    }
    let mut report = GateReport {
        size: bytes.len(),
        contract: String::new(),
        imports: Vec::new(),
        exports: Vec::new(),
        functions: 0,
        modules: 0,
        hints: Hints::default(),
    };
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("malformed component: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err("this is a core WebAssembly module, not a component; \
                         build it with `qtm strategy build` or convert it with \
                         `qtm strategy componentize`"
                        .into());
                }
                if encoding == Encoding::Module {
                    report.modules += 1;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::FunctionSection(r) if depth > 1 => {
                report.functions = report.functions.saturating_add(r.count());
            }
            Payload::CustomSection(c) if depth > 1 && c.name() == HINTS_SECTION => {
                report.hints.read(c.data());
            }
            Payload::ComponentImportSection(r) if depth == 1 => {
                for import in r {
                    let import = import.map_err(|e| format!("malformed import section: {e}"))?;
                    report.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for export in r {
                    let export = export.map_err(|e| format!("malformed export section: {e}"))?;
                    report.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if report.functions > config.max_functions {
        return Err(format!(
            "component defines {} functions, more than the limit of {}",
            report.functions, config.max_functions
        ));
    }
    if report.imports.len() as u32 > config.max_imports {
        return Err(format!(
            "component declares {} imports, more than the limit of {}",
            report.imports.len(),
            config.max_imports
        ));
    }
    report.contract = contract_of(&report.exports)?;
    for import in &report.imports {
        check_import(import)?;
    }
    Ok(report)
}

/// The contract a component was built for, from the names of its exports.
fn contract_of(exports: &[String]) -> Result<String, String> {
    let package = format!("{CONTRACT_PACKAGE}/");
    // Any export from the contract's package carries the version the component targets.
    if let Some(version) = exports
        .iter()
        .filter_map(|e| e.strip_prefix(&package)?.split_once('@').map(|(_, v)| v))
        .find(|v| !compatible(v))
    {
        return Err(format!(
            "component was built for contract {CONTRACT_PACKAGE}@{version}, \
             but this host implements {}",
            implemented()
        ));
    }
    let prefix = format!("{CONTRACT_PACKAGE}/guest@");
    let Some(export) = exports.iter().find(|e| e.starts_with(&prefix)) else {
        return Err(format!(
            "component does not export `{CONTRACT_PACKAGE}/guest`; exports: [{}]",
            exports.join(", ")
        ));
    };
    Ok(format!("{CONTRACT_PACKAGE}@{}", &export[prefix.len()..]))
}

fn check_import(import: &str) -> Result<(), String> {
    for iface in ["types", "host"] {
        let prefix = format!("{CONTRACT_PACKAGE}/{iface}@");
        if let Some(version) = import.strip_prefix(&prefix) {
            if compatible(version) {
                return Ok(());
            }
            return Err(format!(
                "component imports `{import}`, but this host implements {}",
                implemented()
            ));
        }
    }
    Err(format!(
        "component imports `{import}`, which is outside the qtm contract \
         (strategies may import only {CONTRACT_PACKAGE}/host and {CONTRACT_PACKAGE}/types)"
    ))
}

/// Whether `version` is compatible with a version this host runs.
fn compatible(version: &str) -> bool {
    ContractVersion::compatible(version).is_some()
}

/// The versions this host runs, for messages: `qtm:strategy@0.1.0 and @0.2.0`.
fn implemented() -> String {
    let all: Vec<String> = ContractVersion::ALL
        .iter()
        .map(|v| format!("@{v}"))
        .collect();
    format!("{CONTRACT_PACKAGE}{}", all.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_component_semver() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(compatible("0.2.0"));
        assert!(!compatible("0.3.0"));
        assert!(!compatible("1.1.0"));
        assert!(!compatible("x"));
    }

    #[test]
    fn hints_only_switch_off_what_they_name() {
        let mut h = Hints::default();
        h.read(b"unknown=3\non-fill=maybe\n\xff");
        assert!(h.on_fill, "junk keeps the default");
        h.read(b" on-fill = 0 \n");
        assert!(!h.on_fill);
        h.read(b"on-fill=1");
        assert!(h.on_fill);
    }

    #[test]
    fn foreign_imports_are_named() {
        let e = check_import("wasi:filesystem/preopens@0.2.0").unwrap_err();
        assert!(e.contains("`wasi:filesystem/preopens@0.2.0`"), "{e}");
        assert!(check_import("qtm:strategy/host@0.1.0").is_ok());
        let e = check_import("qtm:strategy/host@0.3.0").unwrap_err();
        assert!(
            e.contains("implements qtm:strategy@0.1.0 and @0.2.0"),
            "{e}"
        );
    }

    #[test]
    fn garbage_and_core_modules_are_refused_before_compiling() {
        let cfg = SandboxConfig::default();
        assert_eq!(
            check(b"hello world!", &cfg).unwrap_err(),
            "not a WebAssembly binary (missing the \\0asm header)"
        );
        // The smallest core module: header only.
        let e = check(b"\0asm\x01\0\0\0", &cfg).unwrap_err();
        assert!(e.starts_with("this is a core WebAssembly module"), "{e}");
        // A component header followed by a truncated section.
        let e = check(b"\0asm\x0d\0\x01\0\x07\x05", &cfg).unwrap_err();
        assert!(e.starts_with("malformed component"), "{e}");
        let big = vec![0u8; cfg.max_component_bytes + 1];
        assert!(check(&big, &cfg).unwrap_err().contains("larger than the"));
    }
}
