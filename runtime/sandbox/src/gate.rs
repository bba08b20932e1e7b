//! The static upload gate: what is checked about a component before anything compiles or runs.
//!
//! It reads the binary without executing it: size, that it is a component (not a core module),
//! the contract version it was built for, every import and export (anything outside the contract
//! is named and refused), and function, import and core-instance counts. It is cheap enough to
//! run on every upload.
//!
//! It does not stop at the first problem it can see past: a refusal ([`GateError`]) lists every
//! reason with what to do about it, so that one rebuild can fix them all. Only problems that
//! leave nothing else to read (too large, not wasm, a core module, malformed) come alone.

use std::fmt;

use serde::Serialize;
use thiserror::Error;
use wasmparser::{Encoding, Instance, Parser, Payload};

use super::CONTRACT_PACKAGE;
#[cfg(test)]
use super::bindings::ContractVersion;
use super::config::SandboxConfig;

/// Versions of the contract ([`CONTRACT_PACKAGE`]) this host accepts, oldest first.
///
/// A component's version matches an entry by the component model's semver rule (same major,
/// and for `0.x` the same minor); [`GateReport::supported_version`] says which entry, so the
/// host can pick the bindings for it. Accepting another version starts with one line here.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Interfaces of the contract a strategy may import.
const CONTRACT_IMPORTS: &[&str] = &["types", "host"];
/// Interfaces of the contract a strategy must export; it may export nothing else.
const CONTRACT_EXPORTS: &[&str] = &["guest"];

/// What the gate learned about a component it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateReport {
    /// Size of the component in bytes.
    pub size: usize,
    /// The contract it was built for, e.g. `qtm:strategy@0.1.0`.
    pub contract: String,
    /// The contract version it was built for, as the component names it (e.g. `0.1.0`).
    pub version: String,
    /// The entry of [`SUPPORTED_VERSIONS`] that `version` is compatible with.
    pub supported_version: &'static str,
    /// Every top-level import, as named in the component.
    pub imports: Vec<String>,
    /// Every top-level export.
    pub exports: Vec<String>,
    /// Core functions defined across all modules inside the component.
    pub functions: u32,
    /// Core modules inside the component.
    pub modules: u32,
    /// Core instances the component creates when instantiated (each counts against
    /// [`Limits::instances`](super::Limits::instances)).
    pub core_instances: u32,
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

/// One reason the gate refuses a component. `Display` says what is wrong; [`GateReason::fix`]
/// says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateReason {
    /// Larger than [`SandboxConfig::max_component_bytes`].
    #[error("component is {size} bytes, larger than the {limit} byte limit")]
    TooLarge {
        /// Size of the upload.
        size: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// No `\0asm` header.
    #[error("not a WebAssembly binary (missing the \\0asm header)")]
    NotWasm,
    /// A core module where a component was expected.
    #[error("this is a core WebAssembly module, not a component")]
    CoreModule,
    /// The parser gave up; nothing after that point can be judged.
    #[error("malformed component: {detail}")]
    Malformed {
        /// The parser's message, with the offset.
        detail: String,
    },
    /// Exports (part of) a contract version this host does not implement.
    #[error(
        "component was built for contract {CONTRACT_PACKAGE}@{version}, \
         but this host implements {}",
        implemented()
    )]
    UnsupportedVersion {
        /// The version the component names.
        version: String,
    },
    /// Imports a contract interface in a version this host does not implement.
    #[error(
        "component imports `{import}`, but this host implements {}",
        implemented()
    )]
    UnsupportedImport {
        /// The import, as named in the component.
        import: String,
    },
    /// Imports WASI: the component was built for a WASI target.
    #[error(
        "component imports WASI ({}), which is outside the qtm contract \
         (strategies may import only {CONTRACT_PACKAGE}/host and {CONTRACT_PACKAGE}/types)",
        quoted(.imports)
    )]
    WasiImports {
        /// Every WASI import, as named in the component.
        imports: Vec<String>,
    },
    /// Imports something that is neither the contract nor WASI.
    #[error(
        "component imports `{import}`, which is outside the qtm contract \
         (strategies may import only {CONTRACT_PACKAGE}/host and {CONTRACT_PACKAGE}/types)"
    )]
    ForeignImport {
        /// The import, as named in the component.
        import: String,
    },
    /// Does not export an interface the contract requires.
    #[error(
        "component does not export `{CONTRACT_PACKAGE}/{interface}`; exports: [{}]",
        .exports.join(", ")
    )]
    MissingExport {
        /// The interface it lacks.
        interface: &'static str,
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// Exports an interface in the contract's package that the contract does not define.
    /// Exports outside the package are the toolchain's business (componentize-py adds one
    /// named `exports`): the host never calls them.
    #[error("component exports `{export}`, which is not part of the qtm contract")]
    UnknownExport {
        /// The export, as named in the component.
        export: String,
    },
    /// Imports and exports from different supported contract versions.
    #[error(
        "component mixes contract versions {} (one component, one version)",
        .versions.join(" and ")
    )]
    MixedVersions {
        /// The supported versions its imports and exports match.
        versions: Vec<&'static str>,
    },
    /// More core functions than [`SandboxConfig::max_functions`].
    #[error("component defines {count} functions, more than the limit of {limit}")]
    TooManyFunctions {
        /// Functions defined across its modules.
        count: u32,
        /// The limit it broke.
        limit: u32,
    },
    /// More imports than [`SandboxConfig::max_imports`].
    #[error("component declares {count} imports, more than the limit of {limit}")]
    TooManyImports {
        /// Top-level imports.
        count: usize,
        /// The limit it broke.
        limit: u32,
    },
    /// More core instances than [`Limits::instances`](super::Limits::instances): instantiating
    /// it would fail.
    #[error(
        "component creates {count} core instances, more than the limit of {limit} \
         (the sandbox's core-instance limit, `Limits::instances`)"
    )]
    TooManyInstances {
        /// Core instances it creates.
        count: u32,
        /// The limit it broke.
        limit: usize,
    },
}

