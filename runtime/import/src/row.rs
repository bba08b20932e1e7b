//! One source row → one checked strategy, or the reason it is refused.
//!
//! Fields and their default columns: `name` (required), one of `rules` (rule text),
//! `template` (an uploaded strategy's `describe` name) or `wasm` (a component), and optional
//! `params` (a JSON object), `symbols` (comma-separated or a JSON array), `description` and
//! `key` (the row's identity, default `name`). `--map field=column` reads a field from
//! another column. Every value is capped before it is copied further.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use qtm_core::config::{self, ConfigError};
use qtm_core::model::{ParamKind, ParamSpec, ParamValue, StrategyInfo};
use qtm_sandbox::{Sandbox, SandboxError};
use qtm_store::Store;
use qtm_store::imports::ImportRow;

use crate::source::{Cell, SourceRow};
use crate::{ImportError, Rejected};

/// The fields a row may give.
pub const FIELDS: [&str; 8] = [
    "name",
    "rules",
    "template",
    "params",
    "wasm",
    "symbols",
    "key",
    "description",
];

/// Largest rule text read (the language's own limit is lower; this bounds what is copied).
pub const MAX_RULES_BYTES: usize = 1 << 20;
/// Largest `params` or `symbols` text.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Longest key.
pub const MAX_KEY_CHARS: usize = 200;

/// Field → column overrides (`--map field=column`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldMap(Vec<(String, String)>);

impl FieldMap {
    /// Parse `field=column` items; an unknown field or a field given twice is an error.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<FieldMap, ImportError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for item in items {
            let item = item.as_ref();
            let Some((field, column)) = item.split_once('=') else {
                return Err(ImportError::Columns(format!(
                    "--map {item:?}: write field=column"
                )));
            };
            let (field, column) = (field.trim(), column.trim());
            if !FIELDS.contains(&field) {
                return Err(ImportError::Columns(format!(
                    "--map {item:?}: unknown field {field:?} (fields: {})",
                    FIELDS.join(", ")
                )));
            }
            if column.is_empty() || column.len() > 128 {
                return Err(ImportError::Columns(format!(
                    "--map {item:?}: the column name must have 1 to 128 bytes"
                )));
            }
            if out.iter().any(|(f, _)| f == field) {
                return Err(ImportError::Columns(format!(
                    "--map gives field {field:?} twice"
                )));
            }
            out.push((field.to_string(), column.to_string()));
        }
        Ok(FieldMap(out))
    }

    /// From a JSON object `{"field": "column"}` (the API's `map`).
    pub fn from_json(v: &Value) -> Result<FieldMap, ImportError> {
        let Some(obj) = v.as_object() else {
            return Err(ImportError::Columns(
                "map must be an object of field → column".into(),
            ));
        };
        let mut items = Vec::new();
        for (field, column) in obj {
            let Some(column) = column.as_str() else {
                return Err(ImportError::Columns(format!(
                    "map.{field} must be a column name (a string)"
                )));
            };
            items.push(format!("{field}={column}"));
        }
        FieldMap::parse(&items)
    }

    fn column_of<'a>(&'a self, field: &'a str) -> &'a str {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map_or(field, |(_, c)| c.as_str())
    }
}

