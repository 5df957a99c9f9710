import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { FeedStatus, LedgerEvent } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { trade } from '../fixtures/events.js';

const NOW = Date.now();

function status(overrides: Partial<FeedStatus>): FeedStatus {
  return {
    type: 'feed_status',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    channel: 'trades',
    runId: 'run-1',
    startedAt: NOW - 600_000,
    ts: NOW - 1_000,
    messages: 100,
    events: 120,
    rejected: 0,
    malformed: 0,
    duplicates: 0,
    reordered: 0,
    gapsDetected: 0,
    gapsFilled: 0,
    gapsUnfilled: 0,
    tradesRecovered: 0,
    reconnects: 0,
    resubscribes: 0,
    watchErrors: 0,
    lastMessageTs: NOW - 2_000,
    lastMessageLocalTs: NOW - 1_500,
    lastError: null,
    malformedSample: null,
    ...overrides,
  };
}

describe('get_data_health over MCP, from the completeness ledger', () => {
  let http: McpHttpServer;
  let client: Client;
  let market: PostgresMarketStore;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    market = new PostgresMarketStore(db);
    const ledger = new PostgresLedgerStore(db);
    await market.writeEvents([trade()]);
    const events: LedgerEvent[] = [
      status({ gapsDetected: 2, gapsFilled: 1, gapsUnfilled: 1, tradesRecovered: 40, reconnects: 1, duplicates: 3 }),
      status({ symbol: 'ETH/USDT', lastMessageLocalTs: NOW - 300_000, lastMessageTs: NOW - 300_000 }),
      status({ exchange: 'okx', symbol: 'BTC/USDT', malformed: 2 }),
      {
        type: 'gap', exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', gapId: 'g1', runId: 'run-1', kind: 'id', reason: 'reconnect',
        status: 'filled', fromId: '1001', toId: '1040', fromTs: NOW - 60_000, toTs: NOW - 50_000, missing: 40, recovered: 40,
        detectedAt: NOW - 55_000, resolvedAt: NOW - 54_000, detail: null, ts: NOW - 54_000,
      },
      {
        type: 'gap', exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', gapId: 'g2', runId: 'run-1', kind: 'id', reason: 'sequence',
        status: 'unfilled', fromId: '2001', toId: '9000', fromTs: NOW - 30_000, toTs: NOW - 20_000, missing: 7000, recovered: 0,
        detectedAt: NOW - 25_000, resolvedAt: NOW - 24_000, detail: 'larger than the fill limit', ts: NOW - 24_000,
      },
    ];
    await ledger.writeLedger(events);
    const query = new MarketQueryService(market, { now: () => Date.now() });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, ledger, version: 'test', logger: silentLogger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger: silentLogger,
    });
    const token = await issueDevToken(secret, { subject: 'agent', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'test', version: '0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await market?.close();
  });

  const call = async (args: Record<string, unknown>) => (await client.callTool({ name: 'get_data_health', arguments: args })) as CallToolResult;

  it('rates every feed and lists recent gaps, unfilled ones included', async () => {
    const r = await call({});
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    const out = r.structuredContent as { summary: Record<string, number>; feeds: Record<string, unknown>[]; gaps: Record<string, unknown>[] };
    const byKey = Object.fromEntries(out.feeds.map((f) => [`${f.exchange as string} ${f.symbol as string}`, f]));
    expect(byKey['binance BTC/USDT']).toMatchObject({ status: 'degraded', gapsDetected: 2, gapsFilled: 1, gapsUnfilled: 1, tradesRecovered: 40, duplicates: 3 });
    expect(byKey['binance ETH/USDT']).toMatchObject({ status: 'stale' });
    expect(byKey['okx BTC/USDT']).toMatchObject({ status: 'ok', malformed: 2 });
    expect(out.summary).toMatchObject({ feeds: 3, ok: 1, degraded: 1, stale: 1 });
    expect(out.gaps.map((g) => [g.fromId, g.status])).toEqual([['2001', 'unfilled'], ['1001', 'filled']]);
  });

  it('filters by market and gap state, and says which feeds exist when a filter matches none', async () => {
    const r = await call({ exchange: 'Binance', symbol: 'btc/usdt', gapStatus: 'unfilled' });
    const out = r.structuredContent as { feeds: unknown[]; gaps: { toId: string }[] };
    expect(out.feeds).toHaveLength(1);
    expect(out.gaps.map((g) => g.toId)).toEqual(['9000']);
    const none = await call({ exchange: 'kraken' });
    expect(none.isError).toBe(true);
    expect(JSON.stringify(none.content)).toMatch(/binance BTC\/USDT/);
  });
});
