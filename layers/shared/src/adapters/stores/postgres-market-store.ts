import type { Candle, MarketEvent, OrderBook, Signal, Ticker, Trade } from '../../domain/index.js';
import { bucketStart, timeframeMs, timeframeOffsetMs } from '../../domain/index.js';
import { ConfigError } from '../../domain/errors.js';
import type {
  CandleQuery,
  Channel,
  DeadLetter,
  FeedCoverage,
  MarketStore,
  StoredCandle,
  TradeQuery,
  TradeStats,
  TradeStatsQuery,
  WriteSummary,
} from '../../ports/index.js';
import { copyChunks, copyNumber, copyText, type CopyExecutor, type CopyTransactions } from './pg-copy-writer.js';
import type { SqlClient, SqlExecutor } from './sql-client.js';

const CHANNEL_OF: Record<MarketEvent['type'], Channel> = {
  trade: 'trades',
  ticker: 'tickers',
  book: 'books',
  candle: 'candles',
};

/** Trade order inside one millisecond: numeric ids sort by length first, so "10" follows "9". */
const TRADE_ORDER = 'ts, length(trade_id), trade_id';

/** Trade batches at least this long go through COPY when the store has a copy writer (measured: below it jsonb is as fast). */
export const DEFAULT_COPY_MIN_ROWS = 200;

export interface PostgresMarketStoreOptions {
  /**
   * COPY-capable transactions on the same PostgreSQL database (a PgCopyWriter): event batches
   * are then written on its connections, trades by COPY. Leave unset for PGlite. The store
   * closes it on close().
   */
  readonly copyWriter?: CopyTransactions;
  /** @default DEFAULT_COPY_MIN_ROWS */
  readonly copyMinRows?: number;
}

/** Funding rate and open interest of a derivatives market at one exchange time; null where the exchange omits it. */
export interface FundingSnapshot {
  readonly exchange: string;
  readonly symbol: string;
  /** exchange time (ms epoch) */
  readonly ts: number;
  /** receipt time (ms epoch) */
  readonly localTs: number;
  /** rate of the current period, as a fraction (0.0001 = 0.01%) */
  readonly fundingRate: number | null;
  /** when the next funding happens (ms epoch) */
  readonly nextFundingTs: number | null;
  readonly markPrice: number | null;
  readonly indexPrice: number | null;
  /** in contracts or base currency, as the exchange reports it */
  readonly openInterest: number | null;
  /** in quote currency */
  readonly openInterestValue: number | null;
}

export interface FundingQuery {
  readonly exchange: string;
  readonly symbol: string;
  /** inclusive, ms epoch */
  readonly since?: number;
  /** exclusive, ms epoch */
  readonly until?: number;
  readonly newestFirst?: boolean;
  readonly limit: number;
}

/** How long rows are kept, in whole days of exchange time. */
export interface RetentionPolicy {
  /** trades, tickers, book snapshots */
  readonly ticksDays: number;
  /** candles, funding and open interest */
  readonly candlesDays: number;
}

/**
 * Market store on PostgreSQL (TimescaleDB when installed) or PGlite. Rows go in as one jsonb
 * parameter per table and batch (`jsonb_to_recordset`), so a batch is a handful of statements;
 * with a copy writer (PostgreSQL), large trade batches go in by COPY into a staging table.
 */
export class PostgresMarketStore implements MarketStore {
  private readonly copyWriter: CopyTransactions | undefined;
  private readonly copyMinRows: number;

  constructor(
    private readonly db: SqlClient,
    options: PostgresMarketStoreOptions = {},
  ) {
    this.copyWriter = options.copyWriter;
    this.copyMinRows = options.copyMinRows ?? DEFAULT_COPY_MIN_ROWS;
  }

