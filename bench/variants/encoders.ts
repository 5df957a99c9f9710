/**
 * Variants of encodeEvents (layers/shared/src/stream/event-codec.ts) for the benchmarks. Each
 * returns the same bytes as encodeEvents for the same events (the encode bench's check proves it).
 */
import type { MarketEvent, Trade } from '../../layers/shared/src/domain/index.js';
import { RECORD_FORMAT_VERSION } from '../../layers/shared/src/stream/event-codec.js';

/** encodeEvents' JSON, with Node's Buffer.from(…, 'utf8') in place of TextEncoder.encode (a Buffer is a Uint8Array). */
export function encodeEventsBuffer(events: readonly MarketEvent[]): Uint8Array {
  return Buffer.from(JSON.stringify({ v: RECORD_FORMAT_VERSION, events }), 'utf8');
}

/** JSON.stringify alone: what any JSON record costs before it is bytes (the floor of the JSON encoders). */
export function stringifyOnly(events: readonly MarketEvent[]): string {
  return JSON.stringify({ v: RECORD_FORMAT_VERSION, events });
}

/**
 * A hand-written serializer of trade records: the same JSON text, built by concatenation. Strings
 * go through JSON.stringify (escaping); numbers print as JSON prints them (finite, as validated).
 */
export function encodeTradesTemplate(events: readonly Trade[]): Uint8Array {
  let s = `{"v":${RECORD_FORMAT_VERSION},"events":[`;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (i > 0) s += ',';
    s += `{"type":"trade","exchange":${JSON.stringify(e.exchange)},"symbol":${JSON.stringify(e.symbol)},"ts":${e.ts},"localTs":${e.localTs},"id":${JSON.stringify(e.id)},"price":${e.price},"amount":${e.amount},"side":"${e.side}"}`;
  }
  s += ']}';
  return Buffer.from(s, 'utf8');
}
