import type { Candle, MarketEvent, OrderBook, Quote, Signal, Ticker, Trade } from '../../domain/index.js';
import { BookHealthSchema, bucketStart, timeframeMs, timeframeOffsetMs } from '../../domain/index.js';
import { ConfigError } from '../../domain/errors.js';
import type {
  BucketMinutes,
  CandleMinutesQuery,
  CandleQuery,
  Channel,
  DeadLetter,
  FeedCoverage,
  MarketStore,
  QuoteQuery,
  StoredCandle,
  TradeQuery,
  TradeStats,
  TradeStatsQuery,
  WriteSummary,
} from '../../ports/index.js';
import { binaryCopyChunks, CopyWriteError, type BinaryCopyRow, type CopyExecutor, type CopyTransactions } from './pg-copy-writer.js';
import { ExactNumericSum } from './pg-numeric-sum.js';
import type { SqlClient, SqlExecutor } from './sql-client.js';

const CHANNEL_OF: Record<MarketEvent['type'], Channel> = {
  trade: 'trades',
  ticker: 'tickers',
  book: 'books',
  quote: 'quotes',
  candle: 'candles',
};

/** Trade order inside one millisecond: numeric ids sort by length first, so "10" follows "9". */
const TRADE_ORDER = 'ts, length(trade_id), trade_id';

/**
 * Trade batches at least this long go through COPY when the store has a copy writer (measured
 * with the binary COPY straight into trades: at 100 rows it beats jsonb by ~20%, at 50 they tie).
 */
export const DEFAULT_COPY_MIN_ROWS = 100;

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

/** How the COPY path's batches went (counts since the store was made), for metrics and tests. */
export interface CopyPathStats {
  /** batches COPYed straight into trades: every trade was new */
  readonly fresh: number;
  /** of those, batches whose 1m candles were merged from the batch, not rebuilt from stored trades */
  readonly merged: number;
  /** batches written again the replay way: a trade was stored already or repeated in the batch */
  readonly replayed: number;
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
  /** trades, tickers, book snapshots, quotes */
  readonly ticksDays: number;
  /** candles, funding and open interest */
  readonly candlesDays: number;
}

/**
 * Market store on PostgreSQL (TimescaleDB when installed) or PGlite. Rows go in as one jsonb
 * parameter per table and batch (`jsonb_to_recordset`), so a batch is a handful of statements;
 * with a copy writer (PostgreSQL), large trade batches go in by binary COPY straight into trades
 * (a batch with a stored key falls back to COPY into a staging table + INSERT ON CONFLICT).
 */
export class PostgresMarketStore implements MarketStore {
  private readonly copyWriter: CopyTransactions | undefined;
  private readonly copyMinRows: number;
  private readonly stats = { fresh: 0, merged: 0, replayed: 0 };

  constructor(
    private readonly db: SqlClient,
    options: PostgresMarketStoreOptions = {},
  ) {
    this.copyWriter = options.copyWriter;
    this.copyMinRows = options.copyMinRows ?? DEFAULT_COPY_MIN_ROWS;
  }

  /**
   * Writes a batch in one transaction; idempotent, so a replayed batch changes nothing. On the COPY
   * path a batch that turns out to hold a stored trade is written again, the replay way, in a new
   * transaction (the first one rolled back whole).
   */
  async writeEvents(events: readonly MarketEvent[]): Promise<WriteSummary> {
    const trades: Trade[] = [];
    const tickers: Ticker[] = [];
    const books: OrderBook[] = [];
    const quotes: Quote[] = [];
    const candles: Candle[] = [];
    for (const e of events) {
      if (e.type === 'trade') trades.push(e);
      else if (e.type === 'ticker') tickers.push(e);
      else if (e.type === 'book') books.push(e);
      else if (e.type === 'quote') quotes.push(e);
      else candles.push(e);
    }
    if (events.length === 0) return { trades: 0, tickers: 0, books: 0, quotes: 0, candles: 0 };
    const batch = tradeMinutes(trades);
    let merged = false;
    const write = async (tx: SqlExecutor, copy: CopyExecutor | null, fresh: boolean) => {
      const written = trades.length ? await insertTrades(tx, trades, batch, copy, fresh) : null;
      const summary = {
        trades: written?.inserted ?? 0,
        tickers: tickers.length ? await insertTickers(tx, tickers) : 0,
        books: books.length ? await insertBooks(tx, books) : 0,
        quotes: quotes.length ? await insertQuotes(tx, quotes) : 0,
        candles: candles.length ? await upsertExchangeCandles(tx, candles) : 0,
      };
      await finishBatch(tx, written, candles, events);
      merged = written?.merged != null;
      return summary;
    };
    const copyWriter = this.copyWriter;
    if (!copyWriter || trades.length < this.copyMinRows) return this.db.transaction((tx) => write(tx, null, false));
    try {
      // the common case: every trade of the batch is new (the fresh COPY path, see insertTrades)
      const summary = await copyWriter.transaction((tx) => write(tx, tx, true));
      this.stats.fresh += 1;
      if (merged) this.stats.merged += 1;
      return summary;
    } catch (error) {
      if (!(error instanceof CopyWriteError && isUniqueViolation(error.cause))) throw error;
    }
    // a trade was stored already or repeats in the batch (a retry, a replay): again, the replay way
    const summary = await copyWriter.transaction((tx) => write(tx, tx, false));
    this.stats.replayed += 1;
    return summary;
  }

