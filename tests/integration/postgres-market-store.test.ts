import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runMigrations, TIMESCALE_MIGRATIONS_DIR } from '../../layers/shared/src/adapters/stores/migrations.js';
import { ExactNumericSum } from '../../layers/shared/src/adapters/stores/pg-numeric-sum.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

const MIN = 60_000;

forEachStoreBackend('PostgresMarketStore', (backend, serverUrl) => {
  let testDb: TestStore;
  let db: SqlClient;
  let store: PostgresMarketStore;

  beforeAll(async () => {
    // On PostgreSQL every trade batch goes through COPY, so this whole suite holds the COPY path
    // to what the jsonb path (PGlite) does.
    testDb = await createTestStore(backend, serverUrl);
    ({ db, store } = testDb);
  });
  afterAll(() => testDb.dispose());

  it('migrated on the plain-PostgreSQL path (no TimescaleDB here)', async () => {
    const { rows } = await db.query<{ version: string }>('SELECT version FROM schema_migrations ORDER BY version');
    // every file of sql/timescale, whoever added it
    const files = (await readdir(TIMESCALE_MIGRATIONS_DIR)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
    expect(rows.map((r) => r.version)).toEqual(files.map((f) => f.slice(0, 4)));
    expect(files.slice(0, 4).map((f) => f.slice(0, 4))).toEqual(['0001', '0002', '0003', '0004']);
    const ext = await db.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'");
    expect((await runMigrations(db)).path).toBe(ext.rows.length ? 'timescaledb' : 'postgres');
  });

  it('re-running migrations applies nothing', async () => {
    const again = await runMigrations(db);
    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied).toBeGreaterThan(0);
  });

  it('stores trades once however often a batch is replayed, and builds 1m candles from them', async () => {
    const batch = [
      trade({ id: '9', ts: T0 + 1_000, price: 100, amount: 1, side: 'buy' }),
      trade({ id: '10', ts: T0 + 1_000, price: 103, amount: 2, side: 'sell' }),
      trade({ id: '11', ts: T0 + 30_000, price: 98, amount: 0.5 }),
      trade({ id: '12', ts: T0 + MIN + 10, price: 101, amount: 4 }),
    ];
    const first = await store.writeEvents(batch);
    expect(first.trades).toBe(4);
    const replay = await store.writeEvents([...batch].reverse());
    expect(replay.trades).toBe(0);

    const stored = await store.trades({ exchange: 'binance', symbol: 'BTC/USDT', limit: 100 });
    // numeric ids order numerically inside one millisecond
    expect(stored.map((t) => t.id)).toEqual(['9', '10', '11', '12']);
    expect(stored[1]).toEqual({ ...batch[1] });

    const candles = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 10 });
    expect(candles).toEqual([
      { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: T0, open: 100, high: 103, low: 98, close: 98, volume: 3.5, trades: 3, source: 'trades', minutes: 1 },
      { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: T0 + MIN, open: 101, high: 101, low: 101, close: 101, volume: 4, trades: 1, source: 'trades', minutes: 1 },
    ]);
    const hourly = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h', limit: 10 });
    expect(hourly).toEqual([
      { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h', ts: T0, open: 100, high: 103, low: 98, close: 101, volume: 7.5, trades: 4, source: 'trades', minutes: 2 },
    ]);
  });

  it('sums volumes exactly', async () => {
    const q = { exchange: 'binance', symbol: 'SUM/USDT', timeframe: '1m', limit: 1 } as const;
    await store.writeEvents([
      trade({ symbol: 'SUM/USDT', id: '1', amount: 0.1 }),
      trade({ symbol: 'SUM/USDT', id: '2', amount: 0.2 }),
    ]);
    expect((await store.candles(q))[0]?.volume).toBe(0.3);
    expect((await store.candles({ ...q, timeframe: '1d' }))[0]?.volume).toBe(0.3);
  });

  it('sums float8 amounts as numeric exactly as the server does (what the COPY path merges candles with)', async () => {
    const values = [
      0.1, 0.2, 1e-7, 123_456.789, 42, // short decimals
      0.1 + 0.2, 0.001 * 9, 1.1 * 1.1, 0.3 - 0.1, // one ulp off one
      976_562.500_976_562_5, 1_234_567_890_123_455, 1_234_567_890_123_445, 123_456_789_012_345.5, // ties at the 16th digit
      1 / 3, 2 / 3, Math.PI, 1e21, 1.234_567_890_123_456_7e21, 0.000_123_456_789_012_345_678, 999_999_999_999_999.9,
    ];
    // and deterministic noise: products and quotients of short decimals, full-precision fractions
    for (let i = 1; i <= 300; i++) values.push((i * 0.37) / 7, i * 1.000_1 * 0.003, (i * 7_919) / 10 ** (i % 12), 1 + i * 2 ** -40);
    const ours = values.map((v) => {
      const sum = new ExactNumericSum();
      return sum.add(v) ? sum.toString() : null;
    });
    expect(ours.every((o) => o !== null)).toBe(true);
    const total = new ExactNumericSum();
    for (const v of values) total.add(v);
    const { rows } = await db.query<{ mismatches: number; sum_ok: boolean }>(
      `SELECT count(*) FILTER (WHERE r.x::numeric <> r.o::numeric)::int AS mismatches,
              sum(r.x::numeric) = $2::numeric AS sum_ok
       FROM jsonb_to_recordset($1::jsonb) AS r(x float8, o text)`,
      [JSON.stringify(values.map((x, i) => ({ x, o: ours[i] }))), total.toString()],
    );
    expect(rows[0]).toEqual({ mismatches: 0, sum_ok: true });
    // what it cannot keep it refuses, and the writer rebuilds from stored trades instead
    for (const v of [Number.NaN, Number.POSITIVE_INFINITY, 5e-324]) expect(new ExactNumericSum().add(v)).toBe(false);
  });

  it('a late trade rebuilds its minute instead of being added twice', async () => {
    await store.writeEvents([trade({ id: '8', ts: T0, price: 97, amount: 1 })]);
    await store.writeEvents([trade({ id: '8', ts: T0, price: 97, amount: 1 })]);
    const [first] = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 1 });
    expect(first).toMatchObject({ open: 97, low: 97, volume: 4.5, trades: 4 });
  });

  it('pages trades with a keyset cursor in both directions', async () => {
    const q = { exchange: 'binance', symbol: 'BTC/USDT' } as const;
    const page1 = await store.trades({ ...q, limit: 2 });
    const last = page1.at(-1)!;
    const page2 = await store.trades({ ...q, limit: 10, after: { ts: last.ts, id: last.id } });
    expect([...page1, ...page2].map((t) => t.id)).toEqual(['8', '9', '10', '11', '12']);
    const newest = await store.trades({ ...q, limit: 2, newestFirst: true });
    expect(newest.map((t) => t.id)).toEqual(['12', '11']);
    const older = await store.trades({ ...q, limit: 2, newestFirst: true, after: { ts: newest[1]!.ts, id: newest[1]!.id } });
    expect(older.map((t) => t.id)).toEqual(['10', '9']);
    const ranged = await store.trades({ ...q, limit: 10, since: T0 + 1_000, until: T0 + 30_000 });
    expect(ranged.map((t) => t.id)).toEqual(['9', '10']);
  });

  it('keeps tickers, books and exchange candles, and lists what it holds', async () => {
    await store.writeEvents([ticker({ ts: T0 + 5_000, last: 103 }), ticker({ ts: T0 + 6_000, last: 104 }), book()]);
    expect((await store.latestTicker('binance', 'BTC/USDT'))?.last).toBe(104);
    expect(await store.latestBook('binance', 'BTC/USDT')).toEqual(book());
    expect(await store.latestTicker('binance', 'ETH/USDT')).toBeNull();

    // an exchange candle for a minute that also has collected trades is held but not blended
    await store.writeEvents([candle({ ts: T0, open: 1, high: 1, low: 1, close: 1 }), candle({ ts: T0 + 2 * MIN })]);
    const candles = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 10 });
    expect(candles.map((c) => [c.ts - T0, c.source])).toEqual([
      [0, 'trades'],
      [MIN, 'trades'],
      [2 * MIN, 'exchange'],
    ]);
    const [fiveMin] = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '5m', limit: 1 });
    expect(fiveMin?.source).toBe('mixed');

    const feeds = (await store.listFeeds()).filter((f) => f.symbol === 'BTC/USDT');
    const tradesFeed = feeds.find((f) => f.channel === 'trades');
    expect(tradesFeed).toMatchObject({ exchange: 'binance', symbol: 'BTC/USDT', firstTs: T0, lastTs: T0 + MIN + 10 });
    expect(feeds.map((f) => f.channel).sort()).toEqual(['books', 'candles', 'tickers', 'trades']);
  });

  it('keeps dead letters with payload and reason', async () => {
    await store.writeDeadLetter({
      source: 'test',
      reason: 'bad json',
      errorName: 'RecordDecodeError',
      payload: '{nope',
      partitionKey: 'binance:BTC/USDT',
      sequenceNumber: '7',
    });
    const { rows } = await db.query<{ reason: string; payload: string }>('SELECT reason, payload FROM dead_letters');
    expect(rows).toEqual([{ reason: 'bad json', payload: '{nope' }]);
  });
});
