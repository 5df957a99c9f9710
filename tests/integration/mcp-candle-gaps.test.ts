import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { GapEvent, Timeframe, Trade } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { CandleGap, CandlesPage } from '../../layers/shared/src/query/market-query.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { RoutedMarketReader } from '../../layers/shared/src/query/routed-market-reader.js';
import { T0, trade } from '../fixtures/events.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { describeWithService } from '../support/services.js';

const MIN = 60_000;
const m = (minute: number) => T0 + minute * MIN;

/** One trade 1 s into each given minute of T0's hour (minutes may run past 59). */
function minuteTrades(symbol: string, minutes: readonly number[], exchange = 'binance'): Trade[] {
  return minutes.map((minute, i) => trade({ exchange, symbol, id: String(i + 1), ts: m(minute) + 1_000, localTs: m(minute) + 1_050, price: 100 + i }));
}

function gapEvent(overrides: Partial<GapEvent>): GapEvent {
  return {
    type: 'gap',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    channel: 'trades',
    gapId: 'g1',
    runId: 'run-1',
    kind: 'id',
    reason: 'sequence',
    status: 'unfilled',
    fromId: '3',
    toId: '4',
    fromTs: null,
    toTs: null,
    missing: 2,
    recovered: 0,
    detectedAt: m(5) + 1_200,
    resolvedAt: null,
    detail: null,
    ts: m(5) + 1_200,
    ...overrides,
  };
}

/**
 * BTC/USDT: trades in minutes 0 1 2 5 6 8 9; the ledger holds an unfilled hole between the trades of
 * minutes 2 and 5 (so 3 and 4 are lost), and nothing about minute 7 (a quiet minute).
 * ETH/USDT: trades in minutes 0 4 8; a hole 0-4 filled without trades in 1-3, a hole 4-8 still open.
 * DOGE/USDT (illiquid): trades in minutes 0 17 45 65 only, no ledger gap.
 * SPARSE/USDT: a trade every other minute for 600 minutes. okx BTC/USDT: every minute of the hour before T0.
 */
const BTC_MINUTES = [0, 1, 2, 5, 6, 8, 9];
const NOW = m(12) + 30_000;

