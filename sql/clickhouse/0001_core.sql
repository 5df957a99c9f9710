-- Core market tables for ClickHouse (history and analytics). The same file runs on ClickHouse
-- 18.16 (Debian's package, used for local runs and CI) and on current ClickHouse (production),
-- so it uses only what both understand:
--
-- * Times are UInt64 ms epoch, as the events carry them. 18.16 has no DateTime64, and
--   DateTime + a UInt16 ms column would split every time comparison, cursor and ORDER BY in two;
--   one integer keeps ms exact, sorts right and compares with plain literals. Partitions and
--   humans get calendar time through toDateTime(intDiv(ts, 1000), 'UTC').
-- * Natural keys are the ORDER BY of a ReplacingMergeTree. It removes duplicates only when parts
--   merge, at an unknown time, so every read deduplicates itself (LIMIT 1 BY / GROUP BY the key);
--   OPTIMIZE ... FINAL is never needed for correct answers.
-- * Monthly partitions (toYYYYMM in UTC): retention drops whole old partitions on a schedule
--   (dropExpiredPartitions in clickhouse-retention.ts), because 18.16 has no TTL. On current
--   ClickHouse a `TTL toDateTime(intDiv(ts, 1000), 'UTC') + INTERVAL n DAY` clause could do it.
-- * LowCardinality(String) for exchange and symbol: few distinct values, read on every query.
--   18.16 accepts it only with allow_experimental_low_cardinality_type=1 (the local profile sets it),
--   and a view must convert to it explicitly (toLowCardinality).
-- * Rows arrive through `<table>_in` Null tables (nothing is stored there) whose views convert
--   them into the real tables. 18.16 parses floats in every text input format (JSONEachRow, TSV,
--   CSV, VALUES) with a fast, inexact routine: 1.88455995 is stored as 1.8845599499999999. So
--   floats travel as the hex of their 8 IEEE 754 bytes (little-endian) and the view reads them
--   with reinterpretAsFloat64(unhex(x)), bit-exact on every version; exact decimals (volumes)
--   travel as decimal text for toDecimal128. The output side is exact (shortest round-trip text).
-- * No statement here may depend on another having run in the same request: the runner sends
--   them one by one (the HTTP interface takes one statement per request), and each is idempotent
--   (IF NOT EXISTS), as ClickHouse has no transactional DDL to roll a half-applied file back.

CREATE TABLE IF NOT EXISTS trades (
  exchange  LowCardinality(String),
  symbol    LowCardinality(String),
  ts        UInt64,
  trade_id  String,
  price     Float64,
  amount    Float64,
  side      Enum8('buy' = 1, 'sell' = 2),
  local_ts  UInt64,
  -- amount as Postgres' numeric sees a float8 (15 significant digits): what volumes are summed from
  amount_dec Decimal128(18)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, ts, trade_id);

CREATE TABLE IF NOT EXISTS trades_in (
  exchange String, symbol String, ts UInt64, trade_id String, price String, amount String,
  side String, local_ts UInt64, amount_dec String
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_in_mv TO trades AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol, ts, trade_id, reinterpretAsFloat64(unhex(price)) AS price,
       reinterpretAsFloat64(unhex(amount)) AS amount, CAST(side AS Enum8('buy' = 1, 'sell' = 2)) AS side, local_ts,
       toDecimal128(amount_dec, 18) AS amount_dec
FROM trades_in;

CREATE TABLE IF NOT EXISTS tickers (
  exchange          LowCardinality(String),
  symbol            LowCardinality(String),
  ts                UInt64,
  local_ts          UInt64,
  bid               Nullable(Float64),
  bid_size          Nullable(Float64),
  ask               Nullable(Float64),
  ask_size          Nullable(Float64),
  last              Nullable(Float64),
  open_24h          Nullable(Float64),
  high_24h          Nullable(Float64),
  low_24h           Nullable(Float64),
  base_volume_24h   Nullable(Float64),
  quote_volume_24h  Nullable(Float64),
  change_24h_pct    Nullable(Float64)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, ts);

CREATE TABLE IF NOT EXISTS tickers_in (
  exchange String, symbol String, ts UInt64, local_ts UInt64,
  bid Nullable(String), bid_size Nullable(String), ask Nullable(String), ask_size Nullable(String),
  last Nullable(String), open_24h Nullable(String), high_24h Nullable(String), low_24h Nullable(String),
  base_volume_24h Nullable(String), quote_volume_24h Nullable(String), change_24h_pct Nullable(String)
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS tickers_in_mv TO tickers AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol, ts, local_ts,
       reinterpretAsFloat64(unhex(bid)) AS bid, reinterpretAsFloat64(unhex(bid_size)) AS bid_size,
       reinterpretAsFloat64(unhex(ask)) AS ask, reinterpretAsFloat64(unhex(ask_size)) AS ask_size,
       reinterpretAsFloat64(unhex(last)) AS last, reinterpretAsFloat64(unhex(open_24h)) AS open_24h,
       reinterpretAsFloat64(unhex(high_24h)) AS high_24h, reinterpretAsFloat64(unhex(low_24h)) AS low_24h,
       reinterpretAsFloat64(unhex(base_volume_24h)) AS base_volume_24h,
       reinterpretAsFloat64(unhex(quote_volume_24h)) AS quote_volume_24h,
       reinterpretAsFloat64(unhex(change_24h_pct)) AS change_24h_pct
FROM tickers_in;

-- Levels as [price, amount] pairs: arrays of arrays read back exactly and stay queryable.
CREATE TABLE IF NOT EXISTS book_snapshots (
  exchange  LowCardinality(String),
  symbol    LowCardinality(String),
  ts        UInt64,
  local_ts  UInt64,
  seq       Nullable(UInt64),
  depth     UInt32,
  bids      Array(Array(Float64)),
  asks      Array(Array(Float64))
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, ts);

CREATE TABLE IF NOT EXISTS book_snapshots_in (
  exchange String, symbol String, ts UInt64, local_ts UInt64, seq Nullable(UInt64), depth UInt32,
  bids Array(Array(String)), asks Array(Array(String))
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS book_snapshots_in_mv TO book_snapshots AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol, ts, local_ts, seq, depth,
       arrayMap(l -> arrayMap(v -> reinterpretAsFloat64(unhex(v)), l), bids) AS bids,
       arrayMap(l -> arrayMap(v -> reinterpretAsFloat64(unhex(v)), l), asks) AS asks
FROM book_snapshots_in;

-- 1m candles built from collected trades (source 'trades', rebuilt from the deduplicated trades
-- of every touched minute on write) or taken from the exchange (source 'exchange'); readers pick
-- one source per minute, never a blend. `version` decides between versions of one key: for
-- 'trades' the number of distinct trades seen (a minute's trade set only grows, so the rebuild
-- that saw most is the most complete, whatever order concurrent writers finish in); for
-- 'exchange' the write time in µs (the exchange revises a forming candle: last write wins).
-- Rebuilds are versioned above every streamed write. Volume is Decimal128(18), summed from each
-- trade's amount_dec, so 0.1 + 0.2 is 0.3 in minutes and rollups, as with Postgres' numeric
-- (range: |volume| < 1e20, 18 decimals).
CREATE TABLE IF NOT EXISTS candles (
  exchange   LowCardinality(String),
  symbol     LowCardinality(String),
  timeframe  LowCardinality(String),
  ts         UInt64,
  source     Enum8('trades' = 1, 'exchange' = 2),
  open       Float64,
  high       Float64,
  low        Float64,
  close      Float64,
  volume     Decimal128(18),
  trades     UInt32,
  version    UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (exchange, symbol, timeframe, ts, source);

-- Streamed candles (from the exchange); rebuilt 'trades' minutes are written by INSERT ... SELECT.
CREATE TABLE IF NOT EXISTS candles_in (
  exchange String, symbol String, timeframe String, ts UInt64, source String,
  open String, high String, low String, close String, volume String, trades UInt32, version UInt64
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS candles_in_mv TO candles AS
SELECT toLowCardinality(exchange) AS exchange, toLowCardinality(symbol) AS symbol,
       toLowCardinality(timeframe) AS timeframe, ts, CAST(source AS Enum8('trades' = 1, 'exchange' = 2)) AS source,
       reinterpretAsFloat64(unhex(open)) AS open, reinterpretAsFloat64(unhex(high)) AS high,
       reinterpretAsFloat64(unhex(low)) AS low, reinterpretAsFloat64(unhex(close)) AS close,
       toDecimal128(volume, 18) AS volume, trades, version
FROM candles_in;

CREATE TABLE IF NOT EXISTS signals (
  id          String,
  ts          UInt64,
  publisher   String,
  exchange    Nullable(String),
  symbol      LowCardinality(String),
  direction   Enum8('long' = 1, 'short' = 2, 'flat' = 3),
  strength    Float64,
  confidence  Float64,
  horizon     LowCardinality(String),
  rationale   String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ts, 1000), 'UTC'))
ORDER BY (ts, id);

CREATE TABLE IF NOT EXISTS signals_in (
  id String, ts UInt64, publisher String, exchange Nullable(String), symbol String, direction String,
  strength String, confidence String, horizon String, rationale String
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS signals_in_mv TO signals AS
SELECT id, ts, publisher, exchange, toLowCardinality(symbol) AS symbol, CAST(direction AS Enum8('long' = 1, 'short' = 2, 'flat' = 3)) AS direction,
       reinterpretAsFloat64(unhex(strength)) AS strength, reinterpretAsFloat64(unhex(confidence)) AS confidence,
       toLowCardinality(horizon) AS horizon, rationale
FROM signals_in;

-- What the store holds per market and channel, O(markets) to list: each write inserts one row
-- per market and channel into feed_updates (a Null table: nothing is kept there), and the view
-- folds it into aggregate states. Counting replays again is the contract ("events received").
CREATE TABLE IF NOT EXISTS feed_updates (
  exchange       String,
  symbol         String,
  channel        String,
  first_ts       UInt64,
  last_ts        UInt64,
  last_local_ts  UInt64,
  events         UInt64
) ENGINE = Null;

-- Plain String keys: a few rows per market, and the view's output types must match exactly
-- (18.16 will not push String into LowCardinality(String) through a view).
CREATE TABLE IF NOT EXISTS feeds (
  exchange       String,
  symbol         String,
  channel        String,
  first_ts       AggregateFunction(min, UInt64),
  last_ts        AggregateFunction(max, UInt64),
  last_local_ts  AggregateFunction(max, UInt64),
  events         AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (exchange, symbol, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS feeds_mv TO feeds AS
SELECT exchange, symbol, channel,
       minState(first_ts) AS first_ts, maxState(last_ts) AS last_ts,
       maxState(last_local_ts) AS last_local_ts, sumState(events) AS events
FROM feed_updates
GROUP BY exchange, symbol, channel;

-- Records a consumer could not use. letter_id hashes the whole letter, so the same poison record
-- dead-lettered again on a retry is one row on read (Postgres keeps one row per delivery).
CREATE TABLE IF NOT EXISTS dead_letters (
  received_at      UInt64,
  source           LowCardinality(String),
  error_name       LowCardinality(String),
  reason           String,
  partition_key    Nullable(String),
  sequence_number  Nullable(String),
  payload          String,
  letter_id        UInt64 MATERIALIZED cityHash64(source, error_name, reason, ifNull(partition_key, ''),
                                                  ifNull(sequence_number, ''), payload)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(received_at, 1000), 'UTC'))
ORDER BY (source, letter_id);
