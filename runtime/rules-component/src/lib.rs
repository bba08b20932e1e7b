//! Rule programs as strategy components.
//!
//! [`compile`] checks a `.rules` text and, when it is sound, writes it into a copy of the
//! prebuilt rules guest ([`RULES_MODULE`], built by this crate's build script from
//! `strategies/rules`) and componentizes the copy. The result is an ordinary strategy
//! component with its own hash: the sandbox, the store, live trading, clones and swaps treat
//! it like any other. Rules are evaluated only inside that component, never by the host.
//!
//! Callers that store rule text (SQL import, `POST /api/strategies`) call [`compile`] on each
//! text: problems come back as positioned [`Diagnostic`]s, never as a panic, whatever the
//! text (too large, invalid UTF-8, nested 10,000 deep, …).

#![warn(missing_docs)]

pub use qtm_rules::{Diagnostic, ParamDecl, Pos, Program};

/// The rules guest's core module, with an empty program area.
pub const RULES_MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rules.wasm"));

/// A checked rule program and its component.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The component (`qtm:strategy@0.2.0`), ready for the sandbox.
    pub component: Vec<u8>,
    /// The checked program: its typed parameters are what the component's `describe` returns.
    pub program: Program,
}

impl Compiled {
    /// The typed parameters, in declaration order.
    pub fn params(&self) -> &[ParamDecl] {
        self.program.params()
    }
}

/// Check `source` and build its component, named `name` (what `describe` reports).
///
/// `Err` lists every problem of the text, each at its `line:col`. A failure of the embedding
/// itself (a name over 128 bytes, a damaged module) is one diagnostic at 1:1.
pub fn compile(name: &str, source: &[u8]) -> Result<Compiled, Vec<Diagnostic>> {
    let program = qtm_rules::check_bytes(source)?;
    let internal = |message: String| {
        vec![Diagnostic {
            pos: Pos::START,
            message,
        }]
    };
    // `check_bytes` accepted it, so it is UTF-8.
    let text = std::str::from_utf8(source).map_err(|e| internal(e.to_string()))?;
    let mut module = RULES_MODULE.to_vec();
    qtm_rules::embed::write_into(&mut module, name, text).map_err(internal)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| internal(format!("componentizing the rules guest failed: {e:#}")))?;
    Ok(Compiled { component, program })
}
