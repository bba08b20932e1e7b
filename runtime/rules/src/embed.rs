//! The program area: how `qtm` hands a checked program to the prebuilt rules guest.
//!
//! The guest reserves [`AREA_BYTES`] bytes of its data segment, starting with [`MAGIC`]. The
//! host finds the magic in a copy of the core module and writes, right after it, a header
//! (`u32` name length, `u32` source length, little-endian) and the two texts. The guest reads
//! its area at `describe` and `configure`. Each program so becomes an ordinary component of its
//! own (its own hash), and nothing else in the host needs to know it came from rules.

use crate::MAX_SOURCE_BYTES;

/// Marks the start of the area. Chosen at random, so it occurs nowhere else in the module.
pub const MAGIC: [u8; 16] = *b"qtm-rules\x8e\x1f\xc4\x07\x5b\xd2\x39";

/// Longest strategy name stored in the area.
pub const MAX_NAME_BYTES: usize = 128;

/// Size of the whole area: magic, header, name, source.
pub const AREA_BYTES: usize = MAGIC.len() + 8 + MAX_NAME_BYTES + MAX_SOURCE_BYTES;

/// The area as the guest declares it: the magic, then zeros (an empty program). A function,
/// not a constant, so the 64 KiB array is materialized only where a static asks for it.
pub const fn empty_area() -> [u8; AREA_BYTES] {
    let mut a = [0u8; AREA_BYTES];
    let mut i = 0;
    while i < MAGIC.len() {
        a[i] = MAGIC[i];
        i += 1;
    }
    a
}

/// The payload for `name` and `source` (what follows the magic), or why it does not fit.
pub fn encode(name: &str, source: &str) -> Result<Vec<u8>, String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "name is {} bytes, longer than {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "program is {} bytes, larger than the {MAX_SOURCE_BYTES} byte limit",
            source.len()
        ));
    }
    let mut out = Vec::with_capacity(8 + name.len() + source.len());
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(source.len() as u32).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(source.as_bytes());
    Ok(out)
}

/// Name and source from the bytes after the magic; `None` for an empty or damaged area.
pub fn decode(payload: &[u8]) -> Option<(&str, &str)> {
    let len = |at: usize| -> Option<usize> {
        let b: [u8; 4] = payload.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let (n, s) = (len(0)?, len(4)?);
    if n > MAX_NAME_BYTES || s > MAX_SOURCE_BYTES || s == 0 {
        return None;
    }
    let name = std::str::from_utf8(payload.get(8..8 + n)?).ok()?;
    let source = std::str::from_utf8(payload.get(8 + n..8 + n + s)?).ok()?;
    Some((name, source))
}

/// Write `name` and `source` into the one area of `module` (a copy of the guest's core
/// module). `Err` when the module has no area, more than one, or the texts do not fit.
pub fn write_into(module: &mut [u8], name: &str, source: &str) -> Result<(), String> {
    let payload = encode(name, source)?;
    let mut found = module
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .map(|(i, _)| i);
    let at = found
        .next()
        .ok_or("the rules module has no program area (is it the rules guest?)")?;
    if found.next().is_some() {
        return Err("the rules module has more than one program area".into());
    }
    let start = at + MAGIC.len();
    let area = module
        .get_mut(start..start + AREA_BYTES - MAGIC.len())
        .ok_or("the rules module's program area is cut short")?;
    area.fill(0);
    area[..payload.len()].copy_from_slice(&payload);
    Ok(())
}
