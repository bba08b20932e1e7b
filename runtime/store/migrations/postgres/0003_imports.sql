-- Components may be stored as a zstd delta against a reference component (a dictionary): rule
-- programs are one evaluator with a different program written into it, 300 KiB each raw and
-- about a kilobyte as a delta. The reference's bytes are kept here, so every stored delta
-- stays readable whatever later builds use as their reference.
CREATE TABLE component_dictionaries (
    sha256      TEXT    PRIMARY KEY,
    bytes       BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- `raw` (the bytes as uploaded) or `zstd-dict` (a zstd frame against `dictionary_sha256`).
ALTER TABLE components ADD COLUMN encoding TEXT NOT NULL DEFAULT 'raw';
ALTER TABLE components ADD COLUMN dictionary_sha256 TEXT REFERENCES component_dictionaries (sha256);

-- Where an imported strategy came from: one row per (source, row key), the latest import of
-- it. The source is the database URL without its credentials (or `upload:<file name>`).
CREATE TABLE strategy_imports (
    id              BIGSERIAL PRIMARY KEY,
    strategy_id     BIGINT  NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    query           TEXT    NOT NULL,
    row_key         TEXT    NOT NULL,
    content_sha256  TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    imported_by     BIGINT  REFERENCES users (id) ON DELETE SET NULL,
    imported_at     BIGINT  NOT NULL,
    UNIQUE (source, row_key)
);
CREATE INDEX strategy_imports_strategy ON strategy_imports (strategy_id);
