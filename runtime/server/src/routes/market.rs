//! Market data: the imported assets with their latest price and daily change, a heatmap of
//! the changes by asset class, the symbol list, and bars with resampling.
//!
//! Assets come from `qtm data import` (or [`qtm_store::market::import_csv`]); the summary
//! numbers are computed at import time, so these reads touch one small table. Prices and
//! changes are at the mark ([`crate::marks`]): the live market's last price where the
//! live engine has handled a bar of the symbol, the stored summary otherwise.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorBody};
use crate::marks::{AssetView, price_assets};
use crate::paging::{NamePageQuery, Page};
use crate::state::AppState;
use qtm_store::market::{self, Asset, AssetClass, BarQuery, MAX_BARS};
use qtm_store::{self as store, StoreError};

/// The market routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assets))
        .routes(routes!(heatmap))
        .routes(routes!(list_symbols))
        .routes(routes!(get_bars))
}

/// Every imported asset with its last price (the live market's last price once the live
/// engine has handled a bar of it, else the close of its newest stored bar: `price_source`
/// says which), its daily change `change_pct` (against the previous UTC calendar day's close:
/// the newest bar, live or stored, before the day of the last price; without one, the first
/// bar of that day), 24 h volume, time range and bar count, by symbol.
#[utoipa::path(get, path = "/api/market/assets", tag = "market",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    params(NamePageQuery),
    responses((status = 200, body = Page<AssetView>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_assets(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamePageQuery>,
) -> ApiResult<ApiJson<SharedAssets>> {
    let list = market::list_assets_cached(&state.store).await?;
    let (range, next_cursor) = q.range_by_name(list.iter().map(|a| a.symbol.as_str()))?;
    Ok(ApiJson(SharedAssets {
        state: state.clone(),
        list,
        range,
        next_cursor,
    }))
}

/// A page of the cached list at the marks, serialized without copying what the live engine
/// did not price.
pub struct SharedAssets {
    state: AppState,
    list: Arc<Vec<Asset>>,
    range: std::ops::Range<usize>,
    next_cursor: Option<String>,
}

impl Serialize for SharedAssets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut page = s.serialize_struct("Page", 2)?;
        page.serialize_field(
            "items",
            &price_assets(&self.state, &self.list[self.range.clone()]),
        )?;
        page.serialize_field("next_cursor", &self.next_cursor)?;
        page.end()
    }
}

/// One tile of the heatmap.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeatmapTile {
    pub symbol: String,
    pub name: String,
    /// The mark: the live market's last price, else the newest stored close.
    pub last_price: Option<f64>,
    /// Change since the previous UTC calendar day's close, percent.
    pub change_pct: Option<f64>,
    /// `change_pct` divided by the largest absolute change of all assets: −1 (the worst fall)
    /// to 1 (the best rise), 0 without a change; for coloring.
    pub intensity: f64,
    pub volume_24h: Option<f64>,
}

/// The assets of one class.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeatmapGroup {
    pub asset_class: String,
    /// Mean change of the group's assets that have one.
    pub avg_change_pct: Option<f64>,
    /// Largest change first.
    pub assets: Vec<HeatmapTile>,
}

/// The heatmap.
#[derive(Debug, Serialize, ToSchema)]
pub struct Heatmap {
    /// The scale of `intensity`: the largest absolute change in percent.
    pub max_abs_change_pct: f64,
    /// Groups in the order equity, fx, crypto, index, then any other class by name.
    pub groups: Vec<HeatmapGroup>,
}

/// Daily changes grouped by asset class, with an intensity −1..1 for coloring. Prices and
/// changes are those of `GET /api/market/assets`: at the live market's last price, against
/// the previous UTC calendar day's close.
#[utoipa::path(get, path = "/api/market/heatmap", tag = "market",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Heatmap), (status = 401, body = ErrorBody)))]
async fn heatmap(State(state): State<AppState>) -> ApiResult<ApiJson<Heatmap>> {
    let assets = market::list_assets_cached(&state.store).await?;
    Ok(ApiJson(build_heatmap(&price_assets(&state, &assets))))
}

