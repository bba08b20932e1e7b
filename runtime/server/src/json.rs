//! JSON bodies without binary floating-point noise.
//!
//! Money and prices come out of sums of `f64`s, so a cash balance of 100,000.27 is stored as
//! 100000.26999999999. Clients should see 100000.27: every float the API writes is rounded to
//! 12 significant digits (far finer than any price, quantity or ratio it reports, and far
//! coarser than the noise, which sits near the 16th), then written in its shortest form.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, Serializer};

/// Significant digits kept.
const DIGITS: usize = 12;

/// `x` with the noise past [`DIGITS`] significant digits removed.
pub fn trim_noise(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // Fast path, no allocation (a response can hold thousands of floats): x scaled to a whole
    // number of DIGITS digits, rounded, and scaled back by an exact power of ten, which gives
    // the double nearest that decimal, printed shortest. Only a near-tie at the last kept
    // digit can round the other way.
    let exponent = x.abs().log10().floor() as i32;
    let shift = DIGITS as i32 - 1 - exponent;
    if (0..=22).contains(&shift) {
        let scale = 10f64.powi(shift);
        return (x * scale).round() / scale;
    }
    if (-22..0).contains(&shift) {
        let scale = 10f64.powi(-shift);
        return (x / scale).round() * scale;
    }
    format!("{x:.prec$e}", prec = DIGITS - 1)
        .parse()
        .unwrap_or(x)
}

/// serde_json's compact output with [`trim_noise`] applied to every float.
struct Trimmed;

impl Formatter for Trimmed {
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        CompactFormatter.write_f64(w, trim_noise(value))
    }
    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        CompactFormatter.write_f64(w, trim_noise(f64::from(value)))
    }
}

/// Serialize `value` as a JSON body, floats trimmed.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut Serializer::with_formatter(&mut out, Trimmed))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_lose_their_noise_and_nothing_else() {
        let body = json!({
            "cash": 100000.26999999999_f64,
            "fee": 0.1 + 0.2,
            "tiny": 1.234_567_890_123e-9,
            "price": 0.000_012_34,
            "whole": 5.0,
            "count": 7,
            "big": 1.0e300,
            "neg": -2.675_000_000_000_000_4,
        });
        let text = String::from_utf8(to_vec(&body).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"big":1e+300,"cash":100000.27,"count":7,"fee":0.3,"neg":-2.675,"price":0.00001234,"tiny":1.23456789012e-9,"whole":5.0}"#
        );
        // Still a float where it was one: clients comparing with 5.0 see 5.0.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["whole"], json!(5.0));
        assert_eq!(back["cash"].as_f64(), Some(100000.27));
    }

    #[test]
    fn the_fast_path_agrees_with_decimal_rounding() {
        let slow = |x: f64| -> f64 { format!("{x:.11e}").parse().unwrap() };
        let mut v = 0.123_456_789_f64;
        for i in 0..20_000 {
            v = (v * 1.618_033_988_749 + 0.1 * f64::from(i % 7)) % 1.0e7 + 1e-3;
            for x in [v, -v, v * 1e-9, v * 1e9, v / 3.0] {
                // The same, except on a near-tie at the 12th digit, where the scaled product
                // may round the other way: one unit there, far above the noise it removes.
                let (fast, exact) = (trim_noise(x), slow(x));
                let unit = 10f64.powi(x.abs().log10().floor() as i32 - 11);
                assert!(
                    (fast - exact).abs() <= unit * 1.01,
                    "{x:e}: {fast} vs {exact}"
                );
                let digits = format!("{:e}", fast.abs());
                let mantissa = digits.split('e').next().unwrap().replace('.', "");
                assert!(mantissa.len() <= DIGITS, "{x:e} → {fast:e}");
            }
        }
    }
}
