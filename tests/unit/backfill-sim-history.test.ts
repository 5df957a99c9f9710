/** The simulator's synthetic history (what backfills page through) and its REST rate limits. */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { SimulatedMarket, type MarketOptions, type PrintedTrade } from '../../local/sim/market.js';
import { FixedWindowLimiter } from '../../local/sim/rate-limits.js';

const BTC = 'BTC/USDT';
const MINUTE = 60_000;
const T = Date.UTC(2024, 2, 1);

const markets: SimulatedMarket[] = [];
afterEach(() => {
  for (const m of markets.splice(0)) m.close();
});

function market(now: number, options: MarketOptions = {}): SimulatedMarket {
  const m = new SimulatedMarket({ autoRun: false, seed: 42, symbols: [BTC], clock: { now: () => now }, history: true, ...options });
  markets.push(m);
  return m;
}

const view = (t: PrintedTrade) => [t.id, t.ts, t.priceString, t.amountString, t.side];

/** OHLCV of `trades` as the exchange prints it. */
function ohlcv(trades: readonly PrintedTrade[]) {
  return {
    open: trades[0]!.priceString,
    high: trades.reduce((a, b) => (b.price > a.price ? b : a)).priceString,
    low: trades.reduce((a, b) => (b.price < a.price ? b : a)).priceString,
    close: trades.at(-1)!.priceString,
    count: trades.length,
    firstId: trades[0]!.id,
    lastId: trades.at(-1)!.id,
  };
}

