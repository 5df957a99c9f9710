-- Core market tables. Natural keys include the time column, as TimescaleDB hypertables
-- require; every write is an upsert on them, so replays never duplicate a row.

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
    CREATE EXTENSION IF NOT EXISTS timescaledb;
  END IF;
END
$$;

-- ms epoch <-> timestamptz, exact to the millisecond in both directions.
CREATE OR REPLACE FUNCTION ms_to_ts(ms bigint) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT 'epoch'::timestamptz + ms * interval '1 millisecond' $$;

CREATE OR REPLACE FUNCTION ts_to_ms(t timestamptz) RETURNS double precision
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
  AS $$ SELECT (extract(epoch FROM t) * 1000)::double precision $$;

CREATE TABLE IF NOT EXISTS trades (
  exchange  text             NOT NULL,
  symbol    text             NOT NULL,
  ts        timestamptz      NOT NULL,
  trade_id  text             NOT NULL,
  price     double precision NOT NULL,
  amount    double precision NOT NULL,
  side      text             NOT NULL CHECK (side IN ('buy', 'sell')),
  local_ts  timestamptz      NOT NULL,
  PRIMARY KEY (exchange, symbol, ts, trade_id)
);

CREATE TABLE IF NOT EXISTS tickers (
  exchange          text             NOT NULL,
  symbol            text             NOT NULL,
  ts                timestamptz      NOT NULL,
  local_ts          timestamptz      NOT NULL,
  bid               double precision,
  bid_size          double precision,
  ask               double precision,
  ask_size          double precision,
  last              double precision,
  open_24h          double precision,
  high_24h          double precision,
  low_24h           double precision,
  base_volume_24h   double precision,
  quote_volume_24h  double precision,
  change_24h_pct    double precision,
  PRIMARY KEY (exchange, symbol, ts)
);

CREATE TABLE IF NOT EXISTS book_snapshots (
  exchange  text        NOT NULL,
  symbol    text        NOT NULL,
  ts        timestamptz NOT NULL,
  local_ts  timestamptz NOT NULL,
  seq       bigint,
  depth     integer     NOT NULL,
  bids      jsonb       NOT NULL,
  asks      jsonb       NOT NULL,
  PRIMARY KEY (exchange, symbol, ts)
);

-- 1m candles: built from collected trades (source 'trades') or taken from the exchange
-- (source 'exchange'); both may exist for a minute and readers pick one, never a blend.
CREATE TABLE IF NOT EXISTS candles (
  exchange   text             NOT NULL,
  symbol     text             NOT NULL,
  timeframe  text             NOT NULL,
  ts         timestamptz      NOT NULL,
  source     text             NOT NULL CHECK (source IN ('trades', 'exchange')),
  open       double precision NOT NULL,
  high       double precision NOT NULL,
  low        double precision NOT NULL,
  close      double precision NOT NULL,
  volume     double precision NOT NULL,
  trades     integer          NOT NULL DEFAULT 0,
  PRIMARY KEY (exchange, symbol, timeframe, ts, source)
);

CREATE TABLE IF NOT EXISTS signals (
  id          uuid             NOT NULL,
  ts          timestamptz      NOT NULL,
  publisher   text             NOT NULL,
  exchange    text,
  symbol      text             NOT NULL,
  direction   text             NOT NULL CHECK (direction IN ('long', 'short', 'flat')),
  strength    double precision NOT NULL,
  confidence  double precision NOT NULL,
  horizon     text             NOT NULL,
  rationale   text             NOT NULL,
  PRIMARY KEY (ts, id)
);

-- What the store holds per market and channel: O(markets) to list, never a scan of ticks.
CREATE TABLE IF NOT EXISTS feeds (
  exchange       text        NOT NULL,
  symbol         text        NOT NULL,
  channel        text        NOT NULL,
  first_ts       timestamptz NOT NULL,
  last_ts        timestamptz NOT NULL,
  last_local_ts  timestamptz NOT NULL,
  events         bigint      NOT NULL DEFAULT 0,
  PRIMARY KEY (exchange, symbol, channel)
);

-- Records a consumer could not use, with their payload and the reason.
CREATE TABLE IF NOT EXISTS dead_letters (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  received_at      timestamptz NOT NULL DEFAULT now(),
  source           text        NOT NULL,
  error_name       text        NOT NULL,
  reason           text        NOT NULL,
  partition_key    text,
  sequence_number  text,
  payload          text        NOT NULL
);

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
    PERFORM create_hypertable('trades', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('tickers', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('book_snapshots', 'ts', chunk_time_interval => interval '1 day', if_not_exists => TRUE);
    PERFORM create_hypertable('candles', 'ts', chunk_time_interval => interval '7 days', if_not_exists => TRUE);
    PERFORM create_hypertable('signals', 'ts', chunk_time_interval => interval '7 days', if_not_exists => TRUE);
  END IF;
END
$$;
