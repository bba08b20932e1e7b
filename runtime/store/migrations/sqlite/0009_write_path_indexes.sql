-- The live recorder books thousands of fills a second, and each index entry a write adds or
-- moves is a page SQLite writes again into the WAL. `cargo bench -p qtm-tests --bench live`
-- (100 instances, 10,000 ticks/s) wrote 24.5 KiB per fill with the indexes of 0001 and 0004,
-- half of it for `orders_account (account, status)`: every fill moved an entry from one
-- status to the next, at a random place for each account. With these, 8.9 KiB.
--
-- Status is now only in a partial index of the working orders: small, so its pages stay hot,
-- and an order leaves it once.
DROP INDEX orders_status;
CREATE INDEX orders_working ON orders (id) WHERE status IN ('accepted', 'partially_filled');

-- What reads orders by account is the order-rate limit of manual orders (instances' orders are
-- limited by the engine, in memory), so only manual orders are indexed by account.
DROP INDEX orders_account;
CREATE INDEX orders_account ON orders (account, created_at) WHERE instance_id IS NULL;

-- No query used these: the listings' filters are optional, so they read newest first by id.
DROP INDEX orders_symbol;
DROP INDEX positions_symbol;
