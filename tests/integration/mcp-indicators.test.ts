import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { candle } from '../fixtures/events.js';

/** TA-Lib golden vectors (tests/fixtures/talib/golden.c): the store is filled with their input as 1m candles. */
interface Golden {
  readonly input: Record<'open' | 'high' | 'low' | 'close' | 'volume', number[]>;
  readonly outputs: Record<string, { begIdx: number } & Record<string, number[]>>;
}
const golden = JSON.parse(readFileSync(new URL('../fixtures/talib/golden.json', import.meta.url), 'utf8')) as Golden;
const BARS = golden.input.close.length;
const T0 = Date.UTC(2026, 0, 5, 0, 0);
const MIN = 60_000;
const NOW = T0 + BARS * MIN + 5 * MIN;

interface Point { ts: number; closed: boolean; values: Record<string, number | null> }
interface Result { name: string; params: Record<string, unknown>; convention: string; lookback: number; settled: boolean; points: Point[]; latest: Point | null }
interface Answer { results: Result[]; warmupBars: number; missingBars: number; freshness: { ageMs: number | null } }

describe('compute_indicators over MCP (HTTP + JWT), from stored candles', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let client: Client;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    const { open, high, low, close, volume } = golden.input;
    await store.writeEvents(
      close.map((c, i) =>
        candle({ ts: T0 + i * MIN, open: open[i]!, high: high[i]!, low: low[i]!, close: c, volume: volume[i]!, source: 'exchange' }),
      ),
    );
    const query = new MarketQueryService(store, { now: () => NOW });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: '0.0.0', logger: silentLogger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger: silentLogger,
    });
    const token = await issueDevToken(secret, { subject: 'agent', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'test', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await store?.close();
  });

  async function call(args: Record<string, unknown>): Promise<CallToolResult> {
    return (await client.callTool({ name: 'compute_indicators', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ...args } })) as CallToolResult;
  }
  async function ok(args: Record<string, unknown>): Promise<Answer> {
    const r = await call(args);
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    return r.structuredContent as unknown as Answer;
  }
  const within = (a: number, b: number) => Math.abs(a - b) / Math.max(1, Math.abs(b));

  it('over the whole stored history equals TA-Lib on every bar', async () => {
    const answer = await ok({
      limit: 500,
      indicators: [{ name: 'rsi' }, { name: 'macd' }, { name: 'adx' }, { name: 'bbands' }, { name: 'atr' }, { name: 'stoch' }, { name: 'ema' }, { name: 'obv' }],
    });
    expect(answer.warmupBars).toBe(0);
    expect(answer.missingBars).toBe(0);
    const columns: Record<string, [string, string][]> = {
      rsi: [['value', 'value']],
      macd: [['macd', 'macd'], ['signal', 'signal'], ['histogram', 'histogram']],
      adx: [['adx', 'value']],
      bbands: [['upper', 'upper'], ['lower', 'lower']],
      atr: [['value', 'value']],
      stoch: [['k', 'k'], ['d', 'd']],
      ema: [['value', 'value']],
      obv: [['value', 'value']],
    };
    for (const r of answer.results) {
      expect(r.points).toHaveLength(BARS);
      const ref = golden.outputs[r.name]!;
      for (const [ours, theirs] of columns[r.name]!) {
        for (let i = 0; i < BARS; i++) {
          const v = r.points[i]!.values[ours];
          if (i < ref.begIdx) expect(v, `${r.name}.${ours} at ${i}`).toBeNull();
          else expect(within(v!, ref[theirs]![i - ref.begIdx]!), `${r.name}.${ours} at ${i}`).toBeLessThan(1e-9);
        }
      }
      expect(r.latest?.ts).toBe(T0 + (BARS - 1) * MIN);
    }
  });

  it('a short window reads enough warm-up that its values equal the full-history ones, and says so', async () => {
    const answer = await ok({ limit: 10, indicators: [{ name: 'rsi' }, { name: 'ema', params: { period: 20 } }] });
    expect(answer.warmupBars).toBeGreaterThan(100);
    for (const r of answer.results) {
      expect(r.settled).toBe(true);
      expect(r.points).toHaveLength(10);
      const ref = golden.outputs[r.name]!.value!;
      r.points.forEach((p, j) => expect(within(p.values.value!, ref[ref.length - 10 + j]!)).toBeLessThan(1e-9));
      expect(r.convention).toMatch(/TA-Lib|Wilder/);
    }
  });

  it('until bounds the candles used; too little history is flagged as not settled', async () => {
    const until = T0 + 60 * MIN;
    const answer = await ok({ until: new Date(until).toISOString(), limit: 5, indicators: [{ name: 'ema', params: { period: 50 } }] });
    const [ema] = answer.results;
    expect(ema!.points.at(-1)!.ts).toBe(until - MIN);
    expect(ema!.settled).toBe(false);
  });

  it('refuses bad parameters and unknown indicators with a message that says what is valid', async () => {
    const bad = await call({ indicators: [{ name: 'macd', params: { fast: 30, slow: 10 } }] });
    expect(bad.isError).toBe(true);
    expect(JSON.stringify(bad.content)).toMatch(/fast must be shorter than slow/);
    const unknown = await call({ indicators: [{ name: 'ichimoku' }] });
    expect(unknown.isError).toBe(true);
    const none = await call({ indicators: [] });
    expect(none.isError).toBe(true);
    const market = await call({ symbol: 'DOGE/USDT', indicators: [{ name: 'rsi' }] });
    expect(JSON.stringify(market.content)).toMatch(/BTC\/USDT/);
  });
});
