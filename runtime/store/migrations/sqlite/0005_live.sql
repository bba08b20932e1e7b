-- Live trading: how far the live engine got in each symbol's stream, so a restart resumes
-- after the last bar whose effects were stored instead of replaying or skipping bars.
CREATE TABLE live_cursors (
    symbol     TEXT PRIMARY KEY,
    seq        BIGINT           NOT NULL,
    ts         BIGINT           NOT NULL,
    close      DOUBLE PRECISION NOT NULL,
    updated_at BIGINT           NOT NULL
);

-- Every hot swap, clone and rollback of a live instance, with how long the engine paused.
CREATE TABLE instance_swaps (
    id            INTEGER PRIMARY KEY,
    strategy_id   BIGINT NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    from_version  BIGINT,
    to_version    BIGINT NOT NULL,
    outcome       TEXT   NOT NULL,
    reason        TEXT,
    pause_us      DOUBLE PRECISION,
    user_id       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX instance_swaps_strategy ON instance_swaps (strategy_id, id);
