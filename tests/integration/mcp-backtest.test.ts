import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { Candle, GapEvent } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { registerBacktestStrategyTool } from '../../layers/shared/src/mcp/tools/backtest-strategy.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { Backtester, IncompleteRangeError } from '../../layers/shared/src/query/backtester.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { T0, candle } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

const MIN = 60_000;
const m = (minute: number) => T0 + minute * MIN;
const ISSUER = 'qicore-backtest';
const AUDIENCE = 'mcp';
const NOW = m(400) + 30_000;

/** The hand-checked series of the unit test (tests/unit/backtester.test.ts), as 1m exchange candles from minute 0. */
const HAND_CHECKED: readonly (readonly [number, number, number, number])[] = [
  [100, 101, 99, 100],
  [100, 106, 100, 106],
  [107, 110, 106, 109],
  [109, 109, 98, 99],
  [98, 99, 97, 98],
  [98, 104, 97, 106],
  [110, 112, 108, 111],
  [111, 113, 110, 112],
];

function candleAt(minute: number, [open, high, low, close]: readonly [number, number, number, number]): Candle {
  return candle({ ts: m(minute), open, high, low, close, volume: 1 });
}

/**
 * binance BTC/USDT, 1m exchange candles: minutes 0-7 the hand-checked series; 8-12 flat at 100;
 * 13 quiet (no candle, no feed gap); 14-19 flat; 20-39 flat except 24-25, lost: the ledger holds an
 * unfilled hole between minutes 23 and 26.
 */
function seed(): Candle[] {
  const out = HAND_CHECKED.map((row, i) => candleAt(i, row));
  for (let minute = 8; minute < 40; minute++) {
    if (minute === 13 || minute === 24 || minute === 25) continue;
    out.push(candleAt(minute, [100, 100, 100, 100]));
  }
  return out;
}

function unfilledGap(): GapEvent {
  return {
    type: 'gap',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    channel: 'trades',
    gapId: 'g1',
    runId: 'run-1',
    kind: 'time',
    reason: 'reconnect',
    status: 'unfilled',
    fromId: null,
    toId: null,
    fromTs: m(23) + 30_000,
    toTs: m(26) + 30_000,
    missing: null,
    recovered: 0,
    detectedAt: m(26) + 31_000,
    resolvedAt: null,
    detail: null,
    ts: m(26) + 31_000,
  };
}

const STRATEGY = {
  exchange: 'binance',
  symbol: 'BTC/USDT',
  timeframe: '1m',
  entry: { conditions: [{ series: 'close', op: '>', value: 105 }] },
  exit: { conditions: [{ series: 'close', op: '<', value: 100 }] },
  feeBps: 10,
  slippageBps: 50,
  initialCapital: 10_000,
};

