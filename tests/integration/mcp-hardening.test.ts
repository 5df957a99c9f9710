import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER, createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { McpMetrics } from '../../layers/shared/src/mcp/metrics.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { trade } from '../fixtures/events.js';

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};
const ISSUER = 'https://auth.example.test/pool';

describe('MCP endpoint hardening: per-tool scopes, resource metadata, Origin, rate limit, metrics', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let secret: Uint8Array;
  const metrics = new McpMetrics({ processMetrics: false });

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    await store.writeEvents([trade()]);
    const query = new MarketQueryService(store, { now: () => Date.now() });
    secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: 'test', logger: silentLogger, metrics }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }),
      authorizationServers: [ISSUER],
      allowedOrigins: ['https://console.example.test'],
      rateLimit: { limit: 40, windowMs: 60_000 },
      metrics,
      exposeMetrics: true,
      logger: silentLogger,
    });
  });

  afterAll(async () => {
    await http?.close();
    await store?.close();
  });

  const token = (subject: string, scopes: string[]) => issueDevToken(secret, { subject, scopes });

  async function post(headers: Record<string, string>, body: unknown, sessionId?: string): Promise<Response> {
    return fetch(http.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...(sessionId && { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' }),
        ...headers,
      },
      body: JSON.stringify(body),
    });
  }

  /** Opens a session with raw HTTP and returns its id. */
  async function open(bearer: string): Promise<string> {
    const res = await post({ authorization: `Bearer ${bearer}` }, INITIALIZE);
    expect(res.status).toBe(200);
    await res.body?.cancel();
    const id = res.headers.get('mcp-session-id')!;
    const ack = await post({ authorization: `Bearer ${bearer}` }, { jsonrpc: '2.0', method: 'notifications/initialized' }, id);
    expect(ack.status).toBe(202);
    return id;
  }

  const callListMarkets = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'list_markets', arguments: {} } };

  it('serves RFC 9728 protected resource metadata naming the issuer and scopes, and 401s point to it', async () => {
    const res = await fetch(new URL('/.well-known/oauth-protected-resource/mcp', http.url));
    expect(res.status).toBe(200);
    const meta = (await res.json()) as Record<string, unknown>;
    expect(meta).toMatchObject({ resource: http.url, authorization_servers: [ISSUER], bearer_methods_supported: ['header'] });
    expect(meta['scopes_supported']).toContain('market:read');
    const unauthenticated = await post({}, INITIALIZE);
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers.get('www-authenticate')).toContain(
      `resource_metadata="${new URL('/.well-known/oauth-protected-resource/mcp', http.url).href}"`,
    );
  });

  it('lets a token without market:read open a session but answers its tool call with 403 insufficient_scope', async () => {
    const bearer = await token('no-scope', ['memory:write']);
    const session = await open(bearer);
    const res = await post({ authorization: `Bearer ${bearer}` }, callListMarkets, session);
    expect(res.status).toBe(403);
    const challenge = res.headers.get('www-authenticate')!;
    expect(challenge).toMatch(/^Bearer error="insufficient_scope"/);
    expect(challenge).toContain('scope="market:read"');
    expect(challenge).toContain('resource_metadata=');
    expect(await res.json()).toMatchObject({ error: 'insufficient_scope' });
  });

  it('accepts the scope plain or with a Cognito resource-server prefix', async () => {
    for (const scope of ['market:read', 'https://mcp.example.test/market:read']) {
      const bearer = await token(`scoped-${scope.length}`, [scope]);
      const session = await open(bearer);
      const res = await post({ authorization: `Bearer ${bearer}` }, callListMarkets, session);
      expect(res.status, scope).toBe(200);
      expect(await res.text()).toContain('BTC/USDT');
    }
  });

  it('refuses a foreign browser Origin with 403 and lets configured and loopback origins through', async () => {
    const bearer = await token('origin', ['market:read']);
    const foreign = await post({ authorization: `Bearer ${bearer}`, origin: 'https://evil.example' }, INITIALIZE);
    expect(foreign.status).toBe(403);
    for (const origin of ['https://console.example.test', 'http://localhost:6274']) {
      const ok = await post({ authorization: `Bearer ${bearer}`, origin }, INITIALIZE);
      expect(ok.status, origin).toBe(200);
      await ok.body?.cancel();
    }
  });

  it('rate-limits per token principal with 429, leaving other principals alone', async () => {
    const noisy = await token('noisy', ['market:read']);
    const statuses: number[] = [];
    for (let i = 0; i < 45; i++) {
      const res = await post({ authorization: `Bearer ${noisy}` }, { jsonrpc: '2.0', id: i, method: 'ping' });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses.filter((s) => s === 429).length).toBe(5);
    // IETF RateLimit headers on every answer; Retry-After on a refusal
    const limited = await post({ authorization: `Bearer ${noisy}` }, { jsonrpc: '2.0', id: 99, method: 'ping' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('ratelimit-policy')).toBe('40;w=60');
    expect(limited.headers.get('ratelimit')).toMatch(/^limit=40, remaining=0, reset=\d+$/);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
    const calm = await post({ authorization: `Bearer ${await token('calm', ['market:read'])}` }, INITIALIZE);
    expect(calm.status).toBe(200);
    expect(calm.headers.get('ratelimit')).toMatch(/^limit=40, remaining=39, reset=\d+$/);
    await calm.body?.cancel();
  });

  it('refuses other media types, compressed bodies and other methods with an error the client can read', async () => {
    const bearer = await token('media', ['market:read']);
    const plain = await post({ authorization: `Bearer ${bearer}`, 'content-type': 'text/plain' }, INITIALIZE);
    expect(plain.status).toBe(415);
    expect(await plain.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000, message: expect.stringContaining('application/json') } });
    const latin = await post({ authorization: `Bearer ${bearer}`, 'content-type': 'application/json; charset=iso-8859-1' }, INITIALIZE);
    expect(latin.status).toBe(415);
    const gzip = await post({ authorization: `Bearer ${bearer}`, 'content-encoding': 'gzip' }, INITIALIZE);
    expect(gzip.status).toBe(415);
    expect(await gzip.text()).toContain('Content-Encoding gzip');
    const ok = await post({ authorization: `Bearer ${bearer}`, 'content-type': 'application/json; charset=UTF-8' }, INITIALIZE);
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
    const put = await fetch(http.url, { method: 'PUT', headers: { authorization: `Bearer ${bearer}` } });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST, DELETE');
    const other = await fetch(new URL('/nowhere', http.url));
    expect(other.status).toBe(404);
  });

  it('exposes Prometheus metrics with tool calls, outcomes, latency and HTTP statuses', async () => {
    const res = await fetch(new URL('/metrics', http.url));
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/mcp_tool_calls_total\{tool="list_markets",outcome="ok"\} [1-9]/);
    expect(text).toMatch(/mcp_tool_duration_seconds_count\{tool="list_markets"\} [1-9]/);
    expect(text).toMatch(/mcp_http_responses_total\{status="403"\} [1-9]/);
    expect(text).toMatch(/mcp_http_responses_total\{status="429"\} 6/);
    expect(text).toMatch(/mcp_http_responses_total\{status="415"\} 3/);
  });
});
