-- Candles refreshed off the write path (issue #4), as TimescaleDB continuous aggregates refresh on
-- a schedule. A writer in 'refresher' mode sends each batch's trades as ONE insert into
-- `trades_ingest` (a Null table: nothing is kept there) whose views, in that same request,
--   * store the rows in `trades`, and
--   * mark every (market, minute) the block touched in `candle_marks`, stamped with the server's
--     now(), with the block's feed figures for that minute (first/last ts, last local_ts, rows).
-- The refresher folds those figures into `feeds` once every mark of a second is visible (its
-- 'feeds' watermark, OVERLAP behind its clock), and listFeeds adds the marks after it, so the
-- trades channel costs no feeds part per batch (a third part per insert cost as much again as
-- the marks, measured on 18.16). Replays count again, as with feed_updates ("events received");
-- a fold cut short between its insert and its watermark counts those marks again, like a replay.
-- The refresher (clickhouse-candle-refresh.ts) then rebuilds the 1m candles and the hourly and
-- daily rollups of the minutes marked since its watermark, with the same INSERT ... SELECT over the
-- DEDUPLICATED trades and minutes the inline writer runs, so a redelivered batch never counts
-- twice (a view computing candles from the insert itself would).
--
-- Writers in the default 'inline' mode keep writing `trades` directly and rebuilding on write:
-- they leave no marks, so marks always mean "written by a writer that leaves the rebuild to the
-- refresher" and readers can tell which minutes are not refreshed yet.
--
-- 18.16 notes: views over a table do not fire for rows another view writes into it, so each
-- view reads the Null table the writer inserts into, never `trades`. Views of one table run in
-- name order on 18.16: the store view sorts first (trades_ingest_mv < trades_ingest_to_marks), so
-- a mark becomes visible after its trades; on versions that do not keep that order, the
-- refresher's overlap (it re-reads marks from the last 30 s before its watermark) catches a
-- minute rebuilt before its trades were visible.

CREATE TABLE IF NOT EXISTS candle_marks (
  exchange       String,
  symbol         String,
  minute         UInt64,
  marked_at      DateTime,
  -- feed figures of the trades marking the minute (0 for marks of exchange candles)
  first_ts       UInt64,
  last_ts        UInt64,
  last_local_ts  UInt64,
  events         UInt64
) ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(marked_at, 'UTC')
ORDER BY (marked_at, exchange, symbol, minute);

-- Exchange 1m candles mark their minute through this table (their hours and days need rebuilding).
CREATE TABLE IF NOT EXISTS candle_marks_in (
  exchange String, symbol String, minute UInt64
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS candle_marks_in_mv TO candle_marks AS
SELECT exchange, symbol, minute, now() AS marked_at,
       toUInt64(0) AS first_ts, toUInt64(0) AS last_ts, toUInt64(0) AS last_local_ts, toUInt64(0) AS events
FROM candle_marks_in;

-- Same columns and types as `trades`, so RowBinary bodies are the writer's, unchanged.
CREATE TABLE IF NOT EXISTS trades_ingest (
  exchange  LowCardinality(String),
  symbol    LowCardinality(String),
  ts        UInt64,
  trade_id  String,
  price     Float64,
  amount    Float64,
  side      Enum8('buy' = 1, 'sell' = 2),
  local_ts  UInt64,
  amount_dec Decimal128(18)
) ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_ingest_mv TO trades AS
SELECT exchange, symbol, ts, trade_id, price, amount, side, local_ts, amount_dec
FROM trades_ingest;

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_ingest_to_marks TO candle_marks AS
SELECT CAST(exchange AS String) AS exchange, CAST(symbol AS String) AS symbol,
       intDiv(ts, 60000) * 60000 AS minute, now() AS marked_at,
       min(ts) AS first_ts, max(ts) AS last_ts, max(local_ts) AS last_local_ts, count() AS events
FROM trades_ingest
GROUP BY exchange, symbol, minute;

-- How far the refresher got, unix seconds: 'candles', every mark stamped at or before it was
-- rebuilt; 'feeds', every mark stamped at or before it was folded into feeds. Rows of one name
-- merge to the highest watermark; readers take max(watermark).
CREATE TABLE IF NOT EXISTS candle_refresh_state (
  name       String,
  watermark  DateTime
) ENGINE = ReplacingMergeTree(watermark)
ORDER BY name;
