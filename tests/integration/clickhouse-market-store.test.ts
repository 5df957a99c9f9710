import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
  type ClickHouseExecutor,
} from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { float64Hex } from '../../layers/shared/src/adapters/stores/clickhouse-encoding.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { CLICKHOUSE_MIGRATIONS_DIR, runClickHouseMigrations } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { MigrationError } from '../../layers/shared/src/adapters/stores/migrations.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { describeWithService } from '../support/services.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

const MIN = 60_000;

describeWithService('clickhouse', 'ClickHouseMarketStore', (url) => {
  let database: TestClickHouse;
  let ch: ClickHouseExecutor;
  let store: ClickHouseMarketStore;

  beforeAll(async () => {
    database = await createClickHouseTestDatabase(url);
    ({ ch, store } = database);
  });
  afterAll(() => database?.dispose());

  it('records the applied migration with its checksum; re-running applies nothing', async () => {
    const rows = await ch.query<{ version: string; checksum: string }>(sql`SELECT version, checksum FROM schema_migrations`);
    expect(rows.map((r) => r.version).sort()).toEqual(['0001', '0002', '0003', '0004', '0005', '0006']);
    for (const r of rows) expect(r.checksum).toMatch(/^[0-9a-f]{64}$/);
    const again = await runClickHouseMigrations(ch);
    expect(again).toEqual({ applied: [], alreadyApplied: 6 });
  });

  it('refuses a migration file edited after it was applied', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ch-mig-'));
    try {
      await writeFile(join(dir, '0001_core.sql'), await readFile(join(CLICKHOUSE_MIGRATIONS_DIR, '0001_core.sql'), 'utf8'));
      await writeFile(join(dir, '9999_probe.sql'), "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS probe (s String DEFAULT 'a;b') ENGINE = Memory;\n");
      expect((await runClickHouseMigrations(ch, dir)).applied).toEqual(['9999_probe.sql']);
      await writeFile(join(dir, '9999_probe.sql'), 'CREATE TABLE IF NOT EXISTS probe (s String) ENGINE = Memory;\n');
      await expect(runClickHouseMigrations(ch, dir)).rejects.toBeInstanceOf(MigrationError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
    await store.writeEvents([...batch].reverse());

    // no OPTIMIZE: the copies are still there, unmerged, and the read path must hide them
    const [raw] = await ch.query<{ n: string }>(sql`SELECT count() AS n FROM trades WHERE symbol = 'BTC/USDT'`);
    expect(Number(raw!.n)).toBe(8);

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
    await store.writeEvents([book()]);
    expect(await store.latestTicker('binance', 'BTC/USDT')).toEqual(ticker({ ts: T0 + 6_000, last: 104 }));
    expect(await store.latestBook('binance', 'BTC/USDT')).toEqual(book());
    expect(await store.latestBook('binance', 'BTC/USDT')).toEqual(book());
    expect(await store.latestTicker('binance', 'ETH/USDT')).toBeNull();
    expect(await store.latestBook('binance', 'ETH/USDT')).toBeNull();
    await store.writeEvents([ticker({ symbol: 'NUL/USDT', bid: null, bidSize: null, change24hPct: null })]);
    expect(await store.latestTicker('binance', 'NUL/USDT')).toEqual(ticker({ symbol: 'NUL/USDT', bid: null, bidSize: null, change24hPct: null }));
    await store.writeEvents([book({ symbol: 'NUL/USDT', seq: null })]);
    expect((await store.latestBook('binance', 'NUL/USDT'))?.seq).toBeNull();

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
    // at-least-once: the replayed batch and the re-sent trade count again, as in Postgres
    expect(tradesFeed?.events).toBe(10);
    expect(feeds.map((f) => f.channel).sort()).toEqual(['books', 'candles', 'tickers', 'trades']);
  });

  it('the last revision of an exchange candle wins, in a batch and across batches', async () => {
    const q = { exchange: 'binance', symbol: 'REV/USDT', timeframe: '1m', limit: 5 } as const;
    await store.writeEvents([
      candle({ symbol: 'REV/USDT', close: 100, volume: 1 }),
      candle({ symbol: 'REV/USDT', close: 101, volume: 2 }),
    ]);
    expect((await store.candles(q)).map((c) => [c.close, c.volume])).toEqual([[101, 2]]);
    await store.writeEvents([candle({ symbol: 'REV/USDT', close: 102, volume: 3 })]);
    expect((await store.candles(q)).map((c) => [c.close, c.volume, c.trades])).toEqual([[102, 3, 0]]);
  });

  it('candles honour ranges on open time, newest first, and Monday-aligned weeks', async () => {
    // T0 is Monday 2026-01-05 12:00 UTC; a Sunday trade belongs to the week before
    const monday = Date.UTC(2026, 0, 5);
    await store.writeEvents([
      trade({ symbol: 'WK/USDT', id: '1', ts: monday - 3_600_000, price: 10 }),
      trade({ symbol: 'WK/USDT', id: '2', ts: monday + 3_600_000, price: 20 }),
      trade({ symbol: 'WK/USDT', id: '3', ts: monday + 8 * 86_400_000, price: 30 }),
    ]);
    const q = { exchange: 'binance', symbol: 'WK/USDT', timeframe: '1w', limit: 10 } as const;
    expect((await store.candles(q)).map((c) => [c.ts, c.open])).toEqual([
      [monday - 7 * 86_400_000, 10],
      [monday, 20],
      [monday + 7 * 86_400_000, 30],
    ]);
    expect((await store.candles({ ...q, newestFirst: true, limit: 2 })).map((c) => c.ts)).toEqual([monday + 7 * 86_400_000, monday]);
    // since inside a week widens to the whole week; until is exclusive on open time
    expect((await store.candles({ ...q, since: monday + 1, until: monday + 7 * 86_400_000 })).map((c) => c.ts)).toEqual([monday]);
  });

  it('keeps signals once and dead letters with payload and reason', async () => {
    const signal = {
      type: 'signal' as const,
      id: '6f1c0c1e-3b7b-4c1a-9b1e-1a2b3c4d5e6f',
      ts: T0,
      publisher: 'test',
      exchange: null,
      symbol: 'BTC/USDT',
      direction: 'long' as const,
      strength: 0.5,
      confidence: 0.25,
      horizon: '1h' as const,
      rationale: "it's up",
    };
    await store.writeSignals([signal]);
    await store.writeSignals([signal]);
    const signals = await ch.query<{ id: string; rationale: string }>(
      sql`SELECT id, rationale FROM signals LIMIT 1 BY ts, id`,
    );
    expect(signals).toEqual([{ id: signal.id, rationale: "it's up" }]);

    const letter = {
      source: 'test',
      reason: 'bad json',
      errorName: 'RecordDecodeError',
      payload: "{nope'\\",
      partitionKey: 'binance:BTC/USDT',
      sequenceNumber: '7',
    };
    await store.writeDeadLetter(letter);
    await store.writeDeadLetter(letter); // the same poison record, dead-lettered again on a retry
    await store.writeDeadLetter({ ...letter, partitionKey: null, sequenceNumber: null, payload: '{other' });
    const rows = await ch.query<{ reason: string; payload: string; sequence_number: string | null }>(
      sql`SELECT reason, payload, sequence_number FROM dead_letters ORDER BY payload LIMIT 1 BY source, letter_id`,
    );
    expect(rows).toEqual([
      { reason: 'bad json', payload: "{nope'\\", sequence_number: '7' },
      { reason: 'bad json', payload: '{other', sequence_number: null },
    ]);
  });

  it('0002 backfills the hourly and daily rollups of candles stored before it', async () => {
    const name = `qicore_t_${randomBytes(6).toString('hex')}`;
    await createClickHouseDatabase(url, name);
    const old = openClickHouse(url, { database: name });
    const dir = await mkdtemp(join(tmpdir(), 'ch-mig-'));
    try {
      await writeFile(join(dir, '0001_core.sql'), await readFile(join(CLICKHOUSE_MIGRATIONS_DIR, '0001_core.sql'), 'utf8'));
      await runClickHouseMigrations(old, dir);
      // minutes over two hours of two days, as a writer of the previous version stored them
      const minutes = [0, 59, 60, 24 * 60 + 5].map((k, i) => ({
        exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ts: T0 + k * MIN, source: 'exchange',
        open: float64Hex(100 + i), high: float64Hex(110 + i), low: float64Hex(90 + i), close: float64Hex(105 + i),
        volume: '0.1', trades: 0, version: 1,
      }));
      await old.insert('candles_in', minutes);
      expect((await runClickHouseMigrations(old)).applied).toEqual(['0002_candle_rollups.sql', '0003_book_health.sql', '0004_rollup_minutes.sql', '0005_quotes.sql', '0006_candle_refresh.sql']);
      const reader = new ClickHouseMarketStore(old);
      const q = { exchange: 'binance', symbol: 'BTC/USDT', limit: 10 } as const;
      expect(await reader.candles({ ...q, timeframe: '1h' })).toMatchObject([
        { ts: T0, open: 100, high: 111, low: 90, close: 106, volume: 0.2, source: 'exchange' },
        { ts: T0 + 60 * MIN, open: 102, close: 107, volume: 0.1 },
        { ts: T0 + 24 * 60 * MIN, open: 103, close: 108, volume: 0.1 },
      ]);
      const days = await reader.candles({ ...q, timeframe: '1d' });
      expect(days.map((d) => [d.open, d.close, d.volume])).toEqual([[100, 107, 0.3], [103, 108, 0.1]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await old.close();
      await dropClickHouseDatabase(url, name);
    }
  });

  it('an empty batch writes nothing', async () => {
    expect(await store.writeEvents([])).toEqual({ trades: 0, tickers: 0, books: 0, quotes: 0, candles: 0 });
    expect(await store.writeSignals([])).toBe(0);
  });
});
