//! Cash, positions and the trade list of one account.
//!
//! Positions are signed (short < 0). Cash moves by the fill's notional and fee; equity is cash
//! plus every position marked at its latest price. Trades are matched first-in first-out: a
//! fill that reduces a position closes the oldest lots first, and a lot closed in parts takes
//! its entry fee along proportionally.

use std::collections::VecDeque;
use std::sync::Arc;

use qtm_core::model::{Position, Trade};

#[derive(Debug, Clone)]
struct Lot {
    ts: i64,
    price: f64,
    /// Signed remaining quantity.
    quantity: f64,
    /// Entry fee not yet attributed to a closed trade.
    fee: f64,
}

/// One account's book.
#[derive(Debug, Clone)]
pub struct Portfolio {
    symbols: Arc<[String]>,
    initial_cash: f64,
    cash: f64,
    fees: f64,
    positions: Vec<f64>,
    avg_price: Vec<f64>,
    marks: Vec<f64>,
    lots: Vec<VecDeque<Lot>>,
    closed: Vec<Trade>,
    realized: f64,
}

impl Portfolio {
    /// An account with `cash` and no positions in any of `symbols`.
    pub fn new(symbols: Arc<[String]>, cash: f64) -> Self {
        let n = symbols.len();
        Self {
            symbols,
            initial_cash: cash,
            cash,
            fees: 0.0,
            positions: vec![0.0; n],
            avg_price: vec![0.0; n],
            marks: vec![f64::NAN; n],
            lots: vec![VecDeque::new(); n],
            closed: Vec::new(),
            realized: 0.0,
        }
    }

    /// Track one more symbol: `symbols` is the old list with the new name appended.
    pub fn add_symbol(&mut self, symbols: Arc<[String]>) {
        debug_assert_eq!(symbols.len(), self.positions.len() + 1);
        self.symbols = symbols;
        self.positions.push(0.0);
        self.avg_price.push(0.0);
        self.marks.push(f64::NAN);
        self.lots.push(VecDeque::new());
    }

    /// Cash at the start.
    pub fn initial_cash(&self) -> f64 {
        self.initial_cash
    }
    /// Free cash (negative after buying on margin, larger after shorting).
    pub fn cash(&self) -> f64 {
        self.cash
    }
    /// Fees paid so far.
    pub fn fees(&self) -> f64 {
        self.fees
    }
    /// Realized PnL net of fees of closed trades.
    pub fn realized(&self) -> f64 {
        self.realized
    }
    /// Signed position in `symbol` (engine symbol id).
    #[inline]
    pub fn quantity(&self, symbol: usize) -> f64 {
        self.positions[symbol]
    }
    /// Position with its average entry price.
    pub fn position(&self, symbol: usize) -> Position {
        Position {
            quantity: self.positions[symbol],
            avg_price: self.avg_price[symbol],
        }
    }
    /// Latest price of `symbol` (NaN before its first bar).
    pub fn mark(&self, symbol: usize) -> f64 {
        self.marks[symbol]
    }
    /// Set the latest price of `symbol`.
    #[inline]
    pub fn set_mark(&mut self, symbol: usize, price: f64) {
        self.marks[symbol] = price;
    }
    /// Whether any position is open.
    pub fn in_market(&self) -> bool {
        self.positions.iter().any(|&q| q != 0.0)
    }
    /// Cash plus positions at their marks.
    #[inline]
    pub fn equity(&self) -> f64 {
        let mut e = self.cash;
        for (q, m) in self.positions.iter().zip(&self.marks) {
            if *q != 0.0 {
                e += q * m;
            }
        }
        e
    }
    /// Equity if `symbol` were marked at `price`.
    pub fn equity_at(&self, symbol: usize, price: f64) -> f64 {
        let q = self.positions[symbol];
        if q == 0.0 {
            self.equity()
        } else {
            self.equity() + q * (price - self.marks[symbol])
        }
    }
    /// Sum of |position × mark| over symbols.
    pub fn gross_exposure(&self) -> f64 {
        self.positions
            .iter()
            .zip(&self.marks)
            .map(|(q, m)| (q * m).abs())
            .filter(|v| v.is_finite())
            .sum()
    }
    /// Unrealized PnL at the marks.
    pub fn unrealized(&self) -> f64 {
        self.positions
            .iter()
            .enumerate()
            .filter(|(_, q)| **q != 0.0)
            .map(|(s, q)| q * (self.marks[s] - self.avg_price[s]))
            .sum()
    }