fn build_heatmap(assets: &[AssetView<'_>]) -> Heatmap {
    let max_abs = assets
        .iter()
        .filter_map(|a| a.asset.change_pct)
        .filter(|c| c.is_finite())
        .fold(0.0_f64, |m, c| m.max(c.abs()));
    let rank = |class: &str| {
        AssetClass::ALL
            .iter()
            .position(|c| c.as_str() == class)
            .unwrap_or(AssetClass::ALL.len())
    };
    let mut groups: Vec<HeatmapGroup> = Vec::new();
    for v in assets {
        let a = &v.asset;
        let intensity = match a.change_pct {
            Some(c) if max_abs > 0.0 && c.is_finite() => (c / max_abs).clamp(-1.0, 1.0),
            _ => 0.0,
        };
        let tile = HeatmapTile {
            symbol: a.symbol.to_string(),
            name: a.name.to_string(),
            last_price: a.last_price,
            change_pct: a.change_pct,
            intensity,
            volume_24h: a.volume_24h,
        };
        match groups.iter_mut().find(|g| g.asset_class == a.asset_class) {
            Some(g) => g.assets.push(tile),
            None => groups.push(HeatmapGroup {
                asset_class: a.asset_class.to_string(),
                avg_change_pct: None,
                assets: vec![tile],
            }),
        }
    }
    for g in &mut groups {
        let changes: Vec<f64> = g.assets.iter().filter_map(|t| t.change_pct).collect();
        g.avg_change_pct =
            (!changes.is_empty()).then(|| changes.iter().sum::<f64>() / changes.len() as f64);
        g.assets.sort_by(|a, b| {
            let key = |t: &HeatmapTile| t.change_pct.unwrap_or(f64::NEG_INFINITY);
            key(b)
                .total_cmp(&key(a))
                .then_with(|| a.symbol.cmp(&b.symbol))
        });
    }
    groups.sort_by(|a, b| {
        (rank(&a.asset_class), &a.asset_class).cmp(&(rank(&b.asset_class), &b.asset_class))
    });
    Heatmap {
        max_abs_change_pct: max_abs,
        groups,
    }
}

/// A symbol that has data.
#[derive(Debug, Serialize, ToSchema)]
pub struct SymbolInfo {
    pub symbol: String,
    pub name: String,
    pub asset_class: String,
    pub currency: String,
}

/// The symbols with data, by symbol.
#[utoipa::path(get, path = "/api/symbols", tag = "market",
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    params(NamePageQuery),
    responses((status = 200, body = Page<SymbolInfo>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_symbols(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<NamePageQuery>,
) -> ApiResult<ApiJson<Page<SymbolInfo>>> {
    let assets = market::list_assets_cached(&state.store).await?;
    let (range, next_cursor) = q.range_by_name(assets.iter().map(|a| a.symbol.as_str()))?;
    Ok(ApiJson(Page {
        items: assets[range]
            .iter()
            .map(|a| SymbolInfo {
                symbol: a.symbol.clone(),
                name: a.name.clone(),
                asset_class: a.asset_class.clone(),
                currency: a.currency.clone(),
            })
            .collect(),
        next_cursor,
    }))
}

/// Range and resampling of a bars request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BarsParams {
    /// First bar time, unix seconds (inclusive); default: the first bar.
    pub from: Option<i64>,
    /// Last bar time, unix seconds (inclusive); default: the last bar.
    pub to: Option<i64>,
    /// Resample into buckets of this length: `30s`, `1m`, `5m`, `15m`, `1h`, `4h`, `1d`, `1w`
    /// (a number with unit s, m, h, d or w) or plain seconds. Buckets are aligned to the Unix
    /// epoch (UTC; weeks start on Monday). Default: the bars as stored. At most 366 days;
    /// no leading zeros.
    #[param(
        pattern = r"^(?:(?:[1-9]|[1-9][0-9]|[1-9][0-9]{2}|[1-9][0-9]{3}|[1-9][0-9]{4}|[1-9][0-9]{5}|[1-9][0-9]{6}|[1-2][0-9]{7}|30[0-9]{6}|31[0-5][0-9]{5}|316[0-1][0-9]{4}|3162[0-1][0-9]{3}|31622[0-3][0-9]{2}|31622400)s?|(?:[1-9]|[1-9][0-9]|[1-9][0-9]{2}|[1-9][0-9]{3}|[1-9][0-9]{4}|[1-4][0-9]{5}|5[0-1][0-9]{4}|52[0-6][0-9]{3}|5270[0-3][0-9]|527040)(?:m|min)|(?:[1-9]|[1-9][0-9]|[1-9][0-9]{2}|[1-7][0-9]{3}|8[0-6][0-9]{2}|87[0-7][0-9]|878[0-3]|8784)h|(?:[1-9]|[1-9][0-9]|[1-2][0-9]{2}|3[0-5][0-9]|36[0-5]|366)d|(?:[1-9]|[1-4][0-9]|5[0-1]|52)w)$"
    )]
    pub interval: Option<String>,
    /// Most bars to return, 1 to 10000 (default 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// Continue after this cursor: the `next_cursor` of the page before (it takes the place
    /// of `from`).
    #[param(pattern = r"^[0-9]{0,18}$")]
    pub cursor: Option<String>,
}