describe('get_candles marks missing buckets as gaps, with the reason the ledger gives', () => {
  let db: TestDatabase;
  let store: PostgresMarketStore;
  let ledger: PostgresLedgerStore;
  let query: MarketQueryService;
  const btc = { exchange: 'binance', symbol: 'BTC/USDT' };

  beforeAll(async () => {
    db = await createTestDatabase('pglite');
    store = new PostgresMarketStore(db.db);
    ledger = new PostgresLedgerStore(db.db);
    await store.writeEvents([
      ...minuteTrades('BTC/USDT', BTC_MINUTES),
      ...minuteTrades('ETH/USDT', [0, 4, 8]),
      ...minuteTrades('DOGE/USDT', [0, 17, 45, 65]),
      ...minuteTrades('SPARSE/USDT', Array.from({ length: 300 }, (_, i) => i * 2)),
      ...minuteTrades('BTC/USDT', Array.from({ length: 60 }, (_, i) => i - 60), 'okx'),
    ]);
    await ledger.writeLedger([
      gapEvent({ fromTs: m(2) + 1_000, toTs: m(5) + 1_000 }),
      gapEvent({ symbol: 'ETH/USDT', gapId: 'e1', status: 'filled', fromTs: m(0) + 1_000, toTs: m(4) + 1_000, detectedAt: m(4) + 2_000, resolvedAt: m(4) + 3_000, ts: m(4) + 3_000 }),
      gapEvent({ symbol: 'ETH/USDT', gapId: 'e2', status: 'open', fromTs: m(4) + 1_000, toTs: m(8) + 1_000, detectedAt: m(8) + 2_000, ts: m(8) + 2_000 }),
      // another market's hole must not leak into BTC/USDT
      gapEvent({ symbol: 'DOGE/USDT', exchange: 'okx', gapId: 'x', fromTs: m(6), toTs: m(8) }),
    ]);
    query = new MarketQueryService(store, { now: () => NOW });
  });
  afterAll(() => db.dispose());

  const candles = (symbol: string, timeframe: Timeframe, extra: Record<string, unknown> = {}, now = NOW, withLedger = true) =>
    new MarketQueryService(store, { now: () => now }).getCandles({ exchange: 'binance', symbol, timeframe, ...extra }, withLedger ? ledger : undefined);
  const gap = (from: number, to: number, reason: CandleGap['reason'], size = MIN): CandleGap => ({ from, to, buckets: (to - from) / size, reason });

  it('reports a hole in the middle and at both edges, each with its reason, and never as a candle', async () => {
    const page = await query.getCandles({ ...btc, timeframe: '1m', since: m(-2), limit: 100 }, ledger);
    expect(page.candles.map((c) => c.ts)).toEqual(BTC_MINUTES.map(m));
    expect(page.window).toEqual({ from: m(-2), to: m(12) });
    expect(page.gaps).toEqual([
      gap(m(-2), m(0), 'before_first_data'),
      gap(m(3), m(5), 'feed_gap_unfilled'),
      gap(m(7), m(8), 'no_trades'),
      // minute 12 is forming and holds nothing yet: not a gap
      gap(m(10), m(12), 'after_last_data'),
    ]);
    expect(page.missingBuckets).toBe(7);
    expect(page.gapsOmitted).toBe(0);
    expect(page.ledger).toBe('checked');
    // the candles on both sides of the lost trades are short of them
    expect(page.candles.map((c) => [c.ts, c.feedGap, c.missingMinutes])).toEqual(
      BTC_MINUTES.map((x) => [m(x), x === 2 || x === 5 ? 'unfilled' : null, 0]),
    );
    expect(page.nextCursor).toBeNull();
  });

  it('the latest N: the window runs from the oldest candle to the current bucket', async () => {
    const page = await query.getCandles({ ...btc, timeframe: '1m' }, ledger);
    expect(page.window).toEqual({ from: m(0), to: m(12) });
    expect(page.gaps.map((g) => g.reason)).toEqual(['feed_gap_unfilled', 'no_trades', 'after_last_data']);
  });

  it('tells a filled hole (no trade there) from one being filled', async () => {
    const page = await candles('ETH/USDT', '1m', { since: m(0) });
    expect(page.gaps).toEqual([gap(m(1), m(4), 'no_trades'), gap(m(5), m(8), 'feed_gap_open'), gap(m(9), m(12), 'after_last_data')]);
    // minute 4 touches both holes: the worse one (open) is shown
    expect(page.candles.map((c) => c.feedGap)).toEqual(['filled', 'open', 'open']);
  });

  it('an illiquid market: minutes without trades are quiet, not errors, and rolled-up hours count them', async () => {
    const now = m(130) + 10_000;
    const minutes = await candles('DOGE/USDT', '1m', { since: m(0), limit: 1000 }, now);
    expect(minutes.gaps).toEqual([
      gap(m(1), m(17), 'no_trades'),
      gap(m(18), m(45), 'no_trades'),
      gap(m(46), m(65), 'no_trades'),
      gap(m(66), m(130), 'after_last_data'),
    ]);
    const hours = await candles('DOGE/USDT', '1h', { since: m(0) }, now);
    expect(hours.candles.map((c) => [c.ts, c.missingMinutes, c.feedGap, c.trades])).toEqual([
      [m(0), 57, null, 3],
      [m(60), 59, null, 1],
    ]);
    // hour 2 is the current one and holds nothing: not a gap yet
    expect(hours.gaps).toEqual([]);
    expect(hours.window).toEqual({ from: m(0), to: m(120) });
  });

  it('rolled-up candles count the ended minutes they lack; a whole hour lacks none', async () => {
    const fiveMin = await query.getCandles({ ...btc, timeframe: '5m', since: m(0) }, ledger);
    expect(fiveMin.candles.map((c) => [c.ts, c.missingMinutes, c.feedGap, c.closed])).toEqual([
      [m(0), 2, 'unfilled', true],
      [m(5), 1, 'unfilled', true],
    ]);
    // the forming hour: 12 minutes have ended, 7 of them hold trades
    const hour = await query.getCandles({ ...btc, timeframe: '1h', since: m(0) }, ledger);
    expect(hour.candles.map((c) => [c.ts, c.missingMinutes, c.closed])).toEqual([[m(0), 5, false]]);
    const whole = await query.getCandles({ exchange: 'okx', symbol: 'BTC/USDT', timeframe: '1h', since: m(-60) }, ledger);
    expect(whole.candles.map((c) => [c.ts, c.missingMinutes, c.feedGap, c.trades])).toEqual([[m(-60), 0, null, 60]]);
    // and the hour after the okx data is after the data, not a quiet hour
    expect(whole.gaps).toEqual([]);
    expect(whole.window).toEqual({ from: m(-60), to: m(0) });
    // weeks open on Monday 00:00 UTC (T0 is a Monday noon): the count buckets them the same way
    expect(await store.candleMinutes({ ...btc, timeframe: '1w', since: m(-720), until: m(60) })).toEqual([{ ts: m(-720), minutes: 7 }]);
  });

  it('takes minute counts from the candle read itself; counts them apart only within maxCountedMinutes: null, never a guess', async () => {
    const bounded = new MarketQueryService(store, { now: () => NOW }, { maxCountedMinutes: 30 });
    const hour = await bounded.getCandles({ ...btc, timeframe: '1h', since: m(0) }, ledger);
    const unbounded = await query.getCandles({ ...btc, timeframe: '1h', since: m(0) }, ledger);
    // the stores return each candle's minutes (rollups keep them on write): no bound applies
    expect(hour.candles.map((c) => c.missingMinutes)).toEqual(unbounded.candles.map((c) => c.missingMinutes));
    expect(hour.candles[0]!.missingMinutes).toBeGreaterThan(0);
    // a store that does not return them: counted apart, and not past the bound
    const withoutCounts = Object.assign(Object.create(store) as PostgresMarketStore, {
      candles: async (q: Parameters<PostgresMarketStore['candles']>[0]) => (await store.candles(q)).map(({ minutes: _, ...c }) => c),
    });
    const fallback = new MarketQueryService(withoutCounts, { now: () => NOW }, { maxCountedMinutes: 30 });
    expect((await fallback.getCandles({ ...btc, timeframe: '1h', since: m(0) }, ledger)).candles.map((c) => c.missingMinutes)).toEqual([null]);
    const counted = new MarketQueryService(withoutCounts, { now: () => NOW });
    expect((await counted.getCandles({ ...btc, timeframe: '1h', since: m(0) }, ledger)).candles.map((c) => c.missingMinutes)).toEqual(
      unbounded.candles.map((c) => c.missingMinutes),
    );
    const fiveMin = await bounded.getCandles({ ...btc, timeframe: '5m', since: m(0) }, ledger);
    expect(fiveMin.candles.map((c) => c.missingMinutes)).toEqual([2, 1]);
  });

  it('pages across gaps both ways: windows adjoin and every bucket is a candle or a gap exactly once', async () => {
    const walk = async (first: Record<string, unknown>): Promise<CandlesPage[]> => {
      const pages: CandlesPage[] = [];
      let cursor: string | null = null;
      do {
        const page: CandlesPage = await query.getCandles({ ...btc, timeframe: '1m', limit: 3, ...(cursor ? { cursor, ...first } : first) }, ledger);
        pages.push(page);
        cursor = page.nextCursor;
      } while (cursor && pages.length < 20);
      return pages;
    };
    const covered = (pages: CandlesPage[]) =>
      pages
        .flatMap((p) => [...p.candles.map((c) => ({ ts: c.ts, what: 'candle' })), ...p.gaps.flatMap((g) => Array.from({ length: g.buckets }, (_, i) => ({ ts: g.from + i * MIN, what: g.reason })))])
        .sort((a, b) => a.ts - b.ts);
    const expected = Array.from({ length: 12 }, (_, i) => ({
      ts: m(i),
      what: BTC_MINUTES.includes(i) ? 'candle' : i === 3 || i === 4 ? 'feed_gap_unfilled' : i === 7 ? 'no_trades' : 'after_last_data',
    }));

    const backward = await walk({});
    expect(backward.map((p) => p.candles.map((c) => c.ts))).toEqual([[m(6), m(8), m(9)], [m(1), m(2), m(5)], [m(0)]]);
    expect(backward.map((p) => p.window)).toEqual([{ from: m(6), to: m(12) }, { from: m(1), to: m(6) }, { from: m(0), to: m(1) }]);
    expect(covered(backward)).toEqual(expected);

    const forward = await walk({ since: m(0) });
    expect(forward.map((p) => p.candles.map((c) => c.ts))).toEqual([[m(0), m(1), m(2)], [m(5), m(6), m(8)], [m(9)]]);
    expect(forward.map((p) => p.window)).toEqual([{ from: m(0), to: m(3) }, { from: m(3), to: m(9) }, { from: m(9), to: m(12) }]);
    expect(covered(forward)).toEqual(expected);
  });

  it('keeps the answer bounded: at most maxGapRanges ranges, the rest counted', async () => {
    const now = m(700);
    const page = await candles('SPARSE/USDT', '1m', { since: m(0), limit: 1000 }, now);
    expect(page.candles).toHaveLength(300);
    // 299 one-minute holes between the trades, then the minutes after the last one
    expect(page.gaps).toHaveLength(100);
    expect(page.gapsOmitted).toBe(200);
    expect(page.missingBuckets).toBe(299 + (700 - 599));
    expect(page.gaps.every((g) => g.reason === 'no_trades' && g.buckets === 1)).toBe(true);
    // a hole far longer than the page: one range, not a bucket per minute
    const far = await candles('BTC/USDT', '1m', { since: m(-400 * 24 * 60), limit: 5 });
    expect(far.gaps[0]).toEqual(gap(m(-400 * 24 * 60), m(0), 'before_first_data'));
  });

  it('without a ledger it does not claim a quiet market', async () => {
    const page = await candles('BTC/USDT', '1m', { since: m(0) }, NOW, false);
    expect(page.ledger).toBe('absent');
    expect(page.gaps.map((g) => g.reason)).toEqual(['unverified', 'unverified', 'after_last_data']);
    expect(page.candles.every((c) => c.feedGap === null)).toBe(true);
  });

  it('RoutedMarketReader counts minutes on both sides of the handover', async () => {
    // history holds every minute; recent only those from T0 + 5 min (its retention window)
    const recentDb = await createTestDatabase('pglite');
    try {
      const recent = new PostgresMarketStore(recentDb.db);
      await recent.writeEvents(minuteTrades('BTC/USDT', BTC_MINUTES).filter((t) => t.ts >= m(5)));
      const handoverAt = m(5) - 30_000;
      const routed = new RoutedMarketReader(recent, store, { now: () => NOW }, { ticksMs: NOW - handoverAt, candlesMs: NOW - handoverAt });
      const q = { ...btc, since: m(0), until: m(12) };
      expect(await routed.candleMinutes({ ...q, timeframe: '5m' })).toEqual([{ ts: m(0), minutes: 3 }, { ts: m(5), minutes: 4 }]);
      expect(await routed.candleMinutes({ ...q, timeframe: '1h' })).toEqual([{ ts: m(0), minutes: 7 }]);
      // the recent store alone would miss the older minutes
      expect(await recent.candleMinutes({ ...q, timeframe: '1h' })).toEqual([{ ts: m(0), minutes: 4 }]);
    } finally {
      await recentDb.dispose();
    }
  });

  describe('through the MCP tool over HTTP with a JWT', () => {
    let http: McpHttpServer;
    let client: Client;

    beforeAll(async () => {
      const secret = new Uint8Array(randomBytes(32));
      http = await startMcpHttpServer({
        buildServer: () => buildServer({ query, ledger, version: 'test', logger: silentLogger }),
        verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
        logger: silentLogger,
      });
      const token = await issueDevToken(secret, { subject: 'agent', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
      client = new Client({ name: 'gaps', version: '0.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    });
    afterAll(async () => {
      await client?.close();
      await http?.close();
    });

    it('states gaps, completeness and provenance in the output its schema describes', async () => {
      const { tools } = await client.listTools();
      const tool = tools.find((t) => t.name === 'get_candles')!;
      expect(tool.description).toMatch(/never a flat candle/);
      expect(Object.keys(tool.outputSchema?.properties ?? {})).toEqual(expect.arrayContaining(['gaps', 'window', 'missingBuckets', 'gapsOmitted', 'ledger']));
      // the SDK client validates structuredContent against the output schema
      const result = (await client.callTool({ name: 'get_candles', arguments: { ...btc, timeframe: '5m', since: m(-5) } })) as CallToolResult;
      expect(result.isError).toBeFalsy();
      const out = result.structuredContent as {
        candles: { ts: number; missingMinutes: number; feedGap: string | null; complete: boolean; source: string }[];
        gaps: { from: number; to: number; fromIso: string; toIso: string; buckets: number; reason: string }[];
        window: { from: number; to: number; fromIso: string };
        ledger: string;
      };
      expect(out.candles.map((c) => [c.ts, c.missingMinutes, c.feedGap, c.complete, c.source])).toEqual([
        [m(0), 2, 'unfilled', false, 'trades'],
        [m(5), 1, 'unfilled', false, 'trades'],
      ]);
      expect(out.gaps).toEqual([{ from: m(-5), to: m(0), fromIso: new Date(m(-5)).toISOString(), toIso: new Date(m(0)).toISOString(), buckets: 1, reason: 'before_first_data' }]);
      expect(out.window.fromIso).toBe(new Date(m(-5)).toISOString());
      expect(out.ledger).toBe('checked');
      const whole = (await client.callTool({ name: 'get_candles', arguments: { exchange: 'okx', symbol: 'BTC/USDT', timeframe: '1h', since: m(-60) } })) as CallToolResult;
      expect((whole.structuredContent as typeof out).candles.map((c) => c.complete)).toEqual([true]);
    });

    it('a 1000-candle answer with hundreds of holes stays small', async () => {
      const result = (await client.callTool({ name: 'get_candles', arguments: { exchange: 'binance', symbol: 'SPARSE/USDT', since: m(0), limit: 1000 } })) as CallToolResult;
      const out = result.structuredContent as { gaps: unknown[]; gapsOmitted: number };
      expect(out.gaps).toHaveLength(100);
      expect(out.gapsOmitted).toBeGreaterThan(0);
    });
  });
});

describeWithService('clickhouse', 'ClickHouseMarketStore.candleMinutes', (url) => {
  let ch: TestClickHouse;
  let pgDb: TestDatabase;
  beforeAll(async () => {
    ch = await createClickHouseTestDatabase(url);
    pgDb = await createTestDatabase('pglite');
  }, 30_000);
  afterAll(async () => {
    await ch?.dispose();
    await pgDb?.dispose();
  });

  it('counts the minutes a bucket holds as PostgreSQL does, a minute held from both sources once', async () => {
    const pg = new PostgresMarketStore(pgDb.db);
    const events = [
      ...minuteTrades('BTC/USDT', [...BTC_MINUTES, 61, 62]),
      // an exchange candle for a minute that also has trades, and one for a minute that has none
      ...[1, 7].map((minute) => ({
        type: 'candle' as const,
        exchange: 'binance',
        symbol: 'BTC/USDT',
        timeframe: '1m' as const,
        ts: m(minute),
        open: 1,
        high: 1,
        low: 1,
        close: 1,
        volume: 1,
        closed: true,
        source: 'exchange' as const,
      })),
    ];
    await pg.writeEvents(events);
    await ch.store.writeEvents(events);
    for (const timeframe of ['5m', '1h', '1d', '1w'] as const) {
      const q = { exchange: 'binance', symbol: 'BTC/USDT', timeframe, since: m(-720), until: m(120) };
      const fromPg = await pg.candleMinutes(q);
      expect(await ch.store.candleMinutes(q), timeframe).toEqual(fromPg);
    }
    expect(await pg.candleMinutes({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h', since: m(0), until: m(120) })).toEqual([
      { ts: m(0), minutes: 8 },
      { ts: m(60), minutes: 2 },
    ]);
  });
});
