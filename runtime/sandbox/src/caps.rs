//! Caps on every string and list that crosses the boundary, and the fuel the host charges for
//! work it does on a strategy's behalf. Each cap is checked before the value is kept, stored or
//! forwarded; a value lifted from the guest is at most its linear memory (itself capped), and
//! its bytes are charged to the guest's fuel, so even an oversized value costs the guest, not
//! the host. Listed in `docs/sandbox.md`.

/// Longest symbol name in an order or query, bytes.
pub const SYMBOL_BYTES: usize = 32;
/// Longest order tag, bytes.
pub const TAG_BYTES: usize = 128;
/// Longest OCO group name, bytes.
pub const OCO_GROUP_BYTES: usize = 64;
/// Longest signal or parameter name asked for, bytes.
pub const NAME_BYTES: usize = 128;
/// Most bars one `recent-bars` call may ask for; more is refused, not clamped.
pub const RECENT_BARS: u32 = 10_000;
/// Longest error text a strategy may return (`configure`, `restore`), bytes; longer is cut.
pub const ERROR_BYTES: usize = 1024;

/// `describe`: longest name, version, and description (strategy or parameter), bytes.
pub const INFO_NAME_BYTES: usize = 64;
/// `describe`: longest version text, bytes.
pub const INFO_VERSION_BYTES: usize = 32;
/// `describe`: longest description, bytes.
pub const INFO_DESCRIPTION_BYTES: usize = 4096;
/// `describe`: most default symbols.
pub const INFO_SYMBOLS: usize = 64;
/// `describe`: most parameters.
pub const INFO_PARAMS: usize = 64;
/// `describe`: most choices of one choice parameter.
pub const INFO_CHOICES: usize = 64;
/// `describe`: most bytes of the whole description (every string summed).
pub const INFO_TOTAL_BYTES: usize = 64 << 10;

/// Fuel charged for any host call: the call's own cost on the host.
pub const FUEL_PER_HOST_CALL: u64 = 100;
/// Fuel charged for an order (submit, cancel, modify): risk checks, the book, an event.
pub const FUEL_PER_ORDER: u64 = 2_000;
/// Fuel charged per byte of a string or list the host reads from the guest or writes to it.
pub const FUEL_PER_BYTE: u64 = 1;
/// Fuel charged per element of a list the host builds for the guest (orders, bars).
pub const FUEL_PER_ELEMENT: u64 = 50;

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `Err` naming the field when `text` is longer than `max` bytes or holds a control
/// character. Symbols, tags and group names are names: a control character in one is never
/// meant, and NUL cannot be stored in PostgreSQL text at all.
pub fn check(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{field} is {} bytes, over the {max}-byte cap",
            text.len()
        ));
    }
    match text.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(format!(
            "{field} holds a control character (U+{:04X}) at byte {at}",
            c as u32
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_characters_whole_and_marks_the_cut() {
        assert_eq!(cut("héllo".into(), 2), "h…");
        assert_eq!(cut("hello".into(), 5), "hello");
        assert_eq!(cut("hello".into(), 3), "hel…");
    }

    #[test]
    fn check_names_the_field_and_the_cap() {
        assert_eq!(
            check("tag", &"x".repeat(200), TAG_BYTES).unwrap_err(),
            "tag is 200 bytes, over the 128-byte cap"
        );
        assert!(check("tag", "ok ✓", TAG_BYTES).is_ok());
        assert_eq!(
            check("tag", "ab\0c", TAG_BYTES).unwrap_err(),
            "tag holds a control character (U+0000) at byte 2"
        );
    }
}
