-- Issue 11: every settle names the tape it came from, and an option that expired out of the
-- money settles at intrinsic value zero (the only settle that may be zero).
ALTER TABLE settles ADD COLUMN feed text;
ALTER TABLE settles DROP CONSTRAINT settles_price_check;
ALTER TABLE settles ADD CONSTRAINT settles_price_check
    CHECK (price > 0 OR (price = 0 AND source = 'intrinsic'));

-- The next morning's re-read of a settled session (late prints, corrections): done once.
ALTER TABLE settle_runs ADD COLUMN reread_at timestamptz;
