//! Text helpers for the report: HTML escaping, calendar dates without a date crate, numbers.

use std::fmt::Write;

const DAY: i64 = 86_400;

/// Append `s` to `out` with the characters that are special in HTML/SVG text and attribute
/// values replaced by entities (NUL becomes U+FFFD).
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// `s` escaped for HTML/SVG text or a quoted attribute value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s);
    out
}

pub(crate) use qtm_core::calendar::{civil_from_days, days_from_civil};

/// `YYYY-MM-DD` (UTC) of unix seconds.
pub(crate) fn fmt_date(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` (UTC) of unix seconds.
pub(crate) fn fmt_hm(ts: i64) -> String {
    let s = ts.rem_euclid(DAY);
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

/// `YYYY-MM-DD`, followed by ` HH:MM` when `intraday`.
pub(crate) fn fmt_ts(ts: i64, intraday: bool) -> String {
    if intraday {
        format!("{} {}", fmt_date(ts), fmt_hm(ts))
    } else {
        fmt_date(ts)
    }
}

/// Whether timestamps sampled from a series are closer together than a day (or, with fewer
/// than two points, not at midnight).
pub(crate) fn looks_intraday(ts: impl Iterator<Item = i64>) -> Option<bool> {
    let mut prev: Option<i64> = None;
    let mut min_gap = i64::MAX;
    let mut off_midnight = false;
    for t in ts.take(5_000) {
        off_midnight |= t.rem_euclid(DAY) != 0;
        if let Some(p) = prev {
            let g = t.saturating_sub(p);
            if g > 0 {
                min_gap = min_gap.min(g);
            }
        }
        prev = Some(t);
    }
    prev?;
    Some(if min_gap == i64::MAX {
        off_midnight
    } else {
        min_gap < DAY
    })
}

/// `v` with `decimals` decimals, `,` between thousands when `group`; `-` for negatives
/// (never `-0.00`), `n/a` when not finite.
pub(crate) fn fmt_num(v: f64, decimals: usize, group: bool) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let body = format!("{:.*}", decimals, v.abs());
    let neg = v < 0.0 && body.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let (int, frac) = match body.find('.') {
        Some(i) => body.split_at(i),
        None => (body.as_str(), ""),
    };
    let mut out = String::with_capacity(body.len() + 6);
    if neg {
        out.push('-');
    }
    if group && int.len() > 3 {
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
    } else {
        out.push_str(int);
    }
    out.push_str(frac);
    out
}

/// `v` with at most `max_decimals` decimals and no trailing zeros.
pub(crate) fn fmt_trim(v: f64, max_decimals: usize) -> String {
    let s = fmt_num(v, max_decimals, true);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Decimals that show prices like these exactly (about 7 significant digits), between 2 and 8.
pub(crate) fn price_decimals(values: impl Iterator<Item = f64>) -> Option<usize> {
    let mut d = 0usize;
    let mut any = false;
    for v in values.filter(|v| v.is_finite()).take(2_000) {
        any = true;
        while d < 8 {
            let s = v * 10f64.powi(d as i32);
            if (s - s.round()).abs() <= 1e-7 * s.abs().max(1.0) {
                break;
            }
            d += 1;
        }
    }
    any.then_some(d.clamp(2, 8))
}

/// Decimals for a price of this size when there is no data to learn them from.
pub(crate) fn decimals_for_magnitude(v: f64) -> usize {
    if !v.is_finite() || v == 0.0 {
        return 2;
    }
    (4 - v.abs().log10().floor() as i64).clamp(2, 8) as usize
}

/// Write `v` rounded to one decimal, without a trailing `.0` (SVG coordinates).
pub(crate) fn push_coord(out: &mut String, v: f64) {
    let t = (v.clamp(-1e6, 1e6) * 10.0).round() as i64;
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 10);
    let f = (a % 10) as u8;
    if f != 0 {
        out.push('.');
        out.push((b'0' + f) as char);
    }
}

/// [`push_coord`] into a new string.
pub(crate) fn coord(v: f64) -> String {
    let mut s = String::new();
    push_coord(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_known_timestamps() {
        assert_eq!(fmt_date(0), "1970-01-01");
        assert_eq!(fmt_date(1_092_873_600), "2004-08-19");
        assert_eq!(fmt_date(951_782_400), "2000-02-29");
        assert_eq!(fmt_date(1_709_164_800), "2024-02-29");
        assert_eq!(fmt_date(-1), "1969-12-31");
        assert_eq!(fmt_date(4_102_444_800), "2100-01-01");
        assert_eq!(fmt_ts(1_294_045_260, true), "2011-01-03 09:01");
        assert_eq!(fmt_ts(1_294_045_260, false), "2011-01-03");
        // Extreme values must not panic.
        let _ = fmt_ts(i64::MAX, true);
        let _ = fmt_ts(i64::MIN, true);
    }

    #[test]
    fn days_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2004, 8, 19) * DAY, 1_092_873_600);
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.891, 2, true), "1,234,567.89");
        assert_eq!(fmt_num(-1234.5, 1, true), "-1,234.5");
        assert_eq!(fmt_num(-0.001, 2, true), "0.00");
        assert_eq!(fmt_num(999.0, 0, true), "999");
        assert_eq!(fmt_num(f64::NAN, 2, true), "n/a");
        assert_eq!(fmt_trim(10.0, 6), "10");
        assert_eq!(fmt_trim(-0.125, 6), "-0.125");
        assert_eq!(price_decimals([100.34, 104.06].into_iter()), Some(2));
        assert_eq!(price_decimals([1.0716, 1.07219].into_iter()), Some(5));
        assert_eq!(price_decimals([45000.0].into_iter()), Some(2));
        assert_eq!(price_decimals(std::iter::empty()), None);
        assert_eq!(decimals_for_magnitude(1.07), 4);
        assert_eq!(decimals_for_magnitude(523.1), 2);
        assert_eq!(coord(12.34), "12.3");
        assert_eq!(coord(-0.04), "0");
        assert_eq!(coord(-2.96), "-3");
        assert_eq!(coord(7.05), "7.1");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn intraday_detection() {
        assert_eq!(
            looks_intraday([0, 86_400, 172_800].into_iter()),
            Some(false)
        );
        assert_eq!(looks_intraday([0, 60, 120].into_iter()), Some(true));
        assert_eq!(looks_intraday([30].into_iter()), Some(true));
        assert_eq!(looks_intraday(std::iter::empty()), None);
    }
}
