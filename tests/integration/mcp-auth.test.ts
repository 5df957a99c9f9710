import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InvalidTokenError, ServerError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import {
  createJwtVerifier,
  DEV_SECRET_FILE,
  DEV_TOKEN_AUDIENCE,
  DEV_TOKEN_ISSUER,
  issueDevToken,
  loadOrCreateDevSecret,
} from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { createLogger, silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { trade } from '../fixtures/events.js';

const SCOPE = 'market:read';
const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};
const RESOURCE_METADATA = 'http://127.0.0.1/.well-known/oauth-protected-resource';

describe('development secret', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mcp-auth-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is created once with mode 0600 and reused on restart', async () => {
    const first = await loadOrCreateDevSecret(join(dir, 'data'));
    expect(first.length).toBeGreaterThanOrEqual(32);
    const file = join(dir, 'data', DEV_SECRET_FILE);
    if (process.platform !== 'win32') expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await loadOrCreateDevSecret(join(dir, 'data'))).toEqual(first);

    await chmod(file, 0o644);
    expect(await loadOrCreateDevSecret(join(dir, 'data'))).toEqual(first);
    if (process.platform !== 'win32') expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('refuses a secret file that is too short', async () => {
    await writeFile(join(dir, DEV_SECRET_FILE), Buffer.from('short').toString('base64url'), { mode: 0o600 });
    await expect(loadOrCreateDevSecret(dir)).rejects.toBeInstanceOf(ConfigError);
    expect(() => createJwtVerifier({ kind: 'hs256', secret: new Uint8Array(16), issuer: 'a', audience: 'b' })).toThrow(ConfigError);
  });
});