  /** How the COPY path's batches went so far. */
  copyPathStats(): CopyPathStats {
    return { ...this.stats };
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
      `SELECT exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", seq::float8 AS seq, depth, bids, asks, health
       FROM book_snapshots WHERE exchange = $1 AND symbol = $2 ORDER BY ts DESC LIMIT 1`,
      [exchange, symbol],
    );
    const row = rows[0];
    return row ? { type: 'book', ...row, seq: row.seq === null ? null : Number(row.seq), health: BookHealthSchema.catch('unverified').parse(row.health) } : null;
  }

  async latestQuote(exchange: string, symbol: string): Promise<Quote | null> {
    // the primary key read backwards: one row
    const { rows } = await this.db.query<QuoteRow>(
      `SELECT ${QUOTE_COLUMNS} FROM quotes WHERE exchange = $1 AND symbol = $2 ORDER BY ts DESC, local_ts DESC, seq DESC LIMIT 1`,
      [exchange, symbol],
    );
    return rows[0] ? quoteOf(rows[0]) : null;
  }

  async quotes(q: QuoteQuery): Promise<readonly Quote[]> {
    const params: unknown[] = [q.exchange, q.symbol];
    const where = ['exchange = $1', 'symbol = $2'];
    if (q.since !== undefined) where.push(`ts >= ms_to_ts($${params.push(q.since)}::bigint)`);
    if (q.until !== undefined) where.push(`ts < ms_to_ts($${params.push(q.until)}::bigint)`);
    const dir = q.newestFirst ? 'DESC' : 'ASC';
    const { rows } = await this.db.query<QuoteRow>(
      `SELECT ${QUOTE_COLUMNS} FROM quotes WHERE ${where.join(' AND ')}
       ORDER BY ts ${dir}, local_ts ${dir}, seq ${dir} LIMIT $${params.push(q.limit)}::int`,
      params,
    );
    return rows.map(quoteOf);
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
    let select: string;
    if (rollup === q.timeframe) {
      // a stored rollup as it is: the primary key read in order, no aggregation
      select = `SELECT ts_to_ms(ts) AS ts, open, high, low, close, volume::float8 AS volume, trades::int AS trades, source, minutes
                FROM candle_rollups WHERE ${where.join(' AND ')} ORDER BY ts ${dir} LIMIT $${params.push(q.limit)}::int`;
    } else {
      const sizeP = `$${params.push(size)}::float8`;
      const offP = `$${params.push(offset)}::float8`;
      const limitP = `$${params.push(q.limit)}::int`;
      select = rollup
        ? // whole hours or days of candle_rollups; their volume is the exact (numeric) sum of the
          // minutes, so the result is bit-identical to rolling the minutes up
          `WITH bucketed AS (
             SELECT floor((ts_to_ms(ts) + ${offP}) / ${sizeP}) * ${sizeP} - ${offP} AS bucket, *
             FROM candle_rollups WHERE ${where.join(' AND ')}
           )
           SELECT bucket AS ts,
                  (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
                  (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume)::float8 AS volume, sum(trades)::int AS trades,
                  CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END AS source,
                  -- uncounted (NULL) if any of its rollup rows is
                  CASE WHEN count(minutes) = count(*) THEN sum(minutes)::int END AS minutes
           FROM bucketed GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${limitP}`
        : `WITH minute AS (
             -- one source per minute, never a blend: collected trades first, the exchange's candle otherwise
             SELECT DISTINCT ON (ts) ts_to_ms(ts) AS t, source, open, high, low, close, volume, trades
             FROM candles WHERE ${where.join(' AND ')}
             -- 'trades' > 'exchange'; (ts DESC, source DESC) is the primary key read backwards: no sort
             ORDER BY ts DESC, source DESC
           ), bucketed AS (
             SELECT floor((t + ${offP}) / ${sizeP}) * ${sizeP} - ${offP} AS bucket, * FROM minute
           )
           SELECT bucket AS ts,
                  (array_agg(open ORDER BY t))[1] AS open, max(high) AS high, min(low) AS low,
                  (array_agg(close ORDER BY t DESC))[1] AS close, sum(volume::numeric)::float8 AS volume, sum(trades)::int AS trades,
                  CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END AS source,
                  count(*)::int AS minutes
           FROM bucketed GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${limitP}`;
    }
    // One JSON text per read instead of a text field per value: pg decodes and parses every field of
    // every row in JS (about half of a 200-candle read's CPU); JSON.parse of one string is native.
    // float8 prints its shortest exact form (extra_float_digits 1, PostgreSQL 12+), so values round-trip.
    const { rows } = await this.db.query<{ rows: string }>(
      `SELECT coalesce(json_agg(json_build_array(ts, open, high, low, close, volume, trades, source, minutes) ORDER BY ts ${dir}), '[]')::text AS rows
       FROM (${select}) c`,
      params,
    );
    const tuples = JSON.parse(rows[0]!.rows) as [number, number, number, number, number, number, number, StoredCandle['source'], number | null][];
    return tuples.map(([ts, open, high, low, close, volume, trades, source, minutes]) => ({
      exchange: q.exchange,
      symbol: q.symbol,
      timeframe: q.timeframe,
      ts,
      open,
      high,
      low,
      close,
      volume,
      trades,
      source,
      minutes,
    }));
  }

  async candleMinutes(q: CandleMinutesQuery): Promise<readonly BucketMinutes[]> {
    // DISTINCT ts: a minute held from both sources is one minute. date_bin on the distinct minutes
    // is about half the cost of the float bucketing the candle reads use; origin = epoch - offset.
    const { rows } = await this.db.query<BucketMinutes>(
      `SELECT ts_to_ms(date_bin($5::bigint * interval '1 millisecond', ts, ms_to_ts($6::bigint))) AS ts, count(*)::int AS minutes
       FROM (SELECT DISTINCT ts FROM candles
             WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' AND ts >= ms_to_ts($3::bigint) AND ts < ms_to_ts($4::bigint)) m
       GROUP BY 1 ORDER BY 1`,
      [q.exchange, q.symbol, q.since, q.until, timeframeMs(q.timeframe), -timeframeOffsetMs(q.timeframe)],
    );
    return rows.map((r) => ({ ts: Number(r.ts), minutes: r.minutes }));
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

/** The hours whose 1m candles the batch touched (trade minutes, exchange 1m candles), as refresh_candle_rollups takes them; null if none. */
function touchedHours(minutes: readonly TradeMinute[], candles: readonly Candle[]): string | null {
  const hours = new Map<string, { exchange: string; symbol: string; hour: number }>();
  const touch = (exchange: string, symbol: string, ts: number) => {
    const hour = Math.floor(ts / HOUR_MS) * HOUR_MS;
    hours.set(`${exchange}|${symbol}|${hour}`, { exchange, symbol, hour });
  };
  for (const m of minutes) touch(m.exchange, m.symbol, m.minute);
  for (const c of candles) if (c.timeframe === '1m') touch(c.exchange, c.symbol, c.ts);
  return hours.size ? JSON.stringify([...hours.values()]) : null;
}

/**
 * The end of every batch, in one statement: feeds, and the hours (then days) of candle_rollups
 * whose 1m candles the batch touched (refresh_candle_rollups, 0004) - after `merged` trade
 * candles are upserted when the batch took the fresh COPY path (merge_trade_candles, 0005).
 */
async function finishBatch(
  tx: SqlExecutor,
  written: TradeWrite | null,
  candles: readonly Candle[],
  events: readonly MarketEvent[],
): Promise<void> {
  const merged = written?.merged ?? null;
  const hours = touchedHours(written?.minutes ?? [], candles);
  const feeds = feedRows(events);
  if (merged && hours) {
    await tx.query(`WITH f AS (${FEEDS_UPSERT}) SELECT merge_trade_candles($2::jsonb, $3::jsonb)`, [feeds, merged, hours]);
  } else if (hours) {
    await tx.query(`WITH f AS (${FEEDS_UPSERT}) SELECT refresh_candle_rollups($2::jsonb)`, [feeds, hours]);
  } else {
    await tx.query(FEEDS_UPSERT, [feeds]);
  }
}

const TRADE_COLUMNS = 'exchange, symbol, ts, trade_id, price, amount, side, local_ts';

/**
 * Session-local staging table of the replay path; emptied at every commit, so it never carries
 * rows across batches. Its columns are typed as in trades, so both COPYs send the same bytes.
 */
const TRADE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS trade_copy_staging (
  exchange text, symbol text, ts timestamptz, trade_id text, price float8, amount float8, side text, local_ts timestamptz
) ON COMMIT DELETE ROWS`;

/** A trade as one binary COPY row of `trades` (exchange, symbol, ts, trade_id, price, amount, side, local_ts). */
export function encodeTrade(t: Trade, row: BinaryCopyRow): void {
  row.text(t.exchange);
  row.text(t.symbol);
  row.timestamptzMs(t.ts);
  row.text(t.id);
  row.float8(t.price);
  row.float8(t.amount);
  row.text(t.side);
  row.timestamptzMs(t.localTs);
}

const tradeChunks = (trades: readonly Trade[]) => binaryCopyChunks(trades, 8, encodeTrade);

/** unique_violation: a key of the batch is stored already (or repeats inside the batch). */
const isUniqueViolation = (error: unknown) => (error as { code?: unknown } | null)?.code === '23505';

/** One 1m candle's worth of a batch's trades; the aggregates are filled by sumTradeMinutes. */
interface TradeMinute {
  readonly exchange: string;
  readonly symbol: string;
  /** open time, ms epoch */
  readonly minute: number;
  trades: number;
  high: number;
  low: number;
  readonly volume: ExactNumericSum;
}

/** The minutes a batch touches, and for each trade the index of its minute. */
interface TradeMinutes {
  readonly minutes: readonly TradeMinute[];
  readonly minuteOf: Int32Array;
}

function tradeMinutes(trades: readonly Trade[]): TradeMinutes {
  const byMarket = new Map<string, Map<string, Map<number, number>>>();
  const minutes: TradeMinute[] = [];
  const minuteOf = new Int32Array(trades.length);
  for (let i = 0; i < trades.length; i++) {
    const t = trades[i]!;
    let bySymbol = byMarket.get(t.exchange);
    if (!bySymbol) byMarket.set(t.exchange, (bySymbol = new Map()));
    let byMinute = bySymbol.get(t.symbol);
    if (!byMinute) bySymbol.set(t.symbol, (byMinute = new Map()));
    const minute = bucketStart(t.ts, '1m');
    let m = byMinute.get(minute);
    if (m === undefined) {
      m = minutes.push({ exchange: t.exchange, symbol: t.symbol, minute, trades: 0, high: t.price, low: t.price, volume: new ExactNumericSum() }) - 1;
      byMinute.set(minute, m);
    }
    minuteOf[i] = m;
  }
  return { minutes, minuteOf };
}

/**
 * Count, high, low and exact volume of each minute's trades of the batch; false when some amount
 * cannot be summed as numeric here (see ExactNumericSum): then only the server can.
 */
function sumTradeMinutes(trades: readonly Trade[], batch: TradeMinutes): boolean {
  for (let i = 0; i < trades.length; i++) {
    const t = trades[i]!;
    const m = batch.minutes[batch.minuteOf[i]!]!;
    m.trades += 1;
    if (t.price > m.high) m.high = t.price;
    if (t.price < m.low) m.low = t.price;
    if (!m.volume.add(t.amount)) return false;
  }
  return true;
}

const minuteKeys = (minutes: readonly TradeMinute[]) =>
  JSON.stringify(minutes.map((m, i) => ({ i, exchange: m.exchange, symbol: m.symbol, minute: m.minute })));

/** What minute `i` of a batch held before it; minutes without stored trades have none. */
interface StoredMinute {
  readonly i: number;
  readonly trades: number;
  readonly high: number;
  readonly low: number;
  /** the stored amounts as float8send bytes (8 per amount, big-endian), summed exactly here */
  readonly amounts: Uint8Array;
}

async function storedMinutes(tx: SqlExecutor, minutes: readonly TradeMinute[]): Promise<Map<number, StoredMinute>> {
  // LATERAL: one index range scan per minute. A plain join lets the planner hash-join on the few
  // markets and scan the whole table once statistics say there are only a few of them. Amounts
  // come as raw float8 bytes, summed here: sum(amount::numeric) costs a decimal conversion per row.
  const { rows } = await tx.query<StoredMinute>(
    `SELECT k.i, s.trades, s.high, s.low, s.amounts
     FROM jsonb_to_recordset($1::jsonb) AS k(i int, exchange text, symbol text, minute bigint)
     CROSS JOIN LATERAL (
       SELECT count(*)::int AS trades, max(t.price) AS high, min(t.price) AS low,
              string_agg(float8send(t.amount), ''::bytea) AS amounts
       FROM trades t
       WHERE t.exchange = k.exchange AND t.symbol = k.symbol
         AND t.ts >= ms_to_ts(k.minute) AND t.ts < ms_to_ts(k.minute + 60000)
     ) s
     WHERE s.trades > 0`,
    [minuteKeys(minutes)],
  );
  return new Map(rows.map((r) => [r.i, r]));
}

/**
 * The touched minutes, what they held before merged with the batch, as merge_trade_candles (0005)
 * takes them; null if a stored amount cannot be summed here (then the candles are rebuilt).
 */
function mergedMinutes(minutes: readonly TradeMinute[], before: ReadonlyMap<number, StoredMinute>): string | null {
  const rows = [];
  for (let i = 0; i < minutes.length; i++) {
    const m = minutes[i]!;
    const b = before.get(i);
    if (b) {
      const view = new DataView(b.amounts.buffer, b.amounts.byteOffset, b.amounts.byteLength);
      for (let at = 0; at < view.byteLength; at += 8) if (!m.volume.add(view.getFloat64(at))) return null;
    }
    rows.push({
      exchange: m.exchange,
      symbol: m.symbol,
      minute: m.minute,
      trades: m.trades + (b?.trades ?? 0),
      high: b ? Math.max(b.high, m.high) : m.high,
      low: b ? Math.min(b.low, m.low) : m.low,
      // numeric text: exact until its one rounding to float8, as sum(amount::numeric)::float8 is
      volume: m.volume.toString(),
    });
  }
  return JSON.stringify(rows);
}

/** What writing a batch's trades did. */
interface TradeWrite {
  readonly inserted: number;
  /** the minutes the batch touched */
  readonly minutes: readonly TradeMinute[];
  /** merged minutes whose candles finishBatch upserts; null when the candles are done */
  readonly merged: string | null;
}

/**
 * Trades and their 1m candles. On the fresh COPY path (`fresh`, the common case) the batch goes
 * by binary COPY straight into trades: a key stored before or repeated in the batch fails it with
 * a unique violation, and writeEvents runs the batch again the replay way. Once it went through,
 * every row was new, so a touched minute holds what it held before (read just before the COPY,
 * in the same transaction) plus the batch, and its candle is merged from the two
 * (merge_trade_candles, 0005) instead of rebuilt from the stored trades - the same result without
 * reading the batch back. Otherwise (replay way, jsonb path, amounts only the server can sum)
 * candles are rebuilt.
 */
async function insertTrades(
  tx: SqlExecutor,
  trades: readonly Trade[],
  batch: TradeMinutes,
  copy: CopyExecutor | null,
  fresh: boolean,
): Promise<TradeWrite> {
  const { minutes } = batch;
  if (copy && fresh) {
    // the read needs only the minutes: the batch is summed while the server reads
    const reading = storedMinutes(tx, minutes);
    const exact = sumTradeMinutes(trades, batch);
    const before = await reading;
    const inserted = await copy.copyFrom(`COPY trades (${TRADE_COLUMNS}) FROM STDIN (FORMAT binary)`, tradeChunks(trades));
    const merged = exact ? mergedMinutes(minutes, before) : null;
    if (merged) return { inserted, minutes, merged };
    await rebuildTradeCandles(tx, minutes);
    return { inserted, minutes, merged: null };
  }
  const inserted = copy ? await copyTradesStaged(copy, trades) : await insertTradesJsonb(tx, trades);
  await rebuildTradeCandles(tx, minutes);
  return { inserted, minutes, merged: null };
}

/**
 * The replay way on PostgreSQL: COPY into the staging table, then INSERT ... ON CONFLICT DO
 * NOTHING, where the first copy of a key wins, as on the jsonb path. CREATE IF NOT EXISTS each
 * time (no per-connection cache) keeps it right behind a transaction-mode pooler, where the
 * session is not ours between transactions.
 */
async function copyTradesStaged(tx: CopyExecutor, trades: readonly Trade[]): Promise<number> {
  await tx.exec(TRADE_STAGING);
  await tx.copyFrom(`COPY trade_copy_staging (${TRADE_COLUMNS}) FROM STDIN (FORMAT binary)`, tradeChunks(trades));
  const { rows } = await tx.query<{ n: number }>(
    `WITH ins AS (
       INSERT INTO trades (${TRADE_COLUMNS}) SELECT ${TRADE_COLUMNS} FROM trade_copy_staging
       ON CONFLICT DO NOTHING RETURNING 1
     ) SELECT count(*)::int AS n FROM ins`,
  );
  return rows[0]?.n ?? 0;
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

async function rebuildTradeCandles(tx: SqlExecutor, minutes: readonly TradeMinute[]): Promise<void> {
  // Candles are rebuilt from the stored trades of every touched minute: a replayed or late trade
  // can never count twice, and the candle always equals what its trades imply. Volumes are summed
  // as numeric so 0.1 + 0.2 stays 0.3. LATERAL keeps it one index range scan per minute (see
  // storedMinutes).
  await tx.query(
    `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
     SELECT k.exchange, k.symbol, '1m', ms_to_ts(k.minute), 'trades', a.open, a.high, a.low, a.close, a.volume, a.trades
     FROM jsonb_to_recordset($1::jsonb) AS k(exchange text, symbol text, minute bigint)
     CROSS JOIN LATERAL (
       SELECT (array_agg(t.price ORDER BY t.ts, length(t.trade_id), t.trade_id))[1] AS open,
              max(t.price) AS high, min(t.price) AS low,
              (array_agg(t.price ORDER BY t.ts DESC, length(t.trade_id) DESC, t.trade_id DESC))[1] AS close,
              sum(t.amount::numeric)::float8 AS volume, count(*) AS trades
       FROM trades t
       WHERE t.exchange = k.exchange AND t.symbol = k.symbol
         AND t.ts >= ms_to_ts(k.minute) AND t.ts < ms_to_ts(k.minute + 60000)
     ) a
     WHERE a.trades > 0
     ON CONFLICT (exchange, symbol, timeframe, ts, source) DO UPDATE SET
       open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
       volume = EXCLUDED.volume, trades = EXCLUDED.trades`,
    [minuteKeys(minutes)],
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

/**
 * A book whose health changes without a new update (it went stale, a REST cross-check verified it)
 * is published again with the same exchange time: the later observation (greater local_ts) of a
 * snapshot sets its health, so replays and reordering change nothing.
 */
async function insertBooks(tx: SqlExecutor, books: readonly OrderBook[]): Promise<number> {
  const latest = new Map<string, OrderBook>();
  for (const b of books) {
    const key = `${b.exchange}|${b.symbol}|${b.ts}`;
    const seen = latest.get(key);
    if (!seen || b.localTs > seen.localTs) latest.set(key, b);
  }
  const result = await tx.query(
    `INSERT INTO book_snapshots AS b (exchange, symbol, ts, local_ts, seq, depth, bids, asks, health)
     SELECT exchange, symbol, ms_to_ts("ts"), ms_to_ts("localTs"), seq, depth, bids, asks, COALESCE(health, 'unverified')
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, "ts" bigint, "localTs" bigint, seq bigint,
       depth int, bids jsonb, asks jsonb, health text)
     ON CONFLICT (exchange, symbol, ts) DO UPDATE SET local_ts = EXCLUDED.local_ts, health = EXCLUDED.health
       WHERE EXCLUDED.local_ts > b.local_ts
     RETURNING 1`,
    [JSON.stringify([...latest.values()])],
  );
  return result.rows.length;
}

/** `seq` -1 in the key column: the exchange gave none (see 0009). */
const NO_SEQ = -1;

const QUOTE_COLUMNS = `exchange, symbol, ts_to_ms(ts) AS ts, ts_to_ms(local_ts) AS "localTs", seq::float8 AS seq, bid,
  bid_size AS "bidSize", ask, ask_size AS "askSize", health`;

type QuoteRow = Omit<Quote, 'type' | 'health'> & { health: string };

function quoteOf(row: QuoteRow): Quote {
  return { type: 'quote', ...row, seq: row.seq === NO_SEQ ? null : row.seq, health: BookHealthSchema.catch('unverified').parse(row.health) };
}

/** Quotes are facts of one instant: a replayed one (same key) is the same row, left as it is. */
async function insertQuotes(tx: SqlExecutor, quotes: readonly Quote[]): Promise<number> {
  const result = await tx.query(
    `INSERT INTO quotes (exchange, symbol, ts, local_ts, seq, bid, bid_size, ask, ask_size, health)
     SELECT exchange, symbol, ms_to_ts("ts"), ms_to_ts("localTs"), COALESCE(seq, ${NO_SEQ}), bid, "bidSize", ask, "askSize",
            COALESCE(health, 'unverified')
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, "ts" bigint, "localTs" bigint, seq bigint,
       bid float8, "bidSize" float8, ask float8, "askSize" float8, health text)
     ON CONFLICT DO NOTHING RETURNING 1`,
    [JSON.stringify(quotes)],
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

interface FeedRow {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: Channel;
  first: number;
  last: number;
  lastLocal: number;
  n: number;
}

/** Feed coverage rows of a batch (per exchange, symbol and channel), as FEEDS_UPSERT takes them in $1. */
function feedRows(events: readonly MarketEvent[]): string {
  // nested maps: no key string built per event
  const byExchange = new Map<string, Map<string, Map<Channel, FeedRow>>>();
  const rows: FeedRow[] = [];
  for (const e of events) {
    const channel = CHANNEL_OF[e.type];
    const localTs = e.type === 'candle' ? e.ts : e.localTs;
    let bySymbol = byExchange.get(e.exchange);
    if (!bySymbol) byExchange.set(e.exchange, (bySymbol = new Map()));
    let byChannel = bySymbol.get(e.symbol);
    if (!byChannel) bySymbol.set(e.symbol, (byChannel = new Map()));
    const f = byChannel.get(channel);
    if (!f) {
      const row = { exchange: e.exchange, symbol: e.symbol, channel, first: e.ts, last: e.ts, lastLocal: localTs, n: 1 };
      byChannel.set(channel, row);
      rows.push(row);
    } else {
      if (e.ts < f.first) f.first = e.ts;
      if (e.ts > f.last) f.last = e.ts;
      if (localTs > f.lastLocal) f.lastLocal = localTs;
      f.n += 1;
    }
  }
  return JSON.stringify(rows);
}

const FEEDS_UPSERT = `INSERT INTO feeds (exchange, symbol, channel, first_ts, last_ts, last_local_ts, events)
  SELECT exchange, symbol, channel, ms_to_ts(first), ms_to_ts(last), ms_to_ts("lastLocal"), n
  FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, channel text, first bigint, last bigint,
    "lastLocal" bigint, n bigint)
  ON CONFLICT (exchange, symbol, channel) DO UPDATE SET
    first_ts = LEAST(feeds.first_ts, EXCLUDED.first_ts),
    last_ts = GREATEST(feeds.last_ts, EXCLUDED.last_ts),
    last_local_ts = GREATEST(feeds.last_local_ts, EXCLUDED.last_local_ts),
    events = feeds.events + EXCLUDED.events`;
