import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ResourceUpdatedNotificationSchema, type TextResourceContents } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { InProcessUpdates } from '../../layers/shared/src/adapters/updates/in-process-updates.js';
import { RedisUpdates } from '../../layers/shared/src/adapters/updates/redis-updates.js';
import { startCollectorService, type CollectorService } from '../../layers/shared/src/collector/collector-service.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import { createUpdateNotifier } from '../../layers/shared/src/consumers/update-notifier.js';
import { bucketStart } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { marketResourceUri, registerMarketResources } from '../../layers/shared/src/mcp/resources/market-resources.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import type { MarketUpdates, MarketUpdatesCounter } from '../../layers/shared/src/ports/market-updates.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, testLogger } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const BTC = 'BTC/USDT';
const TICKER_URI = marketResourceUri({ kind: 'ticker', exchange: 'binance', symbol: BTC });
const CANDLES_URI = marketResourceUri({ kind: 'candles', exchange: 'binance', symbol: BTC, timeframe: '1m' });
const ISSUER = 'qicore-e2e';
const AUDIENCE = 'mcp';

type Json = Record<string, any>;

/**
 * simulated Binance -> ccxt.pro collector -> in-process stream -> Lambda-shaped timescale-writer
 * (PGlite), whose onWritten announces what each batch stored on `updates`.
 */
async function startLivePipeline(sim: SimulatedExchange, updates: MarketUpdates) {
  const logger = testLogger();
  const database: TestDatabase = await createTestDatabase('pglite');
  const store = new PostgresMarketStore(database.db);
  const ledger = new PostgresLedgerStore(database.db);
  const stream = new MemoryStream();
  const source = new KinesisEventSource({
    subscription: stream.subscribe(),
    handler: createTimescaleWriterHandler({
      writer: store,
      ledger,
      logger,
      counters: new Counters<StoreWriterCounter>(),
      source: 'e2e',
      onWritten: createUpdateNotifier({ updates, logger }),
    }),
    logger,
    onExhausted: async (records, reason) => {
      throw new Error(`records given up (${records.length}): ${reason}`);
    },
  });
  source.start();
  const service: CollectorService = await startCollectorService({
    markets: new Map([['binance', SYMBOLS]]),
    bus: stream,
    logger,
    clock: systemClock,
    bookIntervalMs: 250,
    configure: (exchange) => applyEndpointOverride(exchange, { rest: sim.httpUrl, ws: sim.wsUrl }),
  });
  await sim.waitForStreams(SYMBOLS.map(binanceTradeStream), { timeoutMs: 15_000 });
  return {
    store,
    ledger,
    query: new MarketQueryService(store, systemClock),
    /** until every trade printed so far is stored */
    async stored(symbol: string): Promise<void> {
      const printed = sim.printedTrades(symbol).length;
      await waitFor(`${printed} ${symbol} trades stored`, () => store.trades({ exchange: 'binance', symbol, limit: 100_000 }), (t) => t.length === printed, {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
    },
    async close() {
      await service.stop().catch(() => undefined);
      await source.stop();
      await source.drain();
      await stream.close();
      await database.dispose();
    },
  };
}

type LivePipeline = Awaited<ReturnType<typeof startLivePipeline>>;

/** An MCP HTTP endpoint whose sessions each get a new server with the market resources on `updates`. */
function startResourceServer(pipeline: LivePipeline, updates: MarketUpdates, secret: Uint8Array): Promise<McpHttpServer> {
  return startMcpHttpServer({
    buildServer: () => {
      const server = new McpServer({ name: 'live-resources-e2e', version: '1.0.0' });
      registerMarketResources(server, { query: pipeline.query, updates, ledger: pipeline.ledger, logger: silentLogger });
      return server;
    },
    verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: ISSUER, audience: AUDIENCE }),
    logger: silentLogger,
  });
}

interface LiveClient {
  readonly client: Client;
  /** URIs of notifications/resources/updated received, in order */
  readonly updated: string[];
  /** resolves once the standalone SSE stream (the one server notifications travel on) is open */
  readonly streamOpen: Promise<void>;
  /** resolves with the next notification for `uri` after the ones already seen */
  next(uri: string): Promise<void>;
  read(uri: string): Promise<Json>;
}