  /** Writes a batch in one transaction; idempotent, so a replayed batch changes nothing. */
  async writeEvents(events: readonly MarketEvent[]): Promise<WriteSummary> {
    const trades: Trade[] = [];
    const tickers: Ticker[] = [];
    const books: OrderBook[] = [];
    const candles: Candle[] = [];
    for (const e of events) {
      if (e.type === 'trade') trades.push(e);
      else if (e.type === 'ticker') tickers.push(e);
      else if (e.type === 'book') books.push(e);
      else candles.push(e);
    }
    if (events.length === 0) return { trades: 0, tickers: 0, books: 0, candles: 0 };
    const write = async (tx: SqlExecutor, copy: CopyExecutor | null) => {
      const summary = {
        trades: trades.length ? await insertTrades(tx, trades, copy) : 0,
        tickers: tickers.length ? await insertTickers(tx, tickers) : 0,
        books: books.length ? await insertBooks(tx, books) : 0,
        candles: candles.length ? await upsertExchangeCandles(tx, candles) : 0,
      };
      await refreshRollups(tx, trades, candles);
      await upsertFeeds(tx, events);
      return summary;
    };
    const copyWriter = this.copyWriter;
    if (copyWriter && trades.length >= this.copyMinRows) return copyWriter.transaction((tx) => write(tx, tx));
    return this.db.transaction((tx) => write(tx, null));
  }

  /** Writes funding/open-interest snapshots; a repeated key fills in what was null and overwrites the rest. */
  async writeFunding(snapshots: readonly FundingSnapshot[]): Promise<number> {
    if (snapshots.length === 0) return 0;
    // One row per key, merged: ON CONFLICT DO UPDATE may not touch a row twice in one statement.
    const merged = new Map<string, FundingSnapshot>();
    for (const s of snapshots) {
      const key = `${s.exchange}|${s.symbol}|${s.ts}`;
      const prev = merged.get(key);
      merged.set(key, prev ? mergeFunding(prev, s) : s);
    }
    const result = await this.db.query<{ n: number }>(
      `WITH w AS (
         INSERT INTO funding_open_interest AS f (exchange, symbol, ts, local_ts, funding_rate, next_funding_ts, mark_price,
                                                 index_price, open_interest, open_interest_value)
         SELECT exchange, symbol, ms_to_ts("ts"), ms_to_ts("localTs"), "fundingRate", ms_to_ts("nextFundingTs"),
                "markPrice", "indexPrice", "openInterest", "openInterestValue"
         FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, "ts" bigint, "localTs" bigint,
           "fundingRate" float8, "nextFundingTs" bigint, "markPrice" float8, "indexPrice" float8,
           "openInterest" float8, "openInterestValue" float8)
         ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
           local_ts = GREATEST(f.local_ts, EXCLUDED.local_ts),
           funding_rate = COALESCE(EXCLUDED.funding_rate, f.funding_rate),
           next_funding_ts = COALESCE(EXCLUDED.next_funding_ts, f.next_funding_ts),
           mark_price = COALESCE(EXCLUDED.mark_price, f.mark_price),
           index_price = COALESCE(EXCLUDED.index_price, f.index_price),
           open_interest = COALESCE(EXCLUDED.open_interest, f.open_interest),
           open_interest_value = COALESCE(EXCLUDED.open_interest_value, f.open_interest_value)
         RETURNING 1
       ) SELECT count(*)::int AS n FROM w`,
      [JSON.stringify([...merged.values()])],
    );
    return result.rows[0]?.n ?? 0;
  }

  /** Funding/open-interest snapshots of one market, ascending by exchange time unless newestFirst. */
  async funding(q: FundingQuery): Promise<readonly FundingSnapshot[]> {
    const params: unknown[] = [q.exchange, q.symbol];
    const where = ['exchange = $1', 'symbol = $2'];
    if (q.since !== undefined) where.push(`ts >= ms_to_ts($${params.push(q.since)}::bigint)`);
    if (q.until !== undefined) where.push(`ts < ms_to_ts($${params.push(q.until)}::bigint)`);
    const { rows } = await this.db.query<FundingSnapshot>(
      `SELECT exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", funding_rate AS "fundingRate",
              ts_to_ms(next_funding_ts) AS "nextFundingTs", mark_price AS "markPrice", index_price AS "indexPrice",
              open_interest AS "openInterest", open_interest_value AS "openInterestValue"
       FROM funding_open_interest WHERE ${where.join(' AND ')}
       ORDER BY ts ${q.newestFirst ? 'DESC' : 'ASC'} LIMIT $${params.push(q.limit)}::int`,
      params,
    );
    return rows;
  }

