-- change_pct now runs from the previous UTC calendar day's close: the newest bar before 00:00 UTC
-- of the last bar's day; without one, the open of that day's first bar (the same rule as the
-- live marks). Recompute what earlier imports stored under the former rule (the newest bar at
-- or before last_ts - 24 h), and the last close of assets whose bars came as marks.
UPDATE assets SET
    last_close = (SELECT p.close FROM price_history p
                  WHERE p.symbol = assets.symbol AND p.ts = assets.last_ts),
    ref_ts = COALESCE(
        (SELECT p.ts FROM price_history p
         WHERE p.symbol = assets.symbol
           AND p.ts < assets.last_ts - ((assets.last_ts % 86400) + 86400) % 86400
         ORDER BY p.ts DESC LIMIT 1),
        (SELECT p.ts FROM price_history p
         WHERE p.symbol = assets.symbol
           AND p.ts >= assets.last_ts - ((assets.last_ts % 86400) + 86400) % 86400
         ORDER BY p.ts LIMIT 1))
WHERE last_ts IS NOT NULL;

UPDATE assets SET
    ref_close = (SELECT CASE
                     WHEN p.ts < assets.last_ts - ((assets.last_ts % 86400) + 86400) % 86400
                     THEN p.close ELSE p.open END
                 FROM price_history p
                 WHERE p.symbol = assets.symbol AND p.ts = assets.ref_ts)
WHERE last_ts IS NOT NULL;

UPDATE assets SET
    change_pct = CASE WHEN last_close IS NOT NULL AND ref_close IS NOT NULL AND ref_close != 0
                      THEN 100.0 * (last_close / ref_close - 1.0) END
WHERE last_ts IS NOT NULL;