    /// Book a fill of `signed_qty` (buy > 0) at `price` with `fee`.
    pub fn apply_fill(&mut self, symbol: usize, signed_qty: f64, price: f64, fee: f64, ts: i64) {
        self.cash -= signed_qty * price + fee;
        self.fees += fee;
        let before = self.positions[symbol];
        let after = before + signed_qty;
        // Average price: grows when adding, stays when reducing, resets when crossing zero.
        self.avg_price[symbol] = if before == 0.0 || (before > 0.0) != (after > 0.0) {
            if after == 0.0 { 0.0 } else { price }
        } else if after.abs() > before.abs() {
            (self.avg_price[symbol] * before + price * signed_qty) / after
        } else {
            self.avg_price[symbol]
        };
        self.positions[symbol] = if after.abs() < 1e-9 * signed_qty.abs().max(1.0) {
            0.0
        } else {
            after
        };
        self.match_lots(symbol, signed_qty, price, fee, ts);
    }

    fn match_lots(&mut self, symbol: usize, signed_qty: f64, price: f64, fee: f64, ts: i64) {
        let total = signed_qty.abs();
        let mut left = signed_qty;
        let lots = &mut self.lots[symbol];
        while left != 0.0 {
            let Some(front) = lots.front_mut() else { break };
            if (front.quantity > 0.0) == (left > 0.0) {
                break; // same direction: nothing to close
            }
            let take = front.quantity.abs().min(left.abs());
            let closed_q = take * front.quantity.signum();
            let entry_fee = front.fee * take / front.quantity.abs();
            let exit_fee = fee * take / total;
            let pnl = (price - front.price) * closed_q - entry_fee - exit_fee;
            self.closed.push(Trade {
                symbol: self.symbols[symbol].clone(),
                entry_ts: front.ts,
                exit_ts: Some(ts),
                entry_price: front.price,
                exit_price: Some(price),
                quantity: closed_q,
                pnl,
                fees: entry_fee + exit_fee,
            });
            self.realized += pnl;
            front.fee -= entry_fee;
            front.quantity -= closed_q;
            left += closed_q;
            if front.quantity.abs() <= 1e-12 * take.max(1.0) {
                lots.pop_front();
            }
            if left.abs() <= 1e-12 * total.max(1.0) {
                left = 0.0;
            }
        }
        if left != 0.0 {
            lots.push_back(Lot {
                ts,
                price,
                quantity: left,
                fee: fee * left.abs() / total,
            });
        }
    }

    /// Closed trades, in the order they closed.
    pub fn closed_trades(&self) -> &[Trade] {
        &self.closed
    }