/** The SDK Client over Streamable HTTP with a real HS256 JWT, recording resource notifications. */
async function connectClient(url: string, secret: Uint8Array, subject: string): Promise<LiveClient> {
  const token = await issueDevToken(secret, { subject, scopes: ['market:read'], issuer: ISSUER, audience: AUDIENCE });
  let opened!: () => void;
  const streamOpen = new Promise<void>((resolve) => (opened = resolve));
  // the client opens the GET stream on its own after initialize; notifications sent before it is open are dropped
  const watchingFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if ((init?.method ?? 'GET') === 'GET' && response.ok && response.headers.get('content-type')?.includes('text/event-stream')) opened();
    return response;
  };
  const client = new Client({ name: subject, version: '1.0.0' });
  const updated: string[] = [];
  const waiters: { uri: string; seen: number; resolve: () => void }[] = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    updated.push(n.params.uri);
    for (const w of waiters.splice(0)) {
      if (updated.filter((u) => u === w.uri).length > w.seen) w.resolve();
      else waiters.push(w);
    }
  });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { fetch: watchingFetch, requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
  );
  return {
    client,
    updated,
    streamOpen,
    next: (uri) => new Promise<void>((resolve) => waiters.push({ uri, seen: updated.filter((u) => u === uri).length, resolve })),
    async read(uri) {
      const { contents } = await client.readResource({ uri });
      expect(contents[0]).toMatchObject({ uri, mimeType: 'application/json' });
      return JSON.parse((contents[0] as TextResourceContents).text) as Json;
    },
  };
}

/** The candle of the minute `trade` printed in: it must hold that trade as its latest. */
function candleOf(body: Json, trade: PrintedTrade): Json | undefined {
  return (body['candles'] as Json[]).find((c) => c['ts'] === bucketStart(trade.ts, '1m'));
}

function minuteTrades(sim: SimulatedExchange, trade: PrintedTrade): number {
  const start = bucketStart(trade.ts, '1m');
  return sim.printedTrades(trade.symbol).filter((t) => bucketStart(t.ts, '1m') === start).length;
}

/** Waits for notifications of `uri` (at most `max`), re-reading after each, until `done` holds for what is read. */
async function readAfterNotifications(live: LiveClient, uri: string, done: (body: Json) => boolean, max = 10): Promise<Json> {
  let body: Json = {};
  for (let i = 0; i < max; i++) {
    await live.next(uri);
    body = await live.read(uri);
    if (done(body)) return body;
  }
  throw new Error(`${uri} did not show the new data after ${max} notifications: ${JSON.stringify(body).slice(0, 400)}`);
}

/**
 * Embedded mode: the writer and the MCP server share the in-process hub. A client subscribed over
 * HTTP is notified when the simulator prints a trade, and the resource then shows it.
 */
describe('live MCP resources, embedded (in-process updates)', () => {
  let sim: SimulatedExchange;
  let pipeline: LivePipeline;
  let http: McpHttpServer;
  let live: LiveClient;
  const hub = new InProcessUpdates();
  const secret = new Uint8Array(randomBytes(32));

  beforeAll(async () => {
    sim = await startSimulatedExchange({ seed: 808, symbols: SYMBOLS, autoRun: false });
    pipeline = await startLivePipeline(sim, hub);
    for (const s of SYMBOLS) sim.market.printTrades(3, s);
    await Promise.all(SYMBOLS.map((s) => pipeline.stored(s)));
    // the simulator pushes tickers once a second: the ticker resources are listed once one is stored
    for (const s of SYMBOLS) {
      await waitFor(`a ${s} ticker stored`, () => pipeline.store.latestTicker('binance', s), (t) => t !== null, { timeoutMs: 10_000, intervalMs: 100 });
    }
    http = await startResourceServer(pipeline, hub, secret);
    live = await connectClient(http.url, secret, 'agent-embedded');
  }, 60_000);

  afterAll(async () => {
    await live?.client.close();
    await http?.close();
    await pipeline?.close();
    await sim?.close();
    await hub.close();
  });

  it('lists the market resources and refuses a subscription to a market not held', async () => {
    expect(live.client.getServerCapabilities()?.resources).toMatchObject({ subscribe: true });
    const { resources } = await live.client.listResources();
    expect(resources.map((r) => r.uri)).toEqual(expect.arrayContaining([TICKER_URI, CANDLES_URI, 'market://binance/ETH%2FUSDT/candles/1m']));
    await expect(live.client.subscribeResource({ uri: 'market://binance/DOGE%2FUSDT/candles/1m' })).rejects.toThrow(/Unknown market.*BTC\/USDT/);
  });

  it('notifies a subscribed candles resource when the simulator prints a trade, and re-reading shows it', async () => {
    await live.client.subscribeResource({ uri: CANDLES_URI });
    await live.streamOpen;
    const before = await live.read(CANDLES_URI);
    const notified = live.next(CANDLES_URI);
    const last = sim.market.printTrades(1, BTC).at(-1)!;
    await notified;
    const after = await readAfterNotificationsOrNow(live, CANDLES_URI, (body) => candleOf(body, last)?.['trades'] === minuteTrades(sim, last));
    expect(candleOf(after, last)).toMatchObject({ close: last.price, trades: minuteTrades(sim, last), source: 'trades' });
    expect(after['freshness']['newestTs']).toBeGreaterThanOrEqual(last.ts);
    expect(after['freshness']['newestTs']).toBeGreaterThan(before['freshness']['newestTs']);
    expect(live.updated.every((u) => u === CANDLES_URI)).toBe(true);
  });

  it('notifies a subscribed ticker resource as new tickers are stored, and stops after unsubscribe', async () => {
    const before = await live.read(TICKER_URI);
    await live.client.subscribeResource({ uri: TICKER_URI });
    const after = await readAfterNotifications(live, TICKER_URI, (body) => body['ticker']['ts'] > before['ticker']['ts']);
    expect(after['ticker']['last']).toBe(sim.printedTrades(BTC).at(-1)!.price);
    expect(after['freshness']['newestTs']).toBe(after['ticker']['ts']);

    await live.client.unsubscribeResource({ uri: TICKER_URI });
    await live.client.unsubscribeResource({ uri: CANDLES_URI });
    // a subscription on another session still gets news; this one no longer does
    const other = await connectClient(http.url, secret, 'agent-other');
    try {
      await other.client.subscribeResource({ uri: CANDLES_URI });
      await other.streamOpen;
      const seen = live.updated.length;
      const notified = other.next(CANDLES_URI);
      sim.market.printTrades(1, BTC);
      await notified;
      await pipeline.stored(BTC);
      // the same write that notified `other` would have notified `live` first or at once: a ping flushes its stream
      await live.client.ping();
      expect(live.updated.length).toBe(seen);
    } finally {
      await other.client.close();
    }
  });
});

