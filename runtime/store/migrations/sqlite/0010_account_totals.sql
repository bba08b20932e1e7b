-- Each account's totals: the cash its fills moved and their fees, and the realized PnL of its
-- trades. Reading an account's cash (enabling or resuming an instance) or the book's totals
-- (every risk read) used to be a pass over every fill (38 ms for each enable and 97 ms for
-- each risk read at 1,000,000 fills) or the loading of every position ever opened, growing
-- with the history. Now it is one row per account.
--
-- The fill booking (`store::writer`, the one place fills are booked) moves the row in the
-- transaction that books each fill, with one upsert carrying all three amounts. (Triggers
-- on `fills` and `positions` did the same with two upserts per fill: the booking statements
-- took 2.3 µs more per fill against 0.6 µs with one, `cargo bench -p qtm-tests --bench
-- fill_booking`.) Cash is minus what buys cost plus what sells brought, fees apart, as the
-- reads computed it.
CREATE TABLE account_totals (
    account      TEXT PRIMARY KEY,
    trade_cash   DOUBLE PRECISION NOT NULL DEFAULT 0,
    fees         DOUBLE PRECISION NOT NULL DEFAULT 0,
    realized_pnl DOUBLE PRECISION NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO account_totals (account, trade_cash, fees)
SELECT account,
       SUM(CASE WHEN side = 'buy' THEN -quantity * price ELSE quantity * price END),
       SUM(fee)
FROM fills
GROUP BY account;

INSERT INTO account_totals (account, realized_pnl)
SELECT account, SUM(realized_pnl) FROM positions GROUP BY account
ON CONFLICT (account) DO UPDATE SET realized_pnl = excluded.realized_pnl;
