-- Trading: positions become trades (one row per round trip, with a surrogate id the API can
-- name), the kill switch is persisted, and orders can be listed by symbol.

-- A position row now lives from the fill that opens it to the fill that flattens it
-- (`closed_at` set); the next opening fill starts a new row. So `positions.id` is the trade id
-- of `/api/trades/{id}`, and at most one row per (account, symbol) is open.
CREATE TABLE positions_v2 (
    id           INTEGER PRIMARY KEY,
    account      TEXT             NOT NULL,
    symbol       TEXT             NOT NULL,
    side         TEXT             NOT NULL CHECK (side IN ('long', 'short')),
    quantity     DOUBLE PRECISION NOT NULL,
    avg_price    DOUBLE PRECISION NOT NULL,
    realized_pnl DOUBLE PRECISION NOT NULL DEFAULT 0,
    fees         DOUBLE PRECISION NOT NULL DEFAULT 0,
    opened_at    BIGINT           NOT NULL,
    closed_at    BIGINT,
    updated_at   BIGINT           NOT NULL
);
INSERT INTO positions_v2 (account, symbol, side, quantity, avg_price, realized_pnl, opened_at, closed_at, updated_at)
    SELECT account, symbol, CASE WHEN quantity < 0 THEN 'short' ELSE 'long' END, quantity, avg_price, realized_pnl, updated_at,
           CASE WHEN quantity = 0 THEN updated_at END, updated_at
    FROM positions;
DROP TABLE positions;
ALTER TABLE positions_v2 RENAME TO positions;
CREATE UNIQUE INDEX positions_open ON positions (account, symbol) WHERE closed_at IS NULL;
CREATE INDEX positions_symbol ON positions (symbol);

-- The fills of a position, so a trade can list its executions.
ALTER TABLE fills ADD COLUMN position_id BIGINT REFERENCES positions (id) ON DELETE SET NULL;

-- Kill switches in force (`account`, later `strategy:<id>`); a row means halted.
CREATE TABLE risk_halts (
    scope     TEXT PRIMARY KEY,
    reason    TEXT   NOT NULL,
    halted_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    halted_at BIGINT NOT NULL
);

CREATE INDEX orders_symbol ON orders (symbol, id);
CREATE INDEX orders_status ON orders (status, id);