/** The first read when the notification already brought the new data, else further notifications. */
async function readAfterNotificationsOrNow(live: LiveClient, uri: string, done: (body: Json) => boolean): Promise<Json> {
  const body = await live.read(uri);
  return done(body) ? body : readAfterNotifications(live, uri, done);
}

/**
 * Service mode: the writer and two MCP server tasks are apart, joined by Redis pub/sub. The writer
 * publishes through its own RedisUpdates; a client whose session lives on task B is notified.
 */
describeWithService('redis', 'live MCP resources across server tasks (Redis updates)', (redisUrl) => {
  const channel = `qicore:e2e:${randomBytes(6).toString('hex')}`;
  const secret = new Uint8Array(randomBytes(32));
  const counters = { writer: new Counters<MarketUpdatesCounter>(), a: new Counters<MarketUpdatesCounter>(), b: new Counters<MarketUpdatesCounter>() };
  let writerHub: RedisUpdates;
  let hubA: RedisUpdates;
  let hubB: RedisUpdates;
  let sim: SimulatedExchange;
  let pipeline: LivePipeline;
  let taskA: McpHttpServer;
  let taskB: McpHttpServer;
  let onA: LiveClient;
  let onB: LiveClient;

  beforeAll(async () => {
    writerHub = new RedisUpdates({ url: redisUrl, channel, receive: false, logger: silentLogger, counters: counters.writer });
    hubA = new RedisUpdates({ url: redisUrl, channel, logger: silentLogger, counters: counters.a });
    hubB = new RedisUpdates({ url: redisUrl, channel, logger: silentLogger, counters: counters.b });
    await Promise.all([hubA.ready(), hubB.ready()]);
    sim = await startSimulatedExchange({ seed: 909, symbols: SYMBOLS, autoRun: false });
    pipeline = await startLivePipeline(sim, writerHub);
    for (const s of SYMBOLS) sim.market.printTrades(3, s);
    await Promise.all(SYMBOLS.map((s) => pipeline.stored(s)));
    taskA = await startResourceServer(pipeline, hubA, secret);
    taskB = await startResourceServer(pipeline, hubB, secret);
    onA = await connectClient(taskA.url, secret, 'agent-on-a');
    onB = await connectClient(taskB.url, secret, 'agent-on-b');
  }, 60_000);

  afterAll(async () => {
    await onA?.client.close();
    await onB?.client.close();
    await taskA?.close();
    await taskB?.close();
    await pipeline?.close();
    await sim?.close();
    await Promise.all([writerHub?.close(), hubA?.close(), hubB?.close()]);
  });

  it('notifies the sessions on both tasks of a trade the writer stored, and task B serves the new data', async () => {
    await onB.client.subscribeResource({ uri: CANDLES_URI });
    await onA.client.subscribeResource({ uri: CANDLES_URI });
    await Promise.all([onA.streamOpen, onB.streamOpen]);
    const both = Promise.all([onA.next(CANDLES_URI), onB.next(CANDLES_URI)]);
    const last = sim.market.printTrades(1, BTC).at(-1)!;
    await both;
    const after = await readAfterNotificationsOrNow(onB, CANDLES_URI, (body) => candleOf(body, last)?.['trades'] === minuteTrades(sim, last));
    expect(candleOf(after, last)).toMatchObject({ close: last.price, trades: minuteTrades(sim, last) });
    // the writer published, each task received the same updates through Redis
    expect(counters.writer.get('published')).toBeGreaterThan(0);
    expect(counters.writer.get('publish_failures')).toBe(0);
    expect(counters.a.get('received')).toBeGreaterThan(0);
    expect(counters.b.get('received')).toBeGreaterThan(0);
    expect(counters.a.get('rejected') + counters.b.get('rejected')).toBe(0);
  });
});
