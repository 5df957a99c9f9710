import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import type { FundingEvent, LedgerEvent, MarketEvent, Signal, StreamEvent } from '../domain/index.js';
import { isLedgerEvent, isMarketEvent, isSignal } from '../domain/index.js';
import type { FundingRecord, FundingWriter, LedgerWriter, MarketWriter, WriteSummary } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { decodeStreamEvents } from '../stream/event-codec.js';

export type StoreWriterCounter =
  | 'records'
  | 'events'
  | 'trades_written'
  | 'tickers_written'
  | 'books_written'
  | 'quotes_written'
  | 'candles_written'
  | 'funding_written'
  | 'ledger_written'
  /** signals stored (PostgreSQL: new rows only, a redelivered signal counts 0; ClickHouse: rows sent) */
  | 'signals_written'
  /** funding or ledger events this writer has no table for (ClickHouse keeps neither) */
  | 'events_skipped'
  | 'dead_lettered'
  | 'record_failures';

export interface StoreWriterDeps {
  /** market events; funding snapshots too when it has `writeFunding` (the operational store) */
  readonly writer: MarketWriter | (MarketWriter & FundingWriter);
  /** the completeness ledger (feed_status and gap events); without one they are skipped and counted */
  readonly ledger?: LedgerWriter;
  readonly logger: Logger;
  readonly counters: Counters<StoreWriterCounter>;
  /** name written into dead letters */
  readonly source: string;
  /** newest-written receipt time, for lag figures */
  onWritten?(events: readonly MarketEvent[], summary: WriteSummary): void;
}

/** A stream record as any transport delivers it (Kinesis record, Kafka message). */
export interface IncomingRecord {
  /** what the event source retries by: Kinesis sequence number, or `topic-partition@offset` */
  readonly id: string;
  readonly partitionKey: string | null;
  readonly data: Uint8Array;
}

interface Decoded {
  readonly record: IncomingRecord;
  readonly events: readonly StreamEvent[];
}

/**
 * Writes a Kinesis batch to the store. Unreadable records and invalid events go to the dead-letter
 * table with their payload and are not retried; a record whose write fails is reported in
 * `batchItemFailures` so the event source retries from it (the store is idempotent).
 */
export async function writeKinesisBatch(event: KinesisStreamEvent, deps: StoreWriterDeps): Promise<KinesisStreamBatchResponse> {
  const records = event.Records.map(
    (r: KinesisStreamRecord): IncomingRecord => ({
      id: r.kinesis.sequenceNumber,
      partitionKey: r.kinesis.partitionKey,
      data: Buffer.from(r.kinesis.data, 'base64'),
    }),
  );
  const failed = await writeRecords(records, deps);
  return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
}

/**
 * Transport-neutral core of every store writer: decodes and validates each record, writes the
 * good events in bulk, dead-letters poison, and returns the ids of records that must be retried.
 */
export async function writeRecords(records: readonly IncomingRecord[], deps: StoreWriterDeps): Promise<string[]> {
  const { counters, logger } = deps;
  const failures: string[] = [];
  const decoded: Decoded[] = [];
  for (const record of records) {
    counters.add('records');
    try {
      const { events, rejected } = decodeStreamEvents(record.data);
      counters.add('events', events.length + rejected.length);
      for (const r of rejected) {
        await deadLetter(deps, record, 'ValidationError', r.reason, JSON.stringify(r.payload));
      }
      decoded.push({ record, events });
    } catch (error) {
      const err = error as Error;
      try {
        await deadLetter(deps, record, err.name, err.message, Buffer.from(record.data).toString('base64'));
      } catch (dlqError) {
        logger.error('dead letter write failed; record will be retried', { id: record.id, error: dlqError });
        failures.push(record.id);
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
        logger.error('record write failed; reported for retry', { id: d.record.id, error });
        failures.push(d.record.id);
      }
    }
  }
  return failures;
}

/** Routes each kind of event to the store that keeps it: market data, then funding, the ledger and signals. */
async function write(deps: StoreWriterDeps, events: readonly StreamEvent[]): Promise<void> {
  if (events.length === 0) return;
  const market: MarketEvent[] = [];
  const funding: FundingEvent[] = [];
  const ledger: LedgerEvent[] = [];
  const signals: Signal[] = [];
  for (const e of events) {
    if (isMarketEvent(e)) market.push(e);
    else if (isLedgerEvent(e)) ledger.push(e);
    else if (isSignal(e)) signals.push(e);
    else funding.push(e);
  }
  const fundingWriter = hasFunding(deps.writer) ? deps.writer : undefined;
  if (market.length > 0) {
    const summary = await deps.writer.writeEvents(market);
    deps.counters.add('trades_written', summary.trades);
    deps.counters.add('tickers_written', summary.tickers);
    deps.counters.add('books_written', summary.books);
    deps.counters.add('quotes_written', summary.quotes);
    deps.counters.add('candles_written', summary.candles);
    deps.onWritten?.(market, summary);
  }
  if (funding.length > 0) {
    if (fundingWriter) deps.counters.add('funding_written', await fundingWriter.writeFunding(funding.map(toFundingRecord)));
    else deps.counters.add('events_skipped', funding.length);
  }
  if (ledger.length > 0) {
    if (deps.ledger) {
      const written = await deps.ledger.writeLedger(ledger);
      deps.counters.add('ledger_written', written.statuses + written.gaps);
    } else deps.counters.add('events_skipped', ledger.length);
  }
  // idempotent on the signal id: publish_signal writes each signal itself and streams it too
  if (signals.length > 0) deps.counters.add('signals_written', await deps.writer.writeSignals(signals));
}

function hasFunding(writer: StoreWriterDeps['writer']): writer is MarketWriter & FundingWriter {
  return typeof (writer as Partial<FundingWriter>).writeFunding === 'function';
}

function toFundingRecord({ type: _type, ...rest }: FundingEvent): FundingRecord {
  return rest;
}

async function deadLetter(
  deps: StoreWriterDeps,
  record: IncomingRecord,
  errorName: string,
  reason: string,
  payload: string,
): Promise<void> {
  deps.counters.add('dead_lettered');
  deps.logger.warn('record dead-lettered', { errorName, reason, id: record.id });
  await deps.writer.writeDeadLetter({
    source: deps.source,
    errorName,
    reason,
    payload,
    partitionKey: record.partitionKey,
    sequenceNumber: record.id,
  });
}