/// Where each field is in the query's rows.
#[derive(Debug, Clone)]
pub struct Columns(HashMap<&'static str, usize>);

impl Columns {
    /// Find each field's column among `names`: `name` must be there, and one of `rules`,
    /// `template` or `wasm`.
    pub fn resolve(names: &[String], map: &FieldMap) -> Result<Columns, ImportError> {
        let mut at = HashMap::new();
        for field in FIELDS {
            let column = map.column_of(field);
            let found = names.iter().position(|n| n.eq_ignore_ascii_case(column));
            match found {
                Some(i) => {
                    at.insert(field, i);
                }
                None if column != field => {
                    return Err(ImportError::Columns(format!(
                        "--map {field}={column}: the query has no column {column:?} (it has: {})",
                        names.join(", ")
                    )));
                }
                None => {}
            }
        }
        if !at.contains_key("name") {
            return Err(ImportError::Columns(format!(
                "the query has no column `name` (it has: {}); select one or map it with --map name=COLUMN",
                names.join(", ")
            )));
        }
        if !["rules", "template", "wasm"]
            .iter()
            .any(|f| at.contains_key(f))
        {
            return Err(ImportError::Columns(format!(
                "the query has none of the columns `rules`, `template` or `wasm` (it has: {}); select one or map it",
                names.join(", ")
            )));
        }
        Ok(Columns(at))
    }

    /// The row's fields, or why the row is refused. `n` is its 1-based position.
    pub fn spec(&self, cells: &SourceRow, n: u64) -> Result<RowSpec, Rejected> {
        let cell = |field: &str| self.0.get(field).and_then(|&i| cells.get(i));
        let label = format!("row {n}");
        let reject = |row: &str, error: String| Rejected {
            row: row.to_string(),
            error,
        };
        let name = match text(cell("name"), "name", 400) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(reject(&label, "name is empty or NULL".into())),
            Err(e) => return Err(reject(&label, e)),
        };
        // A NULL or empty key is the name, as when there is no key column.
        let key = match cell("key").filter(|c| !matches!(c, Cell::Null)) {
            None => name.clone(),
            Some(Cell::Int(i)) => i.to_string(),
            Some(c) => match text(Some(c), "key", MAX_KEY_CHARS * 4) {
                Ok(Some(k)) if k.chars().count() <= MAX_KEY_CHARS => k,
                Ok(Some(_)) => {
                    return Err(reject(
                        &label,
                        format!("key has more than {MAX_KEY_CHARS} characters"),
                    ));
                }
                Ok(None) => name.clone(),
                Err(e) => return Err(reject(&label, e)),
            },
        };
        let fail = |error: String| reject(&key, error);
        let rules = cell("rules").filter(|c| **c != Cell::Null);
        let template = cell("template").filter(|c| **c != Cell::Null);
        let wasm = cell("wasm").filter(|c| **c != Cell::Null);
        let code = match (rules, template, wasm) {
            (Some(r), None, None) => Code::Rules(match r {
                Cell::Text(s) if s.len() > MAX_RULES_BYTES => {
                    return Err(fail(too_big("rules", s.len())));
                }
                Cell::Text(s) => s.clone().into_bytes(),
                // The checker names the first invalid byte at its line and column.
                Cell::BadText(b) | Cell::Bytes(b) if b.len() <= MAX_RULES_BYTES => b.clone(),
                Cell::BadText(b) | Cell::Bytes(b) => return Err(fail(too_big("rules", b.len()))),
                other => return Err(fail(format!("rules must be text, got {}", kind(other)))),
            }),
            (None, Some(t), None) => Code::Template(
                text(Some(t), "template", 128)
                    .map_err(&fail)?
                    .ok_or_else(|| fail("template is empty".into()))?,
            ),
            (None, None, Some(w)) => Code::Wasm(match w {
                Cell::Bytes(b) => b.clone(),
                other => return Err(fail(format!("wasm must be a blob, got {}", kind(other)))),
            }),
            (None, None, None) => {
                return Err(fail(
                    "the row has no code: give rules, template or wasm (not NULL)".into(),
                ));
            }
            _ => {
                return Err(fail(
                    "the row gives more than one of rules, template and wasm; give exactly one"
                        .into(),
                ));
            }
        };
        let params = match text(cell("params"), "params", MAX_CONFIG_BYTES).map_err(&fail)? {
            None => None,
            Some(t) => Some(
                serde_json::from_str::<Value>(&t)
                    .map_err(|e| fail(format!("params is not JSON: {e}")))?,
            ),
        };
        let symbols = match cell("symbols") {
            Some(Cell::TextArray(list)) => Some(list.clone()),
            c => text(c, "symbols", MAX_CONFIG_BYTES)
                .map_err(&fail)?
                .map(|t| parse_symbols(&t))
                .transpose()
                .map_err(&fail)?,
        };
        let description = text(cell("description"), "description", 8000)
            .map_err(&fail)?
            .unwrap_or_default();
        Ok(RowSpec {
            key,
            name,
            description,
            code,
            params,
            symbols,
        })
    }
}

fn too_big(field: &str, len: usize) -> String {
    format!("{field} is {len} bytes; at most {MAX_RULES_BYTES} are read")
}

fn kind(c: &Cell) -> String {
    match c {
        Cell::Null => "NULL".into(),
        Cell::Int(_) => "an integer".into(),
        Cell::Float(_) => "a number".into(),
        Cell::Bool(_) => "a boolean".into(),
        Cell::Text(_) => "text".into(),
        Cell::BadText(_) => "text that is not UTF-8".into(),
        Cell::Bytes(_) => "a blob".into(),
        Cell::TextArray(_) => "a text array".into(),
        Cell::Unsupported(t) => format!("a {t} (cast it to text in the query)"),
    }
}

