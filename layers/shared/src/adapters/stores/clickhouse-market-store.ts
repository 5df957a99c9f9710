import type { Candle, MarketEvent, OrderBook, Quote, Signal, Ticker, Trade } from '../../domain/index.js';
import { BookHealthSchema, bucketStart, timeframeMs, timeframeOffsetMs } from '../../domain/index.js';
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
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { RowBinaryWriter, decimalText, float64Hex, nullableFloat64Hex } from './clickhouse-encoding.js';
import { marketMinutesOf, pendingMinutes, rebuildMinuteCandles, rebuildMinutes, unfoldedTradeFeeds } from './clickhouse-candle-refresh.js';
import { rollupRebuild, rollupSource, touchedDays } from './clickhouse-candle-rollups.js';
import { joinSql, sql, trustedSql, type Sql } from './clickhouse-sql.js';

const CHANNEL_OF: Record<MarketEvent['type'], Channel> = {
  trade: 'trades',
  ticker: 'tickers',
  book: 'books',
  quote: 'quotes',
  candle: 'candles',
};

const DAY = 86_400_000;

/**
 * Who rebuilds the candles of collected trades:
 * - 'inline': each write, after its trades are stored (4 parts, 3 round trips a batch); exact at
 *   once, for tests, backfills and small deployments;
 * - 'refresher': refreshCandles (clickhouse-candle-refresh.ts) on a schedule; a batch of trades
 *   is one insert whose views store them and mark their minutes with their feed figures
 *   (sql/clickhouse/0006). Candles lag by up to one refresh interval, except where a reader asks
 *   for them: reads rebuild a range's marked minutes first.
 */
export type CandleRefresh = 'inline' | 'refresher';

export interface ClickHouseMarketStoreOptions {
  /** @default 'inline' */
  readonly candles?: CandleRefresh;
}


/** UInt64 values arrive as JSON strings (output_format_json_quote_64bit_integers); ms epochs fit a double exactly. */
type U64 = string | number;
const num = (v: U64): number => Number(v);

