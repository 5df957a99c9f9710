import type { OrderBook, Quote, Ticker, Trade } from '../domain/index.js';
import { bucketStart, timeframeMs } from '../domain/index.js';
import { PlatformError } from '../domain/errors.js';
import type {
  BucketMinutes,
  CandleMinutesQuery,
  CandleQuery,
  Clock,
  FeedCoverage,
  MarketReader,
  QuoteQuery,
  StoredCandle,
  TradeQuery,
  TradeStats,
  TradeStatsQuery,
} from '../ports/index.js';

/** A store behind the router cannot count candle minutes. */
export class MinuteCountUnsupportedError extends PlatformError {}

export interface RetentionWindows {
  /** how long the recent store keeps trades, tickers, books and quotes */
  readonly ticksMs: number;
  /** how long the recent store keeps 1m candles */
  readonly candlesMs: number;
}

export const DEFAULT_RETENTION: RetentionWindows = { ticksMs: 7 * 86_400_000, candlesMs: 30 * 86_400_000 };

/**
 * One read API over two stores: the recent one (TimescaleDB/Postgres, kept for `retention`) and the
 * history one (ClickHouse, which holds everything). A range newer than the handover is read from
 * the recent store, an older one from history, and a range across it is stitched at the handover.
 */
export class RoutedMarketReader implements MarketReader {
  constructor(
    private readonly recent: MarketReader,
    private readonly history: MarketReader,
    private readonly clock: Clock,
    private readonly retention: RetentionWindows = DEFAULT_RETENTION,
  ) {}

  /** First instant the recent store still holds completely, for ticks or candles. */
  handover(kind: 'ticks' | 'candles'): number {
    return this.clock.now() - (kind === 'ticks' ? this.retention.ticksMs : this.retention.candlesMs);
  }

  async listFeeds(): Promise<readonly FeedCoverage[]> {
    const [recent, history] = await Promise.all([this.recent.listFeeds(), this.history.listFeeds()]);
    const merged = new Map<string, FeedCoverage>();
    for (const f of [...history, ...recent]) {
      const key = `${f.exchange}|${f.symbol}|${f.channel}`;
      const seen = merged.get(key);
      merged.set(
        key,
        seen
          ? {
              ...f,
              firstTs: Math.min(seen.firstTs, f.firstTs),
              lastTs: Math.max(seen.lastTs, f.lastTs),
              lastLocalTs: Math.max(seen.lastLocalTs, f.lastLocalTs),
              // both stores receive every event; the larger count is the one that saw them all
              events: Math.max(seen.events, f.events),
            }
          : f,
      );
    }
    return [...merged.values()].sort(
      (a, b) => a.exchange.localeCompare(b.exchange) || a.symbol.localeCompare(b.symbol) || a.channel.localeCompare(b.channel),
    );
  }

  async latestTicker(exchange: string, symbol: string): Promise<Ticker | null> {
    return (await this.recent.latestTicker(exchange, symbol)) ?? this.history.latestTicker(exchange, symbol);
  }

  async latestBook(exchange: string, symbol: string): Promise<OrderBook | null> {
    return (await this.recent.latestBook(exchange, symbol)) ?? this.history.latestBook(exchange, symbol);
  }

  async latestQuote(exchange: string, symbol: string): Promise<Quote | null> {
    return (await this.recent.latestQuote(exchange, symbol)) ?? this.history.latestQuote(exchange, symbol);
  }

  async quotes(q: QuoteQuery): Promise<readonly Quote[]> {
    const handover = this.handover('ticks');
    if ((q.since ?? -Infinity) >= handover) return this.recent.quotes(q);
    if ((q.until ?? Infinity) <= handover) return this.history.quotes(q);
    const older: QuoteQuery = { ...q, until: Math.min(q.until ?? Infinity, handover) };
    const newer: QuoteQuery = { ...q, since: Math.max(q.since ?? -Infinity, handover) };
    const read = (store: MarketReader, r: QuoteQuery) => store.quotes(r);
    return q.newestFirst
      ? stitch(read, [this.recent, newer], [this.history, older], q.limit)
      : stitch(read, [this.history, older], [this.recent, newer], q.limit);
  }