/// One bar (for a resampled bar, `ts` is the bucket start).
#[derive(Debug, Serialize, ToSchema)]
pub struct BarOut {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// Bars of one symbol, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bars {
    pub symbol: String,
    /// The requested bucket length in seconds, or the stored bar interval.
    pub interval_s: Option<i64>,
    /// Whether the bars were resampled.
    pub resampled: bool,
    pub count: usize,
    /// More bars exist in the range than the limit allowed (at most 10000 per request);
    /// continue with `from = next_from`.
    pub truncated: bool,
    pub next_from: Option<i64>,
    /// The `cursor` of the next page (the same bars as `from = next_from`); null on the last.
    pub next_cursor: Option<String>,
    pub bars: Vec<BarOut>,
}

/// Parse `1m`, `5m`, `1h`, `1d`, `1w`, `30s` or plain seconds. At most 366 days, no leading
/// zeros or spaces: exactly the strings `BarsParams::interval`'s documented pattern matches
/// (a test holds the two together).
pub fn parse_interval(text: &str) -> Result<i64, String> {
    let t = text;
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_s = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "interval {text:?} has an unknown unit {other:?}: use s, m, h, d or w (e.g. 5m, 1h, 1d) or plain seconds"
            ));
        }
    };
    if num.starts_with('0') && num.len() > 1 {
        return Err(format!("interval {text:?} must not start with a zero"));
    }
    let n: i64 = num.parse().map_err(|_| {
        format!("interval {text:?} must be a whole number with an optional unit, e.g. 5m, 1h, 1d")
    })?;
    let secs = n
        .checked_mul(unit_s)
        .filter(|s| (1..=366 * 86_400).contains(s))
        .ok_or_else(|| format!("interval {text:?} must be between 1 second and 366 days"))?;
    Ok(secs)
}

