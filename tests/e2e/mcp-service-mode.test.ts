import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import { InMemoryCheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import { createKinesisClient } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { decodeStreamEvents } from '../../layers/shared/src/stream/event-codec.js';
import { ALL_SCOPES } from '../../layers/shared/src/mcp/scopes.js';
import { issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { createActiveStream, waitFor } from '../support/pipeline.js';
import { describeWithService, serviceUrl, servicesRequired } from '../support/services.js';

const SECRET = 'an-hs256-secret-of-at-least-32-characters!';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * functions/mcp-server/main.ts as Fargate runs it: configuration from the environment, PostgreSQL,
 * Redis (agent memory, live resource updates) and the stream published signals go on (kinesalite).
 */
describeWithService('postgres', 'MCP server in service mode', (serverUrl) => {
  const kinesis = serviceUrl('kinesis').url;
  const redis = serviceUrl('redis').url;
  const region = 'us-east-1';
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  const streamName = `qicore-signals-${randomUUID().slice(0, 8)}`;
  let database: TestDatabase;
  let child: ChildProcess;
  let url: string;
  let metricsPort: number;
  let stderr = '';

  beforeAll(async () => {
    database = await createTestDatabase('postgres', serverUrl);
    await new PostgresMarketStore(database.db).writeEvents([trade({ id: '1', ts: Date.now() - 1_000 })]);
    if (kinesis) {
      const admin = createKinesisClient({ endpoint: kinesis, region, credentials });
      await createActiveStream(admin, streamName, 1);
      admin.destroy();
    }
    const port = await freePort();
    url = `http://127.0.0.1:${port}/mcp`;
    metricsPort = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', 'functions/mcp-server/main.ts'], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: database.url!,
        MCP_HOST: '127.0.0.1',
        MCP_PORT: String(port),
        JWT_ISSUER: 'https://issuer.test/',
        JWT_AUDIENCE: 'qicore-mcp',
        JWT_HS256_SECRET: SECRET,
        MCP_PUBLIC_URL: 'https://mcp.example.test/mcp',
        MCP_SESSION_SECRET: 'a-session-secret-shared-by-every-task-0123',
        MCP_METRICS_PORT: String(metricsPort),
        ...(redis && { REDIS_URL: redis }),
        ...(kinesis && { STREAM_KIND: 'kinesis', STREAM_NAME: streamName, KINESIS_ENDPOINT: kinesis, AWS_REGION: region, AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' }),
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!stderr.includes('mcp server listening')) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`server did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await database?.dispose();
    if (kinesis) {
      const admin = createKinesisClient({ endpoint: kinesis, region, credentials });
      await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
      admin.destroy();
    }
  });

  // Redis and the Kinesis API are needed as well as PostgreSQL: missing ones skip this test with the
  // reason in its title, or fail it when QICORE_REQUIRE_SERVICES=1 (CI)
  const missing = (['kinesis', 'redis'] as const).map((name) => serviceUrl(name).reason).filter((r): r is string => r !== undefined);
  // skip reason: a service it needs is not running here and nothing requires it; the title says which
  it.skipIf(missing.length > 0 && !servicesRequired())(
    `offers memory on Redis and puts published signals on the stream as well as in the store${missing.length ? ` [skipped: ${missing.join('; ')}]` : ''}`,
    async () => {
      if (missing.length > 0) throw new Error(`required (QICORE_REQUIRE_SERVICES=1) but ${missing.join('; ')}`);
      const token = await issueDevToken(new TextEncoder().encode(SECRET), {
        subject: 'agent-svc',
        scopes: [...ALL_SCOPES],
        issuer: 'https://issuer.test/',
        audience: 'qicore-mcp',
      });
      const client = new Client({ name: 'svc-full', version: '1' });
      await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
      const names = (await client.listTools()).tools.map((t) => t.name);
      for (const tool of ['publish_signal', 'get_signals', 'remember', 'recall', 'forget', 'render_chart']) expect(names).toContain(tool);
      // the market resources are subscribable: the server listens to the writers through Redis
      expect(client.getServerCapabilities()?.resources?.subscribe).toBe(true);

      const key = `svc/${randomUUID()}`;
      expect((await client.callTool({ name: 'remember', arguments: { key, value: { n: 1 } } })).isError).toBeFalsy();
      const recalled = (await client.callTool({ name: 'recall', arguments: { key } })) as { structuredContent?: { entries: { value: unknown }[] } };
      expect(recalled.structuredContent?.entries.map((e) => e.value)).toEqual([{ n: 1 }]);
      await client.callTool({ name: 'forget', arguments: { key } });

      const published = (await client.callTool({
        name: 'publish_signal',
        arguments: { symbol: 'BTC/USDT', direction: 'short', strength: 0.4, confidence: 0.5, horizon: '4h', rationale: 'service-mode check' },
      })) as { isError?: boolean; structuredContent?: { signal: { id: string }; streamed: boolean } };
      expect(published.isError).toBeFalsy();
      expect(published.structuredContent?.streamed).toBe(true);
      const id = published.structuredContent!.signal.id;
      const listed = (await client.callTool({ name: 'get_signals', arguments: { symbol: 'BTC/USDT' } })) as { structuredContent?: { signals: { id: string; publisher: string }[] } };
      expect(listed.structuredContent?.signals).toMatchObject([{ id, publisher: 'agent-svc' }]);
      await client.close();

      const subscription = new KinesisSubscription({ streamName, endpoint: kinesis!, region, credentials, checkpoints: new InMemoryCheckpointStore(), idleDelayMs: 50 });
      try {
        const records = await waitFor('the signal on the stream', () => subscription.poll(100, 500), (r) => r.length > 0, { timeoutMs: 15_000 });
        const events = records.flatMap((r) => decodeStreamEvents(r.data).events);
        expect(records.map((r) => r.partitionKey)).toEqual(['signal:BTC/USDT']);
        expect(events).toMatchObject([{ type: 'signal', id, publisher: 'agent-svc', direction: 'short' }]);
      } finally {
        await subscription.close();
      }
    },
  );

  it('answers tools for a valid token, 401 otherwise, and exits cleanly on SIGTERM', async () => {
    const token = await issueDevToken(new TextEncoder().encode(SECRET), {
      subject: 'agent-1',
      scopes: ['market:read'],
      issuer: 'https://issuer.test/',
      audience: 'qicore-mcp',
    });
    const client = new Client({ name: 'svc', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    const answer = (await client.callTool({ name: 'list_markets', arguments: {} })) as { structuredContent?: { markets: { symbol: string }[] } };
    expect(answer.structuredContent?.markets.map((m) => m.symbol)).toEqual(['BTC/USDT']);
    // the completeness ledger is served in service mode too
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('get_data_health');
    const health = await client.callTool({ name: 'get_data_health', arguments: {} });
    expect(health.isError).toBeFalsy();
    await client.close();

    const wrong = await issueDevToken(new TextEncoder().encode(`${SECRET}-other`), { subject: 'x', issuer: 'https://issuer.test/', audience: 'qicore-mcp' });
    const res = await fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${wrong}`, 'Content-Type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);

    // protected resource metadata names the public URL and the issuer; 401s point to it
    const meta = await fetch(new URL('/.well-known/oauth-protected-resource/mcp', url));
    expect(await meta.json()).toMatchObject({ resource: 'https://mcp.example.test/mcp', authorization_servers: ['https://issuer.test/'] });
    expect(res.headers.get('www-authenticate')).toContain('resource_metadata="https://mcp.example.test/.well-known/oauth-protected-resource/mcp"');
    // metrics on their own port, counting the call above
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/mcp_tool_calls_total\{tool="list_markets",outcome="ok"\} 1/);
    expect((await fetch(new URL('/metrics', url))).status).toBe(404);

    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toContain(SECRET);
    expect(stderr).not.toContain('a-session-secret');
  });
});
