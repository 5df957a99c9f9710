import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations, splitSqlStatements } from '../../layers/shared/src/adapters/stores/migrations.js';
import { CopyWriteError } from '../../layers/shared/src/adapters/stores/pg-copy-writer.js';
import {
  PostgresMarketStore,
  type FundingSnapshot,
} from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { Quote, Trade } from '../../layers/shared/src/domain/index.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

const MIN = 60_000;
const DAY = 86_400_000;

describe('splitSqlStatements', () => {
  it('splits at top-level semicolons only, dropping comments', () => {
    const script = `-- migrate:no-transaction
      CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'a;b'; END $$;
      /* a; /* nested; */ comment */ SELECT 'it''s; here', "odd;name" FROM t;
      SELECT $tag$ ; $$ ; $tag$;
      SELECT 1 -- trailing; comment
    `;
    expect(splitSqlStatements(script)).toEqual([
      "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'a;b'; END $$",
      `SELECT 'it''s; here', "odd;name" FROM t`,
      'SELECT $tag$ ; $$ ; $tag$',
      'SELECT 1',
    ]);
  });
});

/** Every trade of `trades` once per key: what the table must hold after writing them all. */
function distinct(trades: readonly Trade[]): Trade[] {
  const byKey = new Map<string, Trade>();
  for (const t of trades) if (!byKey.has(`${t.ts}|${t.id}`)) byKey.set(`${t.ts}|${t.id}`, t);
  return [...byKey.values()];
}

