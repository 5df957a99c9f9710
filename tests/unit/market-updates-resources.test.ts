import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { ResourceUpdatedNotificationSchema, type TextResourceContents } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { InProcessUpdates } from '../../layers/shared/src/adapters/updates/in-process-updates.js';
import { registerMarketResources, type MarketResourceLimits } from '../../layers/shared/src/mcp/resources/market-resources.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { MarketUpdate, MarketUpdateListener, MarketUpdates } from '../../layers/shared/src/ports/market-updates.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { T0, ticker, trade } from '../fixtures/events.js';

const BTC_TICKER = 'market://binance/BTC%2FUSDT/ticker';
const BTC_CANDLES = 'market://binance/BTC%2FUSDT/candles/1m';
const PERP_TICKER = 'market://binance/BTC%2FUSDT%3AUSDT/ticker';
const PERP_CANDLES = 'market://binance/BTC%2FUSDT%3AUSDT/candles/1m';

/** The in-process hub, counting the listeners attached to it. */
class CountingHub implements MarketUpdates {
  readonly inner = new InProcessUpdates();
  active = 0;
  publish(updates: readonly MarketUpdate[]): Promise<void> {
    return this.inner.publish(updates);
  }
  subscribe(listener: MarketUpdateListener): () => void {
    this.active += 1;
    const stop = this.inner.subscribe(listener);
    return () => {
      this.active -= 1;
      stop();
    };
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * The market resources on an McpServer reached by the SDK Client in process, over a PGlite store
 * holding one spot market (trades and a ticker) and one perpetual (a ticker only).
 */
describe('market resources', () => {
  let store: PostgresMarketStore;
  let query: MarketQueryService;
  const open: { client: Client; server: McpServer }[] = [];

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    await store.writeEvents([
      trade({ id: '1', ts: T0 + 1_000, price: 100 }),
      trade({ id: '2', ts: T0 + 2_000, price: 101 }),
      ticker({ ts: T0 + 2_000, last: 101 }),
      ticker({ symbol: 'BTC/USDT:USDT', ts: T0 + 3_000, last: 102 }),
    ]);
    query = new MarketQueryService(store, { now: () => T0 + 10_000 });
  });
  afterAll(async () => {
    await store?.close();
  });
  afterEach(async () => {
    vi.useRealTimers();
    for (const { client } of open.splice(0)) await client.close();
  });

  async function connect(updates?: MarketUpdates, limits: Partial<MarketResourceLimits> = {}) {
    const server = new McpServer({ name: 'resources-test', version: '1.0.0' });
    registerMarketResources(server, { query, updates, logger: silentLogger, limits });
    const client = new Client({ name: 'resources-test', version: '1.0.0' });
    const updated: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    await client.connect(clientSide);
    open.push({ client, server });
    /** a round trip: every notification the server sent before it has arrived */
    const flush = () => client.ping();
    return { client, server, updated, flush };
  }

  const readJson = async (client: Client, uri: string) => {
    const { contents } = await client.readResource({ uri });
    expect(contents).toHaveLength(1);
    expect(contents[0]).toMatchObject({ uri, mimeType: 'application/json' });
    return JSON.parse((contents[0] as TextResourceContents).text) as Record<string, any>;
  };

  it('lists the templates, documenting the symbol encoding, and a ticker and 1m candles resource per market held', async () => {
    const { client } = await connect();
    const { resourceTemplates } = await client.listResourceTemplates();
    expect(resourceTemplates.map((t) => t.uriTemplate).sort()).toEqual([
      'market://{exchange}/{symbol}/candles/{timeframe}',
      'market://{exchange}/{symbol}/ticker',
    ]);
    for (const t of resourceTemplates) expect(t.description).toContain("'BTC/USDT:USDT' -> 'BTC%2FUSDT%3AUSDT'");
    const { resources } = await client.listResources();
    // the perpetual has no trades or candles: no candles resource for it
    expect(resources.map((r) => r.uri).sort()).toEqual([BTC_CANDLES, BTC_TICKER, PERP_TICKER].sort());
    expect(resources.every((r) => r.mimeType === 'application/json')).toBe(true);
  });

  it('reads a ticker and the latest candles as JSON with freshness, like the tools', async () => {
    const { client } = await connect();
    const spot = await readJson(client, BTC_TICKER);
    expect(spot).toMatchObject({ exchange: 'binance', symbol: 'BTC/USDT', ticker: { last: 101, ts: T0 + 2_000 } });
    expect(spot['freshness']).toMatchObject({ asOf: T0 + 10_000, newestTs: T0 + 2_000, ageMs: 8_000 });
    const perp = await readJson(client, PERP_TICKER);
    expect(perp).toMatchObject({ symbol: 'BTC/USDT:USDT', ticker: { last: 102 } });
    const candles = await readJson(client, BTC_CANDLES);
    expect(candles['candles']).toEqual([
      expect.objectContaining({ ts: T0, open: 100, high: 101, low: 100, close: 101, volume: 2, trades: 2, source: 'trades' }),
    ]);
    expect(candles['freshness']).toMatchObject({ newestTs: T0 + 2_000 });
  });

  it('refuses unknown markets and malformed URIs with errors that say how to recover', async () => {
    const { client } = await connect(new CountingHub());
    await expect(readJson(client, 'market://binance/NOPE%2FUSDT/ticker')).rejects.toThrow(/Unknown market.*Known symbols on this exchange: .*BTC\/USDT/);
    await expect(readJson(client, 'market://kraken/BTC%2FUSDT/ticker')).rejects.toThrow(/Known exchanges: binance/);
    await expect(client.subscribeResource({ uri: 'market://binance/NOPE%2FUSDT/candles/1m' })).rejects.toThrow(/Unknown market/);
    await expect(client.subscribeResource({ uri: 'market://binance/BTC/USDT/ticker' })).rejects.toThrow(/percent-encoded/);
    await expect(client.subscribeResource({ uri: 'market://binance/BTC%2FUSDT/candles/2d' })).rejects.toThrow(/not a timeframe/);
  });

  it('offers subscriptions only when there is an update hub', async () => {
    const without = await connect();
    expect(without.client.getServerCapabilities()?.resources?.subscribe).toBeFalsy();
    await expect(without.client.subscribeResource({ uri: BTC_TICKER })).rejects.toThrow();
    const withHub = await connect(new CountingHub());
    expect(withHub.client.getServerCapabilities()?.resources).toMatchObject({ subscribe: true });
  });

  it('notifies a subscribed URI of updates of the channels behind it, and nothing else', async () => {
    const hub = new CountingHub();
    const { client, updated, flush } = await connect(hub, { notifyIntervalMs: 0 });
    await client.subscribeResource({ uri: BTC_TICKER });
    await client.subscribeResource({ uri: BTC_CANDLES });
    await client.subscribeResource({ uri: PERP_TICKER });
    expect(hub.active).toBe(1);

    await hub.publish([{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'tickers', ts: T0 }]);
    await flush();
    expect(updated).toEqual([BTC_TICKER]);
    // candles are built from trades: a trade updates the candles resource, not the ticker
    await hub.publish([{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', ts: T0 }]);
    await flush();
    expect(updated).toEqual([BTC_TICKER, BTC_CANDLES]);
    // books change neither; another market's and another exchange's updates are not ours
    await hub.publish([
      { exchange: 'binance', symbol: 'BTC/USDT', channel: 'books', ts: T0 },
      { exchange: 'binance', symbol: 'ETH/USDT', channel: 'tickers', ts: T0 },
      { exchange: 'okx', symbol: 'BTC/USDT', channel: 'tickers', ts: T0 },
    ]);
    await flush();
    expect(updated).toEqual([BTC_TICKER, BTC_CANDLES]);
    await hub.publish([{ exchange: 'binance', symbol: 'BTC/USDT:USDT', channel: 'tickers', ts: T0 }]);
    await flush();
    expect(updated).toEqual([BTC_TICKER, BTC_CANDLES, PERP_TICKER]);
  });

  it('coalesces a burst into one notification now and one at the end of the interval', async () => {
    const hub = new CountingHub();
    const { client, updated, flush } = await connect(hub, { notifyIntervalMs: 1_000 });
    await client.subscribeResource({ uri: BTC_TICKER });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const tick = { exchange: 'binance', symbol: 'BTC/USDT', channel: 'tickers', ts: T0 } as const;
    for (let i = 0; i < 5; i++) await hub.publish([tick]);
    await flush();
    expect(updated).toEqual([BTC_TICKER]);
    vi.advanceTimersByTime(999);
    await flush();
    expect(updated).toHaveLength(1);
    vi.advanceTimersByTime(1);
    await flush();
    expect(updated).toHaveLength(2);
    // quiet since: nothing more, and the next update after the interval goes out at once
    vi.advanceTimersByTime(5_000);
    await hub.publish([tick]);
    await flush();
    expect(updated).toHaveLength(3);
  });

  it('bounds subscriptions per session; re-subscribing is idempotent; unsubscribing cancels pending notifications', async () => {
    const hub = new CountingHub();
    const { client, updated, flush } = await connect(hub, { maxSubscriptions: 2, notifyIntervalMs: 1_000 });
    await client.subscribeResource({ uri: BTC_TICKER });
    await client.subscribeResource({ uri: BTC_TICKER });
    await client.subscribeResource({ uri: BTC_CANDLES });
    await expect(client.subscribeResource({ uri: PERP_TICKER })).rejects.toThrow(/holds 2 subscriptions.*unsubscribe/);

    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const tick = { exchange: 'binance', symbol: 'BTC/USDT', channel: 'tickers', ts: T0 } as const;
    await hub.publish([tick]);
    await hub.publish([tick]); // a trailing notification is now pending
    await client.unsubscribeResource({ uri: BTC_TICKER });
    vi.advanceTimersByTime(5_000);
    await hub.publish([tick]);
    await flush();
    expect(updated).toEqual([BTC_TICKER]);
    expect(hub.active).toBe(1);
    await client.subscribeResource({ uri: PERP_TICKER });
    await client.unsubscribeResource({ uri: BTC_CANDLES });
    await client.unsubscribeResource({ uri: PERP_TICKER });
    await client.unsubscribeResource({ uri: 'market://never/subscribed%2FX/ticker' });
    expect(hub.active).toBe(0);
  });

  it('stops listening to the hub when the session ends', async () => {
    const hub = new CountingHub();
    const { client, server } = await connect(hub);
    await client.subscribeResource({ uri: BTC_TICKER });
    await client.subscribeResource({ uri: PERP_TICKER });
    expect(hub.active).toBe(1);
    await server.close();
    expect(hub.active).toBe(0);
    await expect(hub.publish([{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'tickers', ts: T0 }])).resolves.toBeUndefined();
  });
});
