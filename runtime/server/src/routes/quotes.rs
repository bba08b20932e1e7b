//! The seeds' quote shape for the ingest bridge: a bridge (an MT4/MT5 expert advisor in the
//! seeds) posts each tick as `{"symbol", "bid", "ask", "time"?, "volume"?, …}`. A quote enters
//! the live engine as a tick at its mid price, `(bid + ask) / 2`, at its `time` (RFC 3339) or
//! `ts` (unix seconds), else when received; `volume` is its size. The day's `open`, `high`,
//! `low` and the `spread` a bridge may add are accepted and not used (the spread is
//! `ask − bid`).
//!
//! `POST /api/market` takes one quote as the whole body, or a batch's `quotes` list next to
//! its `bars` and `ticks`.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::live::IngestRequest;
use crate::error::{ApiError, ApiResult};
use qtm_core::model::Bar;

/// One quote.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestQuote {
    pub symbol: String,
    /// Best bid, > 0.
    #[schema(exclusive_minimum = 0.0)]
    pub bid: f64,
    /// Best ask, > 0 and not below the bid.
    #[schema(exclusive_minimum = 0.0)]
    pub ask: f64,
    /// Quote time, RFC 3339 (`2024-01-15T10:30:45Z`, an offset or fractional seconds allowed).
    pub time: Option<String>,
    /// Quote time, unix seconds (instead of `time`).
    pub ts: Option<i64>,
    /// Size traded at it (default 0).
    #[schema(minimum = 0.0)]
    pub volume: Option<f64>,
    /// Accepted, not used.
    pub spread: Option<f64>,
    /// Accepted, not used.
    pub open: Option<f64>,
    /// Accepted, not used.
    pub high: Option<f64>,
    /// Accepted, not used.
    pub low: Option<f64>,
}

/// A `POST /api/market` body: a batch, or one quote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // The body is read by [`ingest_request`]; this documents it.
pub enum IngestBody {
    Batch(IngestRequest),
    Quote(IngestQuote),
}

/// The batch a `POST /api/market` body stands for: one quote (an object with `bid` or `ask`)
/// is a batch of that quote; anything else is read as a batch, with the errors it always had.
pub fn ingest_request(body: Value) -> ApiResult<IngestRequest> {
    let is_quote = body
        .as_object()
        .is_some_and(|o| o.contains_key("bid") || o.contains_key("ask"));
    if is_quote {
        let quote: IngestQuote = from_value(body)?;
        return Ok(IngestRequest {
            quotes: vec![quote],
            ..IngestRequest::default()
        });
    }
    from_value(body)
}

/// `T` from a JSON value, its errors as [`crate::error::json_object`] gives them (422
/// `validation` naming the field's path).
fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        let mut err = ApiError::validation(field.clone(), e.into_inner().to_string());
        if field == "." || field.is_empty() {
            err.field = None;
        }
        err
    })
}

/// A quote as the one-price bar the engine takes; errors name `field` (`quotes[2].ask`).
pub fn quote_bar(field: &str, q: &IngestQuote, now: i64) -> ApiResult<Bar> {
    let price = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(ApiError::validation(
                format!("{field}.{name}"),
                format!("{field}: {name} must be a positive price, got {v}"),
            ))
        }
    };
    let (bid, ask) = (price("bid", q.bid)?, price("ask", q.ask)?);
    if ask < bid {
        return Err(ApiError::validation(
            format!("{field}.ask"),
            format!("{field}: ask {ask} is below bid {bid}"),
        ));
    }
    let ts = match (&q.time, q.ts) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                format!("{field}.time"),
                format!("{field}: give time or ts, not both"),
            ));
        }
        (Some(t), None) => parse_rfc3339(t).ok_or_else(|| {
            ApiError::validation(
                format!("{field}.time"),
                format!("{field}: time {t:?} is not an RFC 3339 time such as 2024-01-15T10:30:45Z"),
            )
        })?,
        (None, Some(ts)) => ts,
        (None, None) => now,
    };
    let volume = q.volume.unwrap_or(0.0);
    if !(volume.is_finite() && volume >= 0.0) {
        return Err(ApiError::validation(
            format!("{field}.volume"),
            format!("{field}: volume must be 0 or more, got {volume}"),
        ));
    }
    let mid = (bid + ask) / 2.0;
    Ok(Bar {
        ts,
        open: mid,
        high: mid,
        low: mid,
        close: mid,
        volume,
    })
}

/// Unix seconds of an RFC 3339 time (`2024-01-15T10:30:45Z`, `…45.123+02:00`; a space for
/// the `T` and a lowercase `z` too); fractions of a second are dropped.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(s).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if d < 1 || d > days_in_month || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = qtm_core::calendar::days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        assert_eq!(parse_rfc3339("2024-01-15T10:30:45Z"), Some(1_705_314_645));
        assert_eq!(
            parse_rfc3339("2024-01-15T12:30:45.250+02:00"),
            Some(1_705_314_645)
        );
        assert_eq!(parse_rfc3339("2024-01-15 10:30:45z"), Some(1_705_314_645));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2024-01-15",
            "2024-01-15T10:30:45",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T10:30:45.Z",
            "2024-01-15T10:30:45+0200",
            "2024-01-15T10:30:45Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_quote_is_a_tick_at_its_mid_price() {
        let req = ingest_request(json!({"symbol": "EURUSD", "bid": 1.0855, "ask": 1.0857,
            "spread": 0.0002, "time": "2024-01-15T10:30:45Z", "volume": 125,
            "high": 1.0865, "low": 1.0845, "open": 1.085}))
        .unwrap();
        assert_eq!(req.quotes.len(), 1);
        let bar = quote_bar("quotes[0]", &req.quotes[0], 7).unwrap();
        assert_eq!((bar.ts, bar.volume), (1_705_314_645, 125.0));
        assert!((bar.close - 1.0856).abs() < 1e-12 && bar.open == bar.close);
        let bar = quote_bar(
            "q",
            &ingest_request(json!({"symbol": "X", "bid": 1, "ask": 1}))
                .unwrap()
                .quotes[0],
            7,
        )
        .unwrap();
        assert_eq!(bar.ts, 7, "received now without a time");
        // A batch is still a batch, with the errors it had.
        let e = ingest_request(json!({"bars": [{"symbol": "X"}]})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bars[0]"), "{e:?}");
        let e = ingest_request(json!({"symbol": "X", "bid": "1", "ask": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bid"));
        let field = |q: Value| {
            let r = ingest_request(q).unwrap();
            quote_bar("quotes[0]", &r.quotes[0], 0).unwrap_err().field
        };
        assert_eq!(
            field(json!({"symbol": "X", "bid": 2, "ask": 1})).as_deref(),
            Some("quotes[0].ask")
        );
        assert_eq!(
            field(json!({"symbol": "X", "bid": 0, "ask": 1})).as_deref(),
            Some("quotes[0].bid")
        );
        assert_eq!(
            field(json!({"symbol": "X", "bid": 1, "ask": 1, "time": "soon"})).as_deref(),
            Some("quotes[0].time")
        );
    }
}
