//! The one mark price of the server: every view that values a position or shows a price
//! (trades, exposure and risk metrics, the order risk check, assets, the heatmap, strategy
//! performance) takes it from here.
//!
//! The price of a symbol is the live market's last price, the close of the last bar the live
//! engine handled ([`qtm_live::LiveEngine::marks`], published by the engine thread), and
//! otherwise the close of its newest stored bar (the asset summary the store keeps). The
//! daily change is measured against the previous UTC calendar day's close: the last bar
//! before the day of the price, live bars first, then stored ones; without any, the first
//! price of that day.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::api_types::market::Asset as AssetBody;
use super::error::ApiResult;
use super::state::AppState;
use qtm_live::{LiveMark, day_start};
use qtm_store::market::{self, Asset};

/// Where a price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// The last bar the live engine handled.
    Live,
    /// The newest stored bar (imported history), the live engine having no bar of the symbol.
    Stored,
}

/// The price a symbol is valued at, with its change since the previous day's close.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct MarkPrice {
    /// The last price: the close of the bar at `ts`.
    pub price: f64,
    /// Open time of that bar, unix seconds.
    pub ts: i64,
    pub source: PriceSource,
    /// Time of the reference bar of the change: the newest bar before the UTC day of `ts`;
    /// without one, the first bar of that day.
    pub ref_ts: Option<i64>,
    /// The reference: that bar's close (its open when it is the first bar of the day).
    pub ref_price: Option<f64>,
    /// `100 × (price / ref_price − 1)`.
    pub change_pct: Option<f64>,
}

fn change(price: f64, reference: f64) -> Option<f64> {
    (reference != 0.0).then(|| 100.0 * (price / reference - 1.0))
}

/// The mark of a symbol from what the live engine saw of it and its stored summary.
pub fn combine(live: Option<&LiveMark>, stored: Option<&Asset>) -> Option<MarkPrice> {
    let Some(m) = live else {
        let a = stored?;
        return Some(MarkPrice {
            price: a.last_price?,
            ts: a.last_ts?,
            source: PriceSource::Stored,
            ref_ts: a.ref_ts,
            ref_price: a.ref_price,
            change_pct: a.change_pct,
        });
    };
    let today = day_start(m.ts);
    // The live stream has not crossed a day yet: the stored bars know what came before.
    let stored_ref = || {
        let a = stored?;
        let (last_ts, last) = (a.last_ts?, a.last_price?);
        if last_ts < today {
            return Some((last_ts, last));
        }
        match (a.ref_ts, a.ref_price) {
            // The stored series ends the same day: its reference is that day's too, the
            // previous close, or a first open earlier than the engine's.
            (Some(t), Some(p))
                if day_start(last_ts) == today && (t < today || t <= m.day_open_ts) =>
            {
                Some((t, p))
            }
            _ => None,
        }
    };
    let (ref_ts, ref_price) = m
        .prev_close
        .or_else(stored_ref)
        .unwrap_or((m.day_open_ts, m.day_open));
    Some(MarkPrice {
        price: m.price,
        ts: m.ts,
        source: PriceSource::Live,
        ref_ts: Some(ref_ts),
        ref_price: Some(ref_price),
        change_pct: change(m.price, ref_price),
    })
}

/// The stored asset `symbol` of a list sorted by symbol.
fn find<'a>(assets: &'a [Asset], symbol: &str) -> Option<&'a Asset> {
    assets
        .binary_search_by(|a| a.symbol.as_str().cmp(symbol))
        .ok()
        .map(|i| &assets[i])
}

/// The marks of `symbols` (those without any price, live or stored, are absent).
pub async fn marks<'a>(
    state: &AppState,
    symbols: impl IntoIterator<Item = &'a str>,
) -> ApiResult<HashMap<String, MarkPrice>> {
    let symbols: Vec<&str> = symbols.into_iter().collect();
    if symbols.is_empty() {
        return Ok(HashMap::new());
    }
    let live = state.live.marks().of(symbols.iter().copied());
    // The stored summary is only needed for what the live feed has not priced, or has priced
    // for less than a day (its reference); the list is cached, so this is rarely a query.
    let assets = market::list_assets_cached(&state.store).await?;
    Ok(symbols
        .into_iter()
        .filter_map(|s| combine(live.get(s), find(&assets, s)).map(|m| (s.to_string(), m)))
        .collect())
}

/// The mark of one symbol.
pub async fn mark(state: &AppState, symbol: &str) -> ApiResult<Option<MarkPrice>> {
    Ok(marks(state, [symbol]).await?.remove(symbol))
}

