-- Precomputed 1h and 1d candles, maintained by the writer in the same transaction as the 1m rows
-- they come from, so PostgresMarketStore.candles() reads hour-multiples from '1h' rows and
-- day-multiples (1d, 3d, 1w) from '1d' rows instead of rolling a year of 1m rows up at read time.
--
-- Same rules as the 1m read path: one source per minute (collected 'trades' first, the
-- exchange's candle otherwise), open = first, high = max, low = min, close = last, trades = sum,
-- source = 'mixed' when the bucket's minutes come from both. A day is rolled up from its hours:
-- 'mixed' if its hours differ or any of them is mixed, which is the 1m rule again.
--
-- volume is numeric, the EXACT sum of the minutes' volumes (each float8::numeric, as the 1m path
-- sums them). Rounding it to float8 per hour and summing those again would not always give the
-- bit-identical float8 the 1m path gives; readers cast the (exact) sum to float8 at the end.

CREATE TABLE IF NOT EXISTS candle_rollups (
  exchange   text             NOT NULL,
  symbol     text             NOT NULL,
  timeframe  text             NOT NULL CHECK (timeframe IN ('1h', '1d')),
  ts         timestamptz      NOT NULL,
  open       double precision NOT NULL,
  high       double precision NOT NULL,
  low        double precision NOT NULL,
  close      double precision NOT NULL,
  volume     numeric          NOT NULL,
  trades     bigint           NOT NULL,
  source     text             NOT NULL CHECK (source IN ('trades', 'exchange', 'mixed')),
  PRIMARY KEY (exchange, symbol, timeframe, ts)
);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    -- 25 rows per market and day: large chunks. Created empty, before the backfill below.
    PERFORM create_hypertable('candle_rollups', 'ts', chunk_time_interval => interval '365 days',
                              if_not_exists => TRUE);
  END IF;
END
$$;

-- Recomputes the given hours from the 1m candles, then the days holding them from the hours.
-- `touched` is a jsonb array of {exchange, symbol, hour} (hour: ms epoch of the hour's start).
-- A touched hour without 1m rows is left alone (writes never remove 1m rows; apply_retention
-- deletes what it cuts first); its day is still recomputed from the hours it has.
CREATE OR REPLACE FUNCTION refresh_candle_rollups(touched jsonb) RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO candle_rollups AS r (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source)
  SELECT k.exchange, k.symbol, '1h', ms_to_ts(k.hour),
         (array_agg(m.open ORDER BY m.ts))[1], max(m.high), min(m.low),
         (array_agg(m.close ORDER BY m.ts DESC))[1], sum(m.volume::numeric), sum(m.trades),
         CASE WHEN count(DISTINCT m.source) > 1 THEN 'mixed' ELSE min(m.source) END
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
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, source = EXCLUDED.source;

  INSERT INTO candle_rollups AS r (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source)
  SELECT d.exchange, d.symbol, '1d', ms_to_ts(d.day),
         (array_agg(h.open ORDER BY h.ts))[1], max(h.high), min(h.low),
         (array_agg(h.close ORDER BY h.ts DESC))[1], sum(h.volume), sum(h.trades),
         CASE WHEN count(DISTINCT h.source) > 1 THEN 'mixed' ELSE min(h.source) END
  FROM (SELECT DISTINCT exchange, symbol, (floor(hour / 86400000.0) * 86400000)::bigint AS day
        FROM jsonb_to_recordset(touched) AS x(exchange text, symbol text, hour bigint)) d
  JOIN candle_rollups h ON h.exchange = d.exchange AND h.symbol = d.symbol AND h.timeframe = '1h'
   AND h.ts >= ms_to_ts(d.day) AND h.ts < ms_to_ts(d.day + 86400000)
  GROUP BY d.exchange, d.symbol, d.day
  ON CONFLICT (exchange, symbol, timeframe, ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, source = EXCLUDED.source;
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
  INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source)
  SELECT exchange, symbol, '1h', hour,
         (array_agg(open ORDER BY ts))[1], max(high), min(low),
         (array_agg(close ORDER BY ts DESC))[1], sum(volume::numeric), sum(trades),
         CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END
  FROM (
    SELECT DISTINCT ON (exchange, symbol, ts) exchange, symbol, ts, date_trunc('hour', ts, 'UTC') AS hour,
           source, open, high, low, close, volume, trades
    FROM candles WHERE timeframe = '1m'
    ORDER BY exchange, symbol, ts, source DESC
  ) m
  GROUP BY exchange, symbol, hour;
  GET DIAGNOSTICS n = ROW_COUNT;
  INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source)
  SELECT exchange, symbol, '1d', date_trunc('day', ts, 'UTC'),
         (array_agg(open ORDER BY ts))[1], max(high), min(low),
         (array_agg(close ORDER BY ts DESC))[1], sum(volume), sum(trades),
         CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END
  FROM candle_rollups WHERE timeframe = '1h'
  GROUP BY exchange, symbol, date_trunc('day', ts, 'UTC');
  GET DIAGNOSTICS d = ROW_COUNT;
  RETURN n + d;