describe('simulator history', () => {
  it('is the same for the same seed however late the simulator starts, and differs for another seed', () => {
    const early = market(Date.UTC(2025, 0, 1));
    const late = market(Date.UTC(2025, 5, 1, 13, 7));
    const other = market(Date.UTC(2025, 0, 1), { seed: 43 });
    const trades = early.tradesBetween(BTC, T, T + 10 * MINUTE - 1, 1000);
    expect(trades).toHaveLength(60); // one trade per 10 s
    expect(late.tradesBetween(BTC, T, T + 10 * MINUTE - 1, 1000).map(view)).toEqual(trades.map(view));
    expect(late.tradeIdAtOrAfter(BTC, T + 12_345)).toBe(early.tradeIdAtOrAfter(BTC, T + 12_345));
    expect(late.klines(BTC, '1h', { startTime: T, limit: 3 })).toEqual(early.klines(BTC, '1h', { startTime: T, limit: 3 }));
    const otherTrades = other.tradesBetween(BTC, T, T + 10 * MINUTE - 1, 1000);
    expect(otherTrades.map((t) => t.id)).toEqual(trades.map((t) => t.id)); // ids are slots of time
    expect(otherTrades.map((t) => t.priceString)).not.toEqual(trades.map((t) => t.priceString));
  });

  it('numbers live trades on from the last history trade: one id space, times rising with ids', () => {
    const now = Date.UTC(2025, 0, 1, 0, 0, 7);
    const m = market(now);
    const { first, next } = m.tradeIds(BTC);
    expect(next).toBeGreaterThan(first);
    const lastHistory = m.tradeById(BTC, next - 1)!;
    expect(lastHistory.ts).toBeLessThan(now);
    expect(m.tradeById(BTC, next)).toBeUndefined();
    m.step(3);
    const live = m.printedTrades(BTC);
    expect(live[0]!.id).toBe(next);
    expect(live[0]!.ts).toBe(now);
    // the live price starts where the history ended
    expect(Math.abs(live[0]!.price / lastHistory.price - 1)).toBeLessThan(0.005);
    const across = m.tradesFromId(BTC, next - 2, 4);
    expect(across.map((t) => t.id)).toEqual([next - 2, next - 1, next, next + 1]);
    expect(across.map((t) => t.ts)).toEqual([...across.map((t) => t.ts)].sort((a, b) => a - b));
    expect(m.recentTrades(BTC, live.length + 2).map((t) => t.id)).toEqual([next - 2, next - 1, ...live.map((t) => t.id)]);
    // before the history begins there is nothing
    expect(m.tradeById(BTC, first - 1)).toBeUndefined();
    expect(m.tradeById(BTC, first)!.ts).toBeGreaterThanOrEqual(Date.UTC(2017, 0, 1));
  });

  it('builds klines of any length from the history trades, and the minute of the start from both', () => {
    const now = Date.UTC(2025, 0, 1, 0, 0, 31);
    const m = market(now);
    const minute = m.kline(BTC, '1m', T + 7 * MINUTE)!;
    expect(minute).toMatchObject(ohlcv(m.tradesBetween(BTC, T + 7 * MINUTE, T + 8 * MINUTE - 1, 100)));
    const hour = m.kline(BTC, '1h', T)!;
    const trades = m.tradesBetween(BTC, T, T + 60 * MINUTE - 1, 1000);
    expect(hour).toMatchObject(ohlcv(trades));
    const volume = trades.reduce((v, t) => v + Number(t.amountString) * 1e5, 0);
    expect(Math.round(Number(hour.volume) * 1e5)).toBe(Math.round(volume));
    // a day (whole hours from a cache) and a day starting mid-hour (partial hours trade by trade)
    for (const start of [T, T + 90 * MINUTE + 5_000]) {
      const dayTrades = m.tradesBetween(BTC, start, start + 1440 * MINUTE - 1, 10_000);
      expect(dayTrades).toHaveLength(8640);
      expect(m.klineAt(BTC, '1d', start)).toMatchObject(ohlcv(dayTrades));
    }
    // Binance paging: startTime/endTime/limit over the history
    expect(m.klines(BTC, '1m', { startTime: T + 1, endTime: T + 10 * MINUTE, limit: 5 }).map((k) => k.openTime)).toEqual(
      [1, 2, 3, 4, 5].map((i) => T + i * MINUTE),
    );
    m.step(2);
    const start = Math.floor(now / MINUTE) * MINUTE;
    expect(m.kline(BTC, '1m', start)).toMatchObject(ohlcv(m.tradesBetween(BTC, start, start + MINUTE - 1, 100)));
    expect(m.kline(BTC, '1m', start)!.count).toBe(3 + m.printedTrades(BTC).length); // 3 history trades in :00-:30
  });

  it('numbers aggregate trades apart from raw trades, each pointing at its raw id', () => {
    const m = market(Date.UTC(2025, 0, 1));
    const [agg] = m.queryAggregateTrades(BTC, { startTime: T + 1, limit: 1 });
    const raw = m.tradeById(BTC, m.tradeIdAtOrAfter(BTC, T + 1))!;
    expect(agg!.firstId).toBe(raw.id);
    expect(agg!.lastId).toBe(raw.id);
    expect(agg!.aggId).not.toBe(raw.id);
    expect(raw.aggId).toBe(agg!.aggId);
    expect(m.queryAggregateTrades(BTC, { fromId: agg!.aggId, limit: 3 }).map((a) => a.firstId)).toEqual([raw.id, raw.id + 1, raw.id + 2]);
  });

  it('ends before the warmup, is off by default and checks its options', () => {
    const now = Date.UTC(2025, 0, 1);
    const warm = market(now, { warmup: { orders: 10, spanMs: 10 * MINUTE } });
    const firstLive = warm.printedTrades(BTC)[0]!;
    expect(warm.tradeById(BTC, firstLive.id - 1)!.ts).toBeLessThan(now - 10 * MINUTE);
    const plain = market(now, { history: undefined });
    expect(plain.tradeIds(BTC)).toEqual({ first: 1_000_000_000, next: 1_000_000_000 });
    expect(plain.klines(BTC, '1m')).toEqual([]);
    expect(() => market(now, { history: { tradeIntervalMs: 7_000 } })).toThrow(ConfigError);
    expect(() => market(now, { history: { tradeIntervalMs: 7_000 } })).toThrow(/divides a minute/);
    const sparse = market(now, { history: { tradeIntervalMs: 60_000, from: Date.UTC(2024, 0, 1) } });
    expect(sparse.tradesBetween(BTC, T, T + 10 * MINUTE - 1, 100)).toHaveLength(10);
    expect(sparse.firstTradeTs(BTC)).toBeGreaterThanOrEqual(Date.UTC(2024, 0, 1));
    expect(sparse.firstTradeTs(BTC)).toBeLessThan(Date.UTC(2024, 0, 1, 0, 1));
  });
});

describe('simulator rate limiter', () => {
  it('counts weight per fixed window, refuses what would exceed it and says when the window ends', () => {
    let now = 1_000_000_500;
    const limiter = new FixedWindowLimiter(() => now);
    const budget = { key: 'REQUEST_WEIGHT', limit: 10, windowMs: 1000 };
    expect(limiter.take(budget, 6)).toEqual({ ok: true, used: 6 });
    expect(limiter.take(budget, 4)).toEqual({ ok: true, used: 10 });
    expect(limiter.take(budget, 1)).toEqual({ ok: false, used: 10, retryAfterMs: 500 });
    expect(limiter.take({ ...budget, key: 'other' }, 1)).toEqual({ ok: true, used: 1 }); // budgets are separate
    now += 500; // the next window
    expect(limiter.take(budget, 10)).toEqual({ ok: true, used: 10 });
    expect(limiter.rejected).toBe(1);
  });
});
