import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RedisMemory } from '../../layers/shared/src/adapters/memory/redis-memory.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { callerOf } from '../../layers/shared/src/mcp/caller.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { registerMemoryTools } from '../../layers/shared/src/mcp/tools/memory.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MEMORY_LIMITS } from '../../layers/shared/src/ports/agent-memory.js';
import { waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { expectTextTwin } from '../support/tool-text.js';

type Json = Record<string, unknown>;
interface Entry { key: string; value: unknown; createdAt: number; updatedAt: number; expiresAt: number; expiresAtIso: string }
interface Recalled { entries: Entry[]; count: number; nextCursor: string | null }

const ISSUER = 'qicore-e2e';
const AUDIENCE = 'mcp';

/**
 * remember / recall / forget through the SDK Client over Streamable HTTP with HS256 JWTs, on the
 * Redis adapter: what one token's holder stores, another can neither read, list, overwrite nor
 * forget, whatever arguments it sends. Redis is reached through a TCP proxy so the suite can take
 * it away and see the tools answer with a recoverable error.
 */
describeWithService('redis', 'MCP memory tools over HTTP on Redis', (url) => {
  const keyPrefix = `test:mcp-memory:${randomUUID()}:`;
  const secret = new Uint8Array(randomBytes(32));
  const verifier = createJwtVerifier({ kind: 'hs256', secret, issuer: ISSUER, audience: AUDIENCE });
  let proxy: TcpProxy;
  let memory: RedisMemory;
  let direct: RedisMemory;
  let http: McpHttpServer;
  const clients: Client[] = [];
  let a: Client;
  let b: Client;

  const tokenFor = (subject: string, scopes = ['memory:read', 'memory:write']) =>
    issueDevToken(secret, { subject, scopes, issuer: ISSUER, audience: AUDIENCE });

  async function connect(token: string): Promise<Client> {
    const client = new Client({ name: 'memory-e2e', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    clients.push(client);
    return client;
  }

  async function callRaw(client: Client, name: string, args: Json): Promise<CallToolResult> {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }

  /** A successful call; the SDK client has already checked structuredContent against the outputSchema. */
  async function call<T = Json>(client: Client, name: string, args: Json): Promise<T> {
    const result = await callRaw(client, name, args);
    expect(result.isError, `${name}: ${JSON.stringify(result.content)}`).toBeFalsy();
    expectTextTwin((result.content[0] as { text: string }).text, result.structuredContent as Json);
    return result.structuredContent as T;
  }

  /** A recoverable failure; returns its text. */
  async function failure(client: Client, name: string, args: Json): Promise<string> {
    const result = await callRaw(client, name, args);
    expect(result.isError, `${name} should fail: ${JSON.stringify(result.content)}`).toBe(true);
    return (result.content[0] as { text: string }).text;
  }

  beforeAll(async () => {
    proxy = await startTcpProxy(url);
    memory = new RedisMemory({ url: viaProxy(url, proxy), keyPrefix, commandTimeoutMs: 1_000, logger: silentLogger });
    direct = new RedisMemory({ url, keyPrefix });
    http = await startMcpHttpServer({
      // a server per session, as buildServer makes them; the same element cap as buildServer
      buildServer: () => {
        const server = new McpServer({ name: 'memory-e2e', version: 'e2e' }, { maxToolInputElements: 64 });
        registerMemoryTools(server, { memory, logger: silentLogger });
        return server;
      },
      verifier,
      logger: silentLogger,
    });
    a = await connect(await tokenFor('agent-a'));
    b = await connect(await tokenFor('agent-b'));
  }, 30_000);

  afterAll(async () => {
    for (const client of clients) await client.close();
    await http?.close();
    await memory?.close();
    await direct?.close();
    await proxy?.close();
    const raw = new Redis(url);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await raw.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await raw.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      await raw.quit();
    }
  });

  it('offers remember, recall and forget with honest annotations and no namespace argument', async () => {
    const { tools } = await a.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    expect([...byName.keys()].sort()).toEqual(['forget', 'recall', 'remember']);
    expect(byName.get('recall')!.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false });
    expect(byName.get('remember')!.annotations).toMatchObject({ readOnlyHint: false, idempotentHint: true, openWorldHint: false });
    expect(byName.get('forget')!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    for (const tool of tools) {
      const fields = Object.keys((tool.inputSchema as { properties?: Json }).properties ?? {});
      expect(fields.filter((f) => /namespace|principal|owner|user/i.test(f)), tool.name).toEqual([]);
      expect(tool.outputSchema, tool.name).toBeDefined();
    }
  });

  it("keeps one identity's memory from another: no recall, listing, overwrite or forget across tokens", async () => {
    const plan = { side: 'long', entries: [64_000.5, 63_500], note: 'wait for the retest' };
    const stored = await call<Entry>(a, 'remember', { key: 'plan/btc', value: plan, ttlSeconds: 3_600 });
    expect(stored.expiresAt - stored.updatedAt).toBe(3_600_000);
    expect(stored.expiresAtIso).toBe(new Date(stored.expiresAt).toISOString());

    // B sees nothing of it, by key or by listing, and cannot forget it
    expect((await call<Recalled>(b, 'recall', { key: 'plan/btc' })).entries).toEqual([]);
    expect((await call<Recalled>(b, 'recall', {})).entries).toEqual([]);
    expect((await call<Recalled>(b, 'recall', { prefix: 'plan/' })).entries).toEqual([]);
    expect(await call(b, 'forget', { key: 'plan/btc' })).toEqual({ key: 'plan/btc', forgotten: false });
    // an argument naming A's namespace is not a way in: the namespace never comes from arguments
    const aPrincipal = callerOf({ authInfo: await verifier.verifyAccessToken(await tokenFor('agent-a')) }).principal;
    const sneaky = await callRaw(b, 'recall', { key: 'plan/btc', namespace: aPrincipal, principal: aPrincipal });
    expect(sneaky.isError ? [] : (sneaky.structuredContent as unknown as Recalled).entries).toEqual([]);

    // B's own key of the same name is a different entry
    await call(b, 'remember', { key: 'plan/btc', value: 'short it' });
    const ofA = await call<Recalled>(a, 'recall', { key: 'plan/btc' });
    expect(ofA.entries.map((e) => e.value)).toEqual([plan]);
    expect((await call<Recalled>(b, 'recall', { key: 'plan/btc' })).entries.map((e) => e.value)).toEqual(['short it']);

    // B forgetting its own leaves A's; A forgetting its own leaves B's
    expect(await call(b, 'forget', { key: 'plan/btc' })).toEqual({ key: 'plan/btc', forgotten: true });
    expect((await call<Recalled>(a, 'recall', { key: 'plan/btc' })).entries.map((e) => e.value)).toEqual([plan]);
    await call(b, 'remember', { key: 'plan/btc', value: 'again' });
    expect(await call(a, 'forget', { key: 'plan/btc' })).toEqual({ key: 'plan/btc', forgotten: true });
    expect((await call<Recalled>(a, 'recall', { key: 'plan/btc' })).entries).toEqual([]);
    expect((await call<Recalled>(b, 'recall', { key: 'plan/btc' })).entries.map((e) => e.value)).toEqual(['again']);
  });

  it('pages a listing by prefix with a cursor, and refuses a cursor of another prefix', async () => {
    const c = await connect(await tokenFor('agent-lister'));
    for (let i = 0; i < 25; i++) await call(c, 'remember', { key: `watch/${String(i).padStart(2, '0')}`, value: { i } });
    await call(c, 'remember', { key: 'other', value: 1 });
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const page: Recalled = await call<Recalled>(c, 'recall', { prefix: 'watch/', limit: 10, ...(cursor && { cursor }) });
      sizes.push(page.count);
      seen.push(...page.entries.map((e) => e.key));
      cursor = page.nextCursor;
    } while (cursor !== null);
    expect(sizes).toEqual([10, 10, 5]);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `watch/${String(i).padStart(2, '0')}`));

    const first = await call<Recalled>(c, 'recall', { prefix: 'watch/', limit: 10 });
    expect(await failure(c, 'recall', { prefix: 'other', cursor: first.nextCursor })).toMatch(/cursor/i);
    expect(await failure(c, 'recall', { key: 'other', prefix: 'watch/' })).toMatch(/either key .* or prefix/);
    expect(await failure(c, 'recall', { limit: MEMORY_LIMITS.listMaxEntries + 1 })).toMatch(/limit/);
  });

  it('answers bad keys, oversized values and a full memory with errors that say how to recover', async () => {
    expect(await failure(a, 'remember', { key: 'has space', value: 1 })).toMatch(/letters, digits/);
    expect(await failure(a, 'remember', { key: 'k', value: 1, ttlSeconds: MEMORY_LIMITS.maxTtlMs / 1000 + 1 })).toMatch(/ttlSeconds/);
    const big = await failure(a, 'remember', { key: 'big', value: 'x'.repeat(MEMORY_LIMITS.valueMaxBytes) });
    expect(big).toContain(`at most ${MEMORY_LIMITS.valueMaxBytes}`);
    expect(big).toMatch(/split it over several keys/);

    // C's namespace is its token's principal: filled directly, it is full through the tool
    const token = await tokenFor('agent-full');
    const principal = callerOf({ authInfo: await verifier.verifyAccessToken(token) }).principal;
    for (let i = 0; i < MEMORY_LIMITS.entriesPerNamespace; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => direct.remember(principal, `n${i + j}`, i + j)));
    }
    const c = await connect(token);
    expect(await failure(c, 'remember', { key: 'one-more', value: 1 })).toMatch(/Memory full: .*forget those you no longer need/);
    expect((await call<Entry>(c, 'remember', { key: 'n7', value: 'updated' })).key).toBe('n7');
    expect((await call<Recalled>(c, 'recall', { key: 'n7' })).entries[0]!.value).toBe('updated');
    await call(c, 'forget', { key: 'n8' });
    await call(c, 'remember', { key: 'one-more', value: 1 });
  });

  it('refuses the write tools to a token with memory:read only (403), and lets it recall', async () => {
    const reader = await connect(await tokenFor('agent-a', ['memory:read']));
    await call(a, 'remember', { key: 'shared-name', value: 'of a' });
    expect((await call<Recalled>(reader, 'recall', { key: 'shared-name' })).entries.map((e) => e.value)).toEqual(['of a']);
    await expect(reader.callTool({ name: 'remember', arguments: { key: 'shared-name', value: 'overwritten' } })).rejects.toThrow(/403|insufficient_scope/);
    await expect(reader.callTool({ name: 'forget', arguments: { key: 'shared-name' } })).rejects.toThrow(/403|insufficient_scope/);
    expect((await call<Recalled>(a, 'recall', { key: 'shared-name' })).entries.map((e) => e.value)).toEqual(['of a']);
  });

  it('answers with a recoverable error while Redis is unreachable, and serves the same session once it is back', async () => {
    await call(a, 'remember', { key: 'outage', value: 'before' });
    proxy.cut();
    try {
      for (const [name, args] of [
        ['remember', { key: 'outage', value: 'during' }],
        ['recall', { key: 'outage' }],
        ['recall', {}],
        ['forget', { key: 'outage' }],
      ] as const) {
        const text = await failure(a, name, args);
        expect(text).toMatch(/Agent memory is unavailable right now/);
        expect(text).toMatch(/retry/i);
        expect(text).not.toMatch(/127\.0\.0\.1|redis:\/\//);
      }
    } finally {
      proxy.restore();
    }
    const back = await waitFor('memory reachable again', () => callRaw(a, 'recall', { key: 'outage' }), (r) => !r.isError, { timeoutMs: 15_000, intervalMs: 200 });
    // nothing the failed calls asked for happened later
    expect((back.structuredContent as unknown as Recalled).entries.map((e) => e.value)).toEqual(['before']);
  });
});
