/**
 * `npm run backfill` against the simulated exchange: real ccxt over HTTP to the simulator's
 * synthetic history (Binance and OKX protocols, their paging and rate limits), into real stores
 * (PGlite, and ClickHouse when CLICKHOUSE_URL is set).
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ccxt, { type Exchange } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import type { Trade } from '../../layers/shared/src/domain/index.js';
import type { MarketStore } from '../../layers/shared/src/ports/index.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { RoutedMarketReader } from '../../layers/shared/src/query/routed-market-reader.js';
import { runBackfill, type BackfillDeps, type BackfillJob, type BackfillReport } from '../../local/backfill/backfill.js';
import { CheckpointStore } from '../../local/backfill/checkpoint.js';
import {
  connectBackfillExchange,
  UnknownBackfillExchangeError,
  UnlistedBackfillSymbolError,
  UnsupportedBackfillError,
  tradeRecipe,
} from '../../local/backfill/exchange.js';
import { backfillMain, EXIT } from '../../local/backfill/main.js';
import type { ProgressListener } from '../../local/backfill/progress.js';
import { BackfillStoreRouter } from '../../local/backfill/store-router.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { okxProtocol } from '../../local/sim/protocols/okx.js';
import { startSimulatedExchange, type SimulatedExchange, type SimulatedExchangeOptions } from '../../local/sim/server.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { createTestStore } from '../support/databases.js';
import { describeWithService } from '../support/services.js';

const BTC = 'BTC/USDT';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** 2024-03-01T00:00Z: deep in the simulator's synthetic history */
const T = Date.UTC(2024, 2, 1);
const FAST_RETRY = { attempts: 10, baseMs: 20, maxMs: 200 } as const;

/** Binance: 2500 1m candles (pages of 1000: 3) and 4 h of trades (one per 10 s: 1440, pages of 1000: 2). */
const binanceJobs: readonly BackfillJob[] = [
  { exchange: 'binance', symbol: BTC, kind: 'candles', timeframe: '1m', since: T, until: T + 2500 * MINUTE },
  { exchange: 'binance', symbol: BTC, kind: 'trades', since: T, until: T + 4 * HOUR },
];

// real HTTP paging with ccxt's rate limiter, and 429s waited out: more than the default 30 s on a busy machine
vi.setConfig({ testTimeout: 120_000, hookTimeout: 240_000 });

const sims: SimulatedExchange[] = [];
const exchanges: Exchange[] = [];
const closers: (() => Promise<unknown>)[] = [];

async function startSim(options: SimulatedExchangeOptions = {}): Promise<SimulatedExchange> {
  const sim = await startSimulatedExchange({
    seed: 42,
    symbols: [BTC, 'ETH/USDT'],
    protocols: [binanceProtocol(), okxProtocol()],
    history: true,
    enforceRateLimits: true,
    autoRun: false,
    ...options,
  });
  sims.push(sim);
  return sim;
}

async function connect(sim: SimulatedExchange, id = 'binance'): Promise<Exchange> {
  const ex = await connectBackfillExchange(id, [BTC], { endpoint: sim.endpoints[id]! });
  exchanges.push(ex);
  return ex;
}

