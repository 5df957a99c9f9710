-- Completeness ledger of the collectors: per exchange/symbol/channel counters (one row per
-- collector run, since a new run counts from zero) and one row per trade-feed gap with its fate.
-- Plain tables on every path (PostgreSQL, TimescaleDB, PGlite): they are small, one row per
-- feed and run and one per gap, and updated in place.

-- Counters only grow within a run, so every write keeps the greatest value: a replayed or
-- out-of-order snapshot never moves a counter back.
CREATE TABLE IF NOT EXISTS feed_status (
  exchange               text        NOT NULL,
  -- '*' for exchange-wide counts (frames that name no market)
  symbol                 text        NOT NULL,
  channel                text        NOT NULL CHECK (channel IN ('trades', 'tickers', 'books', 'candles', 'funding', 'all')),
  run_id                 text        NOT NULL,
  started_at             timestamptz NOT NULL,
  reported_at            timestamptz NOT NULL,
  messages               bigint      NOT NULL DEFAULT 0,
  events                 bigint      NOT NULL DEFAULT 0,
  rejected               bigint      NOT NULL DEFAULT 0,
  malformed              bigint      NOT NULL DEFAULT 0,
  duplicates             bigint      NOT NULL DEFAULT 0,
  reordered              bigint      NOT NULL DEFAULT 0,
  gaps_detected          bigint      NOT NULL DEFAULT 0,
  gaps_filled            bigint      NOT NULL DEFAULT 0,
  gaps_unfilled          bigint      NOT NULL DEFAULT 0,
  trades_recovered       bigint      NOT NULL DEFAULT 0,
  reconnects             bigint      NOT NULL DEFAULT 0,
  resubscribes           bigint      NOT NULL DEFAULT 0,
  watch_errors           bigint      NOT NULL DEFAULT 0,
  last_message_ts        timestamptz,
  last_message_local_ts  timestamptz,
  last_error             text,
  malformed_sample       text,
  PRIMARY KEY (exchange, symbol, channel, run_id)
);

-- A gap moves from 'open' to 'filled' or 'unfilled' once; a final state is never overwritten.
CREATE TABLE IF NOT EXISTS feed_gaps (
  gap_id       text        PRIMARY KEY,
  run_id       text        NOT NULL,
  exchange     text        NOT NULL,
  symbol       text        NOT NULL,
  channel      text        NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('id', 'time')),
  reason       text        NOT NULL CHECK (reason IN ('sequence', 'reconnect', 'resubscribe', 'startup')),
  status       text        NOT NULL CHECK (status IN ('open', 'filled', 'unfilled')),
  -- first and last missing trade id (inclusive) of id gaps; ids are text like trades.trade_id
  from_id      text,
  to_id        text,
  from_ts      timestamptz,
  to_ts        timestamptz,
  missing      bigint,
  recovered    bigint      NOT NULL DEFAULT 0,
  detected_at  timestamptz NOT NULL,
  resolved_at  timestamptz,
  detail       text,
  updated_at   timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS feed_gaps_market ON feed_gaps (exchange, symbol, detected_at);
-- open and unfilled gaps are what a health check looks for
CREATE INDEX IF NOT EXISTS feed_gaps_unresolved ON feed_gaps (status, detected_at) WHERE status <> 'filled';
