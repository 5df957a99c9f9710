import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { T0, trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

const MIN = 60_000;
const DAY = 1_440 * MIN;

describe('MarketQueryService.getCandles, latest N', () => {
  let db: TestDatabase;
  let store: PostgresMarketStore;
  let query: MarketQueryService;

  beforeAll(async () => {
    db = await createTestDatabase('pglite');
    store = new PostgresMarketStore(db.db);
    // 100 minutes of trades, a 10-day gap, then 5 more minutes
    const old = Array.from({ length: 100 }, (_, i) => trade({ id: `o${i}`, ts: T0 + i * MIN + 1 }));
    const recent = Array.from({ length: 5 }, (_, i) => trade({ id: `r${i}`, ts: T0 + 10 * DAY + i * MIN + 1 }));
    await store.writeEvents([...old, ...recent]);
    query = new MarketQueryService(store, { now: () => T0 + 10 * DAY + 6 * MIN });
  });
  afterAll(() => db.dispose());

  it('reaches back over gaps for the last N candles, as an unbounded read would', async () => {
    const page = await query.getCandles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 50 });
    const unbounded = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', newestFirst: true, limit: 50 });
    expect(page.candles).toHaveLength(50);
    expect(page.candles.map((c) => c.ts)).toEqual(unbounded.map((c) => c.ts).reverse());
    expect(page.candles.at(-1)!.ts).toBe(T0 + 10 * DAY + 4 * MIN);
    expect(page.candles[0]!.ts).toBe(T0 + 55 * MIN);
    expect(page.nextCursor).not.toBeNull();
    // the 10 days between are one range, not 14 000 flat candles; no ledger, so no claim of a quiet market
    // minute 5 after the gap has ended with no trade: after the newest data held
    expect(page.gaps).toEqual([
      { from: T0 + 100 * MIN, to: T0 + 10 * DAY, buckets: 10 * 1_440 - 100, reason: 'unverified' },
      { from: T0 + 10 * DAY + 5 * MIN, to: T0 + 10 * DAY + 6 * MIN, buckets: 1, reason: 'after_last_data' },
    ]);
    expect(page.window).toEqual({ from: T0 + 55 * MIN, to: T0 + 10 * DAY + 6 * MIN });
    expect(page.missingBuckets).toBe(10 * 1_440 - 100 + 1);
  });

  it('returns everything there is when N exceeds the history', async () => {
    const page = await query.getCandles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h', limit: 1000 });
    const all = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h', limit: 1000 });
    expect(page.candles.map((c) => c.ts)).toEqual(all.map((c) => c.ts));
    expect(page.nextCursor).toBeNull();
  });
});
