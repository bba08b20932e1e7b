-- The bars the live engine handled, kept from the oldest running instance's snapshot on: after a
-- crash each instance is restored from its snapshot and replayed the bars it had seen since
-- (orders held back: their effects are stored), so its state matches the stored cursors when
-- the feed resumes after them. One entry per recorder commit, its bars packed in one blob
-- (see `store::live::decode_bars`): a row per bar cost the fill path a fifth of its time.
CREATE TABLE live_journal (
    id    INTEGER PRIMARY KEY,
    bars  BLOB NOT NULL
);

-- Per symbol, the sequence number of the last bar a snapshot has seen (JSON object).
ALTER TABLE strategy_instances ADD COLUMN snapshot_seqs TEXT;
