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

pub use qtm_rules::{Diagnostic, ParamDecl, ParamKind, ParamValue, Pos, Program};

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
    // The reference component holds the core module verbatim, program area included, so the
    // program is written straight into a copy of it: the same bytes as componentizing a
    // module with the program in it (a test holds the two together), without re-encoding
    // the whole guest for each program.
    let mut component = reference_component().to_vec();
    qtm_rules::embed::write_into(&mut component, name, text).map_err(internal)?;
    Ok(Compiled { component, program })
}

/// The rules guest componentized with an empty program area: every compiled program differs
/// from it only in that area, so stores keep programs as small deltas against it.
pub fn reference_component() -> &'static [u8] {
    static REFERENCE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(|| {
        wit_component::ComponentEncoder::default()
            .module(RULES_MODULE)
            .and_then(|e| e.validate(true).encode())
            // The module is built and tested with this crate (`compile` encodes copies of it).
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(r: Result<Compiled, Vec<Diagnostic>>) -> String {
        r.err().map(|d| d[0].to_string()).unwrap_or_default()
    }

    #[test]
    fn the_embedded_module_has_one_empty_program_area() {
        let magic = qtm_rules::embed::MAGIC;
        let at: Vec<usize> = RULES_MODULE
            .windows(magic.len())
            .enumerate()
            .filter(|(_, w)| *w == magic)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1);
        let area =
            &RULES_MODULE[at[0] + magic.len()..][..qtm_rules::embed::AREA_BYTES - magic.len()];
        assert!(area.iter().all(|b| *b == 0));
    }

    #[test]
    fn writing_into_the_reference_is_componentizing_the_written_module() {
        let text = "param n = int(3, 1, 9)\nentry_long = close > open[n]\nsize = units(1)\n";
        let mut module = RULES_MODULE.to_vec();
        qtm_rules::embed::write_into(&mut module, "gap", text).unwrap();
        let encoded = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|e| e.validate(true).encode())
            .unwrap();
        assert_eq!(compile("gap", text.as_bytes()).unwrap().component, encoded);
    }

    #[test]
    fn each_program_is_a_component_of_its_own() {
        let a = compile("a", b"entry_long = close > open\nsize = units(1)\n").unwrap();
        let b = compile("a", b"entry_long = close < open\nsize = units(1)\n").unwrap();
        // A component (layer 1), not a core module.
        assert_eq!(&a.component[..8], b"\0asm\x0d\0\x01\0");
        assert_ne!(a.component, b.component);
        assert_eq!(a.params().len(), 0);
    }

    #[test]
    fn a_program_differs_from_the_reference_only_near_its_program_area() {
        let r = reference_component();
        let c = compile("sma", b"entry_long = close > open\nsize = units(1)\n").unwrap();
        assert_eq!(r.len(), c.component.len());
        let differing = r.iter().zip(&c.component).filter(|(a, b)| a != b).count();
        assert!(differing < 200, "{differing} bytes differ");
    }

    #[test]
    fn hostile_text_and_names_are_diagnostics() {
        assert_eq!(
            first(compile("x", b"\xff\xfe")),
            "1:1: invalid UTF-8 (byte 0)"
        );
        assert_eq!(
            first(compile("x", &vec![b'#'; 1 << 20])),
            "1:1: program is 1048576 bytes, larger than the 32768 byte limit"
        );
        let long = "n".repeat(200);
        assert_eq!(
            first(compile(&long, b"entry_long = true\nsize = units(1)\n")),
            "1:1: name is 200 bytes, longer than 128"
        );
    }
}