impl GateReason {
    /// What to do about it, in a sentence.
    pub fn fix(&self) -> String {
        match self {
            Self::TooLarge { .. } => "make it smaller (a release build with `lto = true` and \
                 `strip = true`), or raise the limit: `max_upload_bytes` (QTM_MAX_UPLOAD_BYTES) \
                 for `qtm serve`, `SandboxConfig::max_component_bytes` in code"
                .into(),
            Self::NotWasm => {
                "give the `.wasm` component that `qtm strategy build` prints, not source code \
                 or an archive"
                    .into()
            }
            Self::CoreModule => "build it with `qtm strategy build` or convert it with \
                 `qtm strategy componentize`"
                .into(),
            Self::Malformed { .. } => {
                "the file is damaged or cut short: copy or upload it again, or rebuild it with \
                 `qtm strategy build`"
                    .into()
            }
            Self::UnsupportedVersion { .. } | Self::UnsupportedImport { .. } => format!(
                "rebuild it against {} (this host's wit/since_v*/strategy.wit, or the qtm-guest-sdk of \
                 the same release)",
                implemented()
            ),
            Self::WasiImports { .. } => "build for wasm32-unknown-unknown, or for \
                 componentize-py use --stub-wasi; a strategy reaches the world only through \
                 qtm:strategy/host"
                .into(),
            Self::ForeignImport { .. } => "remove the code that needs it: a strategy reaches \
                 the world only through qtm:strategy/host"
                .into(),
            Self::MissingExport { interface, .. } => format!(
                "export `{CONTRACT_PACKAGE}/{interface}@{}`: with qtm-guest-sdk, \
                 `export_strategy!(YourStrategy)`; with another toolchain, build a library (not \
                 a command, which exports `wasi:cli/run`) against the world `strategy` of \
                 wit/since_v{0}/strategy.wit",
                latest()
            ),
            Self::UnknownExport { .. } => format!(
                "build against the world `strategy` of wit/since_v{}/strategy.wit: of the \
                 contract's interfaces, a strategy exports only qtm:strategy/guest",
                latest()
            ),
            Self::MixedVersions { .. } => {
                "build every part of it against one version of the contract (wit/since_v*/)".into()
            }
            Self::TooManyFunctions { .. } => "make the code smaller (fewer dependencies, \
                 `lto = true`), or raise `SandboxConfig::max_functions`"
                .into(),
            Self::TooManyImports { .. } => {
                "import only qtm:strategy/host and qtm:strategy/types, or raise \
                 `SandboxConfig::max_imports`"
                    .into()
            }
            Self::TooManyInstances { .. } => "raise the limit: `max_core_instances` \
                 (QTM_MAX_CORE_INSTANCES) for `qtm serve`, `Limits::instances` in code"
                .into(),
        }
    }
}

/// The gate's refusal: every reason it found, in the order checked (never empty).
///
/// `Display` gives one reason as its message followed by its fix; several as a count and a
/// numbered list, each reason with its fix on the next line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateError {
    reasons: Vec<GateReason>,
}

