-- Minutes held per rollup, as Postgres' candle_rollups.minutes (sql/timescale/0008): how many
-- distinct 1m candles an hour or a day was built from, written by the rollup rebuild, so readers
-- tell a whole hour from one missing minutes without counting the minutes on every read.
-- Rows written before this column hold 0, which readers take as "not counted" (a stored rollup
-- always has at least one minute); the next rebuild of their hour or day counts them.
ALTER TABLE candle_rollups ADD COLUMN minutes UInt32 DEFAULT 0;