/** Runs all writes, waits for every one, and throws the first failure (the store is idempotent: retry all). */
async function settleAll(writes: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(writes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Market store on ClickHouse (history and analytics), with the same semantics as
 * PostgresMarketStore. Trades go in as `INSERT ... FORMAT RowBinary` straight into `trades` (exact
 * doubles, nothing parsed from text; `trades_in` stays for writers of the previous version), other
 * rows as JSONEachRow into `<table>_in` views; tables are ReplacingMergeTree on the natural keys,
 * and since those deduplicate only when parts merge, every read deduplicates itself (LIMIT 1 BY /
 * GROUP BY the key), so a replayed batch is never seen twice. 1m candles of collected trades are
 * rebuilt from the deduplicated trades of every touched minute (INSERT ... SELECT, server side),
 * once the trades are stored: a candle computed from the batch alone (or by a view over the
 * insert) would count a redelivered trade twice, and one computed alongside the insert could miss
 * the trades a concurrent writer stores for the minute. Inline (the default), each write does it,
 * and those requests are most of what a batch costs beyond a raw insert of its trades; with
 * `candles: 'refresher'` a batch is one insert and refreshCandles rebuilds on a schedule
 * (bench/clickhouse-writer.bench.ts measures both).
 */
export class ClickHouseMarketStore implements MarketStore {
  private lastVersion = 0;
  private readonly refresh: CandleRefresh;

  constructor(
    private readonly ch: ClickHouseExecutor,
    options: ClickHouseMarketStoreOptions = {},
  ) {
    this.refresh = options.candles ?? 'inline';
  }

  /**
   * Writes a batch; idempotent on the read path. The counts are rows sent, replays included:
   * ClickHouse cannot tell a new row from a re-delivered one without reading first.
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
    const latestCandles = latestCandleVersions(candles);
    // Encoded before anything is sent: a value the columns cannot hold fails the batch up front.
    const tradeBody = trades.length ? encodeTrades(trades) : new Uint8Array(0);
    if (this.refresh === 'refresher') {
      // One request for the trades: its views store them and mark their minutes with their feed
      // figures (the refresher folds those into feeds; listFeeds adds the unfolded ones). Exchange
      // 1m candles mark their minutes alongside; the other channels' feed figures follow the rows.
      const marks = latestCandles.filter((c) => c.timeframe === '1m').map((c) => ({ exchange: c.exchange, symbol: c.symbol, minute: c.ts }));
      await settleAll([
        this.ch.insertRowBinary('trades_ingest', TRADE_COLUMNS, tradeBody, trades.length),
        this.ch.insert('tickers_in', tickers.map(tickerRow)),
        this.ch.insert('book_snapshots_in', books.map(bookRow)),
        this.ch.insert('quotes_in', quotes.map(quoteRow)),
        this.ch.insert('candles_in', latestCandles.map((c) => candleRow(c, this.nextVersion()))),
        this.ch.insert('candle_marks_in', marks),
      ]);
      await this.ch.insert('feed_updates', feedRows(events.filter((e) => e.type !== 'trade')));
      return { trades: trades.length, tickers: tickers.length, books: books.length, quotes: quotes.length, candles: latestCandles.length };
    }
    // Independent tables go in parallel; minutes are rebuilt once their trades are stored, and the
    // feed figures are added last, so a failed batch does not announce data the store lacks.
    await settleAll([
      this.ch.insertRowBinary('trades', TRADE_COLUMNS, tradeBody, trades.length),
      this.ch.insert('tickers_in', tickers.map(tickerRow)),
      this.ch.insert('book_snapshots_in', books.map(bookRow)),
      this.ch.insert('quotes_in', quotes.map(quoteRow)),
      this.ch.insert('candles_in', latestCandles.map((c) => candleRow(c, this.nextVersion()))),
    ]);
    if (trades.length) await rebuildMinuteCandles(this.ch, marketMinutesOf(trades));
    // Hours and days read the minutes just rebuilt, so they follow them (one more request, only
    // when the batch touched 1m candles); the feed figures go in alongside.
    const touched = touchedDays(trades, latestCandles);
    await settleAll([
      touched.length ? this.ch.command(rollupRebuild(touched, this.nextVersion())) : Promise.resolve(),
      this.ch.insert('feed_updates', feedRows(events)),
    ]);
    return { trades: trades.length, tickers: tickers.length, books: books.length, quotes: quotes.length, candles: latestCandles.length };
  }

  /** Writes signals; the count is rows sent (a replayed signal is one row on read). */
  async writeSignals(signals: readonly Signal[]): Promise<number> {
    await this.ch.insert(
      'signals_in',
      signals.map((s) => ({
        id: s.id,
        ts: s.ts,
        publisher: s.publisher,
        exchange: s.exchange,
        symbol: s.symbol,
        direction: s.direction,
        strength: float64Hex(s.strength),
        confidence: float64Hex(s.confidence),
        horizon: s.horizon,
        rationale: s.rationale,
      })),
    );
    return signals.length;
  }

  async writeDeadLetter(letter: DeadLetter): Promise<void> {
    await this.ch.insert('dead_letters', [
      {
        received_at: Date.now(),
        source: letter.source,
        error_name: letter.errorName,
        reason: letter.reason,
        partition_key: letter.partitionKey,
        sequence_number: letter.sequenceNumber,
        payload: letter.payload,
      },
    ]);
  }

  async listFeeds(): Promise<readonly FeedCoverage[]> {
    const rows = await this.ch.query<{
      exchange: string;
      symbol: string;
      channel: Channel;
      firstTs: U64;
      lastTs: U64;
      lastLocalTs: U64;
      events: U64;
    }>(sql`SELECT exchange, symbol, channel, min(firstTs) AS firstTs, max(lastTs) AS lastTs,
                  max(lastLocalTs) AS lastLocalTs, sum(events) AS events
           FROM (
             SELECT exchange, symbol, channel, minMerge(first_ts) AS firstTs, maxMerge(last_ts) AS lastTs,
                    maxMerge(last_local_ts) AS lastLocalTs, sumMerge(events) AS events
             FROM feeds GROUP BY exchange, symbol, channel
             UNION ALL
             ${unfoldedTradeFeeds()}
           )
           GROUP BY exchange, symbol, channel ORDER BY exchange, symbol, channel`);
    return rows.map((r) => ({
      exchange: r.exchange,
      symbol: r.symbol,
      channel: r.channel,
      firstTs: num(r.firstTs),
      lastTs: num(r.lastTs),
      lastLocalTs: num(r.lastLocalTs),
      events: num(r.events),
    }));
  }

  async latestTicker(exchange: string, symbol: string): Promise<Ticker | null> {
    // Copies of one key are the same event, so the newest row needs no deduplication.
    const rows = await this.ch.query<Omit<Ticker, 'type' | 'ts' | 'localTs'> & { ts: U64; localTs: U64 }>(
      sql`SELECT exchange, symbol, ts, local_ts AS localTs, bid, bid_size AS bidSize, ask, ask_size AS askSize, last,
                 open_24h AS open24h, high_24h AS high24h, low_24h AS low24h, base_volume_24h AS baseVolume24h,
                 quote_volume_24h AS quoteVolume24h, change_24h_pct AS change24hPct
          FROM tickers WHERE exchange = ${exchange} AND symbol = ${symbol} ORDER BY ts DESC LIMIT 1`,
    );
    const row = rows[0];
    return row ? { type: 'ticker', ...row, ts: num(row.ts), localTs: num(row.localTs) } : null;
  }

  async latestBook(exchange: string, symbol: string): Promise<OrderBook | null> {
    const rows = await this.ch.query<{
      exchange: string;
      symbol: string;
      ts: U64;
      localTs: U64;
      seq: U64 | null;
      depth: number;
      bids: [number, number][];
      asks: [number, number][];
      health: string;
    }>(
      // a snapshot published again with a new health keeps its ts: the later observation wins
      sql`SELECT exchange, symbol, ts, local_ts AS localTs, seq, depth, bids, asks, health
          FROM book_snapshots WHERE exchange = ${exchange} AND symbol = ${symbol} ORDER BY ts DESC, local_ts DESC LIMIT 1`,
    );
    const row = rows[0];
    if (!row) return null;
    return {
      type: 'book',
      exchange: row.exchange,
      symbol: row.symbol,
      ts: num(row.ts),
      localTs: num(row.localTs),
      seq: row.seq === null ? null : num(row.seq),
      depth: row.depth,
      bids: row.bids,
      asks: row.asks,
      health: BookHealthSchema.catch('unverified').parse(row.health),
    };
  }

  async latestQuote(exchange: string, symbol: string): Promise<Quote | null> {
    // the newest exchange millisecond first: 18.16 cannot stop an ORDER BY ... DESC LIMIT early,
    // and a market holds far more quotes than tickers. Copies of one key are the same quote.
    const market = sql`exchange = ${exchange} AND symbol = ${symbol}`;
    const rows = await this.ch.query<QuoteRow>(
      sql`SELECT ${QUOTE_COLUMNS} FROM quotes
          WHERE ${market} AND ts = (SELECT max(ts) FROM quotes WHERE ${market})
          ORDER BY local_ts DESC, seq DESC LIMIT 1`,
    );
    return rows[0] ? quoteOf(rows[0]) : null;
  }

  async quotes(q: QuoteQuery): Promise<readonly Quote[]> {
    const where: Sql[] = [sql`exchange = ${q.exchange}`, sql`symbol = ${q.symbol}`];
    if (q.since !== undefined) where.push(sql`ts >= ${q.since}`);
    if (q.until !== undefined) where.push(sql`ts < ${q.until}`);
    const dir = q.newestFirst ? sql`DESC` : sql`ASC`;
    const rows = await this.ch.query<QuoteRow>(
      sql`SELECT ${QUOTE_COLUMNS} FROM quotes WHERE ${joinSql(where, ' AND ')}
          ORDER BY ts ${dir}, local_ts ${dir}, seq ${dir} LIMIT 1 BY ts, local_ts, seq LIMIT ${q.limit}`,
    );
    return rows.map(quoteOf);
  }

  async tradeStats(q: TradeStatsQuery): Promise<TradeStats> {
    // deduplicated first (a batch may have landed twice); volumes from the exact decimal amounts,
    // read as text because 18.16's toFloat64(Decimal) is off in the last digit
    const rows = await this.ch.query<{
      trades: U64;
      volume: string;
      buyVolume: string;
      sellVolume: string;
      quoteVolume: number;
      firstTs: U64;
      lastTs: U64;
    }>(
      sql`SELECT count() AS trades,
                 toString(sum(amount_dec)) AS volume,
                 toString(sumIf(amount_dec, side = 'buy')) AS buyVolume,
                 toString(sumIf(amount_dec, side = 'sell')) AS sellVolume,
                 sum(price * amount) AS quoteVolume,
                 min(ts) AS firstTs, max(ts) AS lastTs
          FROM (
            SELECT ts, trade_id, price, amount, amount_dec, side FROM trades
            WHERE exchange = ${q.exchange} AND symbol = ${q.symbol} AND ts >= ${q.since} AND ts < ${q.until}
            LIMIT 1 BY ts, trade_id
          )`,
    );
    const r = rows[0]!;
    const trades = num(r.trades);
    return {
      trades,
      volume: Number(r.volume),
      buyVolume: Number(r.buyVolume),
      sellVolume: Number(r.sellVolume),
      quoteVolume: r.quoteVolume,
      firstTs: trades > 0 ? num(r.firstTs) : null,
      lastTs: trades > 0 ? num(r.lastTs) : null,
    };
  }

  async trades(q: TradeQuery): Promise<readonly Trade[]> {
    const where: Sql[] = [sql`exchange = ${q.exchange}`, sql`symbol = ${q.symbol}`];
    if (q.since !== undefined) where.push(sql`ts >= ${q.since}`);
    if (q.until !== undefined) where.push(sql`ts < ${q.until}`);
    if (q.after) {
      const { ts, id } = q.after;
      const length = [...id].length;
      // The plain ts bound lets the primary key skip granules; the tuple decides inside a millisecond.
      where.push(
        q.newestFirst
          ? sql`ts <= ${ts} AND (ts, lengthUTF8(trade_id), trade_id) < (${ts}, ${length}, ${id})`
          : sql`ts >= ${ts} AND (ts, lengthUTF8(trade_id), trade_id) > (${ts}, ${length}, ${id})`,
      );
    }
    const order = q.newestFirst
      ? sql`ts DESC, lengthUTF8(trade_id) DESC, trade_id DESC`
      : sql`ts ASC, lengthUTF8(trade_id) ASC, trade_id ASC`;
    // LIMIT 1 BY the key removes copies not merged yet (they are the same trade, so any one will do).
    const rows = await this.ch.query<{
      exchange: string;
      symbol: string;
      ts: U64;
      localTs: U64;
      id: string;
      price: number;
      amount: number;
      side: 'buy' | 'sell';
    }>(
      sql`SELECT exchange, symbol, ts, local_ts AS localTs, trade_id AS id, price, amount, side
          FROM trades WHERE ${joinSql(where, ' AND ')}
          ORDER BY ${order} LIMIT 1 BY ts, trade_id LIMIT ${q.limit}`,
    );
    return rows.map((r) => ({
      type: 'trade',
      exchange: r.exchange,
      symbol: r.symbol,
      ts: num(r.ts),
      localTs: num(r.localTs),
      id: r.id,
      price: r.price,
      amount: r.amount,
      side: r.side,
    }));
  }

  async candles(q: CandleQuery): Promise<readonly StoredCandle[]> {
    const size = timeframeMs(q.timeframe);
    const rollup = rollupSource(size, timeframeOffsetMs(q.timeframe));
    await this.refreshPending(
      q,
      q.since === undefined ? undefined : bucketStart(q.since, q.timeframe),
      q.until === undefined ? undefined : bucketStart(q.until - 1, q.timeframe) + size,
    );
    if (!q.newestFirst || q.since !== undefined) return this.readCandles(q, q.since, rollup);
    // Newest N without a lower bound: ClickHouse 18.16 cannot stop an ORDER BY ts DESC LIMIT
    // early, so it would aggregate the market's whole history. Bound the scan to a window ending
    // at the newest day (from the daily rollups: a few hundred rows a year) and widen it only
    // when gaps leave it short, as MarketQueryService.readNewest does.
    const [range] = await this.ch.query<{ lo: U64; hi: U64; days: U64 }>(
      sql`SELECT min(ts) AS lo, max(ts) AS hi, count() AS days FROM candle_rollups
          WHERE exchange = ${q.exchange} AND symbol = ${q.symbol} AND timeframe = '1d'`,
    );
    if (!range || num(range.days) === 0) return this.readCandles(q, undefined, rollup);
    const oldest = num(range.lo);
    // the newest minute is in the day `hi`; the window reaches `span` back from that day's start
    const anchor = Math.min(q.until ?? Infinity, num(range.hi) + DAY) - DAY;
    for (let span = q.limit * size; ; span *= 4) {
      const from = Math.max(0, anchor - span);
      const rows = await this.readCandles(q, from, rollup);
      if (rows.length >= q.limit || from <= oldest) return rows;
    }
  }

  private async readCandles(q: CandleQuery, since: number | undefined, rollup: '1h' | '1d' | null): Promise<readonly StoredCandle[]> {
    const size = timeframeMs(q.timeframe);
    const offset = timeframeOffsetMs(q.timeframe);
    const where: Sql[] = [sql`exchange = ${q.exchange}`, sql`symbol = ${q.symbol}`, sql`timeframe = ${rollup ?? '1m'}`];
    // Ranges are on open time; widen to whole buckets so no rolled-up candle is cut short.
    if (since !== undefined) where.push(sql`ts >= ${bucketStart(since, q.timeframe)}`);
    if (q.until !== undefined) where.push(sql`ts < ${bucketStart(q.until - 1, q.timeframe) + size}`);
    const dir = q.newestFirst ? sql`DESC` : sql`ASC`;
    let statement: Sql;
    if (rollup) {
      // the newest version of each stored hour or day (rows of one key merge at an unknown time)
      const stored = sql`SELECT ts, argMax(open, version) AS open, argMax(high, version) AS high, argMax(low, version) AS low,
                                argMax(close, version) AS close, argMax(volume, version) AS volume,
                                argMax(trades, version) AS trades, argMax(source, version) AS source,
                                argMax(minutes, version) AS minutes
                         FROM candle_rollups WHERE ${joinSql(where, ' AND ')} GROUP BY ts`;
      // minutes 0: a row from before minutes were counted (0004); the bucket is then not counted
      statement =
        rollup === q.timeframe
          ? sql`SELECT ts, open, high, low, close, toString(volume) AS volume, trades, toString(source) AS source, minutes
                FROM (${stored}) ORDER BY ts ${dir} LIMIT ${q.limit}`
          : sql`SELECT intDiv(toInt64(ts) + ${offset}, ${size}) * ${size} - ${offset} AS bucket,
                       argMin(open, ts) AS open, max(high) AS high, min(low) AS low, argMax(close, ts) AS close,
                       toString(sum(volume)) AS volume, sum(trades) AS trades,
                       if(uniqExact(source) > 1, 'mixed', toString(any(source))) AS source,
                       if(min(minutes) = 0, 0, sum(minutes)) AS minutes
                FROM (${stored}) GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${q.limit}`;
    } else {
      // 1) the newest version of each (minute, source); 2) one source per minute, collected trades
      // first, the exchange's candle otherwise, never a blend; 3) roll minutes up into buckets.
      statement = sql`SELECT bucket AS ts, argMin(open, t) AS open, max(high) AS high, min(low) AS low, argMax(close, t) AS close,
                 toString(sum(volume)) AS volume, sum(trades) AS trades,
                 if(uniqExact(source) > 1, 'mixed', toString(any(source))) AS source, count() AS minutes
          FROM (
            SELECT t, intDiv(toInt64(t) + ${offset}, ${size}) * ${size} - ${offset} AS bucket,
                   argMax(source, pick) AS source, argMax(open, pick) AS open, argMax(high, pick) AS high,
                   argMax(low, pick) AS low, argMax(close, pick) AS close, argMax(volume, pick) AS volume,
                   argMax(trades, pick) AS trades
            FROM (
              SELECT ts AS t, source, source = 'trades' AS pick,
                     argMax(open, version) AS open, argMax(high, version) AS high, argMax(low, version) AS low,
                     argMax(close, version) AS close, argMax(volume, version) AS volume,
                     argMax(trades, version) AS trades
              FROM candles WHERE ${joinSql(where, ' AND ')}
              GROUP BY ts, source
            )
            GROUP BY t
          )
          GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${q.limit}`;
    }
    const rows = await this.ch.query<{
      ts?: U64;
      bucket?: U64;
      open: number;
      high: number;
      low: number;
      close: number;
      volume: string;
      trades: U64;
      source: StoredCandle['source'];
      minutes: U64;
    }>(statement);
    return rows.map((r) => ({
      exchange: q.exchange,
      symbol: q.symbol,
      timeframe: q.timeframe,
      ts: num((r.ts ?? r.bucket)!),
      open: r.open,
      high: r.high,
      low: r.low,
      close: r.close,
      volume: Number(r.volume),
      trades: num(r.trades),
      source: r.source,
      minutes: num(r.minutes) || null,
    }));
  }

  async candleMinutes(q: CandleMinutesQuery): Promise<readonly BucketMinutes[]> {
    const size = timeframeMs(q.timeframe);
    const offset = timeframeOffsetMs(q.timeframe);
    await this.refreshPending(q, q.since, q.until);
    // uniqExact(ts): a minute held from both sources, or in several unmerged versions, is one minute
    const rows = await this.ch.query<{ bucket: U64; minutes: U64 }>(
      sql`SELECT intDiv(toInt64(ts) + ${offset}, ${size}) * ${size} - ${offset} AS bucket, uniqExact(ts) AS minutes
          FROM candles
          WHERE exchange = ${q.exchange} AND symbol = ${q.symbol} AND timeframe = '1m' AND ts >= ${q.since} AND ts < ${q.until}
          GROUP BY bucket ORDER BY bucket`,
    );
    return rows.map((r) => ({ ts: num(r.bucket), minutes: num(r.minutes) }));
  }

  async close(): Promise<void> {
    await this.ch.close();
  }

  /**
   * Rebuilds the minutes of [since, until) a writer in 'refresher' mode marked after the
   * refresher's watermark, so a read never shows a candle its stored trades contradict, however
   * far behind the refresher is. One small query when nothing is pending (marks exist only from
   * such writers, and the refresher drops them once refreshed); the rebuild needs INSERT rights.
   */
  private async refreshPending(
    market: { readonly exchange: string; readonly symbol: string },
    since: number | undefined,
    until: number | undefined,
  ): Promise<void> {
    const minutes = await pendingMinutes(this.ch, market, since, until);
    if (minutes.length) await rebuildMinutes(this.ch, [{ exchange: market.exchange, symbol: market.symbol, minutes }]);
  }

  /** Strictly increasing write time in µs: the newest streamed version of a candle wins. */
  private nextVersion(): number {
    this.lastVersion = Math.max(Date.now() * 1000, this.lastVersion + 1);
    return this.lastVersion;
  }
}

/** The columns of `trades` the writer fills, in the order encodeTrades writes them. */
export const TRADE_COLUMNS = ['exchange', 'symbol', 'ts', 'trade_id', 'price', 'amount', 'side', 'local_ts', 'amount_dec'] as const;
const SIDE_ENUM: Readonly<Record<Trade['side'], number>> = { buy: 1, sell: 2 }; // Enum8('buy' = 1, 'sell' = 2)

/** The RowBinary body of `INSERT INTO trades (TRADE_COLUMNS)` for these trades (floats bit-exact, amount_dec as Postgres' numeric). */
export function encodeTrades(trades: readonly Trade[]): Uint8Array {
  const w = new RowBinaryWriter(trades.length * 96);
  for (const t of trades) {
    w.string(t.exchange)
      .string(t.symbol)
      .uint64(t.ts)
      .string(t.id)
      .float64(t.price)
      .float64(t.amount)
      .int8(SIDE_ENUM[t.side])
      .uint64(t.localTs)
      .decimal128(decimalText(t.amount));
  }
  return w.bytes();
}

function tickerRow(t: Ticker) {
  return {
    exchange: t.exchange,
    symbol: t.symbol,
    ts: t.ts,
    local_ts: t.localTs,
    bid: nullableFloat64Hex(t.bid),
    bid_size: nullableFloat64Hex(t.bidSize),
    ask: nullableFloat64Hex(t.ask),
    ask_size: nullableFloat64Hex(t.askSize),
    last: nullableFloat64Hex(t.last),
    open_24h: nullableFloat64Hex(t.open24h),
    high_24h: nullableFloat64Hex(t.high24h),
    low_24h: nullableFloat64Hex(t.low24h),
    base_volume_24h: nullableFloat64Hex(t.baseVolume24h),
    quote_volume_24h: nullableFloat64Hex(t.quoteVolume24h),
    change_24h_pct: nullableFloat64Hex(t.change24hPct),
  };
}

function bookRow(b: OrderBook) {
  const levels = (side: OrderBook['bids']) => side.map(([price, amount]) => [float64Hex(price), float64Hex(amount)]);
  return {
    exchange: b.exchange,
    symbol: b.symbol,
    ts: b.ts,
    local_ts: b.localTs,
    seq: b.seq,
    depth: b.depth,
    bids: levels(b.bids),
    asks: levels(b.asks),
    health: b.health ?? 'unverified',
  };
}

/** `seq` -1: the exchange gave none (a sorting key column cannot be Nullable; see 0005). */
const NO_SEQ = -1;

const QUOTE_COLUMNS = trustedSql(
  'exchange, symbol, ts, local_ts AS localTs, seq, bid, bid_size AS bidSize, ask, ask_size AS askSize, toString(health) AS health',
);

interface QuoteRow {
  exchange: string;
  symbol: string;
  ts: U64;
  localTs: U64;
  seq: U64;
  bid: number;
  bidSize: number;
  ask: number;
  askSize: number;
  health: string;
}

function quoteOf(r: QuoteRow): Quote {
  const seq = num(r.seq);
  return {
    type: 'quote',
    exchange: r.exchange,
    symbol: r.symbol,
    ts: num(r.ts),
    localTs: num(r.localTs),
    bid: r.bid,
    bidSize: r.bidSize,
    ask: r.ask,
    askSize: r.askSize,
    seq: seq === NO_SEQ ? null : seq,
    health: BookHealthSchema.catch('unverified').parse(r.health),
  };
}

function quoteRow(q: Quote) {
  return {
    exchange: q.exchange,
    symbol: q.symbol,
    ts: q.ts,
    local_ts: q.localTs,
    seq: q.seq,
    bid: float64Hex(q.bid),
    bid_size: float64Hex(q.bidSize),
    ask: float64Hex(q.ask),
    ask_size: float64Hex(q.askSize),
    health: q.health ?? 'unverified',
  };
}

/** The exchange revises a forming candle: the last version of a key in the batch wins. */
function latestCandleVersions(candles: readonly Candle[]): Candle[] {
  const latest = new Map<string, Candle>();
  for (const c of candles) latest.set(`${c.exchange}|${c.symbol}|${c.timeframe}|${c.ts}|${c.source}`, c);
  return [...latest.values()];
}

function candleRow(c: Candle, version: number) {
  return {
    exchange: c.exchange,
    symbol: c.symbol,
    timeframe: c.timeframe,
    ts: c.ts,
    source: c.source,
    open: float64Hex(c.open),
    high: float64Hex(c.high),
    low: float64Hex(c.low),
    close: float64Hex(c.close),
    volume: decimalText(c.volume),
    trades: 0,
    version,
  };
}

function feedRows(events: readonly MarketEvent[]) {
  const feeds = new Map<
    string,
    { exchange: string; symbol: string; channel: Channel; first_ts: number; last_ts: number; last_local_ts: number; events: number }
  >();
  for (const e of events) {
    const channel = CHANNEL_OF[e.type];
    const key = `${e.exchange}|${e.symbol}|${channel}`;
    const localTs = e.type === 'candle' ? e.ts : e.localTs;
    const f = feeds.get(key);
    if (!f) {
      feeds.set(key, { exchange: e.exchange, symbol: e.symbol, channel, first_ts: e.ts, last_ts: e.ts, last_local_ts: localTs, events: 1 });
    } else {
      f.first_ts = Math.min(f.first_ts, e.ts);
      f.last_ts = Math.max(f.last_ts, e.ts);
      f.last_local_ts = Math.max(f.last_local_ts, localTs);
      f.events += 1;
    }
  }
  return [...feeds.values()];
}
