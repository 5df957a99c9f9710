import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { KinesisStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import type { Signal } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { registerGetSignalsTool } from '../../layers/shared/src/mcp/tools/get-signals.js';
import { registerPublishSignalTool } from '../../layers/shared/src/mcp/tools/publish-signal.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock, type StreamRecord, type StreamSubscription } from '../../layers/shared/src/ports/index.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { decodeStreamEvents } from '../../layers/shared/src/stream/event-codec.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';

type Json = Record<string, unknown>;
type SignalOut = Omit<Signal, 'type'> & { iso: string };
interface SignalsAnswer {
  signals: SignalOut[];
  count: number;
  nextCursor: string | null;
  freshness: { newestTs: number | null; ageMs: number | null };
}

const ISSUER = 'qicore-e2e';
const AUDIENCE = 'mcp';

/**
 * publish_signal and get_signals through the SDK's Client over Streamable HTTP with HS256 JWTs of
 * two identities, on a store per backend, with the in-process stream behind the service: what a
 * token publishes is stored under the token's identity, read back at once, put on the stream, and
 * written again by the timescale-writer handler without a second row.
 */
forEachStoreBackend('signals through MCP over HTTP', (backend, serverUrl) => {
  let test: TestStore;
  let stream: MemoryStream;
  let subscription: StreamSubscription;
  let http: McpHttpServer;
  let secret: Uint8Array;
  const clients: Client[] = [];
  let alice: Client;
  let bob: Client;

  async function connect(subject: string, scopes: string[]): Promise<Client> {
    const token = await issueDevToken(secret, { subject, scopes, issuer: ISSUER, audience: AUDIENCE });
    const client = new Client({ name: subject, version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    test = await createTestStore(backend, serverUrl);
    stream = new MemoryStream({ shards: 2 });
    subscription = stream.subscribe();
    const signals = new SignalService({ writer: test.store, reader: new PostgresSignalReader(test.db), clock: systemClock, bus: stream });
    secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      // a server of its own per session, as buildServer(deps, caller) makes them
      buildServer: () => {
        const server = new McpServer({ name: 'signals-e2e', version: '1.0.0' });
        registerPublishSignalTool(server, { signals, logger: silentLogger });
        registerGetSignalsTool(server, { signals, logger: silentLogger });
        return server;
      },
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: ISSUER, audience: AUDIENCE }),
      logger: silentLogger,
    });
    alice = await connect('agent-alice', ['market:read', 'signals:write']);
    bob = await connect('agent-bob', ['market:read', 'signals:write']);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.close();
    await http?.close();
    await stream?.close();
    await test?.dispose();
  });

  async function call<T = Json>(client: Client, name: string, args: Json): Promise<T> {
    const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
    expect(result.isError, `${name}: ${JSON.stringify(result.content)}`).toBeFalsy();
    return result.structuredContent as T;
  }

  async function failure(client: Client, name: string, args: Json): Promise<string> {
    const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
    expect(result.isError, JSON.stringify(result)).toBe(true);
    expect(result.structuredContent).toBeUndefined();
    return (result.content as { type: 'text'; text: string }[]).map((c) => c.text).join('\n');
  }

  /** Everything on the in-process stream not yet read. */
  async function drainStream(): Promise<StreamRecord[]> {
    const records: StreamRecord[] = [];
    for (;;) {
      const batch = await subscription.poll(100, 0);
      if (batch.length === 0) return records;
      records.push(...batch);
      await subscription.checkpoint(batch[0]!.shardId, batch.at(-1)!.sequenceNumber);
    }
  }

  const base = { direction: 'long', strength: 0.8, confidence: 0.65, horizon: '4h', rationale: 'Breakout above the 4h range high on rising volume.' };
  const published: SignalOut[] = [];

  it('stores each signal under the identity of the token that published it; a publisher argument cannot spoof it', async () => {
    const a = await call<{ signal: SignalOut; streamed: boolean }>(alice, 'publish_signal', { ...base, symbol: 'BTC/USDT', exchange: 'binance' });
    const b = await call<{ signal: SignalOut; streamed: boolean }>(bob, 'publish_signal', {
      ...base,
      symbol: 'eth/usdt',
      direction: 'short',
      horizon: '1h',
      rationale: 'Bearish divergence on the 1h RSI.',
    });
    const spoof = await call<{ signal: SignalOut; streamed: boolean }>(alice, 'publish_signal', {
      ...base,
      symbol: 'BTC/USDT',
      direction: 'flat',
      publisher: 'agent-bob',
    });
    published.push(a.signal, b.signal, spoof.signal);
    expect([a.streamed, b.streamed, spoof.streamed]).toEqual([true, true, true]);
    expect(published.map((s) => s.publisher)).toEqual(['agent-alice', 'agent-bob', 'agent-alice']);
    expect(b.signal).toMatchObject({ symbol: 'ETH/USDT', exchange: null, direction: 'short', horizon: '1h' });
    expect(new Set(published.map((s) => s.id)).size).toBe(3);

    // read back at once, by the other identity, each with the publisher of its token
    const all = await call<SignalsAnswer>(bob, 'get_signals', {});
    const newestFirst = [...published].sort((x, y) => y.ts - x.ts || (x.id < y.id ? 1 : -1));
    expect(all.signals).toEqual(newestFirst);
    expect(all.count).toBe(3);
    expect(all.nextCursor).toBeNull();
    expect(all.freshness.newestTs).toBe(newestFirst[0]!.ts);
    expect(all.freshness.ageMs).toBeGreaterThanOrEqual(0);

    const bobs = await call<SignalsAnswer>(alice, 'get_signals', { publisher: 'agent-bob' });
    expect(bobs.signals.map((s) => s.id)).toEqual([b.signal.id]);
    const btcFlat = await call<SignalsAnswer>(alice, 'get_signals', { symbol: 'BTC/USDT', direction: 'flat' });
    expect(btcFlat.signals.map((s) => [s.id, s.publisher])).toEqual([[spoof.signal.id, 'agent-alice']]);
  });

  it('pages newest first with nextCursor, and refuses a cursor reused with other filters', async () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page: SignalsAnswer = await call<SignalsAnswer>(bob, 'get_signals', { limit: 1, ...(cursor && { cursor }) });
      ids.push(...page.signals.map((s) => s.id));
      cursor = page.nextCursor;
      if (cursor) expect(await failure(bob, 'get_signals', { limit: 1, cursor, publisher: 'agent-bob' })).toMatch(/Invalid cursor/);
    } while (cursor);
    expect(ids).toEqual((await call<SignalsAnswer>(bob, 'get_signals', {})).signals.map((s) => s.id));
  });

  it('answers invalid input with an isError result naming the field, and publishes nothing', async () => {
    // bounds in the input schema (checked by the SDK) and rules of the service alike name the field
    expect(await failure(alice, 'publish_signal', { ...base, symbol: 'BTC/USDT', strength: 1.5 })).toMatch(/strength/);
    expect(await failure(alice, 'publish_signal', { ...base, symbol: 'BTCUSDT' })).toMatch(/^Invalid signal: symbol must be a ccxt unified symbol/);
    expect(await failure(alice, 'publish_signal', { ...base, symbol: 'BTC/USDT', exchange: 'Binance Futures' })).toMatch(
      /^Invalid signal: exchange must be a ccxt exchange id/,
    );
    expect(await failure(alice, 'publish_signal', { ...base, symbol: 'BTC/USDT', rationale: '  ' })).toMatch(/rationale must not be empty/);
    const missing = await failure(alice, 'publish_signal', { symbol: 'BTC/USDT', direction: 'long', strength: 0.5, confidence: 0.5, horizon: '1h' });
    expect(missing).toMatch(/rationale/);
    expect(await failure(alice, 'get_signals', { symbol: 'BTC-USDT' })).toMatch(/^Invalid filter: symbol must be a ccxt unified symbol/);
    expect((await call<SignalsAnswer>(alice, 'get_signals', {})).count).toBe(3);
  });

  it('refuses publish_signal to a token without signals:write', async () => {
    const reader = await connect('agent-reader', ['market:read']);
    await expect(reader.callTool({ name: 'publish_signal', arguments: { ...base, symbol: 'BTC/USDT' } })).rejects.toThrow(/403|insufficient_scope/);
    expect((await call<SignalsAnswer>(reader, 'get_signals', {})).count).toBe(3);
  });

  it('puts every published signal on the stream, keyed by symbol; the timescale writer adds no second row', async () => {
    const records = await drainStream();
    const streamed = records.flatMap((r) => decodeStreamEvents(r.data).events) as Signal[];
    expect(streamed.map((s) => s.id).sort()).toEqual(published.map((s) => s.id).sort());
    expect(new Set(records.map((r) => r.partitionKey))).toEqual(new Set(['signal:BTC/USDT', 'signal:ETH/USDT']));
    for (const s of streamed) {
      const { iso: _iso, ...fields } = published.find((p) => p.id === s.id)!;
      expect(s).toEqual({ type: 'signal', ...fields });
    }

    const counters = new Counters<StoreWriterCounter>();
    const handler = createTimescaleWriterHandler({ writer: test.store, logger: silentLogger, counters, source: 'timescale-writer' });
    // delivered twice, as at-least-once delivery may
    for (let round = 0; round < 2; round++) {
      expect(await handler(kinesisEventOf(records), {} as never)).toEqual({ batchItemFailures: [] });
    }
    expect(counters.get('events')).toBe(6);
    expect(counters.get('dead_lettered')).toBe(0);
    expect(counters.get('signals_written')).toBe(0); // each was stored by publish_signal already
    const { rows } = await test.db.query<{ n: number; ids: number }>('SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM signals');
    expect(rows[0]).toEqual({ n: 3, ids: 3 });
    expect((await call<SignalsAnswer>(alice, 'get_signals', {})).count).toBe(3);
  });
});

/** The Kinesis event Lambda's event source would hand the writer for these stream records. */
function kinesisEventOf(records: readonly StreamRecord[]): KinesisStreamEvent {
  return {
    Records: records.map((r) => ({
      kinesis: {
        kinesisSchemaVersion: '1.0',
        partitionKey: r.partitionKey,
        sequenceNumber: r.sequenceNumber,
        data: Buffer.from(r.data).toString('base64'),
        approximateArrivalTimestamp: r.arrivalTs / 1000,
      },
      eventSource: 'aws:kinesis',
      eventVersion: '1.0',
      eventID: `${r.shardId}:${r.sequenceNumber}`,
      eventName: 'aws:kinesis:record',
      invokeIdentityArn: 'arn:aws:iam::000000000000:role/test',
      awsRegion: 'local',
      eventSourceARN: 'arn:aws:kinesis:local:000000000000:stream/signals',
    })),
  };
}