  async trades(q: TradeQuery): Promise<readonly Trade[]> {
    const handover = this.handover('ticks');
    const since = Math.max(q.since ?? -Infinity, q.after && !q.newestFirst ? q.after.ts : -Infinity);
    const until = Math.min(q.until ?? Infinity, q.after && q.newestFirst ? q.after.ts + 1 : Infinity);
    if (since >= handover) return this.recent.trades(q);
    if (until <= handover) return this.history.trades(q);
    const older: TradeQuery = { ...q, until: Math.min(q.until ?? Infinity, handover) };
    const newer: TradeQuery = { ...q, since: Math.max(q.since ?? -Infinity, handover) };
    const read = (store: MarketReader, r: TradeQuery) => store.trades(r);
    return q.newestFirst
      ? stitch(read, [this.recent, newer], [this.history, older], q.limit)
      : stitch(read, [this.history, older], [this.recent, newer], q.limit);
  }

  async tradeStats(q: TradeStatsQuery): Promise<TradeStats> {
    const handover = this.handover('ticks');
    if (q.since >= handover) return this.recent.tradeStats(q);
    if (q.until <= handover) return this.history.tradeStats(q);
    const [older, newer] = await Promise.all([
      this.history.tradeStats({ ...q, until: handover }),
      this.recent.tradeStats({ ...q, since: handover }),
    ]);
    const edge = (a: number | null, b: number | null, pick: (x: number, y: number) => number) =>
      a === null ? b : b === null ? a : pick(a, b);
    return {
      trades: older.trades + newer.trades,
      volume: older.volume + newer.volume,
      buyVolume: older.buyVolume + newer.buyVolume,
      sellVolume: older.sellVolume + newer.sellVolume,
      quoteVolume: older.quoteVolume + newer.quoteVolume,
      firstTs: edge(older.firstTs, newer.firstTs, Math.min),
      lastTs: edge(older.lastTs, newer.lastTs, Math.max),
    };
  }

  async candles(q: CandleQuery): Promise<readonly StoredCandle[]> {
    const size = timeframeMs(q.timeframe);
    // buckets opening at or after this one lie wholly inside the recent store's window
    const handover = bucketStart(this.handover('candles'), q.timeframe) + size;
    const since = q.since ?? -Infinity;
    const until = q.until ?? Infinity;
    if (since >= handover) return this.recent.candles(q);
    if (until <= handover) return this.history.candles(q);
    const older: CandleQuery = { ...q, until: Math.min(until, handover) };
    const newer: CandleQuery = { ...q, since: Math.max(since, handover) };
    const read = (store: MarketReader, r: CandleQuery) => store.candles(r);
    return q.newestFirst
      ? stitch(read, [this.recent, newer], [this.history, older], q.limit)
      : stitch(read, [this.history, older], [this.recent, newer], q.limit);
  }

  async candleMinutes(q: CandleMinutesQuery): Promise<readonly BucketMinutes[]> {
    // minutes from this one on lie wholly inside the recent store's window
    const handover = bucketStart(this.handover('candles'), '1m') + 60_000;
    if (q.since >= handover) return countMinutes(this.recent, q);
    if (q.until <= handover) return countMinutes(this.history, q);
    const [older, newer] = await Promise.all([
      countMinutes(this.history, { ...q, until: handover }),
      countMinutes(this.recent, { ...q, since: handover }),
    ]);
    // a bucket across the handover has minutes in both: they add up
    const sums = new Map<number, number>();
    for (const b of [...older, ...newer]) sums.set(b.ts, (sums.get(b.ts) ?? 0) + b.minutes);
    return [...sums.entries()].sort(([a], [b]) => a - b).map(([ts, minutes]) => ({ ts, minutes }));
  }
}

function countMinutes(store: MarketReader, q: CandleMinutesQuery): Promise<readonly BucketMinutes[]> {
  if (!store.candleMinutes) throw new MinuteCountUnsupportedError('a store behind the router cannot count candle minutes');
  return store.candleMinutes(q);
}

/** Reads the first part, then as much of the second as the limit leaves room for. */
async function stitch<Q extends { readonly limit: number }, R>(
  read: (store: MarketReader, q: Q) => Promise<readonly R[]>,
  first: readonly [MarketReader, Q],
  second: readonly [MarketReader, Q],
  limit: number,
): Promise<readonly R[]> {
  const head = await read(first[0], first[1]);
  if (head.length >= limit) return head;
  const tail = await read(second[0], { ...second[1], limit: limit - head.length });
  return [...head, ...tail];
}
