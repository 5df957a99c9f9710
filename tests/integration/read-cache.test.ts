import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import type { LedgerReader } from '../../layers/shared/src/ports/index.js';
import { cacheFeeds, cacheLedger } from '../../layers/shared/src/query/read-cache.js';
import { MarketQueryService, UnknownMarketError } from '../../layers/shared/src/query/market-query.js';
import { T0, trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

describe('cacheFeeds', () => {
  let db: TestDatabase;
  let store: PostgresMarketStore;
  let reads = 0;
  let failNext = false;
  let now = T0;
  let cached: PostgresMarketStore;

  beforeAll(async () => {
    db = await createTestDatabase('pglite');
    store = new PostgresMarketStore(db.db);
    await store.writeEvents([trade({ id: '1', ts: T0 - 1_000 })]);
    // count the reads that reach the store (and fail one on demand)
    const listFeeds = store.listFeeds.bind(store);
    store.listFeeds = () => {
      reads += 1;
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('database went away'));
      }
      return listFeeds();
    };
    cached = cacheFeeds(store, { now: () => now }, 1_000);
  });
  afterAll(() => db.dispose());

  it('reads the feeds once per ttl, shares a read in flight, and passes every other method through', async () => {
    reads = 0;
    now += 10_000;
    const [a, b] = await Promise.all([cached.listFeeds(), cached.listFeeds()]);
    expect(a).toBe(b);
    expect(reads).toBe(1);
    now += 999;
    await cached.listFeeds();
    expect(reads).toBe(1);
    // a market written meanwhile shows up once the ttl has passed
    await store.writeEvents([trade({ id: '2', symbol: 'ETH/USDT', ts: T0 })]);
    expect((await cached.listFeeds()).some((f) => f.symbol === 'ETH/USDT')).toBe(false);
    now += 1;
    expect((await cached.listFeeds()).some((f) => f.symbol === 'ETH/USDT')).toBe(true);
    expect(reads).toBe(2);
    const trades = await cached.trades({ exchange: 'binance', symbol: 'ETH/USDT', since: T0 - 1, until: T0 + 1, limit: 10 });
    expect(trades.map((t) => t.id)).toEqual(['2']);
  });

  it('does not keep a failed read', async () => {
    now += 10_000;
    reads = 0;
    failNext = true;
    await expect(cached.listFeeds()).rejects.toThrow('database went away');
    expect(await cached.listFeeds()).not.toHaveLength(0);
    expect(reads).toBe(2);
  });

  it('serves the query service: an unknown market is still refused, a known one answered', async () => {
    const query = new MarketQueryService(cached, { now: () => now });
    await expect(query.getTrades({ exchange: 'binance', symbol: 'XRP/USDT', limit: 5 })).rejects.toBeInstanceOf(UnknownMarketError);
    expect((await query.getTrades({ exchange: 'binance', symbol: 'BTC/USDT', limit: 5 })).trades).toHaveLength(1);
  });
});

describe('cacheLedger', () => {
  it('reuses an answer per query for the ttl, drops failures, and stays bounded', async () => {
    const db = await createTestDatabase('pglite');
    try {
      const ledgerStore = new PostgresLedgerStore(db.db);
      let now = T0;
      let reads = 0;
      let fail = false;
      const counting: LedgerReader = {
        feedHealth: (q) => ledgerStore.feedHealth(q),
        gaps: (q) => {
          reads += 1;
          return fail ? Promise.reject(new Error('ledger down')) : ledgerStore.gaps(q);
        },
      };
      const ledger = cacheLedger(counting, { now: () => now }, 1_000, 2);
      const q = { exchange: 'binance', symbol: 'BTC/USDT', since: T0 - 60_000, limit: 10 };
      await Promise.all([ledger.gaps(q), ledger.gaps(q)]);
      expect(reads).toBe(1);
      // another query is another entry
      await ledger.gaps({ ...q, symbol: 'ETH/USDT' });
      expect(reads).toBe(2);
      now += 1_000;
      fail = true;
      await expect(ledger.gaps(q)).rejects.toThrow('ledger down');
      fail = false;
      await ledger.gaps(q);
      expect(reads).toBe(4);
      // bounded at 2 entries: a third query pushes the oldest out
      await ledger.gaps({ ...q, symbol: 'SOL/USDT' });
      await ledger.gaps({ ...q, symbol: 'ETH/USDT' });
      expect(reads).toBe(6);
    } finally {
      await db.dispose();
    }
  });
});