/// An asset as the market routes show it: the stored summary with its price fields
/// (`last_price`, `ref_ts`, `ref_price`, `change_pct`) at the mark.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssetView<'a> {
    #[serde(flatten)]
    pub asset: AssetBody<'a>,
    /// Open time of the bar `last_price` is the close of (the live engine's last bar of the
    /// symbol, or `last_ts`).
    pub price_ts: Option<i64>,
    /// `live` or `stored`; absent without any price.
    pub price_source: Option<PriceSource>,
}

/// Every asset of `assets` at its mark; the text of the stored summary is borrowed, never
/// copied.
pub fn price_assets<'a>(state: &AppState, assets: &'a [Asset]) -> Vec<AssetView<'a>> {
    let live = state
        .live
        .marks()
        .of(assets.iter().map(|a| a.symbol.as_str()));
    assets
        .iter()
        .map(|a| {
            let m = combine(live.get(&a.symbol), Some(a));
            let mut asset = AssetBody::from(a);
            if let Some(m) = m.filter(|m| m.source == PriceSource::Live) {
                asset.last_price = Some(m.price);
                asset.ref_ts = m.ref_ts;
                asset.ref_price = m.ref_price;
                asset.change_pct = m.change_pct;
            }
            AssetView {
                asset,
                price_ts: m.map(|m| m.ts),
                price_source: m.map(|m| m.source),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtm_live::SECONDS_PER_DAY;

    const D: i64 = 20_000 * SECONDS_PER_DAY;

    fn asset(last: Option<(i64, f64)>, reference: Option<(i64, f64)>) -> Asset {
        Asset {
            symbol: "SPY".into(),
            name: "SPY".into(),
            asset_class: "equity".into(),
            currency: "USD".into(),
            source: "csv:spy.csv".into(),
            interval_s: Some(60),
            first_ts: last.map(|l| l.0),
            last_ts: last.map(|l| l.0),
            bars: 1,
            last_price: last.map(|l| l.1),
            ref_ts: reference.map(|r| r.0),
            ref_price: reference.map(|r| r.1),
            change_pct: match (last, reference) {
                (Some(l), Some(r)) => change(l.1, r.1),
                _ => None,
            },
            volume_24h: None,
            high_24h: None,
            low_24h: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn live(ts: i64, price: f64, day_open: (i64, f64), prev: Option<(i64, f64)>) -> LiveMark {
        LiveMark {
            ts,
            price,
            day_open_ts: day_open.0,
            day_open: day_open.1,
            prev_close: prev,
        }
    }

    #[test]
    fn the_live_price_wins_and_the_reference_is_the_previous_days_close() {
        let stored = asset(Some((D - 60, 100.0)), Some((D - 2 * SECONDS_PER_DAY, 95.0)));
        // Nothing live: the stored summary as it is.
        let s = combine(None, Some(&stored)).unwrap();
        assert_eq!(
            (s.price, s.source, s.ref_price),
            (100.0, PriceSource::Stored, Some(95.0))
        );
        // Live bars today, none yesterday: yesterday's stored close is the reference.
        let l = live(D + 600, 110.0, (D + 60, 104.0), None);
        let m = combine(Some(&l), Some(&stored)).unwrap();
        assert_eq!(
            (m.price, m.ts, m.source),
            (110.0, D + 600, PriceSource::Live)
        );
        assert_eq!((m.ref_ts, m.ref_price), (Some(D - 60), Some(100.0)));
        assert!((m.change_pct.unwrap() - 10.0).abs() < 1e-12);
        // The live stream crossed a day: its own previous close.
        let l = live(D + 600, 110.0, (D + 60, 104.0), Some((D - 30, 88.0)));
        assert_eq!(
            combine(Some(&l), Some(&stored)).unwrap().ref_price,
            Some(88.0)
        );
        // Stored bars end the same day: their reference (yesterday's close) holds.
        let same_day = asset(Some((D + 30, 101.0)), Some((D - 60, 100.0)));
        let l = live(D + 600, 110.0, (D + 60, 104.0), None);
        assert_eq!(
            combine(Some(&l), Some(&same_day)).unwrap().ref_price,
            Some(100.0)
        );
        // Nothing before today anywhere: the first price of the day.
        let l = live(D + 600, 110.0, (D + 60, 104.0), None);
        let m = combine(Some(&l), None).unwrap();
        assert_eq!((m.ref_ts, m.ref_price), (Some(D + 60), Some(104.0)));
        assert_eq!(combine(None, None), None);
        assert_eq!(combine(None, Some(&asset(None, None))), None);
    }
}
