-- qtm store, first schema. Portable by intent: BIGINT seconds for times, TEXT JSON documents,
-- DOUBLE PRECISION prices, BLOB bytes; the PostgreSQL twin (BIGSERIAL keys, BYTEA, JSONB)
-- goes in ../postgres with the same table and column names.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
    display_name  TEXT,
    email         TEXT,
    totp_secret   TEXT,
    totp_enabled  INTEGER NOT NULL DEFAULT 0,
    totp_last_step BIGINT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE TABLE refresh_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family     TEXT   NOT NULL,
    token_hash TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    ts       BIGINT  NOT NULL,
    user_id  BIGINT,
    username TEXT,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    ip       TEXT,
    detail   TEXT
);
CREATE INDEX audit_log_ts ON audit_log (ts);

CREATE TABLE assets (
    symbol      TEXT PRIMARY KEY,
    name        TEXT   NOT NULL,
    asset_class TEXT   NOT NULL,
    currency    TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    interval_s  BIGINT,
    first_ts    BIGINT,
    last_ts     BIGINT,
    bars        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE price_history (
    symbol TEXT             NOT NULL REFERENCES assets (symbol) ON DELETE CASCADE,
    ts     BIGINT           NOT NULL,
    open   DOUBLE PRECISION NOT NULL,
    high   DOUBLE PRECISION NOT NULL,
    low    DOUBLE PRECISION NOT NULL,
    close  DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, ts)
);

CREATE TABLE strategies (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL,
    description        TEXT    NOT NULL DEFAULT '',
    owner_id           BIGINT  REFERENCES users (id) ON DELETE SET NULL,
    source             TEXT    NOT NULL DEFAULT 'upload',
    cloned_from        BIGINT  REFERENCES strategies (id) ON DELETE SET NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);

CREATE TABLE strategy_versions (
    id               INTEGER PRIMARY KEY,
    strategy_id      BIGINT NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    version          BIGINT NOT NULL,
    content_sha256   TEXT   NOT NULL,
    contract_version TEXT   NOT NULL,
    describe         TEXT   NOT NULL,
    size_bytes       BIGINT NOT NULL,
    component        BLOB   NOT NULL,
    created_by       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (strategy_id, version)
);

CREATE TABLE strategy_instances (
    id            INTEGER PRIMARY KEY,
    strategy_id   BIGINT NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    version_id    BIGINT NOT NULL REFERENCES strategy_versions (id),
    params        TEXT   NOT NULL DEFAULT '{}',
    symbols       TEXT   NOT NULL DEFAULT '[]',
    status        TEXT   NOT NULL DEFAULT 'disabled'
                  CHECK (status IN ('disabled', 'enabled', 'halted', 'failed')),
    status_reason TEXT,
    last_snapshot BLOB,
    snapshot_at   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX strategy_instances_strategy ON strategy_instances (strategy_id);

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY,
    account       TEXT             NOT NULL,
    instance_id   BIGINT           REFERENCES strategy_instances (id) ON DELETE SET NULL,
    user_id       BIGINT           REFERENCES users (id) ON DELETE SET NULL,
    symbol        TEXT             NOT NULL,
    side          TEXT             NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type    TEXT             NOT NULL,
    quantity      DOUBLE PRECISION NOT NULL,
    limit_price   DOUBLE PRECISION,
    stop_price    DOUBLE PRECISION,
    time_in_force TEXT             NOT NULL,
    take_profit   DOUBLE PRECISION,
    stop_loss     DOUBLE PRECISION,
    status        TEXT             NOT NULL,
    filled_qty    DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_price     DOUBLE PRECISION,
    reason        TEXT,
    tag           TEXT,
    created_at    BIGINT           NOT NULL,
    updated_at    BIGINT           NOT NULL
);
CREATE INDEX orders_account ON orders (account, status);

CREATE TABLE fills (
    id       INTEGER PRIMARY KEY,
    order_id BIGINT           NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    account  TEXT             NOT NULL,
    symbol   TEXT             NOT NULL,
    side     TEXT             NOT NULL,
    quantity DOUBLE PRECISION NOT NULL,
    price    DOUBLE PRECISION NOT NULL,
    fee      DOUBLE PRECISION NOT NULL,
    ts       BIGINT           NOT NULL
);
CREATE INDEX fills_order ON fills (order_id);

CREATE TABLE positions (
    account      TEXT             NOT NULL,
    symbol       TEXT             NOT NULL,
    quantity     DOUBLE PRECISION NOT NULL,
    avg_price    DOUBLE PRECISION NOT NULL,
    realized_pnl DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at   BIGINT           NOT NULL,
    PRIMARY KEY (account, symbol)
);

CREATE TABLE backtests (
    id            INTEGER PRIMARY KEY,
    strategy_id   BIGINT REFERENCES strategies (id) ON DELETE SET NULL,
    version_id    BIGINT REFERENCES strategy_versions (id) ON DELETE SET NULL,
    user_id       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    status        TEXT   NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
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

CREATE TABLE risk_limits (
    scope      TEXT PRIMARY KEY,
    limits     TEXT   NOT NULL,
    updated_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE risk_alerts (
    id          INTEGER PRIMARY KEY,
    ts          BIGINT NOT NULL,
    scope       TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    message     TEXT   NOT NULL,
    strategy_id BIGINT
);
CREATE INDEX risk_alerts_ts ON risk_alerts (ts);

CREATE TABLE modules (
    id          TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE module_configs (
    module_id  TEXT PRIMARY KEY REFERENCES modules (id) ON DELETE CASCADE,
    config     TEXT   NOT NULL,
    updated_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE signals (
    id          INTEGER PRIMARY KEY,
    source      TEXT             NOT NULL,
    name        TEXT             NOT NULL,
    value       DOUBLE PRECISION,
    payload     TEXT             NOT NULL,
    signature   TEXT             NOT NULL UNIQUE,
    event_ts    BIGINT,
    received_at BIGINT           NOT NULL
);
CREATE INDEX signals_source ON signals (source, received_at);
CREATE INDEX signals_name ON signals (name, received_at);