interface TestStore {
  readonly db: SqlClient;
  readonly store: PostgresMarketStore;
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  closers.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

let template: Promise<string> | undefined;

/**
 * A migrated PGlite data directory to copy: creating a database (initdb in WebAssembly) takes
 * seconds, reopening a copy of one a fraction of that.
 */
function migratedTemplate(): Promise<string> {
  template ??= (async () => {
    const dir = join(await tempDir('qicore-backfill-template-'), 'pgdata');
    const db = await openPglite(dir);
    await runMigrations(db);
    await db.close();
    return dir;
  })();
  return template;
}

/** A data directory holding a fresh, migrated database, where `npm start` and the backfill keep it (`<dir>/pgdata`). */
async function seededDataDir(): Promise<string> {
  const dir = await tempDir('qicore-backfill-data-');
  await cp(await migratedTemplate(), join(dir, 'pgdata'), { recursive: true });
  return dir;
}

/** A fresh, migrated PGlite store of its own. */
async function pgliteStore(): Promise<TestStore> {
  const db = await openPglite(join(await seededDataDir(), 'pgdata'));
  const store = new PostgresMarketStore(db);
  closers.push(() => store.close());
  return { db, store };
}

async function stateDir(): Promise<CheckpointStore> {
  return new CheckpointStore(await tempDir('qicore-backfill-state-'));
}

/** Everything a backfill leaves in the store: trades (receipt time aside: it is when the page arrived), candles, rollups. */
async function rowSets(db: SqlClient) {
  const q = async (text: string) => (await db.query<Record<string, unknown>>(text)).rows;
  return {
    trades: await q(
      'SELECT exchange, symbol, ts_to_ms(ts) AS ts, trade_id, price, amount, side FROM trades ORDER BY exchange, symbol, ts, trade_id',
    ),
    candles: await q(
      'SELECT exchange, symbol, timeframe, ts_to_ms(ts) AS ts, source, open, high, low, close, volume, trades FROM candles ORDER BY exchange, symbol, timeframe, ts, source',
    ),
    rollups: await q(
      'SELECT exchange, symbol, timeframe, ts_to_ms(ts) AS ts, open, high, low, close, volume::text AS volume, trades::int AS trades, source FROM candle_rollups ORDER BY exchange, symbol, timeframe, ts',
    ),
  };
}

/** Aborts `controller` once `pages` pages were stored. */
function abortAfter(pages: number, controller: AbortController): ProgressListener {
  let seen = 0;
  return {
    page: () => {
      if (++seen >= pages) controller.abort();
    },
    jobDone: () => undefined,
    note: () => undefined,
  };
}

function run(jobs: readonly BackfillJob[], deps: Omit<BackfillDeps, 'target' | 'retry'> & Partial<Pick<BackfillDeps, 'target'>>): Promise<BackfillReport> {
  return runBackfill(jobs, { target: 'test store', retry: FAST_RETRY, ...deps });
}

const pagesOf = (r: BackfillReport) => r.jobs.reduce((n, j) => n + j.pages, 0);

afterAll(async () => {
  await Promise.all(exchanges.splice(0).map((ex) => ex.close().catch(() => undefined)));
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

describe('backfill from the simulated binance (ccxt) into PGlite', () => {
  let sim: SimulatedExchange;
  let ex: Exchange;
  /** the uninterrupted run: the answer key of the other tests */
  let reference: TestStore;
  let referenceReport: BackfillReport;
  let requests: string[];

  beforeAll(async () => {
    requests = [];
    sim = await startSim({ log: (line) => requests.push(line) });
    ex = await connect(sim);
    reference = await pgliteStore();
    referenceReport = await run(binanceJobs, {
      exchange: ex,
      writer: new BackfillStoreRouter(reference.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints: await stateDir(),
    });
  }, 240_000);

  it("stores the exchange's candles and raw trades of the range, in pages of the exchange's size", async () => {
    expect(referenceReport.stopped).toBe(false);
    expect(referenceReport.jobs.map((j) => [j.label, j.status, j.pages, j.rows, j.rejected])).toEqual([
      ['binance BTC/USDT candles 1m', 'complete', 3, 2500, 0],
      ['binance BTC/USDT trades', 'complete', 2, 1440, 0],
    ]);
    // pages of 1000 bars: startTime/endTime windows, limit 1000
    const klines = requests.filter((r) => r.includes('/api/v3/klines'));
    expect(klines).toHaveLength(3);
    expect(klines.every((r) => r.includes('limit=1000'))).toBe(true);
    expect(requests.filter((r) => r.includes('/api/v3/historicalTrades')).every((r) => r.includes('limit=1000'))).toBe(true);

    // every exchange candle is the simulator's kline of that minute
    const { rows } = await reference.db.query<{ ts: number; open: number; high: number; low: number; close: number; volume: number }>(
      `SELECT ts_to_ms(ts) AS ts, open, high, low, close, volume FROM candles WHERE source = 'exchange' ORDER BY ts`,
    );
    expect(rows).toHaveLength(2500);
    const klineView = (ts: number) => {
      const k = sim.market.kline(BTC, '1m', ts)!;
      return { ts, open: Number(k.open), high: Number(k.high), low: Number(k.low), close: Number(k.close), volume: Number(k.volume) };
    };
    expect(rows).toEqual(rows.map((r, i) => klineView(T + i * MINUTE)));

    // the trades are the raw trades printed in the range, with their raw ids
    const stored = await reference.store.trades({ exchange: 'binance', symbol: BTC, since: T, until: T + 4 * HOUR, limit: 5000 });
    const printed = sim.market.tradesBetween(BTC, T, T + 4 * HOUR - 1, 5000);
    expect(printed).toHaveLength(1440);
    expect(stored.map((t) => [t.id, t.ts, t.price, t.amount, t.side])).toEqual(printed.map((t) => [String(t.id), t.ts, t.price, t.amount, t.side]));

    // where both exist, the candle the store builds from the trades equals the exchange's
    const fromTrades = await reference.db.query<{ ts: number; open: number; high: number; low: number; close: number; volume: number }>(
      `SELECT ts_to_ms(ts) AS ts, open, high, low, close, volume FROM candles WHERE source = 'trades' ORDER BY ts`,
    );
    expect(fromTrades.rows).toHaveLength(240);
    expect(fromTrades.rows).toEqual(fromTrades.rows.map((r) => klineView(r.ts)));
  });

  it('an interrupted and resumed backfill ends with exactly the rows of an uninterrupted one', async () => {
    const target = await pgliteStore();
    const checkpoints = await stateDir();
    const deps = {
      exchange: ex,
      writer: new BackfillStoreRouter(target.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints,
    };
    // killed by a page limit inside the candles job...
    const first = await run(binanceJobs, { ...deps, maxPages: 2 });
    expect(first.stopped).toBe(true);
    expect(first.jobs.map((j) => [j.status, j.pages])).toEqual([['stopped', 2]]);
    expect((await checkpoints.load(binanceJobs[0]!))?.cursor).toBe(T + 2000 * MINUTE);
    // ...then by Ctrl-C (an abort) inside the trades job
    const controller = new AbortController();
    const second = await run(binanceJobs, { ...deps, signal: controller.signal, progress: abortAfter(2, controller) });
    expect(second.stopped).toBe(true);
    expect(second.jobs.map((j) => [j.status, j.pages, j.resumed])).toEqual([
      ['complete', 1, true],
      ['stopped', 1, false],
    ]);
    const third = await run(binanceJobs, deps);
    expect(third.stopped).toBe(false);
    expect(third.jobs.map((j) => [j.status, j.pages, j.resumed])).toEqual([
      ['up-to-date', 0, true],
      ['complete', 1, true],
    ]);
    // no page was fetched twice
    expect(pagesOf(first) + pagesOf(second) + pagesOf(third)).toBe(pagesOf(referenceReport));
    expect(await rowSets(target.db)).toEqual(await rowSets(reference.db));
  });

  it('a re-run of a finished backfill fetches nothing, and one without checkpoints rewrites the same rows', async () => {
    const target = await pgliteStore();
    const checkpoints = await stateDir();
    const deps = { exchange: ex, writer: new BackfillStoreRouter(target.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock), checkpoints };
    await run(binanceJobs, deps);
    const before = await rowSets(target.db);
    const requestsBefore = requests.length;
    const again = await run(binanceJobs, deps);
    expect(again.jobs.map((j) => [j.status, j.pages])).toEqual([
      ['up-to-date', 0],
      ['up-to-date', 0],
    ]);
    expect(requests.length).toBe(requestsBefore);
    // checkpoints lost: everything is fetched and written again, and nothing changes
    const rewrite = await run(binanceJobs, { ...deps, checkpoints: await stateDir() });
    expect(rewrite.jobs.map((j) => j.rows)).toEqual([2500, 1440]);
    expect(await rowSets(target.db)).toEqual(before);
    expect(before).toEqual(await rowSets(reference.db));
  });

  it("stays within the exchange's rate limits: the simulator enforcing Binance's never answered 429", () => {
    expect(sim.rateLimited('binance')).toBe(0);
    expect(referenceReport.jobs.map((j) => j.retries)).toEqual([0, 0]);
  });

  it('survives 429s with backoff after the Retry-After sent, ending with the same rows', async () => {
    // 429s injected, and a weight budget far below Binance's that the client's limiter does not know
    const tight = await startSim({ protocols: [binanceProtocol({ requestWeight: { limit: 24, windowMs: 1000 } })] });
    const client = await connect(tight);
    const target = await pgliteStore();
    tight.faults.failNextRest(3, 429);
    const notes: string[] = [];
    const report = await run(binanceJobs, {
      exchange: client,
      writer: new BackfillStoreRouter(target.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints: await stateDir(),
      progress: { page: () => undefined, jobDone: () => undefined, note: (line) => notes.push(line) },
    });
    expect(report.stopped).toBe(false);
    expect(tight.faults.injected().rest429s).toBe(3);
    // every 429 was retried, after the Retry-After it carried (1 s or more; the policy's own backoff is 200 ms at most)
    const limited = report.jobs.reduce((n, j) => n + j.rateLimited, 0);
    expect(limited).toBe(3 + tight.rateLimited('binance'));
    const waits = notes.map((n) => /: (\w+), retry \d+ in ([\d.]+) s$/.exec(n)).filter((m) => m !== null);
    expect(new Set(waits.map((m) => m[1]))).toEqual(new Set(['DDoSProtection']));
    expect(waits).toHaveLength(limited);
    expect(waits.every((m) => Number(m[2]) >= 1)).toBe(true);
    expect(await rowSets(target.db)).toEqual(await rowSets(reference.db));
  });

  it('stores raw trade ids: backfilled trades dedupe with live-collected ones, where aggregate ids would not', async () => {
    const live = await startSim();
    const client = await connect(live);
    const start = Date.now();
    live.market.step(40, BTC); // live trades, numbered on from the history's last id
    const collected: Trade[] = live.market.printedTrades(BTC).map((t) => ({
      type: 'trade',
      exchange: 'binance',
      symbol: BTC,
      ts: t.ts,
      localTs: t.ts,
      id: String(t.id),
      price: t.price,
      amount: t.amount,
      side: t.side,
    }));
    const target = await pgliteStore();
    await target.store.writeEvents(collected); // what the collector stored from <symbol>@trade
    const since = start - 15 * MINUTE;
    const report = await run([{ exchange: 'binance', symbol: BTC, kind: 'trades', since, until: Date.now() + MINUTE }], {
      exchange: client,
      writer: new BackfillStoreRouter(target.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints: await stateDir(),
    });
    expect(report.jobs[0]!.status).toBe('complete');
    const stored = await target.store.trades({ exchange: 'binance', symbol: BTC, since, limit: 5000 });
    const ids = stored.map((t) => Number(t.id));
    const expected = live.market.tradesBetween(BTC, since, Number.MAX_SAFE_INTEGER, 5000);
    // history then live trades, one id space, each once
    expect(ids).toEqual(expected.map((t) => t.id));
    expect(ids.at(-1)! - ids[0]! + 1).toBe(ids.length);
    expect(stored.length).toBe(report.jobs[0]!.rows);
    expect(stored.filter((t) => collected.some((c) => c.id === t.id))).toHaveLength(collected.length);

    // the trap: ccxt's default fetchTrades reads aggTrades, whose ids number the same trades differently
    const aggregates = await client.fetchTrades(BTC, since, 1000);
    expect(aggregates.length).toBeGreaterThan(50);
    const rawIdAt = new Map(expected.map((t) => [`${t.ts}|${t.price}|${t.amount}`, String(t.id)]));
    const sameTrades = aggregates.filter((a) => rawIdAt.has(`${a.timestamp}|${a.price}|${a.amount}`));
    expect(sameTrades.length).toBeGreaterThan(50);
    expect(sameTrades.filter((a) => a.id === rawIdAt.get(`${a.timestamp}|${a.price}|${a.amount}`))).toEqual([]);
  });
});

describe('backfill from the simulated okx (ccxt) into PGlite', () => {
  it('pages history-candles and history-trades (100 a page) and stores what the exchange printed', async () => {
    const requests: string[] = [];
    const sim = await startSim({ log: (line) => requests.push(line) });
    const ex = await connect(sim, 'okx');
    const target = await pgliteStore();
    const jobs: BackfillJob[] = [
      { exchange: 'okx', symbol: BTC, kind: 'candles', timeframe: '1m', since: T, until: T + 250 * MINUTE },
      { exchange: 'okx', symbol: BTC, kind: 'trades', since: T + 7_000, until: T + 30 * MINUTE },
    ];
    const report = await run(jobs, {
      exchange: ex,
      writer: new BackfillStoreRouter(target.store, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints: await stateDir(),
    });
    expect(report.jobs.map((j) => [j.status, j.pages, j.rows])).toEqual([
      ['complete', 3, 250],
      ['complete', 2, 179],
    ]);
    expect(requests.filter((r) => r.includes('/api/v5/market/history-candles'))).toHaveLength(3);
    const candles = await target.db.query<{ ts: number; close: number }>(`SELECT ts_to_ms(ts) AS ts, close FROM candles WHERE source = 'exchange' ORDER BY ts`);
    expect(candles.rows.map((r) => [r.ts, r.close])).toEqual(
      Array.from({ length: 250 }, (_, i) => [T + i * MINUTE, Number(sim.market.kline(BTC, '1m', T + i * MINUTE)!.close)]),
    );
    const stored = await target.store.trades({ exchange: 'okx', symbol: BTC, since: T, limit: 1000 });
    const printed = sim.market.tradesBetween(BTC, T + 7_000, T + 30 * MINUTE - 1, 1000);
    expect(stored.map((t) => [t.id, t.ts, t.price, t.amount, t.side])).toEqual(printed.map((t) => [String(t.id), t.ts, t.price, t.amount, t.side]));
  });
});

describe('simulator rate limits', () => {
  it("answers 429 in each exchange's format past its limits, which ccxt maps to RateLimitExceeded", async () => {
    // budgets of 2 klines (Binance weight 2 each) and 2 history-candles per window: of 6 requests at
    // once at least 2 are over, even if a window boundary falls among them
    const sim = await startSim({
      protocols: [binanceProtocol({ requestWeight: { limit: 4, windowMs: 60_000 } }), okxProtocol({ rateLimits: { factor: 0.1, windowMs: 60_000 } })],
    });
    const binance = await Promise.all(
      Array.from({ length: 6 }, () => fetch(`${sim.endpoints['binance']!.rest}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1`)),
    );
    const limited = binance.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(2);
    expect(await limited[0]!.json()).toMatchObject({ code: -1003 });
    expect(Number(limited[0]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const okx = await Promise.all(
      Array.from({ length: 6 }, () => fetch(`${sim.endpoints['okx']!.rest}/api/v5/market/history-candles?instId=BTC-USDT&bar=1m&limit=1`)),
    );
    const okxLimited = okx.filter((r) => r.status === 429);
    expect(okxLimited.length).toBeGreaterThanOrEqual(2);
    expect(await okxLimited[0]!.json()).toMatchObject({ code: '50011', msg: 'Too Many Requests' });
    expect(sim.rateLimited()).toBe(limited.length + okxLimited.length);
    // a request the limits do not cover still answers
    expect((await fetch(`${sim.endpoints['okx']!.rest}/api/v5/market/nope`)).status).toBe(404);

    // through ccxt: RateLimitExceeded, which the backfill backs off on
    const ex = await connect(sim, 'okx');
    await expect(ex.fetchOHLCV(BTC, '1m', T, 10)).rejects.toBeInstanceOf(ccxt.RateLimitExceeded);
  });
});

describe('backfill errors', () => {
  it('names the valid choices for an unknown exchange, an unlisted symbol and trades without a raw-id history', async () => {
    await expect(connectBackfillExchange('binanse', [BTC])).rejects.toThrow(UnknownBackfillExchangeError);
    await expect(connectBackfillExchange('binanse', [BTC])).rejects.toThrow(/binance, binancecoinm/);
    const sim = await startSim();
    const error = await connectBackfillExchange('binance', ['BTC/EUR'], { endpoint: sim.endpoints['binance']! }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnlistedBackfillSymbolError);
    expect((error as Error).message).toMatch(/binance does not list BTC\/EUR; .*BTC\/USDT, ETH\/USDT/);
    expect(() => tradeRecipe('kraken')).toThrow(UnsupportedBackfillError);
    expect(() => tradeRecipe('kraken')).toThrow(/binance and okx only/);
  });
});

/** Routing by the retention handover, with `history` as the history store. */
function routingCases(makeHistory: () => Promise<MarketStore>): void {
  it('writes pages older than the retention handover to the history store only, newer ones to both', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const recent = await pgliteStore();
    const history = await makeHistory();
    const retention = { ticksDays: 7, candlesDays: 30 };
    const writer = new BackfillStoreRouter(recent.store, history, retention, systemClock);
    const now = Date.now();
    const oldJobs: BackfillJob[] = [
      { exchange: 'binance', symbol: BTC, kind: 'candles', timeframe: '1m', since: T, until: T + 300 * MINUTE },
      { exchange: 'binance', symbol: BTC, kind: 'trades', since: T, until: T + 30 * MINUTE },
    ];
    const recentSince = Math.floor((now - 3 * HOUR) / MINUTE) * MINUTE;
    const newJobs: BackfillJob[] = [
      { exchange: 'binance', symbol: BTC, kind: 'candles', timeframe: '1m', since: recentSince, until: recentSince + 60 * MINUTE },
      { exchange: 'binance', symbol: BTC, kind: 'trades', since: recentSince, until: recentSince + 20 * MINUTE },
    ];
    const old = await run(oldJobs, { exchange: ex, writer, checkpoints: await stateDir() });
    expect(old.jobs.map((j) => [j.historyRows, j.recentRows])).toEqual([
      [300, 0],
      [180, 0],
    ]);
    const fresh = await run(newJobs, { exchange: ex, writer, checkpoints: await stateDir() });
    expect(fresh.jobs.map((j) => [j.historyRows, j.recentRows])).toEqual([
      [60, 60],
      [120, 120],
    ]);

    const q = { exchange: 'binance', symbol: BTC, timeframe: '1m', limit: 1000 } as const;
    expect(await recent.store.candles({ ...q, since: T, until: T + 300 * MINUTE })).toEqual([]);
    expect(await recent.store.trades({ ...q, since: T, until: T + 30 * MINUTE })).toEqual([]);
    const oldCandles = await history.candles({ ...q, since: T, until: T + 300 * MINUTE });
    expect(oldCandles.map((c) => [c.ts, c.close])).toEqual(
      Array.from({ length: 300 }, (_, i) => [T + i * MINUTE, Number(sim.market.kline(BTC, '1m', T + i * MINUTE)!.close)]),
    );
    expect((await history.trades({ ...q, since: T, until: T + 30 * MINUTE })).map((t) => Number(t.id))).toEqual(
      sim.market.tradesBetween(BTC, T, T + 30 * MINUTE - 1, 1000).map((t) => t.id),
    );
    const newRange = { ...q, since: recentSince, until: recentSince + 60 * MINUTE };
    expect(await recent.store.candles(newRange)).toHaveLength(60);
    expect(await history.candles(newRange)).toEqual(await recent.store.candles(newRange));
    expect(await recent.store.trades({ ...q, since: recentSince, until: recentSince + 20 * MINUTE })).toHaveLength(120);

    // the read API finds the old range in history and the new one in the recent store
    const reader = new RoutedMarketReader(recent.store, history, systemClock, { ticksMs: 7 * 86_400_000, candlesMs: 30 * 86_400_000 });
    expect(await reader.candles({ ...q, since: T, until: T + 300 * MINUTE })).toEqual(oldCandles);
    expect(await reader.candles(newRange)).toEqual(await recent.store.candles(newRange));
  });
}

describe('backfill routing, PGlite as the history store', () => {
  routingCases(async () => (await pgliteStore()).store);
});

describeWithService('clickhouse', 'backfill routing to ClickHouse', (url) => {
  const databases: TestClickHouse[] = [];
  afterAll(async () => {
    for (const d of databases) await d.dispose();
  });
  routingCases(async () => {
    const database = await createClickHouseTestDatabase(url);
    databases.push(database);
    return database.store;
  });
});

describeWithService('postgres', 'backfill into PostgreSQL (trade pages by COPY)', (url) => {
  it('an interrupted and resumed backfill ends with exactly the rows of an uninterrupted one', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const [resumed, whole] = await Promise.all([createTestStore('postgres', url, 200), createTestStore('postgres', url, 200)]);
    closers.push(() => resumed.dispose(), () => whole.dispose());
    const deps = (target: PostgresMarketStore, checkpoints: CheckpointStore) => ({
      exchange: ex,
      writer: new BackfillStoreRouter(target, null, { ticksDays: 7, candlesDays: 30 }, systemClock),
      checkpoints,
    });
    const checkpoints = await stateDir();
    expect((await run(binanceJobs, { ...deps(resumed.store, checkpoints), maxPages: 4 })).stopped).toBe(true);
    // the page in flight when the run was killed is written again: a replay the COPY path must absorb
    const cp = (await checkpoints.load(binanceJobs[1]!))!;
    await checkpoints.save({ ...cp, cursor: cp.cursor - 1000, pages: cp.pages - 1 });
    expect((await run(binanceJobs, deps(resumed.store, checkpoints))).stopped).toBe(false);
    expect((await run(binanceJobs, deps(whole.store, await stateDir()))).stopped).toBe(false);
    const rows = await rowSets(resumed.db);
    expect(rows.trades).toHaveLength(1440);
    expect(rows).toEqual(await rowSets(whole.db));
  });
});

describe('npm run backfill (the CLI, in process, --source sim)', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) }, env: {} },
    };
  };

  async function storedRows(dataDir: string) {
    const db = await openPglite(join(dataDir, 'pgdata'));
    try {
      return await rowSets(db);
    } finally {
      await db.close();
    }
  }

  it('documents every flag in --help, resumes after --max-pages, and ends with the rows of an uninterrupted run', async () => {
    // the data directories hold a migrated database already (the backfill migrates a new one itself)
    const dirs = { a: await seededDataDir(), b: await seededDataDir(), c: await tempDir('qicore-backfill-cli-') };
    const args = (dataDir: string) => [
      '--source', 'sim', '--exchange', 'binance', '--symbol', BTC, '--what', 'both',
      '--since', '2024-03-01', '--until', '2024-03-01T03:00:00Z', '--data-dir', dataDir,
    ];
    const help = io();
    expect(await backfillMain(['--help'], help.io)).toBe(EXIT.ok);
    expect(help.out.join('')).toMatch(/^Usage: npm run backfill/);

    const interrupted = io();
    expect(await backfillMain([...args(dirs.a), '--max-pages', '2'], interrupted.io)).toBe(EXIT.stopped);
    expect(interrupted.err.join('')).toMatch(/stopped at .*run again to resume/);
    const resumed = io();
    expect(await backfillMain(args(dirs.a), resumed.io)).toBe(EXIT.ok);
    expect(resumed.err.join('')).toMatch(/candles 1m: up to date/);
    expect(resumed.err.join('')).toMatch(/trades: complete to 2024-03-01T03:00:00Z/);
    expect(await backfillMain(args(dirs.b), io().io)).toBe(EXIT.ok);

    const a = await storedRows(dirs.a);
    expect(a.trades).toHaveLength(1080);
    expect(a.candles.filter((c) => c['source'] === 'exchange')).toHaveLength(180);
    expect(a).toEqual(await storedRows(dirs.b));

    const dry = io();
    expect(await backfillMain([...args(dirs.a), '--dry-run'], dry.io)).toBe(EXIT.ok);
    expect(dry.out.join('')).toMatch(/binance BTC\/USDT candles 1m: .*up to date/);
    expect(dry.out.join('')).toMatch(/binance BTC\/USDT trades: .*resuming at trade id \d+, up to date/);

    const bad = io();
    expect(await backfillMain(['--exchange', 'binanse', '--symbol', BTC, '--since', '2024-03-01', '--data-dir', dirs.c], bad.io)).toBe(EXIT.usage);
    expect(bad.err.join('')).toMatch(/ccxt has no exchange 'binanse'; the \d+ it has: .*binance, /);
  });
});