/// A text field: `None` for NULL or empty (after trimming); an error for anything but text,
/// for invalid UTF-8, and past `max_bytes`.
fn text(c: Option<&Cell>, field: &str, max_bytes: usize) -> Result<Option<String>, String> {
    match c {
        None | Some(Cell::Null) => Ok(None),
        Some(Cell::Text(s)) if s.len() > max_bytes => {
            Err(format!("{field} is {} bytes; at most {max_bytes}", s.len()))
        }
        Some(Cell::Text(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(Cell::BadText(b)) => {
            let at = std::str::from_utf8(b).err().map_or(0, |e| e.valid_up_to());
            Err(format!("{field} is not valid UTF-8 (byte {at})"))
        }
        Some(other) => Err(format!("{field} must be text, got {}", kind(other))),
    }
}

/// `SPY, QQQ` or `["SPY","QQQ"]`.
fn parse_symbols(t: &str) -> Result<Vec<String>, String> {
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(t)
            .map_err(|e| format!("symbols is not a JSON array of strings: {e}"));
    }
    Ok(t.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// How a row gives its code.
#[derive(Debug, Clone)]
pub enum Code {
    /// Rule text (bytes: checked for UTF-8 by the rule checker, which says where).
    Rules(Vec<u8>),
    /// An uploaded strategy's `describe` name.
    Template(String),
    /// A component.
    Wasm(Vec<u8>),
}

/// A row's fields, read but not yet checked.
#[derive(Debug, Clone)]
pub struct RowSpec {
    /// The row's identity (its `key`, else its name).
    pub key: String,
    /// The strategy's name.
    pub name: String,
    /// The strategy's description (may be empty).
    pub description: String,
    /// Its code.
    pub code: Code,
    /// Parameter values over the code's defaults.
    pub params: Option<Value>,
    /// Symbols (the code's own when absent).
    pub symbols: Option<Vec<String>>,
}

/// The code of a row, checked: the component and what it declares.
struct CheckedCode {
    kind: &'static str,
    component: Arc<Vec<u8>>,
    component_sha256: String,
    contract: String,
    info: StrategyInfo,
}

/// Checks rows against the destination (templates) and the sandbox (components).
pub struct Checker<'a> {
    store: &'a Store,
    sandbox: &'a Arc<Sandbox>,
    /// Templates looked up so far: their code, or why there is none.
    templates: HashMap<String, Result<Arc<CheckedCode>, String>>,
    /// Components an earlier row of this import carries already.
    spooled: std::collections::HashSet<String>,
    /// The upload gate's verdict on the rules guest (its contract, or why it fails).
    rules_gate: Option<Result<String, String>>,
}

impl<'a> Checker<'a> {
    /// A checker for rows going into `store`.
    pub fn new(store: &'a Store, sandbox: &'a Arc<Sandbox>) -> Self {
        Checker {
            store,
            sandbox,
            templates: HashMap::new(),
            spooled: Default::default(),
            rules_gate: None,
        }
    }

    /// Check one row; the row as it will be stored, or why it is refused.
    pub async fn check(&mut self, spec: RowSpec) -> Result<ImportRow, Rejected> {
        let key = spec.key.clone();
        let fail = |error: String| Rejected {
            row: key.clone(),
            error,
        };
        let cfg = |e: ConfigError| fail(e.to_string());
        let name = config::check_name(&spec.name).map_err(cfg)?;
        let description = config::check_description(&spec.description).map_err(cfg)?;
        let code = match spec.code {
            Code::Rules(text) => Arc::new(self.rules(&name, text).await.map_err(&fail)?),
            Code::Template(t) => self.template(&t).await.map_err(&fail)?,
            Code::Wasm(bytes) => Arc::new(self.wasm(bytes).await.map_err(&fail)?),
        };
        let given = match &spec.params {
            None => Vec::new(),
            Some(v) => config::params_from_json(&code.info, v).map_err(cfg)?,
        };
        let params = code
            .info
            .resolve_params(&given)
            .map_err(|e| fail(format!("params: {e}")))?;
        let params = config::params_to_json(&params);
        let symbols = spec.symbols.unwrap_or_else(|| code.info.symbols.clone());
        if symbols.is_empty() {
            return Err(fail(
                "no symbols: give a symbols column (comma-separated or a JSON array)".into(),
            ));
        }
        config::check_symbols("symbols", &symbols).map_err(cfg)?;
        let describe = serde_json::to_value(&code.info).unwrap_or(Value::Null);
        let content = json!({
            "kind": code.kind,
            "component": code.component_sha256,
            "params": params,
            "symbols": symbols,
            "name": name,
            "description": description,
        });
        let content_sha256 = hex::encode(Sha256::digest(content.to_string().as_bytes()));
        // Encoded once per component (a delta for rule programs), before the write.
        let component = if self.spooled.insert(code.component_sha256.clone()) {
            let (store, bytes) = (self.store.clone(), code.component.clone());
            Some(
                tokio::task::spawn_blocking(move || store.encode_component(&bytes))
                    .await
                    .map_err(|e| fail(format!("encoding the component failed: {e}")))?,
            )
        } else {
            None
        };
        Ok(ImportRow {
            key: spec.key,
            name,
            description,
            kind: code.kind.to_string(),
            content_sha256,
            component_sha256: code.component_sha256.clone(),
            contract_version: code.contract.clone(),
            describe,
            component,
            component_size: code.component.len(),
            params,
            symbols,
        })
    }

    /// A rule program's component. Its `describe` is derived here from the checked program
    /// (what the guest computes from the same text: a test holds the two together); compiling
    /// it waits until something runs it.
    ///
    /// The upload gate checks the rules guest once per import, not each program: a program's
    /// component is the reference component with only the bytes of a data segment's program
    /// area changed, which nothing the gate checks (structure, imports, exports, sizes, counts)
    /// can see.
    async fn rules(&mut self, name: &str, text: Vec<u8>) -> Result<CheckedCode, String> {
        let gate = match &self.rules_gate {
            Some(gate) => gate.clone(),
            None => {
                let sandbox = self.sandbox.clone();
                let gate = tokio::task::spawn_blocking(move || {
                    let reference = qtm_rules_component::reference_component();
                    qtm_sandbox::gate::check(reference, sandbox.config())
                        .map(|g| g.contract)
                        .map_err(|e| format!("rules: the rules guest failed the upload gate: {e}"))
                })
                .await
                .map_err(|e| format!("checking the rules guest failed: {e}"))?;
                self.rules_gate = Some(gate.clone());
                gate
            }
        };
        let contract = gate?;
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let compiled = qtm_rules_component::compile(&name, &text).map_err(|problems| {
                let shown: Vec<String> =
                    problems.iter().take(20).map(ToString::to_string).collect();
                let more = problems.len().saturating_sub(shown.len());
                format!(
                    "rules: {}{}",
                    shown.join("; "),
                    if more > 0 {
                        format!("; … and {more} more")
                    } else {
                        String::new()
                    }
                )
            })?;
            let sha = hex::encode(Sha256::digest(&compiled.component));
            Ok(CheckedCode {
                kind: "rules",
                info: rules_info(&name, &compiled),
                component_sha256: sha,
                contract,
                component: Arc::new(compiled.component),
            })
        })
        .await
        .map_err(|e| format!("checking the rules failed: {e}"))?
    }

    async fn template(&mut self, name: &str) -> Result<Arc<CheckedCode>, String> {
        if let Some(found) = self.templates.get(name) {
            return found.clone();
        }
        let found = match qtm_store::strategies::latest_described_as(self.store, name).await {
            Err(e) => return Err(format!("template {name:?}: {e}")),
            Ok(None) => Err(format!(
                "template {name:?}: no stored strategy describes itself with that name; upload its component first"
            )),
            Ok(Some(v)) => {
                let bytes = qtm_store::strategies::component(self.store, v.id)
                    .await
                    .map_err(|e| format!("template {name:?}: {e}"))?;
                match serde_json::from_value::<StrategyInfo>(v.describe.clone()) {
                    Ok(info) => Ok(Arc::new(CheckedCode {
                        kind: "template",
                        component: Arc::new(bytes),
                        component_sha256: v.content_sha256.clone(),
                        contract: v.contract_version.clone(),
                        info,
                    })),
                    Err(e) => Err(format!(
                        "template {name:?}: its stored describe is unreadable: {e}"
                    )),
                }
            }
        };
        self.templates.insert(name.to_string(), found.clone());
        found
    }

    async fn wasm(&self, bytes: Vec<u8>) -> Result<CheckedCode, String> {
        let sandbox = self.sandbox.clone();
        let loaded =
            tokio::task::spawn_blocking(move || sandbox.load(&bytes).map(|code| (code, bytes)))
                .await
                .map_err(|e| format!("checking the component failed: {e}"))?;
        match loaded {
            Ok((code, bytes)) => Ok(CheckedCode {
                kind: "wasm",
                info: code.info().clone(),
                component_sha256: code.sha256().to_string(),
                contract: code.gate().contract.clone(),
                component: Arc::new(bytes),
            }),
            Err(e @ (SandboxError::Gate(_) | SandboxError::Refused(_))) => {
                Err(format!("wasm: refused by the upload gate: {e}"))
            }
            Err(e) => Err(format!("wasm: {e}")),
        }
    }
}