  /** Stores the retention windows (and, on TimescaleDB, re-creates the retention policies to match). */
  async setRetention(policy: RetentionPolicy): Promise<void> {
    for (const [name, days] of Object.entries(policy)) {
      if (!(Number.isInteger(days) && days >= 1)) {
        throw new ConfigError(`retention ${name} must be a whole number of days >= 1, got ${String(days)}`);
      }
    }
    await this.db.query('SELECT set_retention($1::int, $2::int)', [policy.ticksDays, policy.candlesDays]);
  }

  /** Deletes what is older than its table's retention window as of `asOf` (ms epoch); rows deleted per table. */
  async applyRetention(asOf: number = Date.now()): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ relation: string; deleted: string | number }>(
      'SELECT relation, deleted FROM apply_retention(ms_to_ts($1::bigint))',
      [asOf],
    );
    return Object.fromEntries(rows.map((r) => [r.relation, Number(r.deleted)]));
  }

  async writeSignals(signals: readonly Signal[]): Promise<number> {
    if (signals.length === 0) return 0;
    const rows = signals.map((s) => ({
      id: s.id,
      ts: s.ts,
      publisher: s.publisher,
      exchange: s.exchange,
      symbol: s.symbol,
      direction: s.direction,
      strength: s.strength,
      confidence: s.confidence,
      horizon: s.horizon,
      rationale: s.rationale,
    }));
    const result = await this.db.query(
      `INSERT INTO signals (id, ts, publisher, exchange, symbol, direction, strength, confidence, horizon, rationale)
       SELECT id, ms_to_ts(ts), publisher, exchange, symbol, direction, strength, confidence, horizon, rationale
       FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, ts bigint, publisher text, exchange text, symbol text,
         direction text, strength float8, confidence float8, horizon text, rationale text)
       ON CONFLICT DO NOTHING RETURNING 1`,
      [JSON.stringify(rows)],
    );
    return result.rows.length;
  }

  async writeDeadLetter(letter: DeadLetter): Promise<void> {
    await this.db.query(
      `INSERT INTO dead_letters (source, error_name, reason, partition_key, sequence_number, payload)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [letter.source, letter.errorName, letter.reason, letter.partitionKey, letter.sequenceNumber, letter.payload],
    );
  }

  async listFeeds(): Promise<readonly FeedCoverage[]> {
    const { rows } = await this.db.query<FeedCoverage>(
      `SELECT exchange, symbol, channel, ts_to_ms(first_ts) AS "firstTs", ts_to_ms(last_ts) AS "lastTs",
              ts_to_ms(last_local_ts) AS "lastLocalTs", events::float8 AS events
       FROM feeds ORDER BY exchange, symbol, channel`,
    );
    return rows;
  }

  async latestTicker(exchange: string, symbol: string): Promise<Ticker | null> {
    const { rows } = await this.db.query<Omit<Ticker, 'type'>>(
      `SELECT exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", bid, bid_size AS "bidSize",
              ask, ask_size AS "askSize", last, open_24h AS "open24h", high_24h AS "high24h", low_24h AS "low24h",
              base_volume_24h AS "baseVolume24h", quote_volume_24h AS "quoteVolume24h", change_24h_pct AS "change24hPct"
       FROM tickers WHERE exchange = $1 AND symbol = $2 ORDER BY ts DESC LIMIT 1`,
      [exchange, symbol],
    );
    const row = rows[0];
    return row ? { type: 'ticker', ...row } : null;
  }

  async latestBook(exchange: string, symbol: string): Promise<OrderBook | null> {
    const { rows } = await this.db.query<Omit<OrderBook, 'type' | 'seq'> & { seq: string | number | null }>(
      `SELECT exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", seq::float8 AS seq, depth, bids, asks
       FROM book_snapshots WHERE exchange = $1 AND symbol = $2 ORDER BY ts DESC LIMIT 1`,
      [exchange, symbol],
    );
    const row = rows[0];
    return row ? { type: 'book', ...row, seq: row.seq === null ? null : Number(row.seq) } : null;
  }

  async trades(q: TradeQuery): Promise<readonly Trade[]> {
    const params: unknown[] = [q.exchange, q.symbol];
    const where = ['exchange = $1', 'symbol = $2'];
    if (q.since !== undefined) where.push(`ts >= ms_to_ts($${params.push(q.since)}::bigint)`);
    if (q.until !== undefined) where.push(`ts < ms_to_ts($${params.push(q.until)}::bigint)`);
    if (q.after) {
      const ts = `ms_to_ts($${params.push(q.after.ts)}::bigint)`;
      const len = `$${params.push(q.after.id.length)}::int`;
      const id = `$${params.push(q.after.id)}::text`;
      where.push(`(ts, length(trade_id), trade_id) ${q.newestFirst ? '<' : '>'} (${ts}, ${len}, ${id})`);
    }
    const order = q.newestFirst ? 'ts DESC, length(trade_id) DESC, trade_id DESC' : TRADE_ORDER;
    const { rows } = await this.db.query<Omit<Trade, 'type'>>(
      `SELECT exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", trade_id AS id, price, amount, side
       FROM trades WHERE ${where.join(' AND ')} ORDER BY ${order} LIMIT $${params.push(q.limit)}::int`,
      params,
    );
    return rows.map((r) => ({ type: 'trade', ...r }));
  }

  async tradeStats(q: TradeStatsQuery): Promise<TradeStats> {
    // numeric sums: 0.1 + 0.2 stays 0.3, as in the candles
    const { rows } = await this.db.query<TradeStats>(
      `SELECT count(*)::int AS trades,
              coalesce(sum(amount::numeric), 0)::float8 AS volume,
              coalesce(sum(amount::numeric) FILTER (WHERE side = 'buy'), 0)::float8 AS "buyVolume",
              coalesce(sum(amount::numeric) FILTER (WHERE side = 'sell'), 0)::float8 AS "sellVolume",
              coalesce(sum(price::numeric * amount::numeric), 0)::float8 AS "quoteVolume",
              ts_to_ms(min(ts)) AS "firstTs", ts_to_ms(max(ts)) AS "lastTs"
       FROM trades
       WHERE exchange = $1 AND symbol = $2 AND ts >= ms_to_ts($3::bigint) AND ts < ms_to_ts($4::bigint)`,
      [q.exchange, q.symbol, q.since, q.until],
    );
    return rows[0]!;
  }

  async candles(q: CandleQuery): Promise<readonly StoredCandle[]> {
    const size = timeframeMs(q.timeframe);
    const offset = timeframeOffsetMs(q.timeframe);
    const rollup = rollupSource(size, offset);
    const params: unknown[] = [q.exchange, q.symbol];
    const where = ['exchange = $1', 'symbol = $2', `timeframe = '${rollup ?? '1m'}'`];
    // Ranges are on open time; widen to whole buckets so no rolled-up candle is cut short.
    if (q.since !== undefined) where.push(`ts >= ms_to_ts($${params.push(bucketStart(q.since, q.timeframe))}::bigint)`);
    if (q.until !== undefined) {
      const end = bucketStart(q.until - 1, q.timeframe) + size;
      where.push(`ts < ms_to_ts($${params.push(end)}::bigint)`);
    }
    const dir = q.newestFirst ? 'DESC' : 'ASC';
    if (rollup === q.timeframe) {
      // a stored rollup as it is: the primary key read in order, no aggregation
      const { rows } = await this.db.query<Omit<StoredCandle, 'timeframe'>>(
        `SELECT $1::text AS exchange, $2::text AS symbol, ts_to_ms(ts) AS ts, open, high, low, close,
                volume::float8 AS volume, trades::int AS trades, source
         FROM candle_rollups WHERE ${where.join(' AND ')} ORDER BY ts ${dir} LIMIT $${params.push(q.limit)}::int`,
        params,
      );
      return rows.map((r) => ({ ...r, timeframe: q.timeframe }));
    }
    const sizeP = `$${params.push(size)}::float8`;
    const offP = `$${params.push(offset)}::float8`;
    const limitP = `$${params.push(q.limit)}::int`;
    if (rollup) {
      // whole hours or days of candle_rollups; their volume is the exact (numeric) sum of the
      // minutes, so the result is bit-identical to rolling the minutes up
      const { rows } = await this.db.query<Omit<StoredCandle, 'timeframe'>>(
        `WITH bucketed AS (
           SELECT floor((ts_to_ms(ts) + ${offP}) / ${sizeP}) * ${sizeP} - ${offP} AS bucket, *
           FROM candle_rollups WHERE ${where.join(' AND ')}
         )
         SELECT $1::text AS exchange, $2::text AS symbol, bucket AS ts,
                (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
                (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume)::float8 AS volume, sum(trades)::int AS trades,
                CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END AS source
         FROM bucketed GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${limitP}`,
        params,
      );
      return rows.map((r) => ({ ...r, timeframe: q.timeframe }));
    }
    const { rows } = await this.db.query<Omit<StoredCandle, 'timeframe'>>(
      `WITH minute AS (
         -- one source per minute, never a blend: collected trades first, the exchange's candle otherwise
         SELECT DISTINCT ON (ts) ts_to_ms(ts) AS t, source, open, high, low, close, volume, trades
         FROM candles WHERE ${where.join(' AND ')}
         -- 'trades' > 'exchange'; (ts DESC, source DESC) is the primary key read backwards: no sort
         ORDER BY ts DESC, source DESC
       ), bucketed AS (
         SELECT floor((t + ${offP}) / ${sizeP}) * ${sizeP} - ${offP} AS bucket, * FROM minute
       )
       SELECT $1::text AS exchange, $2::text AS symbol, bucket AS ts,
              (array_agg(open ORDER BY t))[1] AS open, max(high) AS high, min(low) AS low,
              (array_agg(close ORDER BY t DESC))[1] AS close, sum(volume::numeric)::float8 AS volume, sum(trades)::int AS trades,
              CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END AS source
       FROM bucketed GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${limitP}`,
      params,
    );
    return rows.map((r) => ({ ...r, timeframe: q.timeframe }));
  }

  async close(): Promise<void> {
    await this.copyWriter?.close();
    await this.db.close();
  }
}

function mergeFunding(a: FundingSnapshot, b: FundingSnapshot): FundingSnapshot {
  return {
    ...a,
    localTs: Math.max(a.localTs, b.localTs),
    fundingRate: b.fundingRate ?? a.fundingRate,
    nextFundingTs: b.nextFundingTs ?? a.nextFundingTs,
    markPrice: b.markPrice ?? a.markPrice,
    indexPrice: b.indexPrice ?? a.indexPrice,
    openInterest: b.openInterest ?? a.openInterest,
    openInterestValue: b.openInterestValue ?? a.openInterestValue,
  };
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/**
 * Which row set of candle_rollups a timeframe rolls up from: '1d' when its buckets are whole,
 * aligned days (1d, 3d, 1w with its Monday offset), '1h' when whole, aligned hours, else none (1m).
 */
function rollupSource(size: number, offset: number): '1h' | '1d' | null {
  if (size % DAY_MS === 0 && offset % DAY_MS === 0) return '1d';
  if (size % HOUR_MS === 0 && offset % HOUR_MS === 0) return '1h';
  return null;
}

/**
 * Recomputes, in the batch's transaction, the hours of candle_rollups whose 1m candles the batch
 * touched (rebuilt trade minutes, upserted exchange 1m candles) and then their days
 * (refresh_candle_rollups, migration 0004).
 */
async function refreshRollups(tx: SqlExecutor, trades: readonly Trade[], candles: readonly Candle[]): Promise<void> {
  const hours = new Map<string, { exchange: string; symbol: string; hour: number }>();
  const touch = (exchange: string, symbol: string, ts: number) => {
    const hour = Math.floor(ts / HOUR_MS) * HOUR_MS;
    hours.set(`${exchange}|${symbol}|${hour}`, { exchange, symbol, hour });
  };
  for (const t of trades) touch(t.exchange, t.symbol, t.ts);
  for (const c of candles) if (c.timeframe === '1m') touch(c.exchange, c.symbol, c.ts);
  if (hours.size === 0) return;
  await tx.query('SELECT refresh_candle_rollups($1::jsonb)', [JSON.stringify([...hours.values()])]);
}

/** Session-local staging table of the COPY path; emptied at every commit, so it never carries rows across batches. */
const TRADE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS trade_staging (
  exchange text, symbol text, ts bigint, trade_id text, price float8, amount float8, side text, local_ts bigint
) ON COMMIT DELETE ROWS`;

function tradeCopyLine(t: Trade): string {
  return `${copyText(t.exchange)}\t${copyText(t.symbol)}\t${t.ts}\t${copyText(t.id)}\t${copyNumber(t.price)}\t${copyNumber(t.amount)}\t${t.side}\t${t.localTs}\n`;
}

/**
 * COPY into the staging table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING: duplicates
 * inside the batch or of stored rows are skipped by the same rule as on the jsonb path (the first
 * copy of a key wins). CREATE IF NOT EXISTS each time (no per-connection cache) keeps it right
 * behind a transaction-mode pooler, where the session is not ours between transactions.
 */
async function copyTrades(tx: CopyExecutor, trades: readonly Trade[]): Promise<number> {
  await tx.exec(TRADE_STAGING);
  await tx.copyFrom(
    'COPY trade_staging (exchange, symbol, ts, trade_id, price, amount, side, local_ts) FROM STDIN',
    copyChunks(trades, tradeCopyLine),
  );
  const { rows } = await tx.query<{ n: number }>(
    `WITH ins AS (
       INSERT INTO trades (exchange, symbol, ts, trade_id, price, amount, side, local_ts)
       SELECT exchange, symbol, ms_to_ts(ts), trade_id, price, amount, side, ms_to_ts(local_ts) FROM trade_staging
       ON CONFLICT DO NOTHING RETURNING 1
     ) SELECT count(*)::int AS n FROM ins`,
  );
  return rows[0]?.n ?? 0;
}

async function insertTrades(tx: SqlExecutor, trades: readonly Trade[], copy: CopyExecutor | null): Promise<number> {
  const inserted = copy ? await copyTrades(copy, trades) : await insertTradesJsonb(tx, trades);
  await rebuildTradeCandles(tx, trades);
  return inserted;
}

async function insertTradesJsonb(tx: SqlExecutor, trades: readonly Trade[]): Promise<number> {
  const rows = trades.map((t) => ({
    exchange: t.exchange,
    symbol: t.symbol,
    ts: t.ts,
    id: t.id,
    price: t.price,
    amount: t.amount,
    side: t.side,
    local_ts: t.localTs,
  }));
  const inserted = await tx.query(
    `INSERT INTO trades (exchange, symbol, ts, trade_id, price, amount, side, local_ts)
     SELECT exchange, symbol, ms_to_ts(ts), id, price, amount, side, ms_to_ts(local_ts)
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, ts bigint, id text, price float8,
       amount float8, side text, local_ts bigint)
     ON CONFLICT DO NOTHING RETURNING 1`,
    [JSON.stringify(rows)],
  );
  return inserted.rows.length;
}

async function rebuildTradeCandles(tx: SqlExecutor, trades: readonly Trade[]): Promise<void> {
  // Candles are rebuilt from the stored trades of every touched minute: a replayed or late trade
  // can never count twice, and the candle always equals what its trades imply. Volumes are summed
  // as numeric so 0.1 + 0.2 stays 0.3.
  const minutes = new Map<string, { exchange: string; symbol: string; minute: number }>();
  for (const t of trades) {
    const minute = bucketStart(t.ts, '1m');
    minutes.set(`${t.exchange}|${t.symbol}|${minute}`, { exchange: t.exchange, symbol: t.symbol, minute });
  }
  await tx.query(
    `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
     SELECT t.exchange, t.symbol, '1m', ms_to_ts(k.minute), 'trades',
            (array_agg(t.price ORDER BY t.ts, length(t.trade_id), t.trade_id))[1],
            max(t.price), min(t.price),
            (array_agg(t.price ORDER BY t.ts DESC, length(t.trade_id) DESC, t.trade_id DESC))[1],
            sum(t.amount::numeric)::float8, count(*)
     FROM jsonb_to_recordset($1::jsonb) AS k(exchange text, symbol text, minute bigint)
     JOIN trades t ON t.exchange = k.exchange AND t.symbol = k.symbol
      AND t.ts >= ms_to_ts(k.minute) AND t.ts < ms_to_ts(k.minute + 60000)
     GROUP BY t.exchange, t.symbol, k.minute
     ON CONFLICT (exchange, symbol, timeframe, ts, source) DO UPDATE SET
       open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
       volume = EXCLUDED.volume, trades = EXCLUDED.trades`,
    [JSON.stringify([...minutes.values()])],
  );
}

async function insertTickers(tx: SqlExecutor, tickers: readonly Ticker[]): Promise<number> {
  const result = await tx.query(
    `INSERT INTO tickers (exchange, symbol, ts, local_ts, bid, bid_size, ask, ask_size, last, open_24h, high_24h,
                          low_24h, base_volume_24h, quote_volume_24h, change_24h_pct)
     SELECT exchange, symbol, ms_to_ts("ts"), ms_to_ts("localTs"), bid, "bidSize", ask, "askSize", last, "open24h",
            "high24h", "low24h", "baseVolume24h", "quoteVolume24h", "change24hPct"
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, "ts" bigint, "localTs" bigint, bid float8,
       "bidSize" float8, ask float8, "askSize" float8, last float8, "open24h" float8, "high24h" float8, "low24h" float8,
       "baseVolume24h" float8, "quoteVolume24h" float8, "change24hPct" float8)
     ON CONFLICT DO NOTHING RETURNING 1`,
    [JSON.stringify(tickers)],
  );
  return result.rows.length;
}

async function insertBooks(tx: SqlExecutor, books: readonly OrderBook[]): Promise<number> {
  const result = await tx.query(
    `INSERT INTO book_snapshots (exchange, symbol, ts, local_ts, seq, depth, bids, asks)
     SELECT exchange, symbol, ms_to_ts("ts"), ms_to_ts("localTs"), seq, depth, bids, asks
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, "ts" bigint, "localTs" bigint, seq bigint,
       depth int, bids jsonb, asks jsonb)
     ON CONFLICT DO NOTHING RETURNING 1`,
    [JSON.stringify(books)],
  );
  return result.rows.length;
}

async function upsertExchangeCandles(tx: SqlExecutor, candles: readonly Candle[]): Promise<number> {
  // The exchange revises a forming candle: the last version of a key in the batch wins.
  const latest = new Map<string, Candle>();
  for (const c of candles) latest.set(`${c.exchange}|${c.symbol}|${c.timeframe}|${c.ts}|${c.source}`, c);
  const result = await tx.query(
    `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume)
     SELECT exchange, symbol, timeframe, ms_to_ts(ts), source, open, high, low, close, volume
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, timeframe text, ts bigint, source text,
       open float8, high float8, low float8, close float8, volume float8)
     ON CONFLICT (exchange, symbol, timeframe, ts, source) DO UPDATE SET
       open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume
     RETURNING 1`,
    [JSON.stringify([...latest.values()])],
  );
  return result.rows.length;
}

async function upsertFeeds(tx: SqlExecutor, events: readonly MarketEvent[]): Promise<void> {
  const feeds = new Map<string, { exchange: string; symbol: string; channel: Channel; first: number; last: number; lastLocal: number; n: number }>();
  for (const e of events) {
    const channel = CHANNEL_OF[e.type];
    const key = `${e.exchange}|${e.symbol}|${channel}`;
    const localTs = e.type === 'candle' ? e.ts : e.localTs;
    const f = feeds.get(key);
    if (!f) feeds.set(key, { exchange: e.exchange, symbol: e.symbol, channel, first: e.ts, last: e.ts, lastLocal: localTs, n: 1 });
    else {
      f.first = Math.min(f.first, e.ts);
      f.last = Math.max(f.last, e.ts);
      f.lastLocal = Math.max(f.lastLocal, localTs);
      f.n += 1;
    }
  }
  await tx.query(
    `INSERT INTO feeds (exchange, symbol, channel, first_ts, last_ts, last_local_ts, events)
     SELECT exchange, symbol, channel, ms_to_ts(first), ms_to_ts(last), ms_to_ts("lastLocal"), n
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, channel text, first bigint, last bigint,
       "lastLocal" bigint, n bigint)
     ON CONFLICT (exchange, symbol, channel) DO UPDATE SET
       first_ts = LEAST(feeds.first_ts, EXCLUDED.first_ts),
       last_ts = GREATEST(feeds.last_ts, EXCLUDED.last_ts),
       last_local_ts = GREATEST(feeds.last_local_ts, EXCLUDED.last_local_ts),
       events = feeds.events + EXCLUDED.events`,
    [JSON.stringify([...feeds.values()])],
  );
}
