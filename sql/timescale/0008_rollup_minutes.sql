-- Minutes held per rollup: how many distinct 1m candles an hour (or a day) of candle_rollups was
-- built from, kept on write. A reader tells a whole hour from one missing minutes (get_candles'
-- missingMinutes) from the rollup row itself, instead of counting the minutes again on every read.
-- NULL only until the rebuild below has run; readers take NULL as "not counted".

ALTER TABLE candle_rollups ADD COLUMN IF NOT EXISTS minutes integer;

-- refresh_candle_rollups and rebuild_candle_rollups of 0004, writing minutes too.
CREATE OR REPLACE FUNCTION refresh_candle_rollups(touched jsonb) RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO candle_rollups AS r (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, minutes)
  SELECT k.exchange, k.symbol, '1h', ms_to_ts(k.hour),
         (array_agg(m.open ORDER BY m.ts))[1], max(m.high), min(m.low),
         (array_agg(m.close ORDER BY m.ts DESC))[1], sum(m.volume::numeric), sum(m.trades),
         CASE WHEN count(DISTINCT m.source) > 1 THEN 'mixed' ELSE min(m.source) END, count(*)
  FROM (SELECT DISTINCT exchange, symbol, hour
        FROM jsonb_to_recordset(touched) AS x(exchange text, symbol text, hour bigint)) k
  CROSS JOIN LATERAL (
    -- one source per minute, as the 1m read path picks it
    SELECT DISTINCT ON (c.ts) c.ts, c.source, c.open, c.high, c.low, c.close, c.volume, c.trades
    FROM candles c
    WHERE c.exchange = k.exchange AND c.symbol = k.symbol AND c.timeframe = '1m'
      AND c.ts >= ms_to_ts(k.hour) AND c.ts < ms_to_ts(k.hour + 3600000)
    ORDER BY c.ts DESC, c.source DESC
  ) m
  GROUP BY k.exchange, k.symbol, k.hour
  ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, source = EXCLUDED.source, minutes = EXCLUDED.minutes;

  INSERT INTO candle_rollups AS r (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, minutes)
  SELECT d.exchange, d.symbol, '1d', ms_to_ts(d.day),
         (array_agg(h.open ORDER BY h.ts))[1], max(h.high), min(h.low),
         (array_agg(h.close ORDER BY h.ts DESC))[1], sum(h.volume), sum(h.trades),
         CASE WHEN count(DISTINCT h.source) > 1 THEN 'mixed' ELSE min(h.source) END, sum(h.minutes)
  FROM (SELECT DISTINCT exchange, symbol, (floor(hour / 86400000.0) * 86400000)::bigint AS day
        FROM jsonb_to_recordset(touched) AS x(exchange text, symbol text, hour bigint)) d
  JOIN candle_rollups h ON h.exchange = d.exchange AND h.symbol = d.symbol AND h.timeframe = '1h'
   AND h.ts >= ms_to_ts(d.day) AND h.ts < ms_to_ts(d.day + 86400000)
  GROUP BY d.exchange, d.symbol, d.day
  ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, source = EXCLUDED.source, minutes = EXCLUDED.minutes;
END
$$;

-- Rebuilds every rollup from the 1m candles (the upgrade backfill; also a repair tool). Set-based,
-- the same rules as refresh_candle_rollups. Returns the rows written.
CREATE OR REPLACE FUNCTION rebuild_candle_rollups() RETURNS bigint
  LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  d bigint;
BEGIN
  DELETE FROM candle_rollups;
  INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, minutes)
  SELECT exchange, symbol, '1h', hour,
         (array_agg(open ORDER BY ts))[1], max(high), min(low),
         (array_agg(close ORDER BY ts DESC))[1], sum(volume::numeric), sum(trades),
         CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END, count(*)
  FROM (
    SELECT DISTINCT ON (exchange, symbol, ts) exchange, symbol, ts, date_trunc('hour', ts, 'UTC') AS hour,
           source, open, high, low, close, volume, trades
    FROM candles WHERE timeframe = '1m'
    ORDER BY exchange, symbol, ts, source DESC
  ) m
  GROUP BY exchange, symbol, hour;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, minutes)
  SELECT exchange, symbol, '1d', date_trunc('day', ts, 'UTC'),
         (array_agg(open ORDER BY ts))[1], max(high), min(low),
         (array_agg(close ORDER BY ts DESC))[1], sum(volume), sum(trades),
         CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END, sum(minutes)
  FROM candle_rollups WHERE timeframe = '1h'
  GROUP BY exchange, symbol, date_trunc('day', ts, 'UTC');
  GET DIAGNOSTICS d = ROW_COUNT;
  RETURN n + d;
END
$$;

SELECT rebuild_candle_rollups();
