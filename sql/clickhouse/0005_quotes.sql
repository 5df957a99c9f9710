-- Best bid/ask of every watched book (issue #6), as sql/timescale/0009: one row per change of the
-- top of book, written at every change. Natural key (exchange, symbol, ts, local_ts, seq) in the
-- ORDER BY of a ReplacingMergeTree; reads deduplicate themselves (LIMIT 1 BY the key), as for the
-- other tick tables. seq is -1 where the exchange gives no update id: a sorting key column cannot
-- be Nullable on 18.16. Monthly partitions: retention drops them like the other tick tables
-- (clickhouse-retention.ts).
CREATE TABLE IF NOT EXISTS quotes (
  exchange  LowCardinality(String),
  symbol    LowCardinality(String),
  ts        UInt64,
  local_ts  UInt64,
  seq       Int64,
  bid       Float64,
  bid_size  Float64,
  ask       Float64,
  ask_size  Float64,
  health    LowCardinality(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, ts, local_ts, seq);

-- floats travel as the hex of their IEEE 754 bytes (see 0001)
CREATE TABLE IF NOT EXISTS quotes_in (
  exchange String, symbol String, ts UInt64, local_ts UInt64, seq Nullable(UInt64),
  bid String, bid_size String, ask String, ask_size String, health String DEFAULT 'unverified'
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS quotes_in_mv TO quotes AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol, ts, local_ts,
       ifNull(toInt64(seq), toInt64(-1)) AS seq,
       reinterpretAsFloat64(unhex(bid)) AS bid, reinterpretAsFloat64(unhex(bid_size)) AS bid_size,
       reinterpretAsFloat64(unhex(ask)) AS ask, reinterpretAsFloat64(unhex(ask_size)) AS ask_size,
       toLowCardinality(health) AS health
FROM quotes_in;
