import { describe, expect, it } from 'vitest';
import { RecordDecodeError } from '../../layers/shared/src/domain/errors.js';
import { decodeEvents, encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import type { Quote } from '../../layers/shared/src/domain/index.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

const bytes = (s: string) => new TextEncoder().encode(s);
const quote: Quote = { type: 'quote', exchange: 'binance', symbol: 'BTC/USDT', ts: T0, localTs: T0 + 5, seq: 42, bid: 99.5, bidSize: 2, ask: 100.5, askSize: 1, health: 'healthy' };

describe('event codec', () => {
  it('round-trips every event type', () => {
    const events = [trade(), ticker(), book(), quote, candle()];
    expect(decodeEvents(encodeEvents(events))).toEqual({ events, rejected: [] });
  });

  it('throws RecordDecodeError for bytes that are not an envelope', () => {
    expect(() => decodeEvents(bytes('{oops'))).toThrow(RecordDecodeError);
    expect(() => decodeEvents(new Uint8Array([0xff, 0xfe]))).toThrow(/UTF-8/);
    expect(() => decodeEvents(bytes('[1,2]'))).toThrow(/envelope/);
    expect(() => decodeEvents(bytes('{"v":99,"events":[]}'))).toThrow(/version 99/);
  });

  it('keeps valid events of a record and names what is wrong with the others', () => {
    const bad = { ...trade({ id: '2' }), side: 'maybe' };
    const { events, rejected } = decodeEvents(bytes(JSON.stringify({ v: 1, events: [trade(), bad] })));
    expect(events).toEqual([trade()]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toMatch(/^side:/);
    expect(rejected[0]!.payload).toEqual(bad);
  });

  it('rejects a crossed quote, and an event type it does not know, each with the reason (writers dead-letter them)', () => {
    const crossed = { ...quote, bid: 101 };
    const unknown = { ...quote, type: 'bbo' };
    const { events, rejected } = decodeEvents(bytes(JSON.stringify({ v: 1, events: [quote, crossed, unknown] })));
    expect(events).toEqual([quote]);
    expect(rejected.map((r) => r.reason)).toEqual([expect.stringMatching(/^ask: a quote is not crossed/), expect.stringMatching(/^type: .*discriminator/i)]);
  });
});
