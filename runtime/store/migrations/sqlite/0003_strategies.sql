-- Strategies and backtests: the lookups the API makes on every list and performance call.

-- A strategy's backtests, newest first (`GET /api/backtests?strategy_id=`, performance).
CREATE INDEX backtests_strategy ON backtests (strategy_id, id);
-- Versions by content hash (re-uploads of the same component, templates from stored code).
CREATE INDEX strategy_versions_sha ON strategy_versions (content_sha256);
