/**
 * Parity: the same deliveries (replays included) written to PGlite through PostgresMarketStore and
 * to ClickHouse through ClickHouseMarketStore must read back EQUAL: trades in every order and page,
 * candles of every rolled-up timeframe, with 'mixed' sources and Monday-aligned weeks.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
} from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { Candle, MarketEvent, Trade } from '../../layers/shared/src/domain/index.js';
import type { MarketReader, TradeQuery } from '../../layers/shared/src/ports/index.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { describeWithService } from '../support/services.js';
import { candle, trade } from '../fixtures/events.js';

/** Small seeded PRNG (mulberry32): the same events on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SUNDAY_NOON = Date.UTC(2026, 0, 4, 12);
/** trades span ten days from Sunday noon: a week boundary, 3d buckets, and hours without data */
const HOURS = 240;
const MARKETS = [
  { exchange: 'binance', symbol: 'BTC/USDT' },
  { exchange: 'okx', symbol: 'ETH/USDT:USDT' },
];

function deliveries(): MarketEvent[][] {
  const rand = prng(20260105);
  const batches: MarketEvent[][] = [];
  let n = 0;
  for (let b = 0; b < 12; b++) {
    const batch: MarketEvent[] = [];
    for (let i = 0; i < 150; i++) {
      const m = MARKETS[Math.floor(rand() * MARKETS.length)]!;
      // clustered times: several trades share a millisecond, so ids decide the order
      const ts = SUNDAY_NOON + Math.floor(rand() * HOURS) * 3_600_000 + Math.floor(rand() * 90) * 7_919 + (rand() < 0.3 ? 0 : Math.floor(rand() * 3));
      const id = rand() < 0.8 ? String(Math.floor(rand() * 10 ** (1 + Math.floor(rand() * 9)))) + String(n++) : `${(n++).toString(16)}f${Math.floor(rand() * 1e6).toString(16)}`;
      batch.push(
        trade({
          ...m,
          id,
          ts,
          localTs: ts + 3,
          price: Number((100 + rand() * 50).toFixed(2)),
          amount: Number((0.00000001 + rand() * 3).toFixed(8)),
          side: rand() < 0.5 ? 'buy' : 'sell',
        }),
      );
    }
    // exchange candles: some on minutes with trades (held, not blended), some alone ('mixed' rollups)
    for (let i = 0; i < 15; i++) {
      const m = MARKETS[Math.floor(rand() * MARKETS.length)]!;
      const ts = SUNDAY_NOON + Math.floor(rand() * HOURS * 60) * 60_000;
      const open = Number((100 + rand() * 50).toFixed(2));
      const c: Candle = candle({ ...m, ts, open, high: open + 1, low: open - 1, close: open + 0.5, volume: Number((rand() * 20).toFixed(8)) });
      batch.push(c);
    }
    batches.push(batch);
  }
  // at-least-once delivery: some batches arrive again, reversed, and one arrives twice more
  return [...batches, [...batches[3]!].reverse(), batches[7]!, batches[7]!];
}

