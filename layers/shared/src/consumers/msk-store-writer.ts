import middy from '@middy/core';
import type { Context, MSKEvent, MSKRecord } from 'aws-lambda';
import { PlatformError } from '../domain/errors.js';
import { writeRecords, type IncomingRecord, type StoreWriterDeps } from './store-writer.js';

/**
 * Some records of an MSK batch could not be written (store fault). Thrown so that the Kafka event source
 * retries the whole batch; `failedIds` are the `topic-partition@offset` ids that failed.
 */
export class MskBatchRetryError extends PlatformError {
  constructor(
    readonly failedIds: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(`${failedIds.length} record(s) of the MSK batch must be retried: ${failedIds.slice(0, 5).join(', ')}`, options);
  }
}

/** A Lambda handler for MSK / self-managed Kafka batches; it throws to have the batch retried. */
export type MskBatchHandler = (event: MSKEvent, context: Context) => Promise<void>;

/** Id of one Kafka message in dead letters and retries: `topic-partition@offset`. */
export function mskRecordId(record: Pick<MSKRecord, 'topic' | 'partition' | 'offset'>): string {
  return `${record.topic}-${record.partition}@${record.offset}`;
}

/** The MSK event's messages in partition order, as transport-neutral records. */
export function mskIncomingRecords(event: MSKEvent): IncomingRecord[] {
  const records: IncomingRecord[] = [];
  for (const list of Object.values(event.records)) {
    for (const r of list) {
      // a message produced without a key arrives without `key`, though the type says string
      const key = r.key ? Buffer.from(r.key, 'base64').toString('utf8') : null;
      records.push({ id: mskRecordId(r), partitionKey: key, data: Buffer.from(r.value ?? '', 'base64') });
    }
  }
  return records;
}

/**
 * Writes an MSK (or self-managed Kafka) batch to the store. Poison (unreadable records, invalid events)
 * is dead-lettered by writeRecords and never fails the batch. If any record's write fails, this throws
 * MskBatchRetryError instead of returning batchItemFailures: the Kafka event source honours a partial
 * batch response only in provisioned mode with ReportBatchItemFailures turned on, and otherwise treats any
 * non-error return as success and commits the offsets (the failed records would be lost). A thrown error is
 * retried in every mode: the whole batch again (the store is idempotent on natural keys, so the rows already
 * written are not duplicated), until it succeeds or, where configured, MaximumRetryAttempts /
 * BisectBatchOnFunctionError / an on-failure destination take over.
 * See https://docs.aws.amazon.com/lambda/latest/dg/kafka-retry-configurations.html
 */
export async function writeMskBatch(event: MSKEvent, deps: StoreWriterDeps): Promise<void> {
  const failed = await writeRecords(mskIncomingRecords(event), deps);
  if (failed.length > 0) throw new MskBatchRetryError(failed);
}

/** The MSK store-writer Lambda handler over the given dependencies (the local runner passes its own). */
export function createMskWriterHandler(deps: StoreWriterDeps): MskBatchHandler {
  return middy<MSKEvent, void>().handler((event) => writeMskBatch(event, deps));
}