describe('MCP HTTP endpoint auth and sessions', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let secret: Uint8Array;
  const clients: Client[] = [];
  const errorsLogged: string[] = [];

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    await store.writeEvents([trade()]);
    const query = new MarketQueryService(store, { now: () => Date.now() });
    secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: 'test', logger: silentLogger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }),
      requiredScopes: [SCOPE],
      resourceMetadataUrl: RESOURCE_METADATA,
      logger: createLogger({ sink: (line) => void (JSON.parse(line).level === 'error' && errorsLogged.push(line)) }),
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await http?.close();
    await store?.close();
  });

  const token = (subject = 'agent-a', scopes = [SCOPE]) => issueDevToken(secret, { subject, scopes });

  async function post(headers: Record<string, string>, body: unknown = INITIALIZE): Promise<Response> {
    return fetch(http.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  async function expect401(authorization: string | undefined): Promise<void> {
    const res = await post(authorization === undefined ? {} : { authorization });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token"/);
    expect(res.headers.get('www-authenticate')).toContain(`resource_metadata="${RESOURCE_METADATA}"`);
    expect(await res.json()).toMatchObject({ error: 'invalid_token' });
  }

  async function connect(bearer: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
    const transport = new StreamableHTTPClientTransport(new URL(http.url), {
      requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
    });
    const client = new Client({ name: 'test', version: '0' });
    await client.connect(transport);
    clients.push(client);
    return { client, transport };
  }

  /** A token like issueDevToken's, with any claim overridden. */
  const sign = (claims: Record<string, unknown>, key: Uint8Array = secret, alg = 'HS256') => {
    const now = Math.floor(Date.now() / 1000);
    const base = { sub: 'agent-a', iss: DEV_TOKEN_ISSUER, aud: DEV_TOKEN_AUDIENCE, scope: SCOPE, iat: now, exp: now + 600 };
    return new SignJWT({ ...base, ...claims }).setProtectedHeader({ alg }).sign(key);
  };

  it('answers /healthz without a token', async () => {
    const res = await fetch(new URL('/healthz', http.url));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('refuses missing, malformed and non-bearer tokens with 401', async () => {
    await expect401(undefined);
    await expect401('Bearer not-a-jwt');
    await expect401('Bearer a.b.c');
    await expect401(`Basic ${Buffer.from('u:p').toString('base64')}`);
  });

  it('refuses a wrong signature, another algorithm, alg none, wrong claims and expiry with 401, never 500', async () => {
    await expect401(`Bearer ${await sign({}, new Uint8Array(randomBytes(32)))}`);
    await expect401(`Bearer ${await sign({}, secret, 'HS512')}`);
    await expect401(`Bearer ${await sign({ iss: 'someone-else' })}`);
    await expect401(`Bearer ${await sign({ aud: 'other-api' })}`);
    await expect401(`Bearer ${await sign({ exp: Math.floor(Date.now() / 1000) - 60 })}`);
    await expect401(`Bearer ${await sign({ exp: undefined })}`);
    // control: the same builder with nothing overridden is accepted
    expect((await post({ authorization: `Bearer ${await sign({})}` })).status).toBe(200);

    // alg none, hand-built: a valid payload with the signature dropped
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const payload = { sub: 'agent-a', iss: DEV_TOKEN_ISSUER, aud: DEV_TOKEN_AUDIENCE, scope: SCOPE, exp: Math.floor(Date.now() / 1000) + 600 };
    await expect401(`Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`);
    await expect401(`Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}`);
    // a valid token's signature grafted onto an altered payload
    const [header, , signature] = (await sign({})).split('.');
    await expect401(`Bearer ${header}.${b64({ ...payload, sub: 'admin' })}.${signature}`);
  });

  it('refuses a valid token without the required scope with 403', async () => {
    const res = await post({ authorization: `Bearer ${await token('agent-a', [])}` });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toContain('insufficient_scope');
  });

  it('serves a client with a valid token', async () => {
    const { client } = await connect(await token());
    const { tools } = await client.listTools();
    // the market and analysis tools a market:read token may call (no ledger, signal store or memory here)
    expect(tools.length).toBe(12);
    const result = await client.callTool({ name: 'list_markets', arguments: {} });
    expect(result.structuredContent).toMatchObject({ total: 1, markets: [{ exchange: 'binance', symbol: 'BTC/USDT' }] });
  });

  it('gives each client its own session, bound to its token’s subject', async () => {
    const tokenA = await token('agent-a');
    const tokenB = await token('agent-b');
    const a = await connect(tokenA);
    const b = await connect(tokenB);
    expect(a.transport.sessionId).toBeTruthy();
    expect(b.transport.sessionId).toBeTruthy();
    expect(a.transport.sessionId).not.toBe(b.transport.sessionId);
    await Promise.all([a.client.listTools(), b.client.listTools()]);

    const listTools = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
    // B's token cannot drive A's session: it looks like no session at all
    const hijack = await post({ authorization: `Bearer ${tokenB}`, 'mcp-session-id': a.transport.sessionId! }, listTools);
    expect(hijack.status).toBe(404);
    expect(await hijack.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 }, id: null });

    const unknown = await post({ authorization: `Bearer ${tokenA}`, 'mcp-session-id': 'no-such-session' }, listTools);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32001 } });

    const noSession = await post({ authorization: `Bearer ${tokenA}` }, listTools);
    expect(noSession.status).toBe(400);

    // DELETE ends A's session; B's keeps working
    const sessionA = a.transport.sessionId!;
    await a.transport.terminateSession();
    const gone = await post({ authorization: `Bearer ${tokenA}`, 'mcp-session-id': sessionA }, listTools);
    expect(gone.status).toBe(404);
    expect((await b.client.listTools()).tools.length).toBe(12);
  });

  it('bounds the request body and answers JSON errors without stack traces', async () => {
    const auth = { authorization: `Bearer ${await token()}` };
    const big = await post(auth, { ...INITIALIZE, params: { ...INITIALIZE.params, padding: 'x'.repeat(200_000) } });
    expect(big.status).toBe(413);
    const bigText = await big.text();
    expect(JSON.parse(bigText)).toMatchObject({ error: { message: 'Request body too large' } });
    expect(bigText).not.toMatch(/at .*\.js/);

    const broken = await post(auth, '{"jsonrpc": ');
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error: { code: -32700 } });
    // JSON, but not an object or array: refused as express.json() refused it
    expect((await post(auth, '"initialize"')).status).toBe(400);
  });

  it('stops reading a streamed body that passes the limit without a Content-Length, and keeps serving', async () => {
    const { port } = new URL(http.url);
    const bearer = await token();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      // chunked: 64 KiB pieces until the server answers (a server reading all of it would never answer)
      const piece = `{"pad":"${'x'.repeat(64 * 1024)}`;
      let sent = 0;
      const more = () => {
        while (sent < 64 && req.write(piece)) sent += 1;
        if (sent < 64) req.once('drain', more);
        else req.end();
      };
      more();
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { message: 'Request body too large' } });
    expect((await post({ authorization: `Bearer ${bearer}` })).status).toBe(200);
  });

  it('lets a client go away mid-body without an error logged, and keeps serving', async () => {
    const { port } = new URL(http.url);
    const bearer = await token();
    await new Promise<void>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port,
        path: '/mcp',
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', 'content-length': 5_000 },
      });
      req.on('error', () => resolve());
      req.write('{"jsonrpc":"2.0","id":1,');
      setTimeout(() => req.destroy(), 100);
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(errorsLogged).toEqual([]);
    expect((await post({ authorization: `Bearer ${bearer}` })).status).toBe(200);
  });

  it('caps open sessions and closes idle ones', async () => {
    const query = new MarketQueryService(store, { now: () => Date.now() });
    const small = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: 'test', logger: silentLogger }),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }),
      maxSessions: 1,
      sessionIdleMs: 150,
      logger: silentLogger,
    });
    try {
      const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${await token()}` };
      const init = () => fetch(small.url, { method: 'POST', headers, body: JSON.stringify(INITIALIZE) });
      const first = await init();
      expect(first.status).toBe(200);
      const sessionId = first.headers.get('mcp-session-id')!;
      await first.body?.cancel();
      expect((await init()).status).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const ping = { jsonrpc: '2.0', id: 2, method: 'ping' };
      // the idle session was closed, which freed its place; its owner can still continue it (resumed)
      expect((await init()).status).toBe(200);
      const idle = await fetch(small.url, { method: 'POST', headers: { ...headers, 'mcp-session-id': sessionId }, body: JSON.stringify(ping) });
      expect(idle.status).toBe(503);
    } finally {
      await small.close();
    }
  });

  it('refuses a foreign Host header (DNS rebinding)', async () => {
    const { port } = new URL(http.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/healthz', headers: { host: `evil.example:${port}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });
});

