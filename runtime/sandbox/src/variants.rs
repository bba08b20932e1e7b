//! Components that differ from a compiled base only in the bytes of their data, loaded
//! without compiling them again.
//!
//! The rules guest is one module into whose data segment each program is written
//! (`qtm_rules::embed`): every program is a component of its own, and Cranelift would spend
//! about 150 ms compiling each, though the code is the same. A data segment reaches the
//! compiled artifact verbatim (it initializes linear memory), so a variant is the base's
//! artifact with the changed bytes written over their copy, then deserialized: a few
//! milliseconds. Where that cannot be shown to be safe, the variant is compiled like any
//! other component.

use std::sync::Arc;

use wasmtime::component::Component;

use super::code::{Sandbox, StrategyCode};
use super::error::SandboxError;

/// Bytes of unchanged context on each side of the changed region that must match in the
/// artifact too: enough that the match is the data segment's copy and nothing else.
const CONTEXT: usize = 16;

/// A compiled base component and its serialized artifact.
pub struct DataVariants {
    base: Vec<u8>,
    artifact: Vec<u8>,
}

impl std::fmt::Debug for DataVariants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataVariants")
            .field("base_bytes", &self.base.len())
            .field("artifact_bytes", &self.artifact.len())
            .finish()
    }
}

/// Where a variant's changed bytes go in the artifact, if that is known to be safe.
fn patch_site(base: &[u8], variant: &[u8], artifact: &[u8]) -> Option<(usize, usize, usize)> {
    if base.len() != variant.len() {
        return None;
    }
    let lo = base.iter().zip(variant).position(|(a, b)| a != b)?;
    let hi = base.len()
        - base
            .iter()
            .rev()
            .zip(variant.iter().rev())
            .position(|(a, b)| a != b)?;
    let (wlo, whi) = (lo.saturating_sub(CONTEXT), (hi + CONTEXT).min(base.len()));
    let window = &base[wlo..whi];
    // The window (changed region and its context) must occur exactly once in the artifact:
    // then it is the data segment's copy, not code or metadata that happen to match.
    let first = find(artifact, window, 0)?;
    if find(artifact, window, first + 1).is_some() {
        return None;
    }
    Some((first + (lo - wlo), lo, hi))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    // Anchor on the rarest-looking byte run: the first 8 bytes of the needle, then compare.
    let head = &needle[..needle.len().min(8)];
    let last = haystack.len() - needle.len();
    let mut i = from;
    while i <= last {
        if &haystack[i..i + head.len()] == head && &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Sandbox {
    /// Compile `base` once to load its data variants from (see the module doc).
    pub fn data_variants(&self, base: &[u8]) -> Result<DataVariants, SandboxError> {
        let code = self.load(base)?;
        let artifact = code
            .pre
            .component()
            .serialize()
            .map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        Ok(DataVariants {
            base: base.to_vec(),
            artifact,
        })
    }

    /// Load `bytes`, a component that differs from the base of `variants` only in data, from
    /// the base's compiled code; any other component is loaded (compiled) as by
    /// [`Sandbox::load`]. Either way it passes the upload gate and is described.
    pub fn load_variant(
        &self,
        variants: &DataVariants,
        bytes: &[u8],
    ) -> Result<Arc<StrategyCode>, SandboxError> {
        let Some((at, lo, hi)) = patch_site(&variants.base, bytes, &variants.artifact) else {
            return self.load(bytes);
        };
        let report = super::gate::check(bytes, self.config())?;
        let mut artifact = variants.artifact.clone();
        artifact[at..at + (hi - lo)].copy_from_slice(&bytes[lo..hi]);
        // SAFETY: `artifact` was serialized by this engine from the base component moments
        // ago, and only bytes that are the unique verbatim copy of the base's own bytes (with
        // their context) were rewritten with the variant's: data that initializes linear
        // memory, which the compiled code reads like any other memory. Code, types and
        // metadata are untouched; wasmtime still checks the header and engine settings.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| SandboxError::Compile(format!("{e:#}")))?;
        let mut code = self.load_compiled(bytes, component, report)?;
        if let Some(c) = Arc::get_mut(&mut code) {
            c.from_variant = true;
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_site_needs_one_unique_copy_of_the_changed_region() {
        let mut base = vec![0u8; 300];
        base[100..116].copy_from_slice(b"0123456789abcdef");
        let mut variant = base.clone();
        variant[120] = 7;
        let mut artifact = vec![9u8; 50];
        artifact.extend_from_slice(&base);
        let (at, lo, hi) = patch_site(&base, &variant, &artifact).unwrap();
        assert_eq!((at, lo, hi), (170, 120, 121));
        // Twice in the artifact: which copy is the data is unknown, so no patch.
        artifact.extend_from_slice(&base);
        assert_eq!(patch_site(&base, &variant, &artifact), None);
        // Other lengths or no copy at all: no patch.
        assert_eq!(patch_site(&base, &variant[..299], &base), None);
        assert_eq!(patch_site(&base, &variant, &[1, 2, 3]), None);
    }
}
