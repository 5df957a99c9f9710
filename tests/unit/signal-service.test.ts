import { describe, expect, it } from 'vitest';
import type { Signal, StreamEvent } from '../../layers/shared/src/domain/index.js';
import { partitionKeyOf } from '../../layers/shared/src/domain/index.js';
import type { PublishReceipt, StreamBus } from '../../layers/shared/src/ports/index.js';
import type { SignalQuery, SignalReader } from '../../layers/shared/src/ports/signal-reader.js';
import { InvalidCursorError } from '../../layers/shared/src/query/cursor.js';
import {
  SignalRateLimitError,
  SignalService,
  SignalValidationError,
  type SignalInput,
} from '../../layers/shared/src/query/signal-service.js';
import { decodeEvents, decodeStreamEvents, encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, trade } from '../fixtures/events.js';

/** Signals kept in an array, read back the way the stores read them (newest first, keyset after (ts, id)). */
class ArraySignals implements SignalReader {
  readonly rows: Signal[] = [];
  async writeSignals(signals: readonly Signal[]): Promise<number> {
    const fresh = signals.filter((s) => !this.rows.some((r) => r.id === s.id));
    this.rows.push(...fresh);
    return fresh.length;
  }
  async readSignals(q: SignalQuery): Promise<readonly Signal[]> {
    return this.rows
      .filter(
        (s) =>
          (q.symbol === undefined || s.symbol === q.symbol) &&
          (q.exchange === undefined || s.exchange === q.exchange) &&
          (q.publisher === undefined || s.publisher === q.publisher) &&
          (q.direction === undefined || s.direction === q.direction) &&
          (q.since === undefined || s.ts >= q.since) &&
          (q.until === undefined || s.ts < q.until) &&
          (!q.after || s.ts < q.after.ts || (s.ts === q.after.ts && s.id < q.after.id)),
      )
      .sort((a, b) => b.ts - a.ts || (a.id < b.id ? 1 : -1))
      .slice(0, q.limit);
  }
}

class RecordingBus implements StreamBus {
  readonly published: StreamEvent[] = [];
  fail = false;
  async publish(events: readonly StreamEvent[]): Promise<PublishReceipt> {
    if (this.fail) throw new Error('stream unavailable');
    this.published.push(...events);
    return { records: 1, events: events.length, bytes: 0 };
  }
  async close(): Promise<void> {}
}

const good: SignalInput = {
  symbol: 'BTC/USDT',
  exchange: 'binance',
  direction: 'long',
  strength: 0.7,
  confidence: 0.6,
  horizon: '4h',
  rationale: 'RSI(14) crossed above 30 on the 4h with rising volume.',
};
const alice = { name: 'agent-alice', principal: '["iss","client","agent-alice"]' };

