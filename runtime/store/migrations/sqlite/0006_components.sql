-- Components are stored once by content hash: versions, clones and machine-made strategies that
-- share code share its bytes (10,000 strategies of one component were a 1 GB database).
CREATE TABLE components (
    sha256      TEXT    PRIMARY KEY,
    bytes       BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL
);

INSERT OR IGNORE INTO components (sha256, bytes, created_at)
    SELECT content_sha256, component, MIN(created_at) FROM strategy_versions GROUP BY content_sha256;

-- The column stays (SQLite cannot drop a NOT NULL column in place); it holds an empty blob.
UPDATE strategy_versions SET component = x'';