/// What a rule program's component answers to `describe` (as `strategies/rules` builds it).
pub fn rules_info(name: &str, compiled: &qtm_rules_component::Compiled) -> StrategyInfo {
    use qtm_rules_component::ParamKind as K;
    use qtm_rules_component::ParamValue as V;
    let params = compiled
        .params()
        .iter()
        .filter_map(|p| {
            let (kind, default) = match (&p.kind, &p.default) {
                (K::Int { min, max, step }, V::Int(d)) => (
                    ParamKind::Int {
                        min: *min,
                        max: *max,
                        step: *step,
                    },
                    ParamValue::Int(*d),
                ),
                (K::Float { min, max, step }, V::Float(d)) => (
                    ParamKind::Float {
                        min: *min,
                        max: *max,
                        step: *step,
                    },
                    ParamValue::Float(*d),
                ),
                (K::Bool, V::Bool(d)) => (ParamKind::Boolean, ParamValue::Boolean(*d)),
                (K::Choice(c), V::Choice(d)) => (
                    ParamKind::Choice { choices: c.clone() },
                    ParamValue::Choice(d.clone()),
                ),
                _ => return None,
            };
            Some(ParamSpec {
                name: p.name.clone(),
                description: String::new(),
                kind,
                default,
            })
        })
        .collect();
    StrategyInfo {
        name: name.to_string(),
        version: "1.0.0".into(),
        description: "rule program (docs/rules.md)".into(),
        symbols: Vec::new(),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str], map: &[&str]) -> Result<Columns, ImportError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        Columns::resolve(&names, &FieldMap::parse(map).unwrap())
    }

    #[test]
    fn columns_are_found_by_name_or_map_and_missing_ones_said() {
        let c = cols(&["Name", "rules", "syms"], &["symbols=syms"]).unwrap();
        assert_eq!(c.0["name"], 0);
        assert_eq!(c.0["symbols"], 2);
        let e = cols(&["title", "rules"], &[]).unwrap_err().to_string();
        assert!(
            e.contains("no column `name`") && e.contains("title, rules"),
            "{e}"
        );
        let e = cols(&["name"], &[]).unwrap_err().to_string();
        assert!(
            e.contains("none of the columns `rules`, `template` or `wasm`"),
            "{e}"
        );
        let e = cols(&["name", "rules"], &["symbols=nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"nope\""), "{e}");
        let e = FieldMap::parse(&["colour=c"]).unwrap_err().to_string();
        assert!(e.contains("unknown field \"colour\""), "{e}");
    }

    #[test]
    fn hostile_cells_are_clear_errors_naming_the_row() {
        let c = cols(&["name", "rules", "symbols", "params"], &[]).unwrap();
        let row = |cells: Vec<Cell>| c.spec(&cells, 7);
        let e = row(vec![
            Cell::Null,
            Cell::Text("x".into()),
            Cell::Null,
            Cell::Null,
        ])
        .unwrap_err();
        assert_eq!(
            (e.row.as_str(), e.error.as_str()),
            ("row 7", "name is empty or NULL")
        );
        let e = row(vec![
            Cell::Text("a".into()),
            Cell::Null,
            Cell::Null,
            Cell::Null,
        ])
        .unwrap_err();
        assert_eq!(e.row, "a");
        assert!(e.error.contains("has no code"), "{}", e.error);
        let e = row(vec![
            Cell::Text("a".into()),
            Cell::Text("r".repeat(MAX_RULES_BYTES + 1)),
            Cell::Null,
            Cell::Null,
        ])
        .unwrap_err();
        assert!(e.error.contains("at most 1048576"), "{}", e.error);
        let e = row(vec![
            Cell::Text("a".into()),
            Cell::Text("x".into()),
            Cell::Text("SPY".into()),
            Cell::Text("{nope".into()),
        ])
        .unwrap_err();
        assert!(e.error.starts_with("params is not JSON"), "{}", e.error);
        let e = row(vec![
            Cell::BadText(vec![b'a', 0xff]),
            Cell::Text("x".into()),
            Cell::Null,
            Cell::Null,
        ])
        .unwrap_err();
        assert_eq!(e.error, "name is not valid UTF-8 (byte 1)");
        let ok = row(vec![
            Cell::Text(" trend ".into()),
            Cell::Text("x".into()),
            Cell::Text("SPY, QQQ".into()),
            Cell::Null,
        ])
        .unwrap();
        assert_eq!(
            (ok.key.as_str(), ok.symbols.unwrap()),
            ("trend", vec!["SPY".to_string(), "QQQ".to_string()])
        );
    }
}
