-- Best bid/ask of every watched book (issue #6: "best bid/ask always"): one row per change of the
-- top of book (best bid or ask, price or size), written at every change, not at the snapshot
-- throttle. The book's health and update id at that change travel with it.
--
-- Natural key (exchange, symbol, ts, local_ts, seq): a replayed quote is the same row, and two
-- changes of one book within an exchange millisecond received in the same millisecond differ in
-- their update id. `seq` is part of the key, so it cannot be NULL: -1 stands for "the exchange
-- gives no update id" (the store reads it back as null). Without one, two changes with the same
-- exchange and receipt millisecond keep the first.
CREATE TABLE IF NOT EXISTS quotes (
  exchange  text             NOT NULL,
  symbol    text             NOT NULL,
  ts        timestamptz      NOT NULL,
  local_ts  timestamptz      NOT NULL,
  seq       bigint           NOT NULL,
  bid       double precision NOT NULL,
  bid_size  double precision NOT NULL,
  ask       double precision NOT NULL,
  ask_size  double precision NOT NULL,
  -- no CHECK constraint, as book_snapshots.health (0007): the writer stores zod-validated values
  health    text             NOT NULL DEFAULT 'unverified',
  PRIMARY KEY (exchange, symbol, ts, local_ts, seq)
);

-- Ticks retention, like trades, tickers and book snapshots: the same window (whatever
-- set_retention made it), kept in step by set_retention and apply_retention from now on.
ALTER TABLE store_retention DROP CONSTRAINT IF EXISTS store_retention_relation_check;
ALTER TABLE store_retention ADD CONSTRAINT store_retention_relation_check
  CHECK (relation IN ('trades', 'tickers', 'book_snapshots', 'quotes', 'candles', 'funding_open_interest'));

INSERT INTO store_retention (relation, class, keep)
SELECT 'quotes', 'ticks', coalesce((SELECT keep FROM store_retention WHERE relation = 'trades'), interval '7 days')
ON CONFLICT (relation) DO NOTHING;

DO $$
DECLARE
  keep_ticks interval;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('quotes', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
    -- as the other tick tables (0002): segments per market, the rest of the key in orderby
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables h
                   WHERE h.hypertable_name = 'quotes' AND h.compression_enabled) THEN
      ALTER TABLE quotes SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol',
                              timescaledb.compress_orderby = 'ts, local_ts, seq');
    END IF;
    PERFORM add_compression_policy('quotes', compress_after => interval '2 days', if_not_exists => TRUE);
    SELECT keep INTO keep_ticks FROM store_retention WHERE relation = 'quotes';
    PERFORM add_retention_policy('quotes', drop_after => keep_ticks, if_not_exists => TRUE);
  ELSE
    -- apply_retention() deletes by ts alone (see 0002)
    CREATE INDEX IF NOT EXISTS quotes_ts_brin ON quotes USING brin (ts);
  END IF;
END
$$;

-- apply_retention as in 0004, with the 'quotes' feed trimmed like the others.
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
                               WHEN 'book_snapshots' THEN 'books' WHEN 'quotes' THEN 'quotes'
                               WHEN 'candles' THEN 'candles' END;
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
