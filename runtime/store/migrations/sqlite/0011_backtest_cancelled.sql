-- A backtest job can be cancelled through the API (`POST /api/backtests/{id}/cancel`), which
-- ends it with status `cancelled`. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with the wider one; nothing references it, and its one index is made again.
CREATE TABLE backtests_new (
    id            INTEGER PRIMARY KEY,
    strategy_id   BIGINT REFERENCES strategies (id) ON DELETE SET NULL,
    version_id    BIGINT REFERENCES strategy_versions (id) ON DELETE SET NULL,
    user_id       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    status        TEXT   NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    request       TEXT   NOT NULL,
    bars_total    BIGINT,
    bars_done     BIGINT NOT NULL DEFAULT 0,
    metrics       TEXT,
    trades_sha256 TEXT,
    trades        TEXT,
    equity        TEXT,
    error         TEXT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT
);

INSERT INTO backtests_new
    SELECT id, strategy_id, version_id, user_id, status, request, bars_total, bars_done, metrics,
           trades_sha256, trades, equity, error, created_at, started_at, finished_at
    FROM backtests;

DROP TABLE backtests;
ALTER TABLE backtests_new RENAME TO backtests;
CREATE INDEX backtests_strategy ON backtests (strategy_id, id);
