import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { InProcessMemory } from '../../layers/shared/src/adapters/memory/in-process-memory.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { ALL_SCOPES } from '../../layers/shared/src/mcp/scopes.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { createLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { book, candle, T0, ticker, trade } from '../fixtures/events.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';

/** Strings aimed at SQL, the JSON layer and the logs; every string input of every tool gets each. */
const PAYLOADS = [
  "' OR '1'='1",
  "'; DROP TABLE trades; --",
  '"; DELETE FROM candles; --',
  "x' UNION SELECT usename FROM pg_user --",
  '$1',
  "%' OR exchange LIKE '%",
  "\\'",
  'a\u0000b',
  "1; SELECT pg_sleep(5)",
  "BTC/USDT' --",
  "😀'\u202e",
  '../../etc/passwd',
  '{"$gt":""}',
];
const TABLES = ['trades', 'tickers', 'book_snapshots', 'candles', 'feeds', 'dead_letters'];

forEachStoreBackend('MCP tools given injection strings in every string input', (backend, serverUrl) => {
  let store: TestStore;
  let http: McpHttpServer;
  let client: Client;
  let memory: InProcessMemory;
  const errors: string[] = [];

  beforeAll(async () => {
    store = await createTestStore(backend, serverUrl);
    await store.store.writeEvents([
      ...Array.from({ length: 50 }, (_, i) => trade({ id: String(i + 1), ts: T0 + i * 1000 })),
      ticker(),
      book(),
      candle({ ts: T0 - 60_000 }),
    ]);
    const clock = { now: () => T0 + 120_000 };
    const query = new MarketQueryService(store.store, clock);
    const signals = new SignalService({ writer: store.store, reader: new PostgresSignalReader(store.db), clock, limits: { perPublisher: 10_000 } });
    memory = new InProcessMemory({ clock, sweepIntervalMs: 0 });
    const secret = new Uint8Array(randomBytes(32));
    // errors logged anywhere in the server (tool failures, HTTP failures) are collected
    const logger = createLogger({ sink: (line) => (JSON.parse(line).level === 'error' ? errors.push(line) : undefined) });
    http = await startMcpHttpServer({
      buildServer: (caller) => buildServer({ query, signals, memory, version: 'test', logger }, caller),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger,
    });
    const token = await issueDevToken(secret, { subject: 'attacker', scopes: [...ALL_SCOPES], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'fuzz', version: '0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await memory?.close();
    await store?.dispose();
  });

  async function counts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const t of TABLES) out[t] = Number((await store.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${t}`)).rows[0]!.n);
    return out;
  }

  /** Valid arguments per tool, to which one string field at a time is replaced by a payload. */
  const VALID: Record<string, Record<string, unknown>> = {
    list_markets: { exchange: 'binance' },
    get_ticker: { exchange: 'binance', symbol: 'BTC/USDT' },
    get_market_snapshot: { symbols: ['BTC/USDT'], exchanges: ['binance'] },
    get_order_book: { exchange: 'binance', symbol: 'BTC/USDT' },
    get_trades: { exchange: 'binance', symbol: 'BTC/USDT', since: T0 },
    get_candles: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m' },
    compute_indicators: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', indicators: [{ name: 'vwap', params: { anchor: 'day' } }] },
    detect_patterns: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m' },
    scan_markets: { timeframe: '1m', conditions: [{ series: 'close', op: '>', value: 0 }], exchanges: ['binance'] },
    compare_exchanges: { symbols: ['BTC/USDT'], exchanges: ['binance'] },
    render_chart: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 10, width: 320, height: 200 },
    backtest_strategy: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', since: T0, entry: { conditions: [{ series: 'close', op: '>', value: 0 }] } },
    get_signals: { symbol: 'BTC/USDT', publisher: 'attacker' },
    publish_signal: { symbol: 'BTC/USDT', exchange: 'binance', direction: 'long', strength: 0.5, confidence: 0.5, horizon: '1h', rationale: 'valid' },
    remember: { key: 'k', value: 'v' },
    recall: { key: 'k' },
    forget: { key: 'gone' },
  };


  it('refuses or answers each one cleanly: no internal error, nothing logged as an error, no table changed', async () => {
    const before = await counts();
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(Object.keys(VALID).sort());
    let calls = 0;
    for (const tool of tools) {
      const valid = VALID[tool.name]!;
      const props = tool.inputSchema.properties as Record<string, { type?: string | string[]; anyOf?: { type?: string }[]; items?: { type?: string } }>;
      const stringFields = Object.entries(props)
        .filter(([, p]) => p.type === 'string' || p.anyOf?.some((a) => a.type === 'string') || p.items?.type === 'string')
        .map(([k, p]) => ({ key: k, array: p.items?.type === 'string' }));
      // nested: the indicator name and a string parameter
      const variants: ((payload: string) => Record<string, unknown>)[] = stringFields.map(({ key, array }) => (payload) => ({ ...valid, [key]: array ? [payload] : payload }));
      if (tool.name === 'compute_indicators') {
        variants.push((payload) => ({ ...valid, indicators: [{ name: payload }] }));
        variants.push((payload) => ({ ...valid, indicators: [{ name: 'vwap', params: { anchor: payload } }] }));
      }
      // nested: a scan condition's series and its right-hand series, a remembered JSON value
      if (tool.name === 'scan_markets') {
        variants.push((payload) => ({ ...valid, conditions: [{ series: payload, op: '>', value: 0 }] }));
        variants.push((payload) => ({ ...valid, conditions: [{ series: 'close', op: '>', value: payload }] }));
      }
      if (tool.name === 'backtest_strategy') {
        variants.push((payload) => ({ ...valid, entry: { conditions: [{ series: payload, op: '>', value: 0 }] } }));
        variants.push((payload) => ({ ...valid, exit: { conditions: [{ series: 'close', op: '<', value: payload }] } }));
      }
      if (tool.name === 'remember') variants.push((payload) => ({ ...valid, value: { note: payload } }));
      expect(variants.length, tool.name).toBeGreaterThan(0);
      for (const variant of variants) {
        for (const payload of PAYLOADS) {
          const result = (await client.callTool({ name: tool.name, arguments: variant(payload) })) as CallToolResult;
          calls += 1;
          const text = JSON.stringify(result.content);
          expect(text, `${tool.name} ${JSON.stringify(variant(payload))}`).not.toMatch(/Internal error|syntax error|SQLSTATE|relation .* does not exist/i);
          // what a write accepted is stored exactly as sent, never interpreted
          if (tool.name === 'publish_signal' && !result.isError) {
            const sent = variant(payload);
            expect((result.structuredContent as { signal: Record<string, unknown> }).signal['rationale']).toBe(sent['rationale']);
          }
          if (tool.name === 'remember' && !result.isError) {
            const sent = variant(payload);
            const back = (await client.callTool({ name: 'recall', arguments: { key: sent['key'] } })) as CallToolResult;
            expect((back.structuredContent as { entries: { value: unknown }[] }).entries[0]!.value).toEqual(sent['value']);
          }
        }
      }
    }
    expect(calls).toBeGreaterThan(200);
    expect(errors).toEqual([]);
    expect(await counts()).toEqual(before);
    // the signals stored are the accepted publishes, their rationale verbatim (a payload or the valid one)
    const stored = (await store.db.query<{ rationale: string }>(`SELECT rationale FROM signals`)).rows.map((r) => r.rationale);
    expect(stored.length).toBeGreaterThan(0);
    for (const r of stored) expect([...PAYLOADS, 'valid']).toContain(r);
  });
});
