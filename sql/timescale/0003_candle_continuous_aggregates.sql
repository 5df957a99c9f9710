-- migrate:no-transaction
-- Continuous aggregates of the 1m candles: 5m, 15m, 1h, 4h, 1d (TimescaleDB 2.11+ only; on plain
-- PostgreSQL every statement here is a no-op and readers roll up from 1m, as they do anyway).
--
-- Run outside a transaction, statement by statement (the migrations runner splits the file): a
-- continuous aggregate created WITH DATA cannot run in a transaction block. These are created
-- WITH NO DATA (the refresh policies fill them in the background, so the migration never scans
-- history), and every statement is idempotent, so a run that stopped half-way is simply re-run.
--
-- What they hold: per exchange, symbol and SOURCE ('trades' | 'exchange'), the bucket's open
-- (first by time), high, low, close (last by time), exact volume (numeric sum) and trade count,
-- aligned like the domain's buckets (time_bucket's origin is a Monday 00:00 UTC, a whole number
-- of days and of 4h from the epoch). A bucket whose minutes all come from one source holds
-- exactly what PostgresMarketStore.candles() computes from 1m; the reader stays on 1m because it
-- picks a source per MINUTE (trades first) and a bucket that mixes sources cannot be rebuilt
-- from per-source aggregates.

CREATE OR REPLACE FUNCTION create_candle_rollup(view_name text, bucket interval, refresh_every interval)
  RETURNS text
  LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    RETURN 'skipped: no timescaledb';
  END IF;
  -- 0002 enforces this too; repeated because the extension may have been added since
  IF (SELECT string_to_array(split_part(extversion, '-', 1), '.')::int[] < ARRAY[2, 11]
      FROM pg_extension WHERE extname = 'timescaledb') THEN
    RAISE EXCEPTION 'continuous aggregates here need TimescaleDB 2.11 or later';
  END IF;
  IF to_regclass(view_name) IS NULL THEN
    -- materialized_only = false: a query also sees the buckets not materialized yet (real-time
    -- aggregation), whose default changed to true in 2.13, so it is spelled out.
    EXECUTE format($v$
      CREATE MATERIALIZED VIEW %I
      WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
      SELECT exchange, symbol, source,
             time_bucket(%L::interval, ts) AS bucket,
             first(open, ts) AS open, max(high) AS high, min(low) AS low, last(close, ts) AS close,
             sum(volume::numeric) AS volume, sum(trades) AS trades
      FROM candles
      WHERE timeframe = '1m'
      GROUP BY exchange, symbol, source, time_bucket(%L::interval, ts)
      WITH NO DATA
    $v$, view_name, bucket, bucket);
  END IF;
  -- The refresh window reaches back 7 days (late and replayed trades rebuild past minutes) plus
  -- two buckets, and never near the candles' retention cut (30 days by default), so retention
  -- never erases materialized buckets. It stops one bucket short of now: real-time aggregation
  -- serves the forming bucket.
  PERFORM add_continuous_aggregate_policy(view_name::regclass,
    start_offset => interval '7 days' + 2 * bucket,
    end_offset => bucket,
    schedule_interval => refresh_every,
    if_not_exists => TRUE);
  RETURN 'created';
END
$$;

SELECT create_candle_rollup('candles_5m', interval '5 minutes', interval '1 minute');
SELECT create_candle_rollup('candles_15m', interval '15 minutes', interval '5 minutes');
SELECT create_candle_rollup('candles_1h', interval '1 hour', interval '15 minutes');
SELECT create_candle_rollup('candles_4h', interval '4 hours', interval '30 minutes');
SELECT create_candle_rollup('candles_1d', interval '1 day', interval '1 hour');
