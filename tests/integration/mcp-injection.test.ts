import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
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
  const errors: string[] = [];

  beforeAll(async () => {
    store = await createTestStore(backend, serverUrl);
    await store.store.writeEvents([
      ...Array.from({ length: 50 }, (_, i) => trade({ id: String(i + 1), ts: T0 + i * 1000 })),
      ticker(),
      book(),
      candle({ ts: T0 - 60_000 }),
    ]);
    const query = new MarketQueryService(store.store, { now: () => T0 + 120_000 });
    const secret = new Uint8Array(randomBytes(32));
    // errors logged anywhere in the server (tool failures, HTTP failures) are collected
    const logger = createLogger({ sink: (line) => (JSON.parse(line).level === 'error' ? errors.push(line) : undefined) });
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: 'test', logger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger,
    });
    const token = await issueDevToken(secret, { subject: 'attacker', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'fuzz', version: '0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
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
      expect(variants.length, tool.name).toBeGreaterThan(0);
      for (const variant of variants) {
        for (const payload of PAYLOADS) {
          const result = (await client.callTool({ name: tool.name, arguments: variant(payload) })) as CallToolResult;
          calls += 1;
          const text = JSON.stringify(result.content);
          expect(text, `${tool.name} ${JSON.stringify(variant(payload))}`).not.toMatch(/Internal error|syntax error|SQLSTATE|relation .* does not exist/i);
        }
      }
    }
    expect(calls).toBeGreaterThan(200);
    expect(errors).toEqual([]);
    expect(await counts()).toEqual(before);
  });
});