function setup(options: { limits?: ConstructorParameters<typeof SignalService>[0]['limits']; bus?: RecordingBus } = {}) {
  const store = new ArraySignals();
  const clock = { now: () => T0 };
  const service = new SignalService({ writer: store, reader: store, clock, bus: options.bus, limits: options.limits });
  return { store, clock, service };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('SignalService.publish', () => {
  it('stamps id, time and the caller as publisher, normalizes case, stores it and streams it', async () => {
    const bus = new RecordingBus();
    const { store, service } = setup({ bus });
    const { signal, streamed } = await service.publish({ ...good, symbol: ' btc/usdt ', exchange: 'Binance' }, alice);
    expect(signal).toMatchObject({ type: 'signal', ts: T0, publisher: 'agent-alice', exchange: 'binance', symbol: 'BTC/USDT', direction: 'long', horizon: '4h' });
    expect(signal.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(streamed).toBe(true);
    expect(store.rows).toEqual([signal]);
    expect(bus.published).toEqual([signal]);
  });

  it('takes the publisher from the caller only: a publisher field in the input is ignored', async () => {
    const { service } = setup();
    const { signal } = await service.publish({ ...good, publisher: 'someone-else' }, alice);
    expect(signal.publisher).toBe('agent-alice');
  });

  it('stores a signal without exchange as null, and one whose stream refuses it as not streamed', async () => {
    const bus = new RecordingBus();
    bus.fail = true;
    const { store, service } = setup({ bus });
    const { signal, streamed } = await service.publish({ ...good, exchange: undefined }, alice);
    expect(signal.exchange).toBeNull();
    expect(streamed).toBe(false);
    // stored, and readable, even though the stream failed
    expect(store.rows.map((s) => s.id)).toEqual([signal.id]);
  });

  it.each([
    ['symbol', { symbol: 'BTCUSDT' }, /symbol must be a ccxt unified symbol such as BTC\/USDT/],
    ['exchange', { exchange: 'Bin ance!' }, /exchange must be a ccxt exchange id/],
    ['direction', { direction: 'up' }, /direction must be one of long, short, flat/],
    ['strength', { strength: 1.5 }, /strength must be from 0 to 1/],
    ['confidence', { confidence: -0.1 }, /confidence must be from 0 to 1/],
    ['confidence (not a number)', { confidence: 'high' }, /confidence must be a number from 0 to 1/],
    ['horizon', { horizon: '90s' }, /horizon must be a ccxt timeframe: 1m, 3m, 5m/],
    ['rationale (blank)', { rationale: '   ' }, /rationale must not be empty/],
    ['rationale (too long)', { rationale: 'x'.repeat(4001) }, /rationale must be at most 4000 characters/],
  ])('refuses a bad %s with a SignalValidationError naming the field', async (_field, patch, message) => {
    const { store, service } = setup();
    const error = await rejection(service.publish({ ...good, ...patch }, alice));
    expect(error).toBeInstanceOf(SignalValidationError);
    expect(error.name).toBe('SignalValidationError');
    expect(error.message).toMatch(/^Invalid signal: /);
    expect(error.message).toMatch(message);
    expect(store.rows).toEqual([]);
  });

  it('names every bad field at once, and missing ones as required', async () => {
    const { service } = setup();
    const error = await rejection(service.publish({ symbol: 'BTC/USDT', strength: 2 }, alice));
    expect(error.message).toBe(
      'Invalid signal: direction is required (must be one of long, short, flat); strength must be from 0 to 1; ' +
        'confidence is required (must be a number from 0 to 1); horizon is required (must be a ccxt timeframe: ' +
        '1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w); rationale is required (must be a text of 1 to 4000 characters). ' +
        'Correct these fields and try again.',
    );
    expect((error as SignalValidationError).issues).toHaveLength(5);
  });

  it('accepts the bounds 0 and 1 and a rationale of exactly 4000 characters', async () => {
    const { service } = setup();
    const { signal } = await service.publish({ ...good, strength: 0, confidence: 1, rationale: 'y'.repeat(4000) }, alice);
    expect([signal.strength, signal.confidence, signal.rationale.length]).toEqual([0, 1, 4000]);
  });

  it('refuses a caller whose token subject does not fit the publisher column', async () => {
    const { service } = setup();
    const error = await rejection(service.publish(good, { name: 'x'.repeat(129) }));
    expect(error).toBeInstanceOf(SignalValidationError);
    expect(error.message).toMatch(/subject of your access token.*1 to 128 characters/);
  });

  it('limits each publisher to its window, says when to retry, and lets others publish', async () => {
    const { service, clock } = setup({ limits: { perPublisher: 2, rateWindowMs: 60_000 } });
    let now = T0;
    clock.now = () => now;
    await service.publish(good, alice);
    now += 10_000;
    await service.publish(good, alice);
    const error = await rejection(service.publish(good, alice));
    expect(error).toBeInstanceOf(SignalRateLimitError);
    expect((error as SignalRateLimitError).retryAfterMs).toBe(50_000);
    expect(error.message).toMatch(/at most 2 per 60 s per publisher\. Publish again in 50 s/);
    // another identity has its own window, even one with the same name from another issuer
    await service.publish(good, { name: 'agent-bob' });
    await service.publish(good, { name: 'agent-alice', principal: '["other-issuer","client","agent-alice"]' });
    now = T0 + 60_001;
    await expect(service.publish(good, alice)).resolves.toBeDefined();
  });
});

describe('SignalService.list', () => {
  async function seeded() {
    const { store, service, clock } = setup({ limits: { perPublisher: 1000 } });
    let now = T0;
    clock.now = () => now;
    for (let i = 0; i < 7; i++) {
      now = T0 + Math.floor(i / 2) * 1000; // two signals per second: ties broken by id
      await service.publish({ ...good, direction: i % 2 === 0 ? 'long' : 'short' }, i < 5 ? alice : { name: 'agent-bob' });
    }
    now = T0 + 10_000;
    return { store, service };
  }

  it('pages newest first through every signal exactly once, with freshness of the newest match', async () => {
    const { store, service } = await seeded();
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await service.list({ limit: 3, cursor });
      expect(page.freshness).toEqual({ asOf: T0 + 10_000, newestTs: T0 + 3000, ageMs: 7000 });
      seen.push(...page.signals.map((s) => s.id));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    const expected = [...store.rows].sort((a, b) => b.ts - a.ts || (a.id < b.id ? 1 : -1)).map((s) => s.id);
    expect(seen).toEqual(expected);
  });

  it('filters by publisher and direction, and refuses a cursor of other filters', async () => {
    const { service } = await seeded();
    const bobs = await service.list({ publisher: 'agent-bob' });
    expect(bobs.signals.map((s) => s.publisher)).toEqual(['agent-bob', 'agent-bob']);
    const longs = await service.list({ direction: 'long', limit: 1 });
    expect(longs.signals[0]!.direction).toBe('long');
    const error = await rejection(service.list({ direction: 'short', cursor: longs.nextCursor! }));
    expect(error).toBeInstanceOf(InvalidCursorError);
    expect(error.message).toMatch(/get_signals/);
    await expect(service.list({ cursor: 'garbage' })).rejects.toThrow(InvalidCursorError);
  });

  it('refuses malformed filters by name, and an empty time range', async () => {
    const { service } = await seeded();
    await expect(service.list({ symbol: 'BTC-USDT' })).rejects.toThrow(/^Invalid filter: symbol must be a ccxt unified symbol/);
    await expect(service.list({ since: T0 + 5, until: T0 + 5 })).rejects.toThrow(SignalValidationError);
  });

  it('has null freshness when nothing matches', async () => {
    const { service } = await seeded();
    const page = await service.list({ symbol: 'ETH/USDT' });
    expect(page).toMatchObject({ signals: [], nextCursor: null, freshness: { newestTs: null, ageMs: null } });
  });
});

describe('signals on the stream', () => {
  const signal: Signal = {
    type: 'signal',
    id: '0b7e7c1e-5d2f-4c1a-9a51-3f4b1f1e2a10',
    ts: T0,
    publisher: 'agent-alice',
    exchange: null,
    symbol: 'BTC/USDT',
    direction: 'flat',
    strength: 0,
    confidence: 0.5,
    horizon: '1d',
    rationale: 'Range-bound; no edge.',
  };

  it('partitions signals by symbol, apart from the market data of the same symbol', () => {
    expect(partitionKeyOf(signal)).toBe('signal:BTC/USDT');
    expect(partitionKeyOf({ ...signal, exchange: 'binance' })).toBe('signal:BTC/USDT');
    expect(partitionKeyOf(trade())).toBe('binance:BTC/USDT');
  });

  it('round-trips a signal in a record; market-only decoding leaves it out', () => {
    const data = encodeEvents([trade(), signal]);
    expect(decodeStreamEvents(data)).toEqual({ events: [trade(), signal], rejected: [] });
    expect(decodeEvents(data).events).toEqual([trade()]);
  });

  it('rejects a signal that breaks the schema, naming the field (the writers dead-letter it)', () => {
    const bad = { ...signal, strength: 3 };
    const { events, rejected } = decodeStreamEvents(new TextEncoder().encode(JSON.stringify({ v: 1, events: [bad] })));
    expect(events).toEqual([]);
    expect(rejected[0]!.reason).toMatch(/^strength:/);
  });
});
