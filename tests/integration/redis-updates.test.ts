import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, expect, it } from 'vitest';
import { RedisUpdates } from '../../layers/shared/src/adapters/updates/redis-updates.js';
import { createUpdateNotifier, type UpdateNotifierCounter } from '../../layers/shared/src/consumers/update-notifier.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { MarketUpdate, MarketUpdatesCounter } from '../../layers/shared/src/ports/market-updates.js';
import { T0, trade } from '../fixtures/events.js';
import { describeWithService } from '../support/services.js';

const ALL = { trades: 1, tickers: 1, books: 1, quotes: 1, candles: 1 };

/** Receives batches and lets a test wait until `n` updates have arrived. */
function collector() {
  const batches: (readonly MarketUpdate[])[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const count = () => batches.reduce((n, b) => n + b.length, 0);
  return {
    batches,
    count,
    listener: (updates: readonly MarketUpdate[]) => {
      batches.push(updates);
      for (const w of waiters.splice(0)) (count() >= w.n ? w.resolve : () => waiters.push(w))();
    },
    until: (n: number) => new Promise<void>((resolve) => (count() >= n ? resolve() : waiters.push({ n, resolve }))),
  };
}

describeWithService('redis', 'RedisUpdates (Redis pub/sub)', (url) => {
  const opened: { close(): Promise<unknown> }[] = [];
  const channel = () => `qicore:test:updates:${randomBytes(6).toString('hex')}`;
  const hub = (options: { channel: string; receive?: boolean; counters?: Counters<MarketUpdatesCounter> }) => {
    const h = new RedisUpdates({ url, logger: silentLogger, ...options });
    opened.push(h);
    return h;
  };
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((h) => h.close()));
  });

  it('fans a write batch out to every subscribed task as one message, the same updates in the same order', async () => {
    const ch = channel();
    const publisherCounters = new Counters<MarketUpdatesCounter>();
    const publisher = hub({ channel: ch, receive: false, counters: publisherCounters });
    const taskA = hub({ channel: ch });
    const taskB = hub({ channel: ch });
    const other = hub({ channel: channel() });
    const [a, b, c] = [collector(), collector(), collector()];
    taskA.subscribe(a.listener);
    const stopB = taskB.subscribe(b.listener);
    other.subscribe(c.listener);
    await Promise.all([taskA.ready(), taskB.ready(), other.ready(), publisher.ready()]);

    const batch: MarketUpdate[] = [
      { exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', ts: T0 },
      { exchange: 'okx', symbol: 'BTC/USDT:USDT', channel: 'tickers', ts: T0 + 1 },
    ];
    await publisher.publish(batch);
    await Promise.all([a.until(2), b.until(2)]);
    expect(a.batches).toEqual([batch]);
    expect(b.batches).toEqual([batch]);
    expect(publisherCounters.get('published')).toBe(2);

    // an unsubscribed listener gets nothing more; a hub on another channel never got anything
    stopB();
    await publisher.publish([{ exchange: 'binance', symbol: 'ETH/USDT', channel: 'candles', ts: T0 + 2 }]);
    await a.until(3);
    expect(b.count()).toBe(2);
    expect(c.count()).toBe(0);
  });

  it('splits a batch touching many markets into bounded messages, losing none', async () => {
    const ch = channel();
    const publisher = hub({ channel: ch, receive: false });
    const task = hub({ channel: ch });
    const got = collector();
    task.subscribe(got.listener);
    await task.ready();
    const many: MarketUpdate[] = Array.from({ length: 1_203 }, (_, i) => ({ exchange: 'binance', symbol: `C${i}/USDT`, channel: 'trades', ts: T0 + i }));
    await publisher.publish(many);
    await got.until(many.length);
    expect(got.batches.map((b) => b.length)).toEqual([500, 500, 203]);
    expect(got.batches.flat()).toEqual(many);
  });

  it('rejects and counts a foreign or malformed message on the channel, and keeps receiving', async () => {
    const ch = channel();
    const counters = new Counters<MarketUpdatesCounter>();
    const task = hub({ channel: ch, counters });
    const publisher = hub({ channel: ch, receive: false });
    const got = collector();
    task.subscribe(got.listener);
    await task.ready();
    const raw = new Redis(url);
    opened.push({ close: () => raw.quit() });
    await raw.publish(ch, 'not json');
    await raw.publish(ch, JSON.stringify({ v: 1, updates: [{ exchange: 'binance', symbol: 'BTCUSDT', channel: 'trades', ts: T0 }] }));
    await raw.publish(ch, JSON.stringify({ v: 2, updates: [] }));
    await publisher.publish([{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', ts: T0 }]);
    await got.until(1);
    // Redis delivers a channel's messages in order: the three bad ones came first
    expect(counters.get('rejected')).toBe(3);
    expect(counters.get('received')).toBe(1);
    expect(got.batches).toEqual([[{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', ts: T0 }]]);
  });

  it('never fails the writer when Redis is unreachable: the store writer hook returns, the failure is counted', async () => {
    const counters = new Counters<MarketUpdatesCounter>();
    // a port nothing listens on: every PUBLISH fails
    const down = new RedisUpdates({ url: 'redis://127.0.0.1:1', receive: false, commandTimeoutMs: 300, logger: silentLogger, counters });
    opened.push(down);
    await expect(down.publish([{ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', ts: T0 }])).resolves.toBeUndefined();
    expect(counters.get('publish_failures')).toBe(1);
    expect(counters.get('published')).toBe(0);

    const notifierCounters = new Counters<UpdateNotifierCounter>();
    const onWritten = createUpdateNotifier({ updates: down, logger: silentLogger, counters: notifierCounters });
    expect(() => onWritten([trade()], ALL)).not.toThrow();
    expect(notifierCounters.get('updates_announced')).toBe(1);
  });
});
