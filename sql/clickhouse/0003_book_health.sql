-- Order book health (issue #6), as sql/timescale/0007: every stored snapshot carries the health of
-- the book it was taken from; rows stored before read as 'unverified'.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS. Every statement before the last is idempotent
-- (the Null input table holds no data, so it is dropped and created again with the new column,
-- and its view with it); the one ALTER of book_snapshots is the last statement, so a file that
-- failed before it re-runs cleanly. Inserts made between the view's drop and its creation would be
-- lost: run it before the writers start, as every migration.
DROP TABLE IF EXISTS book_snapshots_in_mv;
DROP TABLE IF EXISTS book_snapshots_in;

CREATE TABLE IF NOT EXISTS book_snapshots_in (
  exchange String, symbol String, ts UInt64, local_ts UInt64, seq Nullable(UInt64), depth UInt32,
  bids Array(Array(String)), asks Array(Array(String)), health String DEFAULT 'unverified'
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS book_snapshots_in_mv TO book_snapshots AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol, ts, local_ts, seq, depth,
       arrayMap(l -> arrayMap(v -> reinterpretAsFloat64(unhex(v)), l), bids) AS bids,
       arrayMap(l -> arrayMap(v -> reinterpretAsFloat64(unhex(v)), l), asks) AS asks,
       toLowCardinality(health) AS health
FROM book_snapshots_in;

ALTER TABLE book_snapshots ADD COLUMN health LowCardinality(String) DEFAULT 'unverified';
