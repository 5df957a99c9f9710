import { z } from 'zod';
import { RecordDecodeError } from '../domain/errors.js';
import type { MarketEvent, StreamEvent } from '../domain/index.js';
import { StreamEventSchema, formatIssues, isMarketEvent } from '../domain/index.js';

/** Envelope version written into every record, so the format can change without breaking consumers. */
export const RECORD_FORMAT_VERSION = 1;

// compiled once: consumers validate every event of every record (market data, funding, ledger, signals)
const EventParser = z.compile(StreamEventSchema);
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Many events of one partition key in one record (fewer, fuller records: cheaper on Kinesis and Kafka). */
export function encodeEvents(events: readonly StreamEvent[]): Uint8Array {
  return encoder.encode(JSON.stringify({ v: RECORD_FORMAT_VERSION, events }));
}

export interface DecodedRecord<E extends StreamEvent = MarketEvent> {
  readonly events: readonly E[];
  /** events that failed validation, with the reason, to be dead-lettered one by one */
  readonly rejected: readonly { readonly payload: unknown; readonly reason: string }[];
}

/**
 * Decodes a record into its market events (trade, ticker, book, quote, candle); funding, ledger and signal
 * events are left out (see decodeStreamEvents). Throws RecordDecodeError when the record is unreadable.
 */
export function decodeEvents(data: Uint8Array): DecodedRecord {
  const { events, rejected } = decodeStreamEvents(data);
  return { events: events.filter(isMarketEvent), rejected };
}

/** Decodes a record into every event it carries; throws RecordDecodeError when the record as a whole is unreadable. */
export function decodeStreamEvents(data: Uint8Array): DecodedRecord<StreamEvent> {
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch (error) {
    throw new RecordDecodeError(`record is not UTF-8 JSON: ${(error as Error).message}`, { cause: error });
  }
  if (typeof body !== 'object' || body === null || !('v' in body) || !('events' in body)) {
    throw new RecordDecodeError('record is not an event envelope {v, events}');
  }
  const { v, events: raw } = body as { v: unknown; events: unknown };
  if (v !== RECORD_FORMAT_VERSION) throw new RecordDecodeError(`unsupported record format version ${String(v)}`);
  if (!Array.isArray(raw)) throw new RecordDecodeError('record envelope has no events array');
  const events: StreamEvent[] = [];
  const rejected: { payload: unknown; reason: string }[] = [];
  for (const item of raw) {
    const parsed = EventParser.safeParse(item);
    if (parsed.success) events.push(parsed.data);
    else rejected.push({ payload: item, reason: formatIssues(parsed.error.issues) });
  }
  return { events, rejected };
}
