/**
 * Order book health end to end: the simulator (OKX and Binance protocols) injects sequence breaks
 * and corrupted checksums into what real ccxt.pro clients receive; the collector's BookFeed finds
 * them, resyncs from a fresh snapshot and says so in every book it publishes; the stored rows
 * (PostgreSQL, ClickHouse) carry the states. A book that silently diverged from the exchange is
 * found by the REST cross-check.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClickHouseDatabase, dropClickHouseDatabase, openClickHouse } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { CLICKHOUSE_MIGRATIONS_DIR, runClickHouseMigrations } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { runMigrations, TIMESCALE_MIGRATIONS_DIR } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { BookHealth, OrderBook } from '../../layers/shared/src/domain/index.js';
import { okxProtocol } from '../../local/sim/protocols/okx.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';

const SYMBOL = 'BTC/USDT';

let sim: SimulatedExchange | undefined;
let pipeline: CollectorPipeline | undefined;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.dispose();
});
afterEach(async () => {
  await pipeline?.close();
  await sim?.close();
  pipeline = undefined;
  sim = undefined;
});

async function start(exchange: 'okx' | 'binance', seed: number, tuning: Parameters<typeof startCollectorPipeline>[0]['tuning'] = {}) {
  sim = await startSimulatedExchange({
    seed,
    symbols: [SYMBOL],
    tradesPerSecond: 30,
    autoRun: false,
    protocols: [exchange === 'okx' ? okxProtocol() : binanceProtocol()],
  });
  const endpoint = exchange === 'okx' ? sim.endpoints['okx']! : { rest: sim.httpUrl, ws: sim.wsUrl };
  pipeline = await startCollectorPipeline({
    markets: new Map([[exchange, [SYMBOL]]]),
    endpoints: { [exchange]: endpoint },
    channels: ['books'],
    tuning,
    database,
  });
  sim.market.start();
  return { sim, pipeline };
}

const books = (p: CollectorPipeline): OrderBook[] => p.published.filter((e): e is OrderBook => e.type === 'book');

/** Health of the published books, consecutive repeats collapsed. */
function transitions(list: readonly { health: BookHealth }[]): BookHealth[] {
  const out: BookHealth[] = [];
  for (const b of list) if (out.at(-1) !== b.health) out.push(b.health);
  return out;
}

/** Waits until the published books, from `from` on, went through `path` in order (others may come between). */
async function waitForPath(p: CollectorPipeline, from: number, path: readonly BookHealth[], what: string) {
  const follows = (seq: readonly BookHealth[]) => {
    let i = 0;
    for (const h of seq) if (h === path[i]) i++;
    return i === path.length;
  };
  await waitFor(what, () => transitions(books(p).slice(from)), follows, { timeoutMs: 20_000 });
}

/** Stored rows of the market, by exchange time (an update of a row's health keeps its place). */
async function storedHealth(exchange: string): Promise<BookHealth[]> {
  const { rows } = await database.db.query<{ health: BookHealth }>(
    `SELECT health FROM book_snapshots WHERE exchange = $1 AND symbol = $2 ORDER BY ts, local_ts`,
    [exchange, SYMBOL],
  );
  return transitions(rows);
}

/** A directory with the migrations of `dir` before `version` (a database as it was before it). */
async function migrationsBefore(dir: string, version: string): Promise<string> {
  const out = await mkdtemp(join(tmpdir(), 'book-health-mig-'));
  for (const f of await readdir(dir)) if (/^\d{4}_.*\.sql$/.test(f) && f.slice(0, 4) < version) await copyFile(join(dir, f), join(out, f));
  return out;
}

const T0 = Date.UTC(2026, 0, 5, 12, 0, 0);
const stored = (health: BookHealth, localTs: number): OrderBook => ({
  type: 'book',
  exchange: 'okx',
  symbol: SYMBOL,
  ts: T0,
  localTs,
  seq: 7,
  depth: 1,
  bids: [[99, 1]],
  asks: [[100, 2]],
  health,
});