impl GateError {
    fn new(reasons: Vec<GateReason>) -> Self {
        debug_assert!(!reasons.is_empty());
        Self { reasons }
    }

    /// Every reason, in the order checked.
    pub fn reasons(&self) -> &[GateReason] {
        &self.reasons
    }
}

impl From<GateReason> for GateError {
    fn from(reason: GateReason) -> Self {
        Self::new(vec![reason])
    }
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reasons.as_slice() {
            [one] => write!(f, "{one}\n   fix: {}", one.fix()),
            many => {
                write!(f, "{} problems:", many.len())?;
                for (i, reason) in many.iter().enumerate() {
                    write!(f, "\n{}. {reason}\n   fix: {}", i + 1, reason.fix())?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for GateError {}

/// Check a component against the gate; `Err` lists everything that was wrong.
pub fn check(bytes: &[u8], config: &SandboxConfig) -> Result<GateReport, GateError> {
    if bytes.len() > config.max_component_bytes {
        return Err(GateReason::TooLarge {
            size: bytes.len(),
            limit: config.max_component_bytes,
        }
        .into());
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(GateReason::NotWasm.into());
    }
    let malformed = |what: &str, e: wasmparser::BinaryReaderError| GateReason::Malformed {
        detail: format!("{what}{e}"),
    };
    let mut report = GateReport {
        size: bytes.len(),
        contract: String::new(),
        version: String::new(),
        supported_version: "",
        imports: Vec::new(),
        exports: Vec::new(),
        functions: 0,
        modules: 0,
        core_instances: 0,
        hints: Hints::default(),
    };
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| malformed("", e))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding == Encoding::Module {
                    return Err(GateReason::CoreModule.into());
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
            // Only instantiations count: wasmtime bumps its instance count per core module
            // instantiated, not for instances bundled from exports.
            Payload::InstanceSection(r) => {
                for instance in r {
                    let instance = instance.map_err(|e| malformed("instance section: ", e))?;
                    if matches!(instance, Instance::Instantiate { .. }) {
                        report.core_instances = report.core_instances.saturating_add(1);
                    }
                }
            }
            Payload::ComponentImportSection(r) if depth == 1 => {
                for import in r {
                    let import = import.map_err(|e| malformed("import section: ", e))?;
                    report.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for export in r {
                    let export = export.map_err(|e| malformed("export section: ", e))?;
                    report.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let contract = check_contract(&report.imports, &report.exports);
    let mut reasons = match &contract {
        Ok(_) => Vec::new(),
        Err(reasons) => reasons.clone(),
    };
    if report.functions > config.max_functions {
        reasons.push(GateReason::TooManyFunctions {
            count: report.functions,
            limit: config.max_functions,
        });
    }
    if report.imports.len() > config.max_imports as usize {
        reasons.push(GateReason::TooManyImports {
            count: report.imports.len(),
            limit: config.max_imports,
        });
    }
    if report.core_instances as usize > config.limits.instances {
        reasons.push(GateReason::TooManyInstances {
            count: report.core_instances,
            limit: config.limits.instances,
        });
    }
    match contract {
        Ok((version, supported)) if reasons.is_empty() => {
            report.contract = format!("{CONTRACT_PACKAGE}@{version}");
            report.version = version;
            report.supported_version = supported;
            Ok(report)
        }
        _ => Err(GateError::new(reasons)),
    }
}

/// `qtm:strategy/<interface>@<version>` split into interface and version.
fn contract_item(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix(CONTRACT_PACKAGE)?
        .strip_prefix('/')?
        .split_once('@')
}

/// Check the component's top-level imports and exports against the contract. `Ok` is the
/// version its `guest` export names and the supported version that matches it.
fn check_contract(
    imports: &[String],
    exports: &[String],
) -> Result<(String, &'static str), Vec<GateReason>> {
    let mut unsupported: Vec<&str> = Vec::new();
    let mut unknown = Vec::new();
    let mut matched: Vec<&'static str> = Vec::new();
    let mut exported: Vec<(&str, &str)> = Vec::new();
    for export in exports {
        match contract_item(export) {
            Some((_, version)) if supported(version).is_none() => unsupported.push(version),
            Some((interface, version)) if CONTRACT_EXPORTS.contains(&interface) => {
                exported.push((interface, version));
                matched.extend(supported(version));
            }
            Some(_) => unknown.push(GateReason::UnknownExport {
                export: export.clone(),
            }),
            None => {}
        }
    }
    unsupported.sort_unstable();
    unsupported.dedup();
    let mut reasons: Vec<GateReason> = unsupported
        .iter()
        .map(|v| GateReason::UnsupportedVersion {
            version: v.to_string(),
        })
        .collect();
    // What a version this host does not know must export is unknown too: only the version
    // is reported then.
    if unsupported.is_empty() {
        for interface in CONTRACT_EXPORTS {
            if !exported.iter().any(|(i, _)| i == interface) {
                reasons.push(GateReason::MissingExport {
                    interface,
                    exports: exports.to_vec(),
                });
            }
        }
    }
    reasons.append(&mut unknown);
    let mut wasi = Vec::new();
    for import in imports {
        match contract_item(import) {
            Some((interface, version)) if CONTRACT_IMPORTS.contains(&interface) => {
                match supported(version) {
                    Some(v) => matched.push(v),
                    None => reasons.push(GateReason::UnsupportedImport {
                        import: import.clone(),
                    }),
                }
            }
            _ if import.starts_with("wasi:") => wasi.push(import.clone()),
            _ => reasons.push(GateReason::ForeignImport {
                import: import.clone(),
            }),
        }
    }
    if !wasi.is_empty() {
        reasons.push(GateReason::WasiImports { imports: wasi });
    }
    matched.sort_unstable();
    matched.dedup();
    if matched.len() > 1 {
        reasons.push(GateReason::MixedVersions { versions: matched });
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let (_, version) = exported[0];
    let supported = supported(version).expect("checked above");
    Ok((version.to_string(), supported))
}

/// The entry of [`SUPPORTED_VERSIONS`] that `version` is compatible with.
fn supported(version: &str) -> Option<&'static str> {
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .find(|s| compatible(version, s))
}

/// Semver compatibility as the component model sees it: same major, and for 0.x the same minor.
fn compatible(version: &str, supported: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(version), parse(supported)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

/// The versions this host implements, for messages: `qtm:strategy@0.1.0 and qtm:strategy@…`.
fn implemented() -> String {
    SUPPORTED_VERSIONS
        .iter()
        .map(|v| format!("{CONTRACT_PACKAGE}@{v}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The newest supported version: what a new component should target.
fn latest() -> &'static str {
    SUPPORTED_VERSIONS.last().copied().unwrap_or_default()
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    const GUEST: &str = "qtm:strategy/guest@0.1.0";
    const TYPES: &str = "qtm:strategy/types@0.1.0";
    const HOST: &str = "qtm:strategy/host@0.1.0";

    #[test]
    fn versions_follow_component_semver() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.1.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("x", "0.1.0"));
        assert_eq!(supported("0.1.3"), Some("0.1.0"));
        assert_eq!(supported("0.9.0"), None);
    }

    #[test]
    fn the_host_supports_the_version_its_bindings_implement() {
        assert!(SUPPORTED_VERSIONS.contains(&super::super::CONTRACT_VERSION));
        assert!(SUPPORTED_VERSIONS.iter().all(|v| supported(v) == Some(*v)));
        // One bindings module per accepted version, and no other.
        let bound: Vec<&str> = ContractVersion::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(SUPPORTED_VERSIONS, bound.as_slice());
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
    fn a_strategy_passes_and_reports_its_version() {
        let (version, supported) = check_contract(
            &names(&[TYPES, HOST]),
            &names(&["qtm:strategy/guest@0.1.2"]),
        )
        .unwrap();
        assert_eq!((version.as_str(), supported), ("0.1.2", "0.1.0"));
    }

    #[test]
    fn foreign_imports_are_named() {
        let e = check_contract(
            &names(&["wasi:filesystem/preopens@0.2.0", HOST]),
            &names(&[GUEST]),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        let msg = e[0].to_string();
        assert!(msg.contains("`wasi:filesystem/preopens@0.2.0`"), "{msg}");
        assert!(e[0].fix().contains("--stub-wasi"), "{}", e[0].fix());
        let e = check_contract(&names(&["qtm:strategy/host@0.3.0"]), &names(&[GUEST])).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "component imports `qtm:strategy/host@0.3.0`, but this host implements \
             qtm:strategy@0.1.0 and qtm:strategy@0.2.0"
        );
        let e =
            check_contract(&names(&["qtm:strategy/socket@0.1.0"]), &names(&[GUEST])).unwrap_err();
        assert!(
            e[0].to_string().contains("outside the qtm contract"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn every_contract_problem_is_listed() {
        // A WASI command: WASI imports, a foreign import, `wasi:cli/run` instead of `guest`.
        let e = check_contract(
            &names(&[
                "wasi:cli/environment@0.2.0",
                "acme:net/socket",
                "wasi:io/streams@0.2.0",
                "qtm:strategy/host@0.4.0",
            ]),
            &names(&["wasi:cli/run@0.2.0"]),
        )
        .unwrap_err();
        let kinds: Vec<String> = e
            .iter()
            .map(|r| {
                serde_json::to_value(r).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .into()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "missing_export",
                "foreign_import",
                "unsupported_import",
                "wasi_imports"
            ]
        );
        assert_eq!(
            e[3],
            GateReason::WasiImports {
                imports: names(&["wasi:cli/environment@0.2.0", "wasi:io/streams@0.2.0"])
            }
        );
    }

    #[test]
    fn exports_outside_the_contract_package_are_the_toolchains_business() {
        // componentize-py exports an instance named `exports` beside the guest.
        let ok = check_contract(&names(&[HOST]), &names(&["exports", GUEST, "acme:x/y"]));
        assert!(ok.is_ok(), "{ok:?}");
        let e = check_contract(
            &names(&[HOST]),
            &names(&[GUEST, "qtm:strategy/debug@0.1.0"]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            [GateReason::UnknownExport {
                export: "qtm:strategy/debug@0.1.0".into()
            }]
        );
    }

    #[test]
    fn an_unknown_version_is_named_once_without_guessing_its_exports() {
        let e = check_contract(
            &[],
            &names(&[
                "qtm:strategy/strategy@0.3.0",
                "qtm:strategy/other@0.3.0",
                "acme:x/y",
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            [GateReason::UnsupportedVersion {
                version: "0.3.0".into()
            }]
        );
        assert_eq!(
            e[0].to_string(),
            "component was built for contract qtm:strategy@0.3.0, but this host implements \
             qtm:strategy@0.1.0 and qtm:strategy@0.2.0"
        );
    }

    #[test]
    fn one_reason_reads_as_a_sentence_and_many_as_a_numbered_list() {
        let one = GateError::from(GateReason::NotWasm);
        assert_eq!(
            one.to_string(),
            "not a WebAssembly binary (missing the \\0asm header)\n   \
             fix: give the `.wasm` component that `qtm strategy build` prints, not source code \
             or an archive"
        );
        let many = GateError::new(vec![
            GateReason::WasiImports {
                imports: names(&["wasi:cli/environment@0.2.0"]),
            },
            GateReason::TooManyInstances {
                count: 70,
                limit: 64,
            },
        ]);
        let text = many.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "2 problems:");
        assert!(lines[1].starts_with("1. component imports WASI (`wasi:cli/environment@0.2.0`)"));
        assert!(lines[2].starts_with("   fix: build for wasm32-unknown-unknown"));
        assert!(lines[3].starts_with("2. component creates 70 core instances"));
        assert!(lines[3].contains("`Limits::instances`"), "{text}");
        assert!(lines[4].contains("QTM_MAX_CORE_INSTANCES"), "{text}");
    }

    #[test]
    fn garbage_and_core_modules_are_refused_before_compiling() {
        let cfg = SandboxConfig::default();
        let only = |bytes: &[u8]| -> GateReason {
            let e = check(bytes, &cfg).unwrap_err();
            assert_eq!(e.reasons().len(), 1, "{e}");
            e.reasons()[0].clone()
        };
        assert_eq!(only(b"hello world!"), GateReason::NotWasm);
        // The smallest core module: header only.
        assert_eq!(only(b"\0asm\x01\0\0\0"), GateReason::CoreModule);
        // A component header followed by a truncated section.
        let e = only(b"\0asm\x0d\0\x01\0\x07\x05");
        assert!(e.to_string().starts_with("malformed component"), "{e}");
        let big = vec![0u8; cfg.max_component_bytes + 1];
        assert!(only(&big).to_string().contains("larger than the"));
    }

    #[test]
    fn an_empty_component_lacks_the_guest_export() {
        // Header only: a component with no imports, exports or instances.
        let e = check(b"\0asm\x0d\0\x01\0", &SandboxConfig::default()).unwrap_err();
        assert_eq!(
            e.reasons(),
            [GateReason::MissingExport {
                interface: "guest",
                exports: vec![]
            }]
        );
        assert!(
            e.to_string().contains("export `qtm:strategy/guest@0.2.0`"),
            "{e}"
        );
    }
}