    /// Closed trades followed by the open lots, marked at the latest prices (no exit).
    pub fn all_trades(&self) -> Vec<Trade> {
        let mut out = self.closed.clone();
        for (s, lots) in self.lots.iter().enumerate() {
            for lot in lots {
                out.push(Trade {
                    symbol: self.symbols[s].clone(),
                    entry_ts: lot.ts,
                    exit_ts: None,
                    entry_price: lot.price,
                    exit_price: None,
                    quantity: lot.quantity,
                    pnl: (self.marks[s] - lot.price) * lot.quantity - lot.fee,
                    fees: lot.fee,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> Portfolio {
        Portfolio::new(vec!["A".to_string(), "B".to_string()].into(), 10_000.0)
    }

    #[test]
    fn long_round_trip_books_cash_fees_and_one_trade() {
        let mut p = book();
        p.apply_fill(0, 10.0, 100.0, 1.0, 1);
        p.set_mark(0, 105.0);
        assert_eq!(p.cash(), 10_000.0 - 1_000.0 - 1.0);
        assert_eq!(p.equity(), 8_999.0 + 1_050.0);
        assert_eq!(
            p.position(0),
            Position {
                quantity: 10.0,
                avg_price: 100.0
            }
        );
        p.apply_fill(0, -10.0, 110.0, 1.1, 2);
        assert_eq!(p.quantity(0), 0.0);
        assert_eq!(p.cash(), 10_000.0 - 1_001.0 + 1_100.0 - 1.1);
        let t = &p.closed_trades()[0];
        assert_eq!((t.entry_ts, t.exit_ts, t.quantity), (1, Some(2), 10.0));
        assert!((t.pnl - (100.0 - 2.1)).abs() < 1e-9);
        assert!((t.fees - 2.1).abs() < 1e-12);
        assert!((p.fees() - 2.1).abs() < 1e-12);
    }

    #[test]
    fn partial_closes_go_first_in_first_out_with_fees_apportioned() {
        let mut p = book();
        p.apply_fill(0, 10.0, 100.0, 10.0, 1); // lot 1: fee 1 per unit
        p.apply_fill(0, 10.0, 110.0, 20.0, 2); // lot 2: fee 2 per unit
        assert_eq!(p.position(0).avg_price, 105.0);
        p.apply_fill(0, -15.0, 120.0, 15.0, 3); // closes lot 1 and half of lot 2
        let t = p.closed_trades();
        assert_eq!(t.len(), 2);
        // lot 1: (120-100)*10 - 10 entry - 10 exit (15 fee * 10/15)
        assert!((t[0].pnl - (200.0 - 10.0 - 10.0)).abs() < 1e-9);
        // half of lot 2: (120-110)*5 - 10 entry - 5 exit
        assert!((t[1].pnl - (50.0 - 10.0 - 5.0)).abs() < 1e-9);
        assert_eq!(t[1].quantity, 5.0);
        assert_eq!(
            p.position(0),
            Position {
                quantity: 5.0,
                avg_price: 105.0
            }
        );
        let open = p.all_trades();
        assert_eq!(open.len(), 3);
        assert_eq!(
            (open[2].quantity, open[2].exit_ts, open[2].fees),
            (5.0, None, 10.0)
        );
    }

    #[test]
    fn a_reversal_closes_then_opens_at_the_same_price() {
        let mut p = book();
        p.apply_fill(0, -5.0, 100.0, 0.5, 1);
        p.apply_fill(0, 8.0, 90.0, 0.8, 2);
        let t = p.closed_trades();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].quantity, -5.0);
        // short 5 from 100 to 90: +50, fees 0.5 + 0.8*5/8
        assert!((t[0].pnl - (50.0 - 0.5 - 0.5)).abs() < 1e-9);
        assert_eq!(
            p.position(0),
            Position {
                quantity: 3.0,
                avg_price: 90.0
            }
        );
        let open = p.all_trades();
        assert_eq!(open[1].quantity, 3.0);
        assert!((open[1].fees - 0.3).abs() < 1e-12);
    }

    #[test]
    fn equity_marks_every_symbol() {
        let mut p = book();
        p.apply_fill(0, 2.0, 50.0, 0.0, 1);
        p.apply_fill(1, -3.0, 20.0, 0.0, 1);
        p.set_mark(0, 60.0);
        p.set_mark(1, 10.0);
        assert_eq!(p.equity(), 10_000.0 - 100.0 + 60.0 + 120.0 - 30.0);
        assert_eq!(p.gross_exposure(), 120.0 + 30.0);
        assert_eq!(p.equity_at(0, 70.0), p.equity() + 20.0);
        assert!((p.unrealized() - (20.0 + 30.0)).abs() < 1e-12);
    }
}