describe('JWKS verifier', () => {
  let jwksServer: Server;
  let jwksUrl: string;
  let failJwks = false;
  let signKey: CryptoKey;

  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    signKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    jwksServer = createServer((req, res) => {
      if (failJwks) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => new Promise<void>((resolve) => jwksServer.close(() => resolve())));

  const ISSUER = 'https://idp.example/pool';
  const asymmetric = (key: CryptoKey | Uint8Array, alg: string, claims: Record<string, unknown> = {}) =>
    new SignJWT({ scope: 'market:read other', client_id: 'app-1', ...claims })
      .setProtectedHeader({ alg, kid: 'k1' })
      .setSubject('user-1')
      .setIssuer(ISSUER)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key);

  it('accepts tokens signed by a key of the set, for a configured client', async () => {
    const verifier = createJwtVerifier({ kind: 'jwks', jwksUrl, issuer: ISSUER, clientIds: ['app-1'] });
    const info = await verifier.verifyAccessToken(await asymmetric(signKey, 'ES256'));
    expect(info).toMatchObject({ clientId: 'app-1', scopes: ['market:read', 'other'], extra: { subject: 'user-1' } });
    expect(info.expiresAt).toBeGreaterThan(Date.now() / 1000);
  });

  it('refuses foreign keys, other clients, HS256 and alg none with InvalidTokenError', async () => {
    const verifier = createJwtVerifier({ kind: 'jwks', jwksUrl, issuer: ISSUER, clientIds: ['app-1'] });
    const other = await generateKeyPair('ES256');
    await expect(verifier.verifyAccessToken(await asymmetric(other.privateKey, 'ES256'))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(verifier.verifyAccessToken(await asymmetric(signKey, 'ES256', { client_id: 'app-2' }))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(verifier.verifyAccessToken(await asymmetric(new Uint8Array(randomBytes(32)), 'HS256'))).rejects.toBeInstanceOf(InvalidTokenError);
    const [, payload] = (await asymmetric(signKey, 'ES256')).split('.');
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
    await expect(verifier.verifyAccessToken(none)).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it('reports an unreachable key set as a server error, not a bad token', async () => {
    failJwks = true;
    try {
      const verifier = createJwtVerifier({ kind: 'jwks', jwksUrl, issuer: ISSUER, audience: 'api' });
      const error = await verifier.verifyAccessToken(await asymmetric(signKey, 'ES256', { aud: 'api' })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ServerError);
    } finally {
      failJwks = false;
    }
  });

  it('needs an audience or client ids, and https except on loopback', () => {
    expect(() => createJwtVerifier({ kind: 'jwks', jwksUrl, issuer: ISSUER })).toThrow(ConfigError);
    expect(() => createJwtVerifier({ kind: 'jwks', jwksUrl: 'http://idp.example/jwks', issuer: ISSUER, audience: 'a' })).toThrow(ConfigError);
  });
});

describe('development tokens', () => {
  it('carry subject, scopes and expiry the verifier reads back', async () => {
    const secret = new Uint8Array(randomBytes(32));
    const tokenText = await issueDevToken(secret, { subject: 'me', scopes: ['a', 'b'], ttlSeconds: 60 });
    const info = await createJwtVerifier({ kind: 'hs256', secret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }).verifyAccessToken(tokenText);
    expect(info).toMatchObject({ token: tokenText, clientId: 'me', scopes: ['a', 'b'], extra: { subject: 'me' } });
    expect(info.expiresAt! - Date.now() / 1000).toBeGreaterThan(50);
    await expect(issueDevToken(secret, { subject: 'me', ttlSeconds: 0 })).rejects.toBeInstanceOf(ConfigError);
  });

  it('are verified once and then served from the cache until they expire, never past it', async () => {
    const secret = new Uint8Array(randomBytes(32));
    let now = Date.now();
    const verifier = createJwtVerifier({
      kind: 'hs256',
      secret,
      issuer: DEV_TOKEN_ISSUER,
      audience: DEV_TOKEN_AUDIENCE,
      clockToleranceSeconds: 0,
      cache: { maxEntries: 2, now: () => now },
    });
    const tokenText = await issueDevToken(secret, { subject: 'me', ttlSeconds: 60 });
    const first = await verifier.verifyAccessToken(tokenText);
    // the same object back: served from the cache, not verified again
    expect(await verifier.verifyAccessToken(tokenText)).toBe(first);
    now = first.expiresAt! * 1000 + 1;
    await expect(verifier.verifyAccessToken(tokenText)).rejects.toThrow('token has expired');
    // a tampered token is never a cache hit, even while the genuine one is cached
    now = Date.now();
    const again = await verifier.verifyAccessToken(tokenText);
    const [h, p] = tokenText.split('.');
    await expect(verifier.verifyAccessToken(`${h}.${p}.${'A'.repeat(43)}`)).rejects.toBeInstanceOf(InvalidTokenError);
    // bounded: past maxEntries the oldest is verified afresh
    for (const subject of ['a', 'b']) await verifier.verifyAccessToken(await issueDevToken(secret, { subject, ttlSeconds: 60 }));
    expect(await verifier.verifyAccessToken(tokenText)).not.toBe(again);
  });
});