forEachStoreBackend('Timescale store additions', (backend, serverUrl) => {
  let testDb: TestStore;
  let db: SqlClient;
  let store: PostgresMarketStore;

  beforeAll(async () => {
    // on PostgreSQL every trade batch here takes the COPY path
    testDb = await createTestStore(backend, serverUrl);
    ({ db, store } = testDb);
  });
  afterAll(() => testDb.dispose());

  const count = async (sql: string, params: unknown[] = []) =>
    (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, params)).rows[0]!.n;

  it("migrations report the path taken, and re-apply 0002+ idempotently", async () => {
    const timescale = (await db.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).rows.length > 0;
    const first = await runMigrations(db);
    expect(first.path).toBe(timescale ? 'timescaledb' : 'postgres');
    expect(first.timescaledbVersion === null).toBe(!timescale);
    expect(first.applied).toEqual([]);
    if (!timescale) {
      // no continuous aggregates on plain PostgreSQL: readers roll up from 1m
      expect((await db.query<{ r: string | null }>("SELECT to_regclass('candles_5m')::text AS r")).rows[0]!.r).toBeNull();
    }

    // Forget 0002, 0003 and 0009 and run again: every statement of them must be safe to repeat, as a
    // no-transaction file that stopped half-way needs (0009 last: it holds the current apply_retention).
    await store.writeFunding([{ ...funding(T0), symbol: 'KEEP/USDT' }]);
    await db.query("UPDATE store_retention SET keep = interval '3 days' WHERE relation = 'trades'");
    await db.query("DELETE FROM schema_migrations WHERE version IN ('0002', '0003', '0009')");
    const again = await runMigrations(db);
    expect(again.applied).toEqual(['0002_funding_retention_compression.sql', '0003_candle_continuous_aggregates.sql', '0009_quotes.sql']);
    expect(again.path).toBe(first.path);
    expect(await count("funding_open_interest WHERE symbol = 'KEEP/USDT'")).toBe(1);
    // the configured window survives: the migration only seeds what is missing
    const keep = await db.query<{ days: number }>(
      "SELECT extract(day FROM keep)::int AS days FROM store_retention WHERE relation = 'trades'",
    );
    expect(keep.rows[0]!.days).toBe(3);
    await db.query("UPDATE store_retention SET keep = interval '7 days' WHERE relation = 'trades'");
    expect((await runMigrations(db)).applied).toEqual([]);
  });

  function funding(ts: number, overrides: Partial<FundingSnapshot> = {}): FundingSnapshot {
    return {
      exchange: 'binance',
      symbol: 'BTC/USDT:USDT',
      ts,
      localTs: ts + 7,
      fundingRate: 0.0001,
      nextFundingTs: ts + 8 * 3_600_000,
      markPrice: 100.5,
      indexPrice: 100.4,
      openInterest: 12_345.678,
      openInterestValue: 1_240_740.639,
      ...overrides,
    };
  }

  it('funding and open interest round-trip, nulls included, and merge per key', async () => {
    const full = funding(T0);
    const sparse = funding(T0 + MIN, { nextFundingTs: null, markPrice: null, indexPrice: null, openInterestValue: null });
    expect(await store.writeFunding([full, sparse])).toBe(2);
    const q = { exchange: 'binance', symbol: 'BTC/USDT:USDT', limit: 10 } as const;
    expect(await store.funding(q)).toEqual([full, sparse]);

    // funding and open interest of the same instant arriving apart (and twice) end up in one row
    const rateOnly = funding(T0 + 2 * MIN, { openInterest: null, openInterestValue: null });
    const oiOnly = funding(T0 + 2 * MIN, { fundingRate: null, nextFundingTs: null, markPrice: null, indexPrice: null, localTs: T0 + 2 * MIN + 9 });
    await store.writeFunding([rateOnly]);
    await store.writeFunding([oiOnly, oiOnly]);
    await store.writeFunding([rateOnly]);
    const [merged] = await store.funding({ ...q, since: T0 + 2 * MIN });
    expect(merged).toEqual({ ...funding(T0 + 2 * MIN), localTs: T0 + 2 * MIN + 9 });
    expect(await store.funding({ ...q, newestFirst: true, limit: 1, until: T0 + 2 * MIN })).toEqual([sparse]);
  });

  it('never duplicates trades repeated inside one batch or across batches', async () => {
    const symbol = 'DUP/USDT';
    const mk = (i: number): Trade =>
      trade({ symbol, id: String(i), ts: T0 + i * 250, price: 100 + (i % 17), amount: 0.1 * (1 + (i % 5)), side: i % 2 ? 'buy' : 'sell' });
    const first = Array.from({ length: 600 }, (_, i) => mk(i));
    // each trade three times, interleaved
    const batch1 = [...first, ...[...first].reverse(), ...first.filter((_, i) => i % 2 === 0), ...first.filter((_, i) => i % 2 === 1)];
    expect((await store.writeEvents(batch1)).trades).toBe(600);

    // half replayed, half new, and the new half repeated inside the batch
    const second = Array.from({ length: 600 }, (_, i) => mk(i + 300));
    const batch2 = [...second, ...second.slice(300)];
    expect((await store.writeEvents(batch2)).trades).toBe(300);
    expect((await store.writeEvents(batch2)).trades).toBe(0);

    const all = distinct([...batch1, ...batch2]);
    expect(await count('trades WHERE symbol = $1', [symbol])).toBe(900);
    const stored = await store.trades({ exchange: 'binance', symbol, limit: 2000 });
    expect(stored).toEqual([...all].sort((a, b) => a.ts - b.ts));

    // candles equal what the distinct trades imply
    const candles = await store.candles({ exchange: 'binance', symbol, timeframe: '1m', limit: 100 });
    const volume = (ts: number) =>
      all.filter((t) => t.ts >= ts && t.ts < ts + MIN).reduce((sum, t) => sum + Math.round(t.amount * 10), 0) / 10;
    expect(candles.map((c) => c.trades)).toEqual(candles.map((c) => all.filter((t) => t.ts >= c.ts && t.ts < c.ts + MIN).length));
    expect(candles.map((c) => c.volume)).toEqual(candles.map((c) => volume(c.ts)));
    expect(candles.reduce((n, c) => n + c.trades, 0)).toBe(900);
  });

  /**
   * `n` trades over four minutes with the cases the candle merge must order as the rebuild does:
   * each minute's first and last millisecond hold three trades whose ids differ in length ("9"
   * before "10"), and amounts are short decimals, float artifacts (0.1 + 0.2) and full-precision.
   */
  function series(symbol: string, n: number): Trade[] {
    const amounts = [0.1, 0.2, 0.1 + 0.2, 0.001 * 9, 1.5, 123_456.789, 2 / 3, 1e-7, 976_562.500_976_562_5];
    const perMinute = n / 4;
    return Array.from({ length: n }, (_, i) => {
      const pos = i % perMinute;
      const offset = pos < 3 ? 0 : pos >= perMinute - 3 ? MIN - 1 : Math.floor((pos * MIN) / perMinute);
      return trade({
        symbol,
        id: String((i * 7_919) % 10_007), // unique, of 1 to 5 digits, in no order
        ts: T0 + Math.floor(i / perMinute) * MIN + offset,
        price: 100 + ((i * 37) % 101) / 10,
        amount: amounts[i % amounts.length]!,
        side: i % 3 ? 'buy' : 'sell',
      });
    });
  }

  /** Everything a reader sees of one market's trades and candles, and the stored 1m and rollup rows bit for bit, without the symbol. */
  async function marketView(symbol: string) {
    const q = { exchange: 'binance', symbol } as const;
    const strip = <T extends { symbol: string }>(rows: readonly T[]) => rows.map(({ symbol: _s, ...rest }) => rest);
    // (readers round volumes to 15 digits; the stored float8 is compared too)
    const stored = await db.query(
      `SELECT ts_to_ms(ts) AS ts, source, open, high, low, close, volume, trades FROM candles
       WHERE exchange = 'binance' AND symbol = $1 ORDER BY ts, source`,
      [symbol],
    );
    const rollups = await db.query(
      `SELECT timeframe, ts_to_ms(ts) AS ts, source, open, high, low, close, volume::text AS volume, trades::int AS trades
       FROM candle_rollups WHERE exchange = 'binance' AND symbol = $1 ORDER BY timeframe, ts`,
      [symbol],
    );
    const candles = async (timeframe: '1m' | '5m' | '1h' | '1d') => strip(await store.candles({ ...q, timeframe, limit: 100 }));
    return {
      stored: stored.rows,
      rollups: rollups.rows,
      trades: strip(await store.trades({ ...q, limit: 5_000 })),
      m1: await candles('1m'),
      m5: await candles('5m'),
      h1: await candles('1h'),
      d1: await candles('1d'),
    };
  }

  it('a replayed or partly overlapping batch stores each trade once, and its candles equal a clean write', async () => {
    const all = series('MIX/USDT', 1_000);
    // every 5th trade arrives late, inside minutes already stored (some at a stored trade's millisecond)
    const late = all.filter((_, i) => i % 5 === 0);
    const onTime = all.filter((_, i) => i % 5 !== 0);
    const stats = () => store.copyPathStats();
    const before = stats();
    const written = [];
    written.push((await store.writeEvents(onTime.slice(0, 300))).trades); // fresh
    written.push((await store.writeEvents(onTime.slice(150, 500))).trades); // half of it stored: replay way
    written.push((await store.writeEvents(onTime.slice(150, 500))).trades); // all stored
    written.push((await store.writeEvents(late)).trades); // fresh, merged into stored minutes
    written.push((await store.writeEvents([...onTime.slice(500, 650), ...onTime.slice(500, 550)])).trades); // repeats inside
    written.push((await store.writeEvents(onTime.slice(650))).trades); // fresh, continuing a stored minute
    expect(written).toEqual([300, 200, 0, 200, 150, 150]);
    expect(await count('trades WHERE symbol = $1', ['MIX/USDT'])).toBe(1_000);

    // the same trades written once, in another order, on the jsonb path (candles rebuilt from stored trades)
    const clean = new PostgresMarketStore(db);
    const reversed = series('CLN/USDT', 1_000).reverse();
    expect((await clean.writeEvents(reversed)).trades).toBe(1_000);

    const mixed = await marketView('MIX/USDT');
    expect(mixed.trades).toHaveLength(1_000);
    expect(mixed.m1).toHaveLength(4);
    expect(mixed).toEqual(await marketView('CLN/USDT'));
    if (backend === 'postgres') {
      // the writes took the paths the comments say: three straight COPYs with merged candles, three replays
      const after = stats();
      expect([after.fresh - before.fresh, after.merged - before.merged, after.replayed - before.replayed]).toEqual([3, 3, 3]);
    }
  });

  it('a batch whose one stored trade is near its end is written once, and the store goes on', async () => {
    // large enough for many COPY chunks: the unique violation comes while the client still sends
    const big = series('END/USDT', 12_000).map((t, i) => ({ ...t, ts: T0 + i * 3 }));
    expect((await store.writeEvents([big.at(-2)!])).trades).toBe(1);
    expect((await store.writeEvents(big)).trades).toBe(11_999);
    expect((await store.writeEvents([big[0]!, ...big.slice(1)])).trades).toBe(0);
    expect(await count('trades WHERE symbol = $1', ['END/USDT'])).toBe(12_000);
    const candles = await store.candles({ exchange: 'binance', symbol: 'END/USDT', timeframe: '1m', limit: 10 });
    expect(candles.reduce((n, c) => n + c.trades, 0)).toBe(12_000);
  });

  it('keeps text that COPY must escape intact', async () => {
    const odd = [
      trade({ symbol: 'ESC/USDT', id: 'tab\there', ts: T0 }),
      trade({ symbol: 'ESC/USDT', id: 'back\\slash\\N', ts: T0 + 1 }),
      trade({ symbol: 'ESC/USDT', id: 'new\nline\r', ts: T0 + 2 }),
      trade({ symbol: 'ESC/USDT', id: 'ünïcødé ✓', ts: T0 + 3, price: 1e-7, amount: 123456789.123456 }),
    ];
    expect((await store.writeEvents(odd)).trades).toBe(4);
    expect(await store.trades({ exchange: 'binance', symbol: 'ESC/USDT', limit: 10 })).toEqual(odd);
  });

  it('retention deletes exactly what is older than each window and keeps the rest', async () => {
    const now = T0 + 40 * DAY;
    const ticksCut = now - 7 * DAY;
    const candlesCut = now - 30 * DAY;
    const s = 'RET/USDT';
    const quote = (ts: number): Quote => ({
      type: 'quote', exchange: 'binance', symbol: s, ts, localTs: ts + 3, seq: null, bid: 99, bidSize: 1, ask: 100, askSize: 2, health: 'healthy',
    });
    await store.writeEvents([
      trade({ symbol: s, id: 'old', ts: ticksCut - 1 }),
      trade({ symbol: s, id: 'edge', ts: ticksCut }),
      trade({ symbol: s, id: 'new', ts: now - DAY }),
      ticker({ symbol: s, ts: ticksCut - 1 }),
      ticker({ symbol: s, ts: ticksCut + 1 }),
      book({ symbol: s, ts: ticksCut - 60_000 }),
      quote(ticksCut - 1),
      quote(ticksCut + 2),
      candle({ symbol: s, ts: candlesCut - MIN }),
      candle({ symbol: s, ts: candlesCut }),
    ]);
    // a market whose every row is past the window: its feed goes too
    await store.writeEvents([trade({ symbol: 'GONE/USDT', id: '1', ts: ticksCut - DAY })]);
    await store.writeFunding([funding(candlesCut - 1, { symbol: s }), funding(candlesCut, { symbol: s })]);

    const tables = ['trades', 'tickers', 'book_snapshots', 'quotes', 'candles', 'funding_open_interest'] as const;
    const cutOf = (t: string) => (t === 'candles' || t === 'funding_open_interest' ? candlesCut : ticksCut);
    const older = async (t: string) => count(`${t} WHERE ts < ms_to_ts($1::bigint)`, [cutOf(t)]);
    const newer = async (t: string) => count(`${t} WHERE ts >= ms_to_ts($1::bigint)`, [cutOf(t)]);
    const before = Object.fromEntries(await Promise.all(tables.map(async (t) => [t, [await older(t), await newer(t)]] as const)));

    const deleted = await store.applyRetention(now);
    for (const t of tables) {
      expect(deleted[t], t).toBe(before[t]![0]);
      expect(await older(t), t).toBe(0);
      expect(await newer(t), t).toBe(before[t]![1]);
    }
    expect((await store.trades({ exchange: 'binance', symbol: s, limit: 10 })).map((t) => t.id)).toEqual(['edge', 'new']);
    expect((await store.funding({ exchange: 'binance', symbol: s, limit: 10 })).map((f) => f.ts)).toEqual([candlesCut]);
    expect(await store.latestBook('binance', s)).toBeNull();
    expect((await store.quotes({ exchange: 'binance', symbol: s, limit: 10 })).map((q) => q.ts)).toEqual([ticksCut + 2]);

    // feeds say what is still held
    const feeds = (await store.listFeeds()).filter((f) => f.symbol === s || f.symbol === 'GONE/USDT');
    expect(feeds.map((f) => [f.symbol, f.channel, f.firstTs])).toEqual([
      ['RET/USDT', 'candles', candlesCut],
      ['RET/USDT', 'quotes', ticksCut + 2],
      ['RET/USDT', 'tickers', ticksCut + 1],
      ['RET/USDT', 'trades', ticksCut],
    ]);

    // applying again deletes nothing more
    expect(Object.values(await store.applyRetention(now)).every((n) => n === 0)).toBe(true);
  });

  it('retention windows are configurable', async () => {
    await expect(store.setRetention({ ticksDays: 0, candlesDays: 30 })).rejects.toThrow(ConfigError);
    const s = 'CFG/USDT';
    const now = T0 + 100 * DAY;
    await store.writeEvents([trade({ symbol: s, id: '1', ts: now - 2 * DAY }), trade({ symbol: s, id: '2', ts: now - DAY + 1 })]);
    await store.setRetention({ ticksDays: 1, candlesDays: 3 });
    try {
      await store.applyRetention(now);
      expect((await store.trades({ exchange: 'binance', symbol: s, limit: 10 })).map((t) => t.id)).toEqual(['2']);
      // the 1m candles of those trades are kept 3 days
      expect(await store.candles({ exchange: 'binance', symbol: s, timeframe: '1m', limit: 10 })).toHaveLength(2);
      await store.applyRetention(now + 3 * DAY);
      expect(await store.candles({ exchange: 'binance', symbol: s, timeframe: '1m', limit: 10 })).toHaveLength(0);
    } finally {
      await store.setRetention({ ticksDays: 7, candlesDays: 30 });
    }
    const { rows } = await db.query<{ relation: string; days: number }>(
      'SELECT relation, extract(day FROM keep)::int AS days FROM store_retention ORDER BY relation',
    );
    expect(rows).toEqual([
      { relation: 'book_snapshots', days: 7 },
      { relation: 'candles', days: 30 },
      { relation: 'funding_open_interest', days: 30 },
      { relation: 'quotes', days: 7 },
      { relation: 'tickers', days: 7 },
      { relation: 'trades', days: 7 },
    ]);
  });

  // PGlite has no server connection to drop: the case exists on PostgreSQL only
  if (backend === 'postgres') it('a connection dropped mid-batch fails the write; a retry stores exactly the batch', async () => {
    const url = testDb.url!;
    const s = 'DROP/USDT';
    const batch = Array.from({ length: 5_000 }, (_, i) => trade({ symbol: s, id: String(i), ts: T0 + i * 20, amount: 1 }));
    await store.writeEvents(batch.slice(0, 1_000)); // some of it was already stored by an earlier try

    // Hold a lock the batch's transaction needs (its read of the touched minutes, then its COPY),
    // so the batch is caught mid-transaction, and drop its connection.
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE trades IN ACCESS EXCLUSIVE MODE');
      const write = store.writeEvents(batch);
      const failed = write.then(
        () => null,
        (error: unknown) => error,
      );
      let pid: number | undefined;
      for (let i = 0; i < 200 && pid === undefined; i++) {
        const { rows } = await locker.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`,
        );
        pid = rows[0]?.pid;
        if (pid === undefined) await new Promise((r) => setTimeout(r, 25));
      }
      expect(pid, 'the writer never waited on the lock').toBeDefined();
      await locker.query('SELECT pg_terminate_backend($1)', [pid]);
      const error = await failed;
      expect(error).toBeInstanceOf(CopyWriteError);
      expect((error as CopyWriteError).cause).toBeInstanceOf(Error);
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    // nothing of the failed try stayed
    expect(await count('trades WHERE symbol = $1', [s])).toBe(1_000);

    const retry = await store.writeEvents(batch);
    expect(retry.trades).toBe(4_000);
    expect(await count('trades WHERE symbol = $1', [s])).toBe(5_000);
    const candles = await store.candles({ exchange: 'binance', symbol: s, timeframe: '1m', limit: 10 });
    expect(candles.map((c) => c.trades)).toEqual([3_000, 2_000]);
    expect(candles.map((c) => c.volume)).toEqual([3_000, 2_000]);
    const [feed] = (await store.listFeeds()).filter((f) => f.symbol === s);
    expect(feed).toMatchObject({ firstTs: T0, lastTs: T0 + 4_999 * 20, events: 6_000 });
  });
});
