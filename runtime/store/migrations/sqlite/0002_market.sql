-- Per-asset summary kept up to date by every import, so `GET /api/market/assets` and the heatmap
-- read one small table and never scan price_history per request.
--
-- last_close: close of the newest bar.
-- ref_ts/ref_close: the newest bar at or before last_ts - 24 h (for daily or slower data, the
--   previous bar); when the series is shorter than a day, the first bar, with its open.
-- change_pct: 100 * (last_close / ref_close - 1).
-- volume_24h/high_24h/low_24h: over the bars after last_ts - 24 h (the last bar for daily data).

ALTER TABLE assets ADD COLUMN last_close DOUBLE PRECISION;
ALTER TABLE assets ADD COLUMN ref_ts BIGINT;
ALTER TABLE assets ADD COLUMN ref_close DOUBLE PRECISION;
ALTER TABLE assets ADD COLUMN change_pct DOUBLE PRECISION;
ALTER TABLE assets ADD COLUMN volume_24h DOUBLE PRECISION;
ALTER TABLE assets ADD COLUMN high_24h DOUBLE PRECISION;
ALTER TABLE assets ADD COLUMN low_24h DOUBLE PRECISION;

-- Bars are only ever read by (symbol, time range): keep them clustered on that key instead of in
-- a rowid table plus a separate key index, which halves the B-tree work of an import and the
-- file size. (PostgreSQL has no such option; its twin keeps the plain table.)
CREATE TABLE price_history_clustered (
    symbol TEXT             NOT NULL REFERENCES assets (symbol) ON DELETE CASCADE,
    ts     BIGINT           NOT NULL,
    open   DOUBLE PRECISION NOT NULL,
    high   DOUBLE PRECISION NOT NULL,
    low    DOUBLE PRECISION NOT NULL,
    close  DOUBLE PRECISION NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID;
INSERT INTO price_history_clustered (symbol, ts, open, high, low, close, volume)
    SELECT symbol, ts, open, high, low, close, volume FROM price_history;
DROP TABLE price_history;
ALTER TABLE price_history_clustered RENAME TO price_history;

-- The signal lookup of strategies asks for the newest value of one name.
CREATE INDEX signals_name_event ON signals (name, event_ts);
