/**
 * Helpers of the end-to-end pipeline tests (simulator -> collector -> stream -> store writers ->
 * query API): polling with deadlines, driving the simulated market, fresh ClickHouse databases,
 * paging the query API to the end, and the answers the printed trades imply.
 */
import { CreateStreamCommand, DescribeStreamSummaryCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { expect } from 'vitest';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import { bucketStart, type Trade } from '../../layers/shared/src/domain/index.js';
import type { Logger } from '../../layers/shared/src/observability/logger.js';
import type { CandleQuery, Clock, MarketReader, StoredCandle, TradeQuery } from '../../layers/shared/src/ports/index.js';
import type { CandleView, MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import type { SimulatedExchange } from '../../local/sim/server.js';

export const EXCHANGE = 'binance';

/** A condition polled until it holds; the error names it and the last value seen. */
export class WaitTimeoutError extends Error {}

/**
 * Polls `probe` until `done(value)` holds, every `intervalMs`, for at most `timeoutMs`; resolves to
 * the value. On timeout it throws WaitTimeoutError with `what` and the last value (or error).
 */
export { createClickHouseTestDatabase, type TestClickHouse } from './clickhouse.js';

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T> | T,
  done: (value: T) => boolean,
  { timeoutMs = 20_000, intervalMs = 50 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: { value: T } | { error: unknown } | undefined;
  for (;;) {
    try {
      const value = await probe();
      last = { value };
      if (done(value)) return value;
    } catch (error) {
      last = { error };
    }
    if (Date.now() >= deadline) {
      const seen = last === undefined ? 'nothing' : 'value' in last ? JSON.stringify(last.value) : String(last.error);
      throw new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${seen}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A clock running with the wall clock at a settable offset (the simulator's exchange time). */
export class OffsetClock implements Clock {
  offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  /**
   * Sets the offset so that now() is `leadMs` before a minute boundary (in the past: exchange times
   * then lag receipt times, as they do), so a short run prints trades on both sides of it. Returns
   * the boundary (clock time).
   */
  leadMinuteBoundaryBy(leadMs: number): number {
    const wall = Date.now();
    const boundary = bucketStart(wall - 5_000, '1m');
    this.offset = boundary - leadMs - wall;
    return boundary;
  }
}

/** A fixed clock (query-side "now"). */
export function fixedClock(now: number): Clock {
  return { now: () => now };
}

/** Printed trades of every symbol now. */
export function printedCounts(sim: SimulatedExchange, symbols: readonly string[]): Record<string, number> {
  return Object.fromEntries(symbols.map((s) => [s, sim.printedTrades(s).length]));
}

/** Waits until every symbol printed at least `n` more trades than in `from` (the market must be running). */
export async function waitForPrinted(
  sim: SimulatedExchange,
  symbols: readonly string[],
  from: Record<string, number>,
  n: number,
  timeoutMs = 15_000,
): Promise<void> {
  await waitFor(
    `${n} more printed trades per symbol`,
    () => printedCounts(sim, symbols),
    (counts) => symbols.every((s) => counts[s]! >= from[s]! + n),
    { timeoutMs, intervalMs: 20 },
  );
}

/** Every printed trade of the symbols, in print order per symbol. */
export function allPrinted(sim: SimulatedExchange, symbols: readonly string[]): PrintedTrade[] {
  return symbols.flatMap((s) => [...sim.printedTrades(s)]);
}

// --- ClickHouse ---------------------------------------------------------------------------------

// --- Kinesis (kinesalite) ------------------------------------------------------------------------

/** Creates a stream and resolves once it is ACTIVE (kinesalite takes a moment, as Kinesis does). */
export async function createActiveStream(admin: KinesisClient, name: string, shards: number): Promise<void> {
  await admin.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
  await waitFor(
    `stream ${name} to be ACTIVE`,
    async () => (await admin.send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary?.StreamStatus,
    (status) => status === 'ACTIVE',
    { timeoutMs: 20_000 },
  );
}

// --- PostgreSQL ---------------------------------------------------------------------------------

/** Trade rows of the database, and how many distinct keys they hold. */
export async function postgresTradeCounts(db: SqlClient): Promise<{ rows: number; distinct: number }> {
  const { rows } = await db.query<{ rows: number; distinct: number }>(
    `SELECT count(*)::int AS rows, count(DISTINCT (exchange, symbol, ts, trade_id))::int AS distinct FROM trades`,
  );
  return rows[0]!;
}

// --- the query API ------------------------------------------------------------------------------

/** What a trade is compared by: everything the exchange printed. */
export type TradeTuple = readonly [id: string, ts: number, price: number, amount: number, side: string];

export function printedTuples(printed: readonly PrintedTrade[]): TradeTuple[] {
  return printed.map((t) => [String(t.id), t.ts, t.price, t.amount, t.side]);
}

export function storedTuples(trades: readonly Trade[]): TradeTuple[] {
  return trades.map((t) => [t.id, t.ts, t.price, t.amount, t.side]);
}

/**
 * Every trade of one market through get-trades, page by page to the end: 'forward' from `since: 0`
 * (each cursor continues newer), 'backward' from the newest (each cursor continues older). Oldest first.
 */
export async function pageAllTrades(
  service: MarketQueryService,
  symbol: string,
  direction: 'forward' | 'backward',
  pageSize: number,
): Promise<{ trades: Trade[]; pages: number }> {
  const pages: (readonly Trade[])[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page = await service.getTrades({
      exchange: EXCHANGE,
      symbol,
      limit: pageSize,
      ...(cursor ? { cursor } : direction === 'forward' ? { since: 0 } : {}),
    });
    expect(page.trades.length).toBeLessThanOrEqual(pageSize);
    pages.push(page.trades);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  const ordered = direction === 'forward' ? pages : [...pages].reverse();
  return { trades: ordered.flat(), pages: pages.length };
}

/** Every 1m candle of one market through get-candles (oldest first, one page). */
export async function allMinuteCandles(service: MarketQueryService, symbol: string): Promise<CandleView[]> {
  const page = await service.getCandles({ exchange: EXCHANGE, symbol, timeframe: '1m', since: 0, limit: 1_000 });
  expect(page.nextCursor).toBeNull();
  return [...page.candles];
}

/** What a candle is compared by (`closed` depends on the reader's clock and feeds, so it is left out). */
export function candleTuple(c: CandleView | StoredCandle) {
  return { ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, trades: c.trades, source: c.source };
}

/** The 1m candles the printed trades of one market imply (volume as the exact decimal sum). */
export function expectedMinuteCandles(printed: readonly PrintedTrade[]) {
  const byMinute = new Map<number, PrintedTrade[]>();
  for (const t of printed) {
    const m = bucketStart(t.ts, '1m');
    const list = byMinute.get(m) ?? [];
    list.push(t);
    byMinute.set(m, list);
  }
  return [...byMinute.entries()]
    .sort(([a], [b]) => a - b)
    .map(([ts, trades]) => ({
      ts,
      open: trades[0]!.price,
      high: Math.max(...trades.map((t) => t.price)),
      low: Math.min(...trades.map((t) => t.price)),
      close: trades.at(-1)!.price,
      volume: decimalSum(trades.map((t) => t.amountString)),
      trades: trades.length,
      source: 'trades' as const,
    }));
}

/** Sum of decimal strings, exactly, as a number. */
function decimalSum(values: readonly string[]): number {
  const scale = Math.max(0, ...values.map((v) => (v.split('.')[1] ?? '').length));
  const total = values.reduce((sum, v) => {
    const [int, frac = ''] = v.split('.');
    return sum + BigInt(`${int}${frac.padEnd(scale, '0')}`);
  }, 0n);
  const digits = total.toString().padStart(scale + 1, '0');
  return Number(scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits);
}

/**
 * `inner` with every call passed through, counting the trades and candles it answered (a proxy,
 * so whatever the MarketReader port gains later is passed through too).
 */
export function countingReader<R extends MarketReader>(inner: R): { reader: R; answered: { trades: number; candles: number } } {
  const answered = { trades: 0, candles: 0 };
  const reader = new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (prop === 'trades' || prop === 'candles') {
        return async (q: TradeQuery & CandleQuery) => {
          const rows = (await value.call(target, q)) as readonly unknown[];
          answered[prop] += rows.length;
          return rows;
        };
      }
      return value.bind(target);
    },
  });
  return { reader, answered };
}

/** A logger that keeps warnings and errors (for the report when a wait times out), printing nothing. */
export class RecordingLogger implements Logger {
  readonly lines: { level: 'warn' | 'error'; msg: string; fields?: Record<string, unknown> }[] = [];
  debug(): void {}
  info(): void {}
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: 'warn', msg, ...(fields && { fields }) });
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.lines.push({ level: 'error', msg, ...(fields && { fields }) });
  }
  child(): Logger {
    return this;
  }
  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }
}
