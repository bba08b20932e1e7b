//! Core module → component, using the component-type section wit-bindgen embedded.

use super::ToolchainError;

/// Wrap a core wasm module built with the guest SDK into a component.
///
/// Already-componentized input is returned unchanged, so callers need not care which they have.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, ToolchainError> {
    if module.len() >= 8 && &module[..4] == b"\0asm" && module[4..8] != [1, 0, 0, 0] {
        return Ok(module.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| ToolchainError::Componentize(format!("componentize failed: {e:#}")))
}
