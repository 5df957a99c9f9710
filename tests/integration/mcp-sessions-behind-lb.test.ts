import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER, createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { trade } from '../fixtures/events.js';

/** A load balancer without stickiness: every HTTP request goes to the next backend in turn. */
async function roundRobin(backends: readonly string[]): Promise<{ url: string; hits: number[]; close(): Promise<void> }> {
  const hits = backends.map(() => 0);
  let next = 0;
  const server = http.createServer((req, res) => {
    const i = next++ % backends.length;
    hits[i]! += 1;
    const target = new URL(backends[i]!);
    const upstream = http.request(
      { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    hits,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

describe('MCP sessions behind a load balancer without stickiness', () => {
  let store: PostgresMarketStore;
  const servers: McpHttpServer[] = [];
  let lb: Awaited<ReturnType<typeof roundRobin>>;
  const jwtSecret = new Uint8Array(randomBytes(32));
  const sessionSecret = new Uint8Array(randomBytes(32));

  const start = async (secret: Uint8Array) => {
    const query = new MarketQueryService(store, { now: () => Date.now() });
    const s = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: 'test', logger: silentLogger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret: jwtSecret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }),
      sessionSecret: secret,
      logger: silentLogger,
    });
    servers.push(s);
    return s;
  };

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    await store.writeEvents([trade()]);
    const a = await start(sessionSecret);
    const b = await start(sessionSecret);
    lb = await roundRobin([a.url, b.url]);
  });

  afterAll(async () => {
    await lb?.close();
    await Promise.all(servers.map((s) => s.close()));
    await store?.close();
  });

  const token = (subject: string) => issueDevToken(jwtSecret, { subject, scopes: ['market:read'] });

  it('an SDK client keeps one session while its requests alternate between two server tasks', async () => {
    const client = new Client({ name: 'lb-client', version: '0' });
    const transport = new StreamableHTTPClientTransport(new URL(lb.url), {
      requestInit: { headers: { Authorization: `Bearer ${await token('agent-a')}` } },
    });
    await client.connect(transport);
    const sessionId = transport.sessionId;
    for (let i = 0; i < 6; i++) {
      const result = await client.callTool({ name: 'list_markets', arguments: {} });
      expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
      expect(result.structuredContent).toMatchObject({ total: 1 });
    }
    expect(transport.sessionId).toBe(sessionId);
    expect(lb.hits.every((h) => h >= 3)).toBe(true);
    await client.close();
  });

  it("another principal cannot continue a session on any task, and a task with another secret does not know it", async () => {
    const owner = new Client({ name: 'owner', version: '0' });
    const ownerTransport = new StreamableHTTPClientTransport(new URL(servers[0]!.url), {
      requestInit: { headers: { Authorization: `Bearer ${await token('agent-a')}` } },
    });
    await owner.connect(ownerTransport);
    const sessionId = ownerTransport.sessionId!;
    const ping = (url: string, bearer: string) =>
      fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${bearer}`,
          'mcp-session-id': sessionId,
          'mcp-protocol-version': '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
      });
    // the same principal on the other task: continued
    const continued = await ping(servers[1]!.url, await token('agent-a'));
    expect(continued.status).toBe(200);
    await continued.body?.cancel();
    // another principal, on either task: unknown session
    for (const s of servers) expect((await ping(s.url, await token('agent-b'))).status).toBe(404);
    const stranger = await start(new Uint8Array(randomBytes(32)));
    expect((await ping(stranger.url, await token('agent-a'))).status).toBe(404);
    await owner.close();
  });
});