END
$$;

SELECT rebuild_candle_rollups();

-- apply_retention as in 0002, plus: candle_rollups follow the candles' window. Rollups that open
-- before the cut are deleted, then the hour and the day straddling the cut are rebuilt from the
-- 1m rows that are left, so reads from the rollups keep matching the 1m rollup after a trim.
-- (TimescaleDB's background retention policy on candles drops whole chunks of candles without
-- this; apply_retention, run on its schedule, brings candle_rollups back in step.)
CREATE OR REPLACE FUNCTION apply_retention(as_of timestamptz DEFAULT now())
  RETURNS TABLE (relation text, deleted bigint)
  LANGUAGE plpgsql AS $$
DECLARE
  r record;
  cutoff timestamptz;
  n bigint;
  channel text;
  only_source text;
  straddling jsonb;
  timescale boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
BEGIN
  FOR r IN SELECT s.relation, s.keep FROM store_retention s ORDER BY s.relation LOOP
    cutoff := as_of - r.keep;
    -- nested, not `timescale AND EXISTS (...)`: the catalog view is only there with the extension
    IF timescale THEN
      IF EXISTS (SELECT 1 FROM timescaledb_information.hypertables h WHERE h.hypertable_name = r.relation) THEN
        -- whole chunks first (cheap); the DELETE below then trims the chunk that straddles the cut
        PERFORM drop_chunks(r.relation::regclass, older_than => cutoff);
      END IF;
    END IF;
    EXECUTE format('DELETE FROM %I WHERE ts < $1', r.relation) USING cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := r.relation;
    deleted := n;
    RETURN NEXT;

    IF r.relation = 'candles' THEN
      -- markets with a day straddling the cut: that day (and the hour with the cut) is rebuilt
      SELECT coalesce(jsonb_agg(jsonb_build_object('exchange', x.exchange, 'symbol', x.symbol,
               'hour', (floor(ts_to_ms(cutoff) / 3600000) * 3600000)::bigint)), '[]'::jsonb)
        INTO straddling
        FROM (SELECT DISTINCT c.exchange, c.symbol FROM candle_rollups c
              WHERE c.timeframe = '1d' AND c.ts < cutoff AND c.ts > cutoff - interval '1 day') x;
      DELETE FROM candle_rollups WHERE ts < cutoff;
      PERFORM refresh_candle_rollups(straddling);
    END IF;

    channel := CASE r.relation WHEN 'trades' THEN 'trades' WHEN 'tickers' THEN 'tickers'
                               WHEN 'book_snapshots' THEN 'books' WHEN 'candles' THEN 'candles' END;
    CONTINUE WHEN channel IS NULL;
    -- the 'candles' feed is the exchange's candles; candles built from trades belong to 'trades'
    only_source := CASE WHEN r.relation = 'candles' THEN ' AND t.source = ''exchange''' ELSE '' END;
    EXECUTE format(
      'DELETE FROM feeds f WHERE f.channel = $1 AND f.first_ts < $2 AND NOT EXISTS
         (SELECT 1 FROM %I t WHERE t.exchange = f.exchange AND t.symbol = f.symbol%s)', r.relation, only_source)
      USING channel, cutoff;
    EXECUTE format(
      'UPDATE feeds f SET first_ts = (SELECT min(t.ts) FROM %I t WHERE t.exchange = f.exchange AND t.symbol = f.symbol%s)
       WHERE f.channel = $1 AND f.first_ts < $2', r.relation, only_source)
      USING channel, cutoff;
  END LOOP;
END
$$;
