import { describe, expect, it } from 'vitest';
import { InProcessUpdates } from '../../layers/shared/src/adapters/updates/in-process-updates.js';
import { collapseUpdates, createUpdateNotifier, type UpdateNotifierCounter } from '../../layers/shared/src/consumers/update-notifier.js';
import {
  InvalidMarketUriError,
  marketResourceUri,
  parseMarketResourceUri,
} from '../../layers/shared/src/mcp/resources/market-resources.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { WriteSummary } from '../../layers/shared/src/ports/index.js';
import type { MarketUpdate, MarketUpdates, MarketUpdatesCounter } from '../../layers/shared/src/ports/market-updates.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

const ALL: WriteSummary = { trades: 1, tickers: 1, books: 1, quotes: 1, candles: 1 };
const btc = { exchange: 'binance', symbol: 'BTC/USDT' };

describe('InProcessUpdates', () => {
  it('hands every published batch to each listener until it unsubscribes or the hub closes', async () => {
    const hub = new InProcessUpdates();
    const a: (readonly MarketUpdate[])[] = [];
    const b: (readonly MarketUpdate[])[] = [];
    const stopA = hub.subscribe((u) => a.push(u));
    hub.subscribe((u) => b.push(u));
    const first = [{ ...btc, channel: 'trades' as const, ts: T0 }];
    await hub.publish(first);
    stopA();
    await hub.publish([{ ...btc, channel: 'tickers', ts: T0 + 1 }]);
    expect(a).toEqual([first]);
    expect(b.map((u) => u[0]!.channel)).toEqual(['trades', 'tickers']);
    await hub.close();
    await hub.publish(first);
    expect(b).toHaveLength(2);
  });

  it('keeps delivering to the other listeners when one throws, and counts the failure', async () => {
    const counters = new Counters<MarketUpdatesCounter>();
    const hub = new InProcessUpdates({ counters, logger: silentLogger });
    const got: MarketUpdate[] = [];
    hub.subscribe(() => {
      throw new Error('listener bug');
    });
    hub.subscribe((u) => got.push(...u));
    await expect(hub.publish([{ ...btc, channel: 'trades', ts: T0 }])).resolves.toBeUndefined();
    expect(got).toHaveLength(1);
    expect(counters.get('listener_failures')).toBe(1);
    expect(counters.get('published')).toBe(1);
  });

  it('stops a function subscribed twice once per unsubscribe', async () => {
    const hub = new InProcessUpdates();
    let calls = 0;
    const listener = () => void (calls += 1);
    const stop1 = hub.subscribe(listener);
    hub.subscribe(listener);
    stop1();
    await hub.publish([{ ...btc, channel: 'trades', ts: T0 }]);
    expect(calls).toBe(1);
  });
});

