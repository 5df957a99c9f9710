import type { Context, MSKEvent, MSKRecord } from 'aws-lambda';
import { PlatformError } from '../../layers/shared/src/domain/errors.js';
import type { StreamRecord, StreamSubscription } from '../../layers/shared/src/ports/index.js';
import { PollingEventSource, localContext, sleep, type PollingOptions } from './polling-event-source.js';

/** A record's shard id is not `<topic>-<partition>`, so it cannot be put into an MSK event. */
export class MskShardIdError extends PlatformError {}

/** What MskEventSource reads, whom it invokes, and its retry policy. */
export interface MskEventSourceOptions extends PollingOptions {
  /** a Kafka subscription: shard ids are `<topic>-<partition>`, sequence numbers are offsets */
  readonly subscription: StreamSubscription;
  readonly handler: (event: MSKEvent, context: Context) => Promise<unknown>;
  readonly eventSourceArn?: string;
  readonly bootstrapServers?: string;
  /** invocations of one batch before it is given up (MaximumRetryAttempts + 1) */
  readonly maxAttempts?: number;
  /** first retry backoff in ms, doubled per attempt up to retryMaxMs */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** called with a batch given up after maxAttempts (the on-failure destination); it must keep them somewhere */
  readonly onExhausted: (records: readonly StreamRecord[], reason: string) => Promise<void>;
}

/**
 * Does locally what Lambda's Kafka event source mapping does for MSK: polls the topic, invokes the
 * handler with an MSK-shaped event (one partition per batch here), commits after success, and on a
 * function error retries the whole batch from its first offset with backoff, giving it up to
 * `onExhausted` after maxAttempts (as MaximumRetryAttempts with an on-failure destination would).
 */
export class MskEventSource extends PollingEventSource {
  /** failed invocations per batch, keyed by the batch's first `shard@offset` */
  private readonly attempts = new Map<string, number>();

  constructor(private readonly options: MskEventSourceOptions) {
    super(options);
  }

  protected async invoke(records: readonly StreamRecord[]): Promise<void> {
    const { subscription, handler, logger, maxAttempts = 5, retryBaseMs = 100, retryMaxMs = 2_000 } = this.options;
    const first = records[0]!;
    const last = records.at(-1)!;
    const key = `${first.shardId}@${first.sequenceNumber}`;
    this.invocations += 1;
    try {
      await handler(this.toEvent(records), localContext());
    } catch (error) {
      const n = (this.attempts.get(key) ?? 0) + 1;
      const reason = `handler threw ${(error as Error).name}: ${(error as Error).message}`;
      logger.error('handler invocation failed; batch will be retried', { error, shardId: first.shardId, offset: first.sequenceNumber, attempt: n });
      if (n >= maxAttempts) {
        logger.error('batch given up after retries; dead-lettered', { shardId: first.shardId, from: first.sequenceNumber, to: last.sequenceNumber, attempts: n });
        await this.options.onExhausted(records, `${reason} (${n} attempts)`);
        await subscription.checkpoint(last.shardId, last.sequenceNumber);
        this.attempts.delete(key);
        return;
      }
      this.attempts.set(key, n);
      // Kafka has no per-record checkpoint in this contract: the whole batch is retried from its first offset
      subscription.rewind(first.shardId, first.sequenceNumber);
      await sleep(Math.min(retryBaseMs * 2 ** (n - 1), retryMaxMs));
      return;
    }
    await subscription.checkpoint(last.shardId, last.sequenceNumber);
    this.attempts.delete(key);
  }

  private toEvent(records: readonly StreamRecord[]): MSKEvent {
    const byPartition: Record<string, MSKRecord[]> = {};
    for (const r of records) {
      const { topic, partition } = topicPartitionOf(r.shardId);
      const list = (byPartition[r.shardId] ??= []);
      list.push({
        topic,
        partition,
        offset: Number(r.sequenceNumber),
        timestamp: r.arrivalTs,
        timestampType: 'CREATE_TIME',
        key: Buffer.from(r.partitionKey, 'utf8').toString('base64'),
        value: Buffer.from(r.data).toString('base64'),
        headers: [],
      });
    }
    return {
      eventSource: 'aws:kafka',
      eventSourceArn: this.options.eventSourceArn ?? 'arn:aws:kafka:local:000000000000:cluster/local/00000000-0000-0000-0000-000000000000-1',
      bootstrapServers: this.options.bootstrapServers ?? 'localhost:9092',
      records: byPartition,
    };
  }
}

/** `<topic>-<partition>` (topics may contain dashes: the partition is after the last one). */
function topicPartitionOf(shardId: string): { topic: string; partition: number } {
  const dash = shardId.lastIndexOf('-');
  const partition = Number(shardId.slice(dash + 1));
  if (dash <= 0 || !Number.isInteger(partition)) throw new MskShardIdError(`shard id ${shardId} is not <topic>-<partition>`);
  return { topic: shardId.slice(0, dash), partition };
}
