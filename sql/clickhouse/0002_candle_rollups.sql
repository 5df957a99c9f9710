-- Hourly and daily candles kept on write, as Postgres' candle_rollups (sql/timescale/0004), so
-- ClickHouseMarketStore.candles() reads hour multiples (1h..12h) from '1h' rows and day multiples
-- (1d, 3d, 1w) from '1d' rows instead of rolling a year of minutes up on every read.
--
-- The writer rebuilds every touched hour and day from the DEDUPLICATED 1m candles (one source
-- per minute, collected trades first) in the same write, after the minutes themselves: a view
-- over the insert would count a redelivered batch twice. Same rules as the 1m read path: open =
-- first, high = max, low = min, close = last, trades = sum, source 'mixed' when the bucket's
-- minutes come from both sources. volume is the exact Decimal128 sum of the minutes' volumes,
-- so a rollup of rollups equals the rollup of the minutes.
--
-- One row per (market, timeframe, ts); `version` is the writer's time in µs (a later rebuild
-- read every minute an earlier one read, so it wins). Like every table here, rows are replaced
-- only when parts merge: readers take argMax(..., version) per ts. Same 18.16 constraints as 0001
-- (UInt64 ms times, monthly partitions dropped with candles' by clickhouse-retention.ts).
CREATE TABLE IF NOT EXISTS candle_rollups (
  exchange   LowCardinality(String),
  symbol     LowCardinality(String),
  timeframe  LowCardinality(String),
  ts         UInt64,
  open       Float64,
  high       Float64,
  low        Float64,
  close      Float64,
  volume     Decimal128(18),
  trades     UInt64,
  source     Enum8('trades' = 1, 'exchange' = 2, 'mixed' = 3),
  version    UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, timeframe, ts);

-- Backfill from the 1m candles already stored (version 0: any rebuild by a writer wins). Running
-- it again writes the same rows again, which reads the same.
INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, version)
SELECT exchange, symbol, tupleElement(b, 1) AS tf, tupleElement(b, 2) AS bucket,
       argMin(open, t), max(high), min(low), argMax(close, t), sum(volume), sum(trades),
       if(uniqExact(source) > 1, 'mixed', toString(any(source))), toUInt64(0)
FROM (
  SELECT exchange, symbol, t, source, open, high, low, close, volume, trades,
         arrayJoin([('1h', intDiv(t, 3600000) * 3600000), ('1d', intDiv(t, 86400000) * 86400000)]) AS b
  FROM (
    SELECT exchange, symbol, t,
           argMax(source, pick) AS source, argMax(open, pick) AS open, argMax(high, pick) AS high,
           argMax(low, pick) AS low, argMax(close, pick) AS close, argMax(volume, pick) AS volume,
           argMax(trades, pick) AS trades
    FROM (
      SELECT exchange, symbol, ts AS t, source, source = 'trades' AS pick,
             argMax(open, version) AS open, argMax(high, version) AS high, argMax(low, version) AS low,
             argMax(close, version) AS close, argMax(volume, version) AS volume, argMax(trades, version) AS trades
      FROM candles WHERE timeframe = '1m'
      GROUP BY exchange, symbol, ts, source
    )
    GROUP BY exchange, symbol, t
  )
)
GROUP BY exchange, symbol, tf, bucket;
