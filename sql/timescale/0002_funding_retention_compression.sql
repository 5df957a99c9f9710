-- Funding rates and open interest, configurable retention (both paths), compression and
-- retention policies (TimescaleDB only).
--
-- Minimum TimescaleDB version: 2.11. It is the first with INSERT ... ON CONFLICT (DO NOTHING
-- and DO UPDATE) and DELETE on compressed chunks; without them a replayed or late batch into a
-- compressed chunk fails (at-least-once delivery makes that routine) and apply_retention could
-- not trim a compressed chunk. Enforced below, before anything else of this file runs.

DO $$
DECLARE
  v text;
BEGIN
  SELECT extversion INTO v FROM pg_extension WHERE extname = 'timescaledb';
  IF v IS NOT NULL
     AND string_to_array(split_part(v, '-', 1), '.')::int[] < ARRAY[2, 11] THEN
    RAISE EXCEPTION 'TimescaleDB % is installed but this schema needs TimescaleDB 2.11 or later', v
      USING HINT = 'ALTER EXTENSION timescaledb UPDATE (in a fresh session), or drop the extension to use plain PostgreSQL';
  END IF;
END
$$;

-- One row per exchange/symbol/exchange time. Every measure is nullable: exchanges publish funding
-- and open interest on separate channels, and some omit mark/index price or the OI's value.
CREATE TABLE IF NOT EXISTS funding_open_interest (
  exchange             text             NOT NULL,
  symbol               text             NOT NULL,
  ts                   timestamptz      NOT NULL,
  local_ts             timestamptz      NOT NULL,
  funding_rate         double precision,
  next_funding_ts      timestamptz,
  mark_price           double precision,
  index_price          double precision,
  -- in contracts or base currency, as the exchange reports it
  open_interest        double precision,
  -- in quote currency
  open_interest_value  double precision,
  PRIMARY KEY (exchange, symbol, ts)
);

-- How long each table keeps rows, by exchange time. A table, not GUCs: it is transactional, the
-- same on PostgreSQL, TimescaleDB and PGlite, readable by anyone who wonders why data vanished,
-- and needs no ALTER DATABASE privilege. The app writes its configuration with set_retention().
CREATE TABLE IF NOT EXISTS store_retention (
  relation  text     PRIMARY KEY
            CHECK (relation IN ('trades', 'tickers', 'book_snapshots', 'candles', 'funding_open_interest')),
  -- 'ticks' or 'candles': which argument of set_retention sets it
  class     text     NOT NULL CHECK (class IN ('ticks', 'candles')),
  keep      interval NOT NULL CHECK (keep > interval '0')
);

INSERT INTO store_retention (relation, class, keep) VALUES
  ('trades', 'ticks', interval '7 days'),
  ('tickers', 'ticks', interval '7 days'),
  ('book_snapshots', 'ticks', interval '7 days'),
  ('candles', 'candles', interval '30 days'),
  ('funding_open_interest', 'candles', interval '30 days')
ON CONFLICT (relation) DO NOTHING;

-- Sets the retention windows (whole days) and, on TimescaleDB, re-creates the retention policies
-- to match. Idempotent: the app calls it at start-up with its configuration.
CREATE OR REPLACE FUNCTION set_retention(ticks_days integer, candles_days integer) RETURNS void
  LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  IF ticks_days IS NULL OR ticks_days < 1 OR candles_days IS NULL OR candles_days < 1 THEN
    RAISE EXCEPTION 'retention must be at least 1 day (ticks: %, candles: %)', ticks_days, candles_days
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE store_retention
     SET keep = make_interval(days => CASE class WHEN 'ticks' THEN ticks_days ELSE candles_days END);
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    FOR r IN SELECT s.relation, s.keep FROM store_retention s
             JOIN timescaledb_information.hypertables h ON h.hypertable_name = s.relation LOOP
      PERFORM remove_retention_policy(r.relation::regclass, if_exists => TRUE);
      PERFORM add_retention_policy(r.relation::regclass, drop_after => r.keep, if_not_exists => TRUE);
    END LOOP;
  END IF;
END
$$;

-- Deletes every row older than its table's window as of `as_of`, and trims `feeds` to what is
-- still held. The exact cut both paths share: TimescaleDB's policy drops whole chunks only (a
-- subset of this), so calling this on a schedule gives the same query results on either path.
-- Plain PostgreSQL relies on it alone. Returns the rows deleted per table.
CREATE OR REPLACE FUNCTION apply_retention(as_of timestamptz DEFAULT now())
  RETURNS TABLE (relation text, deleted bigint)
  LANGUAGE plpgsql AS $$
DECLARE
  r record;
  cutoff timestamptz;
  n bigint;
  channel text;
  only_source text;
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

DO $$
DECLARE
  r record;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('funding_open_interest', 'ts', chunk_time_interval => interval '7 days',
                              if_not_exists => TRUE);

    -- Columnar compression: segments per market, rows in time order inside a segment. The rest
    -- of each natural key follows ts in orderby so a conflict check inside a compressed batch
    -- finds its row without decompressing the whole segment. Skipped where already enabled:
    -- changing the settings of a table with compressed chunks is an error.
    FOR r IN SELECT * FROM (VALUES
        ('trades', 'ts, trade_id'), ('tickers', 'ts'), ('book_snapshots', 'ts'),
        ('candles', 'ts, timeframe, source'), ('funding_open_interest', 'ts')) AS c(relation, orderby)
    LOOP
      IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                     WHERE h.hypertable_name = r.relation AND h.compression_enabled) THEN
        EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
                       'timescaledb.compress_orderby = %L)', r.relation, 'exchange, symbol', r.orderby);
      END IF;
    END LOOP;

    -- Compress once late data has mostly stopped arriving: ticks after 2 days (daily chunks),
    -- candles and funding after 7 days (weekly chunks). Later replays still land (2.11+).
    PERFORM add_compression_policy('trades', compress_after => interval '2 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('tickers', compress_after => interval '2 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('book_snapshots', compress_after => interval '2 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('candles', compress_after => interval '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('funding_open_interest', compress_after => interval '7 days', if_not_exists => TRUE);

    -- Background safety net with the configured windows; set_retention() keeps them in step.
    FOR r IN SELECT relation, keep FROM store_retention LOOP
      PERFORM add_retention_policy(r.relation::regclass, drop_after => r.keep, if_not_exists => TRUE);
    END LOOP;
  ELSE
    -- Plain PostgreSQL: apply_retention() deletes by ts alone, which the primary keys (market
    -- first) cannot serve. BRIN indexes are tiny and nearly free to maintain on time-ordered
    -- inserts. (TimescaleDB made a btree on ts for each hypertable already.)
    CREATE INDEX IF NOT EXISTS trades_ts_brin ON trades USING brin (ts);
    CREATE INDEX IF NOT EXISTS tickers_ts_brin ON tickers USING brin (ts);
    CREATE INDEX IF NOT EXISTS book_snapshots_ts_brin ON book_snapshots USING brin (ts);
    CREATE INDEX IF NOT EXISTS candles_ts_brin ON candles USING brin (ts);
    CREATE INDEX IF NOT EXISTS funding_open_interest_ts_brin ON funding_open_interest USING brin (ts);
  END IF;
END
$$;
