import type { Context, KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import type { StreamRecord } from '../../layers/shared/src/ports/index.js';
import { PollingEventSource, localContext, sleep, type PollingOptions } from './polling-event-source.js';

export interface KinesisEventSourceOptions extends PollingOptions {
  readonly handler: (event: KinesisStreamEvent, context: Context) => Promise<KinesisStreamBatchResponse | void>;
  readonly streamArn?: string;
  /** invocations of one record before it is given up (MaximumRetryAttempts + 1) */
  readonly maxAttempts?: number;
  /** called with records given up after maxAttempts; they must be kept somewhere (dead letters) */
  readonly onExhausted: (records: readonly StreamRecord[], reason: string) => Promise<void>;
}

/**
 * Does locally what Lambda's Kinesis event source mapping does on AWS: polls the stream, invokes
 * the handler with a Kinesis-shaped event, honours ReportBatchItemFailures by checkpointing before
 * the first failed record and retrying from it, and gives a record up after maxAttempts.
 */
export class KinesisEventSource extends PollingEventSource {
  private readonly attempts = new Map<string, number>();

  constructor(private readonly options: KinesisEventSourceOptions) {
    super(options);
  }

  protected async invoke(records: readonly StreamRecord[]): Promise<void> {
    const { subscription, handler, logger, maxAttempts = 5 } = this.options;
    const first = records[0]!;
    const shardId = first.shardId;
    let failedSeq: string | null = null;
    let reason = '';
    this.invocations += 1;
    try {
      const response = await handler(this.toEvent(records), localContext());
      const failures = response?.batchItemFailures ?? [];
      if (failures.length > 0) {
        // Lambda resumes from the lowest failed sequence number
        failedSeq = failures
          .map((f) => f.itemIdentifier)
          .reduce((a, b) => (BigInt(a) <= BigInt(b) ? a : b));
        reason = 'reported in batchItemFailures';
      }
    } catch (error) {
      failedSeq = first.sequenceNumber;
      reason = `handler threw ${(error as Error).name}: ${(error as Error).message}`;
      logger.error('handler invocation failed', { error, shardId });
    }
    if (failedSeq === null) {
      await subscription.checkpoint(shardId, records.at(-1)!.sequenceNumber);
      for (const r of records) this.attempts.delete(r.sequenceNumber);
      return;
    }
    const idx = records.findIndex((r) => r.sequenceNumber === failedSeq);
    const failed = records[idx] ?? first;
    if (idx > 0) await subscription.checkpoint(shardId, records[idx - 1]!.sequenceNumber);
    const n = (this.attempts.get(failed.sequenceNumber) ?? 0) + 1;
    this.attempts.set(failed.sequenceNumber, n);
    if (n >= maxAttempts) {
      logger.error('record given up after retries; dead-lettered', { shardId, seq: failed.sequenceNumber, attempts: n });
      await this.options.onExhausted([failed], `${reason} (${n} attempts)`);
      await subscription.checkpoint(shardId, failed.sequenceNumber);
      this.attempts.delete(failed.sequenceNumber);
      return;
    }
    subscription.rewind(shardId, failed.sequenceNumber);
    await sleep(Math.min(100 * 2 ** n, 2_000));
  }

  private toEvent(records: readonly StreamRecord[]): KinesisStreamEvent {
    const arn = this.options.streamArn ?? 'arn:aws:kinesis:local:000000000000:stream/market-events';
    return {
      Records: records.map(
        (r): KinesisStreamRecord => ({
          kinesis: {
            kinesisSchemaVersion: '1.0',
            partitionKey: r.partitionKey,
            sequenceNumber: r.sequenceNumber,
            data: Buffer.from(r.data).toString('base64'),
            approximateArrivalTimestamp: r.arrivalTs / 1000,
          },
          eventSource: 'aws:kinesis',
          eventVersion: '1.0',
          eventID: `${r.shardId}:${r.sequenceNumber}`,
          eventName: 'aws:kinesis:record',
          invokeIdentityArn: 'arn:aws:iam::000000000000:role/local-runner',
          awsRegion: 'local',
          eventSourceARN: arn,
        }),
      ),
    };
  }
}
