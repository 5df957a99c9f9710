import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import type { MarketEvent } from '../domain/index.js';
import type { MarketWriter, WriteSummary } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { decodeEvents } from '../stream/event-codec.js';

export type StoreWriterCounter =
  | 'records'
  | 'events'
  | 'trades_written'
  | 'tickers_written'
  | 'books_written'
  | 'candles_written'
  | 'dead_lettered'
  | 'record_failures';

export interface StoreWriterDeps {
  readonly writer: MarketWriter;
  readonly logger: Logger;
  readonly counters: Counters<StoreWriterCounter>;
  /** name written into dead letters */
  readonly source: string;
  /** newest-written receipt time, for lag figures */
  onWritten?(events: readonly MarketEvent[], summary: WriteSummary): void;
}

interface Decoded {
  readonly record: KinesisStreamRecord;
  readonly events: readonly MarketEvent[];
}

/**
 * Writes a Kinesis batch to the store. Unreadable records and invalid events go to the dead-letter
 * table with their payload and are not retried; a record whose write fails is reported in
 * `batchItemFailures` so the event source retries from it (the store is idempotent).
 */
export async function writeKinesisBatch(event: KinesisStreamEvent, deps: StoreWriterDeps): Promise<KinesisStreamBatchResponse> {
  const { counters, logger } = deps;
  const failures: string[] = [];
  const decoded: Decoded[] = [];
  for (const record of event.Records) {
    counters.add('records');
    const seq = record.kinesis.sequenceNumber;
    const data = Buffer.from(record.kinesis.data, 'base64');
    try {
      const { events, rejected } = decodeEvents(data);
      counters.add('events', events.length + rejected.length);
      for (const r of rejected) {
        await deadLetter(deps, record, 'ValidationError', r.reason, JSON.stringify(r.payload));
      }
      decoded.push({ record, events });
    } catch (error) {
      const err = error as Error;
      try {
        await deadLetter(deps, record, err.name, err.message, data.toString('base64'));
      } catch (dlqError) {
        logger.error('dead letter write failed; record will be retried', { seq, error: dlqError });
        failures.push(seq);
      }
    }
  }

  const all = decoded.flatMap((d) => d.events);
  try {
    await write(deps, all);
  } catch (batchError) {
    // Find the records that fail on their own; the others are written (idempotently) record by record.
    logger.warn('batch write failed, retrying record by record', { error: batchError, records: decoded.length });
    for (const d of decoded) {
      try {
        await write(deps, d.events);
      } catch (error) {
        counters.add('record_failures');
        logger.error('record write failed; reported for retry', { seq: d.record.kinesis.sequenceNumber, error });
        failures.push(d.record.kinesis.sequenceNumber);
      }
    }
  }
  return { batchItemFailures: failures.map((itemIdentifier) => ({ itemIdentifier })) };
}

async function write(deps: StoreWriterDeps, events: readonly MarketEvent[]): Promise<void> {
  if (events.length === 0) return;
  const summary = await deps.writer.writeEvents(events);
  deps.counters.add('trades_written', summary.trades);
  deps.counters.add('tickers_written', summary.tickers);
  deps.counters.add('books_written', summary.books);
  deps.counters.add('candles_written', summary.candles);
  deps.onWritten?.(events, summary);
}

async function deadLetter(
  deps: StoreWriterDeps,
  record: KinesisStreamRecord,
  errorName: string,
  reason: string,
  payload: string,
): Promise<void> {
  deps.counters.add('dead_lettered');
  deps.logger.warn('record dead-lettered', { errorName, reason, seq: record.kinesis.sequenceNumber });
  await deps.writer.writeDeadLetter({
    source: deps.source,
    errorName,
    reason,
    payload,
    partitionKey: record.kinesis.partitionKey,
    sequenceNumber: record.kinesis.sequenceNumber,
  });
}