/// OHLCV bars of a symbol in `[from, to]`, optionally resampled (open of the first bar, highest
/// high, lowest low, close of the last bar, summed volume per bucket). At most 10000 bars per
/// request: `truncated` and `next_from` say how to get the rest.
#[utoipa::path(get, path = "/api/market/{symbol}/bars", tag = "market",
    params(("symbol" = String, Path, description = "symbol, e.g. GOOG (case-insensitive)"), BarsParams),
    security(("bearer" = ["viewer"]), ("api_key" = ["viewer"])),
    responses((status = 200, body = Bars), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn get_bars(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(p): ApiQuery<BarsParams>,
) -> ApiResult<ApiJson<Bars>> {
    let interval_s = p
        .interval
        .as_deref()
        .map(parse_interval)
        .transpose()
        .map_err(|m| ApiError::validation("interval", m))?;
    let limit = match p.limit {
        None => MAX_BARS,
        Some(n) if (1..=MAX_BARS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::validation(
                "limit",
                format!("limit ({n}) must be between 1 and {MAX_BARS}"),
            ));
        }
    };
    let unknown = || {
        ApiError::not_found(format!(
            "unknown symbol {symbol:?}: no data was imported for it (GET /api/symbols lists the symbols with data)"
        ))
    };
    let normalized = market::normalize_symbol(&symbol).map_err(|_| unknown())?;
    let asset = match market::asset(&state.store, &normalized).await {
        Ok(a) => a,
        Err(StoreError::NotFound(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let from = match crate::paging::id_cursor(p.cursor.as_deref())? {
        Some(c) => Some(c),
        None => p.from,
    };
    let page = store::market::bars(
        &state.store,
        &asset.symbol,
        BarQuery {
            from,
            to: p.to,
            interval_s,
            limit,
        },
    )
    .await?;
    Ok(ApiJson(Bars {
        symbol: asset.symbol,
        interval_s: interval_s.or(asset.interval_s),
        resampled: interval_s.is_some(),
        count: page.bars.len(),
        truncated: page.truncated,
        next_from: page.next_from,
        next_cursor: page.next_from.map(|t| t.to_string()),
        bars: page
            .bars
            .into_iter()
            .map(|b| BarOut {
                ts: b.ts,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1m"), Ok(60));
        assert_eq!(parse_interval("5m"), Ok(300));
        assert_eq!(parse_interval("1h"), Ok(3600));
        assert_eq!(parse_interval("1d"), Ok(86_400));
        assert_eq!(parse_interval("1w"), Ok(604_800));
        assert_eq!(parse_interval("90"), Ok(90));
        assert!(
            parse_interval("0")
                .unwrap_err()
                .contains("between 1 second")
        );
        assert!(
            parse_interval("5x")
                .unwrap_err()
                .contains("unknown unit \"x\"")
        );
        assert!(parse_interval("m").unwrap_err().contains("whole number"));
        assert!(parse_interval("-5m").is_err());
        assert!(parse_interval("999999999999999999d").is_err());
    }

    /// The pattern the OpenAPI document gives clients accepts exactly what the server does.
    #[test]
    fn the_documented_interval_pattern_is_the_parsers_language() {
        let doc =
            serde_json::to_value(<BarsParams as utoipa::IntoParams>::into_params(|| None)).unwrap();
        let pattern = doc
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "interval")
            .and_then(|p| p["schema"]["pattern"].as_str())
            .expect("interval has a pattern")
            .to_string();
        let re = regex::Regex::new(&pattern).unwrap();
        let mut tried = 0;
        for unit in ["", "s", "m", "min", "h", "d", "w", "x", " ", "ms"] {
            let mut n: u64 = 0;
            while n < 40_000_000 {
                for text in [
                    format!("{n}{unit}"),
                    format!("0{n}{unit}"),
                    format!(" {n}{unit}"),
                ] {
                    assert_eq!(
                        re.is_match(&text),
                        parse_interval(&text).is_ok(),
                        "{text:?}: pattern and parser disagree"
                    );
                    tried += 1;
                }
                // Every number near each power of ten and each unit's limit, and a spread.
                n = if n < 1000 { n + 1 } else { n + n / 97 + 1 };
                for edge in [
                    52, 53, 366, 367, 8784, 8785, 527_040, 527_041, 31_622_400, 31_622_401,
                ] {
                    if n > edge && n - edge < n / 97 + 2 {
                        assert_eq!(
                            re.is_match(&format!("{edge}{unit}")),
                            parse_interval(&format!("{edge}{unit}")).is_ok(),
                            "{edge}{unit}"
                        );
                    }
                }
            }
        }
        assert!(tried > 10_000);
    }
}
