import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Candle, MarketEvent, Timeframe, Trade } from '../../layers/shared/src/domain/index.js';
import { bucketStart, timeframeMs, timeframeOffsetMs } from '../../layers/shared/src/domain/index.js';
import { runMigrations, TIMESCALE_MIGRATIONS_DIR } from '../../layers/shared/src/adapters/stores/migrations.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import type { CandleQuery, StoredCandle } from '../../layers/shared/src/ports/index.js';
import { createTestDatabase, createTestStore, type TestDatabase, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** Thursday 2026-01-01 00:00 UTC: ten days cross Monday 2026-01-05 (a week boundary). */
const START = Date.UTC(2026, 0, 1);
const DAYS = 10;
const EXCHANGE = 'binance';
const SYMBOL = 'BTC/USDT';
const TIMEFRAMES: Timeframe[] = ['1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w'];

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The pre-rollup PostgresMarketStore.candles() query (every timeframe from 1m rows): the oracle. */
async function oracle(db: SqlClient, q: CandleQuery): Promise<StoredCandle[]> {
  const size = timeframeMs(q.timeframe);
  const offset = timeframeOffsetMs(q.timeframe);
  const params: unknown[] = [q.exchange, q.symbol];
  const where = ['exchange = $1', 'symbol = $2', "timeframe = '1m'"];
  if (q.since !== undefined) where.push(`ts >= ms_to_ts($${params.push(bucketStart(q.since, q.timeframe))}::bigint)`);
  if (q.until !== undefined) {
    const end = bucketStart(q.until - 1, q.timeframe) + size;
    where.push(`ts < ms_to_ts($${params.push(end)}::bigint)`);
  }
  const sizeP = `$${params.push(size)}::float8`;
  const offP = `$${params.push(offset)}::float8`;
  const limitP = `$${params.push(q.limit)}::int`;
  const dir = q.newestFirst ? 'DESC' : 'ASC';
  const { rows } = await db.query<Omit<StoredCandle, 'timeframe'>>(
    `WITH minute AS (
       SELECT DISTINCT ON (ts) ts_to_ms(ts) AS t, source, open, high, low, close, volume, trades
       FROM candles WHERE ${where.join(' AND ')}
       ORDER BY ts DESC, source DESC
     ), bucketed AS (
       SELECT floor((t + ${offP}) / ${sizeP}) * ${sizeP} - ${offP} AS bucket, * FROM minute
     )
     SELECT $1::text AS exchange, $2::text AS symbol, bucket AS ts,
            (array_agg(open ORDER BY t))[1] AS open, max(high) AS high, min(low) AS low,
            (array_agg(close ORDER BY t DESC))[1] AS close, sum(volume::numeric)::float8 AS volume, sum(trades)::int AS trades,
            CASE WHEN count(DISTINCT source) > 1 THEN 'mixed' ELSE min(source) END AS source,
            count(*)::int AS minutes
     FROM bucketed GROUP BY bucket ORDER BY bucket ${dir} LIMIT ${limitP}`,
    params,
  );
  return rows.map((r) => ({ ...r, timeframe: q.timeframe }));
}

/** Queries covering every rolled-up timeframe, both directions, limits and since/until ranges off bucket edges. */
function queries(): CandleQuery[] {
  const base = { exchange: EXCHANGE, symbol: SYMBOL };
  const ranges: { since?: number; until?: number }[] = [
    {},
    { since: START + DAY + 7 * HOUR + 17 * MIN },
    { until: START + 6 * DAY + 5 * HOUR + 3 * MIN },
    { since: START + 2 * DAY + 13 * MIN, until: START + 8 * DAY + 11 * HOUR + 1 },
    { since: START + 4 * DAY, until: START + 5 * DAY },
  ];
  const out: CandleQuery[] = [];
  for (const timeframe of TIMEFRAMES) {
    for (const newestFirst of [false, true]) {
      for (const range of ranges) {
        for (const limit of range.since === undefined && range.until === undefined ? [1000, 3] : [1000]) {
          out.push({ ...base, ...range, timeframe, newestFirst, limit });
        }
      }
    }
  }
  return out;
}

async function expectMatchesOracle(db: SqlClient, store: PostgresMarketStore): Promise<void> {
  for (const q of queries()) {
    const expected = await oracle(db, q);
    const actual = await store.candles(q);
    expect(actual, JSON.stringify(q)).toEqual(expected);
  }
}

/** Random trades and exchange 1m candles over DAYS days: minutes with trades only, exchange only, and both. */
function marketData(seed: number): { trades: Trade[]; candles: Candle[] } {
  const random = rng(seed);
  const trades: Trade[] = [];
  const candles: Candle[] = [];
  let id = 0;
  let price = 40_000;
  for (let minute = START; minute < START + DAYS * DAY; minute += MIN) {
    price = Math.max(1, price + (random() - 0.5) * 40);
    const r = random();
    // long stretches of one source, so whole hours and days are pure, others mixed
    const hourKind = Math.floor(minute / HOUR) % 7;
    const wantsTrades = hourKind === 0 ? false : hourKind === 1 ? true : r < 0.5;
    const wantsExchange = hourKind === 1 ? false : hourKind === 0 ? true : r > 0.3;
    if (random() < 0.75) continue; // gaps
    if (wantsTrades) {
      const n = 1 + Math.floor(random() * 3);
      for (let i = 0; i < n; i++) {
        trades.push({
          type: 'trade',
          exchange: EXCHANGE,
          symbol: SYMBOL,
          id: String(++id),
          ts: minute + Math.floor(random() * MIN),
          localTs: minute + MIN,
          price: Math.round((price + random() * 5) * 100) / 100,
          // full-precision and short decimals: numeric sums must stay bit-identical
          amount: random() < 0.5 ? Math.round(random() * 1000) / 1000 : random() * 3,
          side: random() < 0.5 ? 'buy' : 'sell',
        });
      }
    }
    if (wantsExchange) {
      const open = price;
      const close = price + (random() - 0.5) * 10;
      candles.push({
        type: 'candle',
        exchange: EXCHANGE,
        symbol: SYMBOL,
        timeframe: '1m',
        ts: minute,
        open,
        high: Math.max(open, close) + random() * 3,
        low: Math.min(open, close) - random() * 3,
        close,
        volume: random() < 0.5 ? Math.round(random() * 100_000) / 1000 : random() * 77,
        closed: true,
        source: 'exchange',
      });
    }
  }
  return { trades, candles };
}

/** Several batches, out of order, with replays, late trades and revised exchange candles. */
function batches(seed: number): MarketEvent[][] {
  const { trades, candles } = marketData(seed);
  const random = rng(seed + 1);
  const out: MarketEvent[][] = [];
  const chunks = 6;
  for (let i = 0; i < chunks; i++) {
    const t = trades.slice(Math.floor((i * trades.length) / chunks), Math.floor(((i + 1) * trades.length) / chunks));
    const c = candles.slice(Math.floor((i * candles.length) / chunks), Math.floor(((i + 1) * candles.length) / chunks));
    // hold back every 10th trade: it arrives late, in the last batch
    out.push([...t.filter((_, j) => j % 10 !== 0), ...c]);
  }
  out.push(out[2]!); // replay
  const late = trades.filter((_, j) => j % 10 === 0);
  // a revised exchange candle for some minutes, and a minute of an exchange candle in another timeframe (ignored)
  const revised = candles
    .filter(() => random() < 0.05)
    .map((c) => ({ ...c, close: c.close + 1, high: c.high + 2, volume: c.volume * 1.5 }));
  const other: Candle = { ...candles[0]!, timeframe: '1h', volume: 1e6 };
  out.push([...late, ...revised, other]);
  out.push(out[0]!); // replay of the first batch at the end
  return out;
}

async function insertCandlesRaw(db: SqlClient, candles: readonly Candle[]): Promise<void> {
  await db.query(
    `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
     SELECT exchange, symbol, timeframe, ms_to_ts(ts), source, open, high, low, close, volume, trades
     FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, timeframe text, ts bigint, source text,
       open float8, high float8, low float8, close float8, volume float8, trades int)`,
    [JSON.stringify(candles.map((c, i) => ({ ...c, trades: c.source === 'trades' ? 1 + (i % 4) : 0 })))],
  );
}

async function rollupRows(db: SqlClient): Promise<unknown[]> {
  const { rows } = await db.query(
    `SELECT exchange, symbol, timeframe, ts_to_ms(ts) AS ts, open, high, low, close, volume::text AS volume,
            trades::int AS trades, source
     FROM candle_rollups ORDER BY exchange, symbol, timeframe, ts`,
  );
  return rows;
}

forEachStoreBackend('candle rollups', (backend, serverUrl) => {
  let testDb: TestStore;
  let db: SqlClient;
  let store: PostgresMarketStore;

  beforeAll(async () => {
    // PostgreSQL: the larger trade batches go through COPY, the small ones through jsonb
    testDb = await createTestStore(backend, serverUrl, 500);
    ({ db, store } = testDb);
  });
  afterAll(() => testDb.dispose());

  it('reads from the rollups exactly what the 1m rollup gives, after batches, replays and late trades', async () => {
    for (const batch of batches(7)) await store.writeEvents(batch);
    const { rows } = await db.query<{ source: string; n: number }>(
      `SELECT source, count(*)::int AS n FROM candle_rollups GROUP BY source ORDER BY source`,
    );
    // the data really has pure and mixed hours and days
    expect(rows.map((r) => r.source)).toEqual(['exchange', 'mixed', 'trades']);
    if (backend === 'postgres') {
      // both COPY ways ran: fresh batches with candles merged from the batch, and replays rebuilt
      const stats = store.copyPathStats();
      expect(stats.merged).toBeGreaterThan(0);
      expect(stats.replayed).toBeGreaterThan(0);
    }
    await expectMatchesOracle(db, store);
  }, 180_000);

  it('the backfill rebuilds exactly the rollups the writes maintained', async () => {
    const maintained = await rollupRows(db);
    expect(maintained.length).toBe(DAYS * 24 + DAYS);
    await db.query('DELETE FROM candle_rollups');
    await db.query('SELECT rebuild_candle_rollups()');
    expect(await rollupRows(db)).toEqual(maintained);
    await expectMatchesOracle(db, store);
  }, 180_000);

  it('retention trims the rollups with the candles, rebuilding the hour and day cut in two', async () => {
    await db.query('SELECT set_retention(1, 4)');
    const cut = START + 3 * DAY + 5 * HOUR + 23 * MIN;
    await db.query('SELECT * FROM apply_retention(ms_to_ts($1::bigint))', [cut + 4 * DAY]);
    const { rows } = await db.query<{ first: number }>(
      "SELECT ts_to_ms(min(ts)) AS first FROM candle_rollups WHERE timeframe = '1d'",
    );
    expect(rows[0]!.first).toBe(START + 3 * DAY);
    await expectMatchesOracle(db, store);
    const trimmed = await rollupRows(db);
    await db.query('SELECT rebuild_candle_rollups()');
    expect(await rollupRows(db)).toEqual(trimmed);
  }, 180_000);
});

forEachStoreBackend('candle rollups migration', (backend, serverUrl) => {
  let testDb: TestDatabase;
  let db: SqlClient;
  let dir: string;

  beforeAll(async () => {
    testDb = await createTestDatabase(backend, serverUrl);
    db = testDb.db;
    dir = await mkdtemp(join(tmpdir(), 'qicore-migrations-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await testDb.dispose();
  });

  it('an upgraded store answers from backfilled rollups exactly as from 1m', async () => {
    // a store at 0003 holding 1m candles of both sources, then upgraded to 0004
    await db.exec('DROP FUNCTION IF EXISTS refresh_candle_rollups(jsonb); DROP FUNCTION IF EXISTS rebuild_candle_rollups(); DROP TABLE candle_rollups');
    await db.query("DELETE FROM schema_migrations WHERE version >= '0004'");
    const { trades, candles } = marketData(11);
    const tradeMinutes = new Map<number, Candle>();
    for (const t of trades) {
      const minute = bucketStart(t.ts, '1m');
      const c = tradeMinutes.get(minute);
      tradeMinutes.set(minute, {
        type: 'candle', exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1m', ts: minute,
        open: c?.open ?? t.price, high: Math.max(c?.high ?? -Infinity, t.price), low: Math.min(c?.low ?? Infinity, t.price),
        close: t.price, volume: (c?.volume ?? 0) + t.amount, closed: true, source: 'trades',
      });
    }
    await insertCandlesRaw(db, [...candles, ...tradeMinutes.values()]);
    const before = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM candles WHERE timeframe = '1m'");
    expect(before.rows[0]!.n).toBeGreaterThan(2000);

    for (const f of await readdir(TIMESCALE_MIGRATIONS_DIR)) {
      if (f >= '0004') await cp(join(TIMESCALE_MIGRATIONS_DIR, f), join(dir, f));
    }
    // 0004 onward are in `dir`; 0001-0003 stay recorded as applied
    const report = await runMigrations(db, dir);
    expect(report.applied).toContain('0004_candle_rollups.sql');
    expect(report.applied).toContain('0008_rollup_minutes.sql');

    const store = new PostgresMarketStore(db);
    await expectMatchesOracle(db, store);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM candle_rollups');
    expect(rows[0]!.n).toBe(DAYS * 24 + DAYS);
  }, 180_000);
});

describe('candle rollups: timeframe routing', () => {
  it('covers every timeframe of a whole number of hours', () => {
    for (const tf of TIMEFRAMES) expect(timeframeMs(tf) % HOUR).toBe(0);
  });
});
