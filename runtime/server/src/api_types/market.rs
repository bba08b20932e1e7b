//! Market data: assets with their summary.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::ToSchema;

use qtm_store::market as rows;

// The text borrows from the row where it can: the asset list is served often from a cached
// list of rows, and copying every symbol and name for each request would add to its cost.
// (Not a doc comment: that would become the schema's description.)
/// One asset with its summary (all price fields are `None` until bars are imported).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Asset<'a> {
    pub symbol: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// `equity`, `fx`, `crypto` or `index`.
    pub asset_class: Cow<'a, str>,
    pub currency: Cow<'a, str>,
    /// Where the bars came from (`csv:<file name>` for imports).
    pub source: Cow<'a, str>,
    /// Bar interval in seconds (the most common gap between bars).
    pub interval_s: Option<i64>,
    /// Open time of the first bar, unix seconds.
    pub first_ts: Option<i64>,
    /// Open time of the last bar, unix seconds.
    pub last_ts: Option<i64>,
    /// Number of bars stored.
    pub bars: i64,
    /// Close of the last bar.
    pub last_price: Option<f64>,
    /// Time of the reference bar of the change: the newest bar before the UTC calendar day of
    /// the last price (the previous day's close; the previous bar for daily data); without
    /// one, the first bar of that day.
    pub ref_ts: Option<i64>,
    /// Close of the reference bar (its open when it is the first bar of the day).
    pub ref_price: Option<f64>,
    /// `100 × (last_price / ref_price − 1)`: the change since the previous day's close.
    pub change_pct: Option<f64>,
    /// Volume of the bars after `last_ts` − 24 h (the last bar for daily data).
    pub volume_24h: Option<f64>,
    /// Highest high over the same bars.
    pub high_24h: Option<f64>,
    /// Lowest low over the same bars.
    pub low_24h: Option<f64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<rows::Asset> for Asset<'static> {
    fn from(a: rows::Asset) -> Self {
        Asset {
            symbol: a.symbol.into(),
            name: a.name.into(),
            asset_class: a.asset_class.into(),
            currency: a.currency.into(),
            source: a.source.into(),
            interval_s: a.interval_s,
            first_ts: a.first_ts,
            last_ts: a.last_ts,
            bars: a.bars,
            last_price: a.last_price,
            ref_ts: a.ref_ts,
            ref_price: a.ref_price,
            change_pct: a.change_pct,
            volume_24h: a.volume_24h,
            high_24h: a.high_24h,
            low_24h: a.low_24h,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl<'a> From<&'a rows::Asset> for Asset<'a> {
    fn from(a: &'a rows::Asset) -> Self {
        Asset {
            symbol: Cow::Borrowed(&a.symbol),
            name: Cow::Borrowed(&a.name),
            asset_class: Cow::Borrowed(&a.asset_class),
            currency: Cow::Borrowed(&a.currency),
            source: Cow::Borrowed(&a.source),
            interval_s: a.interval_s,
            first_ts: a.first_ts,
            last_ts: a.last_ts,
            bars: a.bars,
            last_price: a.last_price,
            ref_ts: a.ref_ts,
            ref_price: a.ref_price,
            change_pct: a.change_pct,
            volume_24h: a.volume_24h,
            high_24h: a.high_24h,
            low_24h: a.low_24h,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}