describeWithService('clickhouse', 'ClickHouse and Postgres stores read the same', (url) => {
  const database = `qicore_t_${randomBytes(6).toString('hex')}`;
  let pg: TestDatabase;
  let postgres: PostgresMarketStore;
  let clickhouse: ClickHouseMarketStore;

  beforeAll(async () => {
    pg = await createTestDatabase('pglite');
    postgres = new PostgresMarketStore(pg.db);
    await createClickHouseDatabase(url, database);
    const ch = openClickHouse(url, { database });
    await runClickHouseMigrations(ch);
    clickhouse = new ClickHouseMarketStore(ch);
    for (const batch of deliveries()) {
      await postgres.writeEvents(batch);
      await clickhouse.writeEvents(batch);
    }
  });
  afterAll(async () => {
    await pg?.dispose();
    await clickhouse?.close();
    await dropClickHouseDatabase(url, database);
  });

  /** Every page of a query, following the keyset cursor. */
  async function allPages(store: MarketReader, q: Omit<TradeQuery, 'limit' | 'after'>, limit: number): Promise<Trade[]> {
    const out: Trade[] = [];
    for (;;) {
      const last = out.at(-1);
      const page = await store.trades({ ...q, limit, ...(last ? { after: { ts: last.ts, id: last.id } } : {}) });
      out.push(...page);
      if (page.length < limit) return out;
    }
  }

  for (const m of MARKETS) {
    it(`trades of ${m.symbol}: the same rows in the same order, whole and paged both ways`, async () => {
      for (const newestFirst of [false, true]) {
        const want = await postgres.trades({ ...m, newestFirst, limit: 10_000 });
        expect(want.length).toBeGreaterThan(500);
        expect(await clickhouse.trades({ ...m, newestFirst, limit: 10_000 })).toEqual(want);
        expect(await allPages(clickhouse, { ...m, newestFirst }, 97)).toEqual(want);
      }
      const range = { ...m, since: SUNDAY_NOON + 5 * 3_600_000, until: SUNDAY_NOON + 9 * 3_600_000 + 1, limit: 10_000 };
      expect(await clickhouse.trades(range)).toEqual(await postgres.trades(range));
    });

    it(`trade stats of ${m.symbol}: volumes exact, quote volume and VWAP equal`, async () => {
      for (const [since, until] of [
        [0, 4_102_444_800_000],
        [SUNDAY_NOON + 5 * 3_600_000, SUNDAY_NOON + 9 * 3_600_000 + 1],
      ] as const) {
        const want = await postgres.tradeStats({ ...m, since, until });
        const got = await clickhouse.tradeStats({ ...m, since, until });
        expect(want.trades).toBeGreaterThan(0);
        expect(got).toMatchObject({ trades: want.trades, firstTs: want.firstTs, lastTs: want.lastTs });
        expect(got.volume).toBe(want.volume);
        expect(got.buyVolume).toBe(want.buyVolume);
        expect(got.sellVolume).toBe(want.sellVolume);
        expect(got.quoteVolume / want.quoteVolume).toBeCloseTo(1, 12);
      }
    });

    it(`candles of ${m.symbol}: 1m, 5m, 1h, 4h, 12h, 1d, 3d, 1w equal, both directions and in ranges`, async () => {
      for (const timeframe of ['1m', '5m', '1h', '4h', '12h', '1d', '3d', '1w'] as const) {
        for (const newestFirst of [false, true]) {
          const q = { ...m, timeframe, newestFirst, limit: 10_000 };
          const want = await postgres.candles(q);
          expect(want.length).toBeGreaterThan(0);
          expect(await clickhouse.candles(q), `${timeframe} newestFirst=${newestFirst}`).toEqual(want);
        }
        const ranged = { ...m, timeframe, since: SUNDAY_NOON + 7 * 3_600_000 + 17, until: SUNDAY_NOON + 30 * 3_600_000, limit: 7 };
        expect(await clickhouse.candles(ranged), `${timeframe} ranged`).toEqual(await postgres.candles(ranged));
      }
      const fiveMin = await clickhouse.candles({ ...m, timeframe: '5m', limit: 10_000 });
      const days = await clickhouse.candles({ ...m, timeframe: '1d', limit: 10_000 });
      expect(days.length).toBeGreaterThanOrEqual(10);
      expect(new Set(fiveMin.map((c) => c.source))).toEqual(new Set(['trades', 'exchange', 'mixed']));
    });

    it(`newest candles of ${m.symbol} without a lower bound: the windowed read widens over gaps and equals Postgres`, async () => {
      for (const timeframe of ['1m', '15m', '1h', '4h', '1d', '1w'] as const) {
        for (const limit of [1, 7, 50, 400]) {
          const q = { ...m, timeframe, newestFirst: true, limit };
          const want = await postgres.candles(q);
          expect(await clickhouse.candles(q), `${timeframe} newest ${limit}`).toEqual(want);
          // and up to a point in the past
          const until = { ...q, until: SUNDAY_NOON + 100 * 3_600_000 + 123 };
          expect(await clickhouse.candles(until), `${timeframe} newest ${limit} until`).toEqual(await postgres.candles(until));
        }
      }
    });
  }

  it('a batch redelivered after the rollups were built changes no hour or day', async () => {
    const before = await Promise.all(MARKETS.flatMap((m) => (['1h', '1d', '1w'] as const).map((timeframe) => clickhouse.candles({ ...m, timeframe, limit: 10_000 }))));
    const replay = deliveries()[5]!;
    await postgres.writeEvents(replay);
    await clickhouse.writeEvents(replay);
    const after = await Promise.all(MARKETS.flatMap((m) => (['1h', '1d', '1w'] as const).map((timeframe) => clickhouse.candles({ ...m, timeframe, limit: 10_000 }))));
    expect(after).toEqual(before);
    for (const m of MARKETS) {
      const q = { ...m, timeframe: '1d' as const, limit: 10_000 };
      expect(await clickhouse.candles(q)).toEqual(await postgres.candles(q));
    }
  });
});
