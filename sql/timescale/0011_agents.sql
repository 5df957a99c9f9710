-- Agents (issue #9): the kill switch, the audit log of their decisions, and paper trading. Agents
-- reach these only through the MCP server's agent tools. Plain tables on every path (PostgreSQL,
-- TimescaleDB, PGlite): small, and the audit log is read by run, agent and time, not scanned.

-- One row per control; the kill switch row always exists, so reading it never needs a default.
CREATE TABLE IF NOT EXISTS agent_controls (
  control      text        PRIMARY KEY,
  engaged      boolean     NOT NULL DEFAULT false,
  reason       text,
  -- when the control last changed, and who changed it (the caller's principal)
  since        timestamptz,
  by_principal text
);
INSERT INTO agent_controls (control, engaged) VALUES ('kill_switch', false) ON CONFLICT (control) DO NOTHING;

-- Every decision of every agent run, with the tool calls it rests on (inputs) and what it produced
-- (output), each bounded by the writer. id orders entries written in the same millisecond.
CREATE TABLE IF NOT EXISTS agent_audit (
  id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ts         timestamptz NOT NULL,
  principal  text        NOT NULL,
  run_id     text        NOT NULL,
  agent      text        NOT NULL,
  kind       text        NOT NULL,
  exchange   text,
  symbol     text,
  summary    text        NOT NULL,
  inputs     jsonb       NOT NULL,
  output     jsonb
);
-- get_audit_log reads newest first, keyset-paged on (ts, id): unfiltered, by run, by agent
CREATE INDEX IF NOT EXISTS agent_audit_ts ON agent_audit (ts DESC, id DESC);
CREATE INDEX IF NOT EXISTS agent_audit_run ON agent_audit (run_id, ts DESC, id DESC);
CREATE INDEX IF NOT EXISTS agent_audit_agent_ts ON agent_audit (agent, ts DESC, id DESC);

-- A paper account starts with its initial cash on first use; its portfolio is its fills replayed.
CREATE TABLE IF NOT EXISTS paper_accounts (
  account      text             PRIMARY KEY,
  initial_cash double precision NOT NULL CHECK (initial_cash >= 0),
  created_ts   timestamptz      NOT NULL
);

-- One row per order filled; the client order id is the idempotency key within an account, so an
-- order sent twice is booked once. seq keeps the booking order for the replay.
CREATE TABLE IF NOT EXISTS paper_fills (
  seq             bigint           GENERATED ALWAYS AS IDENTITY,
  account         text             NOT NULL REFERENCES paper_accounts (account),
  client_order_id text             NOT NULL,
  ts              timestamptz      NOT NULL,
  exchange        text             NOT NULL,
  symbol          text             NOT NULL,
  side            text             NOT NULL CHECK (side IN ('buy', 'sell')),
  quantity        double precision NOT NULL CHECK (quantity > 0),
  vwap            double precision NOT NULL,
  notional        double precision NOT NULL,
  fee             double precision NOT NULL,
  slippage_bps    double precision NOT NULL,
  levels          integer          NOT NULL,
  partial         boolean          NOT NULL,
  book_ts         timestamptz      NOT NULL,
  book_age_ms     double precision NOT NULL,
  signal_id       text,
  principal       text             NOT NULL,
  PRIMARY KEY (account, client_order_id)
);
CREATE INDEX IF NOT EXISTS paper_fills_account_seq ON paper_fills (account, seq);