describe('update notifier', () => {
  it('collapses a batch to one update per market and channel with the newest exchange time', () => {
    const events = [
      trade({ id: '1', ts: T0 + 5 }),
      trade({ id: '2', ts: T0 + 9 }),
      trade({ id: '3', ts: T0 + 7 }),
      trade({ id: '4', ts: T0 + 3, symbol: 'ETH/USDT' }),
      ticker({ ts: T0 + 2 }),
      book({ ts: T0 + 4 }),
      candle({ ts: T0 - 60_000 }),
      trade({ id: '5', ts: T0 + 11, exchange: 'okx' }),
    ];
    expect(collapseUpdates(events, ALL)).toEqual([
      { ...btc, channel: 'trades', ts: T0 + 9 },
      { exchange: 'binance', symbol: 'ETH/USDT', channel: 'trades', ts: T0 + 3 },
      { ...btc, channel: 'tickers', ts: T0 + 2 },
      { ...btc, channel: 'books', ts: T0 + 4 },
      { ...btc, channel: 'candles', ts: T0 - 60_000 },
      { exchange: 'okx', symbol: 'BTC/USDT', channel: 'trades', ts: T0 + 11 },
    ]);
  });

  it('announces nothing for channels the batch stored nothing new in (a replay)', () => {
    const events = [trade(), ticker()];
    expect(collapseUpdates(events, { ...ALL, trades: 0 })).toEqual([{ ...btc, channel: 'tickers', ts: T0 }]);
    expect(collapseUpdates(events, { trades: 0, tickers: 0, books: 0, quotes: 0, candles: 0 })).toEqual([]);
  });

  it('publishes one batch per write and never throws when the hub fails, counting the failure', async () => {
    const published: (readonly MarketUpdate[])[] = [];
    const counters = new Counters<UpdateNotifierCounter>();
    let mode: 'ok' | 'reject' | 'throw' = 'ok';
    const hub: MarketUpdates = {
      publish: async (u) => {
        if (mode === 'throw') throw new Error('sync-ish failure');
        if (mode === 'reject') return Promise.reject(new Error('redis down'));
        published.push(u);
      },
      subscribe: () => () => undefined,
      close: async () => undefined,
    };
    const syncThrowing: MarketUpdates = {
      ...hub,
      publish: () => {
        throw new Error('thrown before any promise');
      },
    };
    const onWritten = createUpdateNotifier({ updates: hub, logger: silentLogger, counters });
    onWritten([trade({ id: '1' }), trade({ id: '2', ts: T0 + 1 })], ALL);
    expect(published).toEqual([[{ ...btc, channel: 'trades', ts: T0 + 1 }]]);
    mode = 'reject';
    expect(() => onWritten([trade()], ALL)).not.toThrow();
    const throwing = createUpdateNotifier({ updates: syncThrowing, logger: silentLogger, counters });
    expect(() => throwing([trade()], ALL)).not.toThrow();
    await new Promise((r) => setImmediate(r));
    expect(counters.get('announce_failures')).toBe(2);
    expect(counters.get('updates_announced')).toBe(3);
  });
});

describe('market resource URIs', () => {
  it('percent-encode the symbol as one path segment and parse back to the market', () => {
    const spot = marketResourceUri({ kind: 'ticker', exchange: 'binance', symbol: 'BTC/USDT' });
    const perp = marketResourceUri({ kind: 'candles', exchange: 'okx', symbol: 'BTC/USDT:USDT', timeframe: '1h' });
    expect(spot).toBe('market://binance/BTC%2FUSDT/ticker');
    expect(perp).toBe('market://okx/BTC%2FUSDT%3AUSDT/candles/1h');
    expect(parseMarketResourceUri(spot)).toEqual({ kind: 'ticker', exchange: 'binance', symbol: 'BTC/USDT' });
    expect(parseMarketResourceUri(perp)).toEqual({ kind: 'candles', exchange: 'okx', symbol: 'BTC/USDT:USDT', timeframe: '1h' });
    // the SDK's URI template expansion of {symbol} gives the same URI
    expect(parseMarketResourceUri(new URL(perp).href)).toEqual(parseMarketResourceUri(perp));
    // case is normalized like the tools: Binance, btc/usdt and a lowercase %2f work
    expect(parseMarketResourceUri('market://Binance/btc%2fusdt/ticker')).toEqual({ kind: 'ticker', ...btc });
  });

  it.each([
    ['market://binance/BTC/USDT/ticker', 'not a market resource URI'],
    ['https://binance/BTC%2FUSDT/ticker', 'not a market resource URI'],
    ['market://binance/BTC%2FUSDT/orderbook', 'not a market resource URI'],
    ['market://binance/BTCUSDT/ticker', 'Was the / percent-encoded?'],
    ['market://binance/BTC%E0%A4%A/ticker', 'malformed percent-encoding'],
    ['market://bin_ance/BTC%2FUSDT/ticker', 'not a ccxt exchange id'],
    ['market://binance/BTC%2FUSDT/candles/7m', 'not a timeframe'],
    ['market://binance/BTC%2FUSDT/ticker?x=1', 'not a market resource URI'],
  ])('refuse %s, saying why', (uri, why) => {
    expect(() => parseMarketResourceUri(uri)).toThrow(InvalidMarketUriError);
    expect(() => parseMarketResourceUri(uri)).toThrow(why);
  });
});