describe('backtest_strategy over HTTP with a real JWT, against PGlite', () => {
  let db: TestDatabase;
  let query: MarketQueryService;
  let http: McpHttpServer;
  let client: Client;

  beforeAll(async () => {
    db = await createTestDatabase('pglite');
    const store = new PostgresMarketStore(db.db);
    const ledger = new PostgresLedgerStore(db.db);
    await store.writeEvents(seed());
    // an illiquid market: a candle every other minute, so 149 quiet buckets, more than one candle page lists
    await store.writeEvents(Array.from({ length: 150 }, (_, i) => candle({ symbol: 'SPARSE/USDT', ts: m(2 * i), open: 100, high: 100, low: 100, close: 100, volume: 1 })));
    await ledger.writeLedger([unfilledGap()]);
    query = new MarketQueryService(store, { now: () => NOW });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => {
        const server = new McpServer({ name: 'backtest-test', version: '1.0.0' });
        registerBacktestStrategyTool(server, { query, ledger, logger: silentLogger });
        return server;
      },
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: ISSUER, audience: AUDIENCE }),
      logger: silentLogger,
    });
    const token = await issueDevToken(secret, { subject: 'backtester', scopes: ['market:read'], issuer: ISSUER, audience: AUDIENCE });
    client = new Client({ name: 'backtest', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await db?.dispose();
  });

  const call = async (args: Record<string, unknown>) => (await client.callTool({ name: 'backtest_strategy', arguments: { ...STRATEGY, ...args } })) as CallToolResult;

  it('is offered read-only with an output schema', async () => {
    const { tools } = await client.listTools();
    const tool = tools.find((t) => t.name === 'backtest_strategy');
    expect(tool?.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, idempotentHint: true });
    expect(tool?.outputSchema?.properties).toHaveProperty('trades');
  });

  it('a clean range returns the hand-checked trades and metrics', async () => {
    const result = await call({ since: m(0), until: m(8) });
    expect(result.isError).toBeFalsy();
    const out = result.structuredContent as Record<string, any>;
    // the same figures as the unit test worked by hand
    const qty1 = 10_000 / (107 * 1.005 * 1.001);
    const cash1 = qty1 * 98 * 0.995 * 0.999;
    const qty2 = cash1 / (110 * 1.005 * 1.001);
    const cash2 = qty2 * 112 * 0.995 * 0.999;
    expect(out.trades.map((t: any) => [t.entryTs, t.exitTs, t.exitReason])).toEqual([
      [m(2), m(4), 'signal'],
      [m(6), m(7), 'end_of_range'],
    ]);
    expect(out.trades[0].entryPrice).toBeCloseTo(107.535, 10);
    expect(out.trades[0].exitPrice).toBeCloseTo(97.51, 10);
    expect(out.trades[0].pnl).toBeCloseTo(-950.372, 3);
    expect(out.trades[1].entryPrice).toBeCloseTo(110.55, 10);
    expect(out.trades[1].exitPrice).toBeCloseTo(111.44, 10);
    expect(out.metrics.finalEquity).toBeCloseTo(cash2, 8);
    expect(out.metrics.totalReturnPct).toBeCloseTo(-8.9574, 3);
    expect(out.metrics.maxDrawdownPct).toBeCloseTo(10.6307, 3);
    expect(out.metrics.winRatePct).toBe(50);
    expect(out.metrics.trades).toBe(2);
    expect(out.metrics.buyAndHoldReturnPct).toBeCloseTo(12, 10);
    expect(out).toMatchObject({ bars: 8, quietBuckets: 0, range: { from: m(0), to: m(8) }, warmup: { bars: 0, needed: 0 }, ledger: 'checked', tradesOmitted: 0 });
    expect(out.conventions.execution).toMatch(/NEXT candle's open/);
    // the text carries the trades as CSV
    const text = (result.content[0] as { text: string }).text;
    expect(text).toMatch(/trades \(2, CSV/);
    expect(text).toContain(`${m(2)},`);
  });

  it('a quiet bucket (no trades, no feed gap) is allowed and counted; indicators warm up before the range', async () => {
    const result = await call({ since: m(8), until: m(20), entry: { conditions: [{ series: 'close', op: '>', value: 'sma:5' }] } });
    expect(result.isError).toBeFalsy();
    const out = result.structuredContent as Record<string, any>;
    expect(out).toMatchObject({ bars: 11, quietBuckets: 1, warmup: { bars: 4, needed: 4 }, signalsComplete: true });
    // flat closes never rise above their mean: no trade, equity untouched
    expect(out.metrics).toMatchObject({ trades: 0, totalReturnPct: 0, maxDrawdownPct: 0, winRatePct: null });
  });

  it('an illiquid range with more quiet gaps than one page lists is read in smaller pages and accepted', async () => {
    const result = await call({ symbol: 'SPARSE/USDT', since: m(0), until: m(299) });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ bars: 150, quietBuckets: 149, range: { from: m(0), to: m(299) } });
  });

  it('refuses a range with an unfilled feed gap, naming it and how to recover', async () => {
    const result = await call({ since: m(20), until: m(30) });
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toBeUndefined();
    const text = (result.content[0] as { text: string }).text;
    expect(text).toMatch(/^Backtest refused/);
    expect(text).toContain(`[${new Date(m(24)).toISOString()}, ${new Date(m(26)).toISOString()}) feed_gap_unfilled`);
    // the candles on both sides are short of the lost trades too
    expect(text).toContain(`[${new Date(m(23)).toISOString()}, ${new Date(m(24)).toISOString()}) candle_feed_gap_unfilled`);
    expect(text).toContain('get_data_health');
    // the clean stretch after the hole is accepted
    expect((await call({ since: m(27), until: m(40) })).isError).toBeFalsy();
  });

  it('refuses a range reaching before the data held, and bad input, as recoverable errors', async () => {
    const before = await call({ since: m(-5), until: m(5) });
    expect(before.isError).toBe(true);
    expect((before.content[0] as { text: string }).text).toContain('before_first_data');
    const badSeries = await call({ since: m(0), until: m(8), entry: { conditions: [{ series: 'rsi:0', op: '<', value: 30 }] } });
    expect(badSeries.isError).toBe(true);
    expect((badSeries.content[0] as { text: string }).text).toMatch(/entry\.conditions\[0\]\.series/);
  });

  it('without a ledger an empty bucket cannot be vouched for: refused as unverified, a gapless range still runs', async () => {
    const backtester = new Backtester(query);
    const strategy = { side: 'long' as const, entry: { conditions: [{ series: 'close', op: '>' as const, value: 105 }], match: 'all' as const }, exit: { conditions: [], match: 'any' as const }, positionFraction: 1, feeBps: 0, slippageBps: 0, initialCapital: 1 };
    const refused = backtester.run({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', since: m(8), until: m(20), strategy, maxTrades: 10 });
    await expect(refused).rejects.toBeInstanceOf(IncompleteRangeError);
    await expect(refused).rejects.toThrow(/unverified/);
    const clean = await backtester.run({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', since: m(0), until: m(8), strategy, maxTrades: 10 });
    expect(clean.ledger).toBe('absent');
    expect(clean.trades.map((t) => [t.entryTs, t.exitReason])).toEqual([[m(2), 'end_of_range']]);
  });
});
