//! Where an order fills on a bar: pure functions of the order's prices and the bar's OHLC.
//!
//! The rules (see `docs/fills.md`): triggers are checked against the bar's high and low; when
//! the bar *opens* through a price (a gap), the fill is at the open, which is worse for stops
//! and better for limits, as on a real exchange.

use qtm_core::model::{Bar, Side};

/// Fill price of a limit order, if the bar reaches it.
pub fn limit(side: Side, price: f64, bar: &Bar) -> Option<f64> {
    match side {
        Side::Buy if bar.open <= price => Some(bar.open),
        Side::Buy if bar.low <= price => Some(price),
        Side::Sell if bar.open >= price => Some(bar.open),
        Side::Sell if bar.high >= price => Some(price),
        _ => None,
    }
}

/// Fill price of a stop (market-on-trigger) order, if the bar trades through it.
pub fn stop(side: Side, price: f64, bar: &Bar) -> Option<f64> {
    match side {
        Side::Buy if bar.open >= price => Some(bar.open),
        Side::Buy if bar.high >= price => Some(price),
        Side::Sell if bar.open <= price => Some(bar.open),
        Side::Sell if bar.low <= price => Some(price),
        _ => None,
    }
}

/// A stop-limit on one bar: `Ok(Some(p))` fills at `p`; `Ok(None)` triggered but the limit
/// was not reached on this bar (it rests as a limit from now on); `Err(())` not triggered.
///
/// When the trigger happens inside the bar, the path after it is unknown, so the limit fills
/// on the trigger bar only if the stop price itself satisfies it.
#[allow(clippy::result_unit_err)]
pub fn stop_limit(
    side: Side,
    stop_price: f64,
    limit_price: f64,
    bar: &Bar,
) -> Result<Option<f64>, ()> {
    let gapped = match side {
        Side::Buy => bar.open >= stop_price,
        Side::Sell => bar.open <= stop_price,
    };
    if gapped {
        return Ok(limit(side, limit_price, bar));
    }
    if stop(side, stop_price, bar).is_none() {
        return Err(());
    }
    let fills_at_stop = match side {
        Side::Buy => stop_price <= limit_price,
        Side::Sell => stop_price >= limit_price,
    };
    Ok(fills_at_stop.then_some(stop_price))
}

/// Apply slippage against the trader: buys pay more, sells receive less.
pub fn slip(side: Side, price: f64, bps: f64) -> f64 {
    match side {
        Side::Buy => price * (1.0 + bps / 10_000.0),
        Side::Sell => price * (1.0 - bps / 10_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar {
            ts: 0,
            open,
            high,
            low,
            close,
            volume: 1000.0,
        }
    }

    #[test]
    fn limits_fill_at_their_price_or_better_on_a_gap() {
        let b = bar(100.0, 105.0, 95.0, 101.0);
        assert_eq!(limit(Side::Buy, 97.0, &b), Some(97.0));
        assert_eq!(limit(Side::Buy, 94.0, &b), None);
        assert_eq!(
            limit(Side::Buy, 102.0, &b),
            Some(100.0),
            "opened below the limit"
        );
        assert_eq!(limit(Side::Sell, 104.0, &b), Some(104.0));
        assert_eq!(limit(Side::Sell, 106.0, &b), None);
        assert_eq!(
            limit(Side::Sell, 99.0, &b),
            Some(100.0),
            "opened above the limit"
        );
        // Touching exactly counts.
        assert_eq!(limit(Side::Buy, 95.0, &b), Some(95.0));
        assert_eq!(limit(Side::Sell, 105.0, &b), Some(105.0));
    }

    #[test]
    fn stops_fill_at_their_price_or_worse_on_a_gap() {
        let b = bar(100.0, 105.0, 95.0, 101.0);
        assert_eq!(stop(Side::Buy, 103.0, &b), Some(103.0));
        assert_eq!(stop(Side::Buy, 106.0, &b), None);
        assert_eq!(
            stop(Side::Buy, 98.0, &b),
            Some(100.0),
            "gapped through: fills at the open"
        );
        assert_eq!(stop(Side::Sell, 96.0, &b), Some(96.0));
        assert_eq!(stop(Side::Sell, 94.0, &b), None);
        assert_eq!(
            stop(Side::Sell, 102.0, &b),
            Some(100.0),
            "gapped through: fills at the open"
        );
        assert_eq!(stop(Side::Sell, 95.0, &b), Some(95.0));
    }

    #[test]
    fn stop_limits_trigger_then_fill_only_where_the_path_allows() {
        let b = bar(100.0, 105.0, 95.0, 101.0);
        // Triggered at 103 inside the bar; limit 104 is satisfied by the stop price.
        assert_eq!(stop_limit(Side::Buy, 103.0, 104.0, &b), Ok(Some(103.0)));
        // Triggered at 103; limit 99 needs the price to come back: unknown path, rests.
        assert_eq!(stop_limit(Side::Buy, 103.0, 99.0, &b), Ok(None));
        assert_eq!(stop_limit(Side::Buy, 106.0, 107.0, &b), Err(()));
        // Gapped through the stop at the open: a limit from the open on.
        assert_eq!(stop_limit(Side::Buy, 98.0, 99.0, &b), Ok(Some(99.0)));
        assert_eq!(stop_limit(Side::Buy, 98.0, 100.5, &b), Ok(Some(100.0)));
        assert_eq!(stop_limit(Side::Sell, 96.0, 95.5, &b), Ok(Some(96.0)));
        assert_eq!(stop_limit(Side::Sell, 102.0, 101.0, &b), Ok(Some(101.0)));
    }

    #[test]
    fn slippage_is_always_against_the_trader() {
        assert!((slip(Side::Buy, 100.0, 10.0) - 100.1).abs() < 1e-12);
        assert!((slip(Side::Sell, 100.0, 10.0) - 99.9).abs() < 1e-12);
        assert_eq!(slip(Side::Buy, 100.0, 0.0), 100.0);
    }
}
