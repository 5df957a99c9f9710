import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { Trade } from '../../layers/shared/src/domain/index.js';
import type { Clock } from '../../layers/shared/src/ports/index.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { RoutedMarketReader } from '../../layers/shared/src/query/routed-market-reader.js';
import { T0, trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Two real stores play the recent store (holding only its retention window) and the history
 * store (holding everything); a third holding everything is the answer key.
 */
describe('RoutedMarketReader', () => {
  const now = T0 + 10 * DAY;
  const clock: Clock = { now: () => now };
  const retention = { ticksMs: 2 * DAY, candlesMs: 3 * DAY };
  let dbs: TestDatabase[];
  let recent: PostgresMarketStore;
  let history: PostgresMarketStore;
  let all: PostgresMarketStore;
  let routed: RoutedMarketReader;

  beforeAll(async () => {
    dbs = await Promise.all([0, 1, 2].map(() => createTestDatabase('pglite')));
    [recent, history, all] = dbs.map((d) => new PostgresMarketStore(d.db)) as [PostgresMarketStore, PostgresMarketStore, PostgresMarketStore];
    // one trade every 3 hours over 10 days
    const trades: Trade[] = Array.from({ length: 80 }, (_, i) =>
      trade({ id: String(1000 + i), ts: T0 + i * 3 * HOUR + 17_000, price: 100 + (i % 7), amount: 1 + (i % 3) }),
    );
    await history.writeEvents(trades);
    await all.writeEvents(trades);
    // the recent store has dropped what is older than its windows (candles kept longer than ticks)
    await recent.writeEvents(trades.filter((t) => t.ts >= now - retention.candlesMs));
    await dbs[0]!.db.query('DELETE FROM trades WHERE ts < ms_to_ts($1::bigint)', [now - retention.ticksMs]);
    routed = new RoutedMarketReader(recent, history, clock, retention);
  });
  afterAll(async () => {
    for (const d of dbs) await d.dispose();
  });

  const q = { exchange: 'binance', symbol: 'BTC/USDT' } as const;

  it('stitches a trade range across the handover, both directions, without gaps or repeats', async () => {
    const expected = await all.trades({ ...q, limit: 1000 });
    expect((await routed.trades({ ...q, limit: 1000 })).map((t) => t.id)).toEqual(expected.map((t) => t.id));
    const newest = await all.trades({ ...q, limit: 1000, newestFirst: true });
    expect((await routed.trades({ ...q, limit: 1000, newestFirst: true })).map((t) => t.id)).toEqual(newest.map((t) => t.id));
    // the recent store alone would miss the old part
    expect((await recent.trades({ ...q, limit: 1000 })).length).toBeLessThan(expected.length);
  });

  it('pages with limits and cursors across the handover exactly as one store would', async () => {
    const pageSize = 7;
    const collect = async (reader: { trades: typeof all.trades }, newestFirst: boolean) => {
      const ids: string[] = [];
      let after: { ts: number; id: string } | undefined;
      for (;;) {
        const page = await reader.trades({ ...q, limit: pageSize, newestFirst, ...(after && { after }) });
        ids.push(...page.map((t) => t.id));
        if (page.length < pageSize) return ids;
        const last = page.at(-1)!;
        after = { ts: last.ts, id: last.id };
      }
    };
    for (const newestFirst of [false, true]) {
      expect(await collect(routed, newestFirst)).toEqual(await collect(all, newestFirst));
    }
  });

  it('reads only the store that holds a range that lies on one side', async () => {
    const old = await routed.trades({ ...q, since: T0, until: T0 + DAY, limit: 100 });
    expect(old.map((t) => t.id)).toEqual((await history.trades({ ...q, since: T0, until: T0 + DAY, limit: 100 })).map((t) => t.id));
    const fresh = await routed.trades({ ...q, since: now - DAY, limit: 100 });
    expect(fresh.length).toBeGreaterThan(0);
    expect(fresh.map((t) => t.id)).toEqual((await all.trades({ ...q, since: now - DAY, limit: 100 })).map((t) => t.id));
  });

  it('returns the same candles as one store for every timeframe, whole buckets on each side', async () => {
    for (const timeframe of ['1m', '1h', '4h', '1d'] as const) {
      for (const newestFirst of [false, true]) {
        const got = await routed.candles({ ...q, timeframe, limit: 1000, newestFirst });
        const want = await all.candles({ ...q, timeframe, limit: 1000, newestFirst });
        expect(got, `${timeframe} newestFirst=${newestFirst}`).toEqual(want);
      }
    }
    const limited = await routed.candles({ ...q, timeframe: '1d', limit: 3, newestFirst: true });
    expect(limited).toEqual(await all.candles({ ...q, timeframe: '1d', limit: 3, newestFirst: true }));
  });

  it('merges feed coverage of both stores', async () => {
    const [feed] = (await routed.listFeeds()).filter((f) => f.channel === 'trades');
    const [truth] = (await all.listFeeds()).filter((f) => f.channel === 'trades');
    expect(feed).toMatchObject({ firstTs: truth!.firstTs, lastTs: truth!.lastTs });
  });
});

describe('trade stats (volume, VWAP) across the handover', () => {
  it('adds up the two stores exactly as one store would', async () => {
    const now = T0 + 10 * DAY;
    const dbs = await Promise.all([0, 1, 2].map(() => createTestDatabase('pglite')));
    const [recent, history, all] = dbs.map((d) => new PostgresMarketStore(d.db)) as [PostgresMarketStore, PostgresMarketStore, PostgresMarketStore];
    try {
      const trades = Array.from({ length: 40 }, (_, i) =>
        trade({ id: String(i), ts: T0 + i * 6 * HOUR, price: 100 + (i % 5) * 0.1, amount: 0.1 + (i % 4) * 0.1, side: i % 3 ? 'buy' : 'sell' }),
      );
      await history.writeEvents(trades);
      await all.writeEvents(trades);
      await recent.writeEvents(trades.filter((t) => t.ts >= now - 2 * DAY));
      const routed = new RoutedMarketReader(recent, history, { now: () => now }, { ticksMs: 2 * DAY, candlesMs: 2 * DAY });
      const range = { exchange: 'binance', symbol: 'BTC/USDT', since: T0, until: now };
      const want = await all.tradeStats(range);
      const got = await routed.tradeStats(range);
      expect(got.trades).toBe(40);
      expect(got).toMatchObject({ trades: want.trades, firstTs: want.firstTs, lastTs: want.lastTs });
      for (const k of ['volume', 'buyVolume', 'sellVolume', 'quoteVolume'] as const) expect(got[k]).toBeCloseTo(want[k], 9);
      const expectedVolume = trades.reduce((v, t) => v + t.amount, 0);
      expect(want.volume).toBeCloseTo(expectedVolume, 12);
      expect(want.buyVolume + want.sellVolume).toBeCloseTo(want.volume, 12);
      const query = new MarketQueryService(routed, { now: () => now });
      const view = await query.getTradeStats(range);
      expect(view.vwap).toBeCloseTo(want.quoteVolume / want.volume, 12);
      expect(view.vwap).toBeGreaterThan(100);
      expect(view.vwap).toBeLessThan(100.5);
      await expect(query.getTradeStats({ ...range, since: now, until: now })).rejects.toThrow(/since must be before until/);
      const empty = await routed.tradeStats({ ...range, since: now + 1, until: now + 2 });
      expect(empty).toMatchObject({ trades: 0, volume: 0, firstTs: null, lastTs: null });
    } finally {
      for (const d of dbs) await d.dispose();
    }
  });
});