/**
 * Waits until the collector's live book has applied an update after the last published snapshot. A
 * sequence break found on that very book state would publish it again as resyncing, and its stored
 * row (same exchange time) would then read resyncing: the break must come on a later state.
 */
async function waitForLaterState(p: CollectorPipeline) {
  const seq = books(p).at(-1)!.seq!;
  const exchange = p.service.exchanges[0]!.exchange as unknown as { orderbooks: Record<string, { nonce?: number } | undefined> };
  await waitFor('a book update after the last snapshot', () => exchange.orderbooks[SYMBOL]?.nonce ?? 0, (n) => n > seq, { timeoutMs: 5_000, intervalMs: 5 });
}

const bookFeed = (p: CollectorPipeline) => p.service.collector.feeds.find((f) => f.channel === 'books')!;

describe('book health in PostgreSQL (0007)', () => {
  it('rows stored before 0007 read as unverified; a snapshot published again takes the health of its later observation', async () => {
    const db = await openPglite();
    const dir = await migrationsBefore(TIMESCALE_MIGRATIONS_DIR, '0007');
    try {
      await runMigrations(db, dir);
      await db.query(
        `INSERT INTO book_snapshots (exchange, symbol, ts, local_ts, seq, depth, bids, asks)
         VALUES ('okx', $1, ms_to_ts($2::bigint), ms_to_ts($2::bigint), 1, 1, '[[99,1]]', '[[100,2]]')`,
        [SYMBOL, T0 - 1_000],
      );
      expect((await runMigrations(db)).applied).toContain('0007_book_health.sql');
      const store = new PostgresMarketStore(db);
      expect((await store.latestBook('okx', SYMBOL))?.health).toBe('unverified');
      await store.writeEvents([stored('healthy', T0 + 5)]);
      expect(await store.latestBook('okx', SYMBOL)).toEqual(stored('healthy', T0 + 5));
      // it went stale with no new update: same exchange time, later receipt time
      await store.writeEvents([stored('stale', T0 + 30_000)]);
      expect(await store.latestBook('okx', SYMBOL)).toEqual(stored('stale', T0 + 30_000));
      // a replay of the earlier observation changes nothing; both in one batch, the later wins
      await store.writeEvents([stored('healthy', T0 + 5)]);
      await store.writeEvents([stored('resyncing', T0 + 40_000), stored('unverified', T0 + 35_000)]);
      expect(await store.latestBook('okx', SYMBOL)).toEqual(stored('resyncing', T0 + 40_000));
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('order book health against the simulated OKX (checksums verified by the collector)', () => {
  it('a corrupted checksum makes the book resyncing; a fresh snapshot makes it healthy again; the store has both', async () => {
    const { sim: s, pipeline: p } = await start('okx', 61);
    await waitForPath(p, 0, ['healthy'], 'a checksum-verified book');
    const before = books(p).length;
    s.faults.corruptChecksums(1, { protocol: 'okx', symbol: SYMBOL });
    await waitForPath(p, before, ['resyncing', 'healthy'], 'resync after a bad checksum');
    s.market.stop();
    await p.settle();

    expect(s.faults.injected().badChecksums).toBe(1);
    const feed = bookFeed(p);
    expect(feed).toMatchObject({ bookBreaks: 1, bookResyncs: 1, bookHealth: 'healthy' });
    expect(feed.lastError).toMatch(/checksum/);
    // the resync was an unWatch and a new subscription: OKX answered it with a fresh snapshot
    expect(feed.resubscribes).toBe(1);
    // the transition was published at once: the broken book's own state is stored, marked
    expect(transitions(books(p))).toEqual(['healthy', 'resyncing', 'healthy']);
    expect(await storedHealth('okx')).toEqual(['healthy', 'resyncing', 'healthy']);
    expect((await p.store.latestBook('okx', SYMBOL))?.health).toBe('healthy');
  }, 60_000);

  it('a skipped seqId (ccxt raises InvalidNonce) makes the book resyncing until the new snapshot, then healthy', async () => {
    const { sim: s, pipeline: p } = await start('okx', 62);
    await waitForPath(p, 0, ['healthy'], 'a checksum-verified book');
    await waitForLaterState(p);
    const before = books(p).length;
    s.faults.skipDepthUpdate(SYMBOL, 1, { protocol: 'okx' });
    await waitForPath(p, before, ['resyncing', 'healthy'], 'resync after a sequence gap');
    s.market.stop();
    await p.settle();

    expect(s.faults.injected().bookGaps).toBe(1);
    const feed = bookFeed(p);
    expect(feed).toMatchObject({ bookBreaks: 1, bookResyncs: 1, bookHealth: 'healthy' });
    expect(feed.lastError).toMatch(/sequence/);
    expect(await storedHealth('okx')).toEqual(['healthy', 'resyncing', 'healthy']);
  }, 60_000);
});

describe('order book health when the feed goes quiet', () => {
  it('a book with no update within the stale window is stored as stale at once, and is healthy again after the resubscribe', async () => {
    const { sim: s, pipeline: p } = await start('okx', 66, { staleAfterMs: { books: 1_500 } });
    await waitForPath(p, 0, ['healthy'], 'a checksum-verified book');
    const before = books(p).length;
    s.faults.pauseStreams(SYMBOL);
    await waitForPath(p, before, ['stale'], 'the book to go stale');
    s.faults.resumeStreams(SYMBOL);
    await waitForPath(p, before, ['stale', 'healthy'], 'a fresh snapshot after the resubscribe');
    s.market.stop();
    await p.settle();

    const feed = bookFeed(p);
    expect(feed.resubscribes).toBeGreaterThanOrEqual(1);
    expect(feed.bookBreaks).toBe(0);
    expect(transitions(books(p))).toEqual(['healthy', 'stale', 'healthy']);
    // the stale snapshot is the last healthy one's book state (same exchange time): that row now says stale
    expect((await storedHealth('okx')).slice(-2)).toEqual(['stale', 'healthy']);
  }, 60_000);
});

describe('order book health against the simulated Binance (no checksum: sequence plus REST cross-check)', () => {
  it('is healthy once a REST snapshot agrees; a U/u gap makes it resyncing, and the fresh snapshot is checked again', async () => {
    const { sim: s, pipeline: p } = await start('binance', 63);
    await waitForPath(p, 0, ['unverified', 'healthy'], 'a book the REST cross-check verified');
    await waitForLaterState(p);
    const before = books(p).length;
    s.faults.skipDepthUpdate(SYMBOL, 1, { protocol: 'binance' });
    await waitForPath(p, before, ['resyncing', 'healthy'], 'resync after a sequence gap');
    s.market.stop();
    await p.settle();

    expect(s.faults.injected().bookGaps).toBe(1);
    const feed = bookFeed(p);
    expect(feed).toMatchObject({ bookBreaks: 1, bookResyncs: 1, bookHealth: 'healthy' });
    expect(feed.bookCrossChecks).toBeGreaterThanOrEqual(2);
    expect(transitions(books(p))).toEqual(['unverified', 'healthy', 'resyncing', 'unverified', 'healthy']);
    expect(await storedHealth('binance')).toEqual(['unverified', 'healthy', 'resyncing', 'unverified', 'healthy']);
  }, 60_000);

  it('a book that silently diverged (a level the exchange does not have) is found by the REST cross-check and resynced', async () => {
    const { sim: s, pipeline: p } = await start('binance', 64, { bookCrossCheckMs: 500 });
    await waitForPath(p, 0, ['healthy'], 'a verified book');
    // the market stops, so the exchange's book stands still; then the client's copy goes wrong
    // without any sequence gap (what a lost or misapplied delta would do)
    s.market.stop();
    const exchange = p.service.exchanges[0]!.exchange as unknown as { orderbooks: Record<string, { bids: { store(p: number, a: number): void }; nonce?: number }> };
    const live = exchange.orderbooks[SYMBOL]!;
    await waitFor('the live book to reach the exchange', () => live.nonce, (n) => n === s.market.lastUpdateId(SYMBOL), { timeoutMs: 5_000 });
    const second = s.market.book(SYMBOL, 2).bids[1]!;
    const before = books(p).length;
    live.bids.store(second.price, second.amount + 1);
    await waitForPath(p, before, ['resyncing', 'healthy'], 'the cross-check to find the divergence and the resync to repair it');
    await p.settle();

    const feed = bookFeed(p);
    expect(feed.bookBreaks).toBe(1);
    expect(feed.lastError).toMatch(/cross-check break: REST snapshot disagrees: 1 level\(s\) differ: REST bid/);
    // the repaired book is the exchange's again
    const repaired = (await p.store.latestBook('binance', SYMBOL))!;
    expect(repaired.health).toBe('healthy');
    expect(repaired.bids[1]).toEqual([second.price, second.amount]);
  }, 60_000);
});

describeWithService('clickhouse', 'order book health in ClickHouse', (url) => {
  let ch: TestClickHouse;
  beforeAll(async () => {
    ch = await createClickHouseTestDatabase(url);
  });
  afterAll(() => ch?.dispose());

  it('0003 applies to a database holding books; those read as unverified, new ones keep their health', async () => {
    const name = `qicore_t_${randomBytes(6).toString('hex')}`;
    await createClickHouseDatabase(url, name);
    const old = openClickHouse(url, { database: name });
    const dir = await migrationsBefore(CLICKHOUSE_MIGRATIONS_DIR, '0003');
    const store = new ClickHouseMarketStore(old);
    try {
      await runClickHouseMigrations(old, dir);
      await old.insert('book_snapshots_in', [
        { exchange: 'okx', symbol: SYMBOL, ts: T0 - 1_000, local_ts: T0 - 995, seq: 1, depth: 1, bids: [], asks: [] },
      ]);
      expect((await runClickHouseMigrations(old)).applied).toContain('0003_book_health.sql');
      expect((await store.latestBook('okx', SYMBOL))?.health).toBe('unverified');
      await store.writeEvents([stored('resyncing', T0 + 5)]);
      expect(await store.latestBook('okx', SYMBOL)).toEqual(stored('resyncing', T0 + 5));
    } finally {
      await store.close();
      await dropClickHouseDatabase(url, name);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stored snapshots carry their health and read back with it; a re-published snapshot reads with its later health', async () => {
    const { sim: s, pipeline: p } = await start('okx', 65);
    await waitForPath(p, 0, ['healthy'], 'a checksum-verified book');
    const before = books(p).length;
    s.faults.corruptChecksums(1, { protocol: 'okx', symbol: SYMBOL });
    await waitForPath(p, before, ['resyncing', 'healthy'], 'resync after a bad checksum');
    s.market.stop();
    await p.settle();

    const published = books(p);
    await ch.store.writeEvents(published);
    const rows = await ch.ch.query<{ health: BookHealth }>(
      sql`SELECT health FROM book_snapshots WHERE exchange = 'okx' AND symbol = ${SYMBOL} ORDER BY ts, local_ts`,
    );
    expect(transitions(rows)).toEqual(['healthy', 'resyncing', 'healthy']);
    expect((await ch.store.latestBook('okx', SYMBOL))?.health).toBe('healthy');
    // the same snapshot seen again later, gone stale: the later observation wins on read
    const last = published.at(-1)!;
    await ch.store.writeEvents([{ ...last, localTs: last.localTs + 1_000, health: 'stale' }]);
    expect(await ch.store.latestBook('okx', SYMBOL)).toEqual({ ...last, localTs: last.localTs + 1_000, health: 'stale' });
  }, 60_000);
});
