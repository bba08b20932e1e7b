-- The exits the paper desk attaches to a filled bracket order cancel each other (one-cancels-
-- other); the group is stored so a restarted desk links them again.
ALTER TABLE orders ADD COLUMN oco_group TEXT;
