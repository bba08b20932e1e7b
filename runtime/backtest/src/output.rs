//! The trade list and equity curve as CSV, and the trade list's hash.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

use qtm_core::model::{EquityPoint, Trade};

/// `symbol,entry_ts,exit_ts,entry_price,exit_price,quantity,pnl,fees`; an open trade has empty
/// exit fields. Numbers use Rust's shortest round-trip formatting, so equal runs give equal
/// bytes.
pub fn trades_csv(trades: &[Trade]) -> String {
    let mut out =
        String::from("symbol,entry_ts,exit_ts,entry_price,exit_price,quantity,pnl,fees\n");
    for t in trades {
        let exit_ts = t.exit_ts.map(|v| v.to_string()).unwrap_or_default();
        let exit_price = t.exit_price.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            t.symbol, t.entry_ts, exit_ts, t.entry_price, exit_price, t.quantity, t.pnl, t.fees
        ));
    }
    out
}

/// Hex SHA-256 of [`trades_csv`]: compare runs without comparing files.
pub fn trades_sha256(trades: &[Trade]) -> String {
    hex::encode(Sha256::digest(trades_csv(trades).as_bytes()))
}

/// `ts,equity`, one line per time step.
pub fn equity_csv(equity: &[EquityPoint]) -> String {
    let mut out = Vec::with_capacity(equity.len() * 24 + 10);
    write_equity_csv(equity.iter().copied(), &mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("numbers are ASCII")
}

/// [`equity_csv`] streamed to a writer, for curves too long to build in memory.
pub fn write_equity_csv(
    equity: impl Iterator<Item = EquityPoint>,
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(b"ts,equity\n")?;
    for p in equity {
        writeln!(out, "{},{}", p.ts, p.equity)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_trades_have_empty_exit_fields_and_the_hash_is_stable() {
        let trades = vec![
            Trade {
                symbol: "GOOG".into(),
                entry_ts: 1,
                exit_ts: Some(2),
                entry_price: 100.0,
                exit_price: Some(110.5),
                quantity: -3.0,
                pnl: -31.5,
                fees: 0.0,
            },
            Trade {
                symbol: "GOOG".into(),
                entry_ts: 3,
                exit_ts: None,
                entry_price: 99.25,
                exit_price: None,
                quantity: 2.0,
                pnl: 1.5,
                fees: 0.1,
            },
        ];
        let csv = trades_csv(&trades);
        assert_eq!(
            csv,
            "symbol,entry_ts,exit_ts,entry_price,exit_price,quantity,pnl,fees\nGOOG,1,2,100,110.5,-3,-31.5,0\nGOOG,3,,99.25,,2,1.5,0.1\n"
        );
        assert_eq!(
            trades_sha256(&trades),
            hex::encode(Sha256::digest(csv.as_bytes()))
        );
        assert_eq!(trades_sha256(&[]).len(), 64);
    }
}
