import { Kafka, logLevel, type Consumer, type EachBatchPayload } from 'kafkajs';
import { PlatformError } from '../../domain/errors.js';
import type { StreamRecord, StreamSubscription } from '../../ports/index.js';
import { kafkaConnectionConfig, type KafkaConnectionOptions } from './kafka-connection.js';

/** The consumer could not join its group, commit, or read the topic. */
export class KafkaConsumerError extends PlatformError {}

/** A shard id that is not `<topic>-<partition>` of this subscription's topic. */
export class UnknownKafkaShardError extends PlatformError {}

/** Topic, group and limits of a KafkaSubscription (brokers, TLS and auth: see KafkaConnectionOptions). */
export interface KafkaSubscriptionOptions extends KafkaConnectionOptions {
  readonly topic: string;
  /** consumer group; a new subscription of the same group resumes after the group's committed offsets */
  readonly groupId: string;
  readonly clientId?: string;
  /** how long the broker holds a fetch open when there is nothing new (short: poll's waitMs bounds latency anyway) */
  readonly fetchMaxWaitMs?: number;
  /** bytes buffered per partition before fetching from it pauses (bounded memory; resumes as poll drains it) */
  readonly maxBufferedBytesPerPartition?: number;
  readonly sessionTimeoutMs?: number;
  readonly heartbeatIntervalMs?: number;
  /** how long open() waits for the first group join */
  readonly joinTimeoutMs?: number;
}

interface PartitionBuffer {
  records: StreamRecord[];
  bytes: number;
  paused: boolean;
}

/**
 * A checkpointed reader of one Kafka topic through a consumer group (what the local runner uses in place
 * of Lambda's Kafka event source). kafkajs pushes batches; they are buffered per partition (bounded:
 * the partition is paused when full) and `poll` hands out records of one partition per call, partitions
 * taking turns. `checkpoint` commits offset+1; `rewind` seeks.
 */
export class KafkaSubscription implements StreamSubscription {
  private readonly buffers = new Map<number, PartitionBuffer>();
  /** partitions rewound whose re-read has not arrived yet: records before it are stale and dropped */
  private readonly pendingSeeks = new Map<number, bigint>();
  private readonly maxBufferedBytes: number;
  private waiters: (() => void)[] = [];
  private nextPartition = 0;
  private failure: Error | null = null;
  private closed = false;

  private constructor(
    private readonly consumer: Consumer,
    private readonly topic: string,
    options: KafkaSubscriptionOptions,
  ) {
    this.maxBufferedBytes = options.maxBufferedBytesPerPartition ?? 4 * 1024 * 1024;
  }

  /** Connects, joins the group and resolves once partitions are assigned (from the earliest offset when the group has none). */
  static async open(options: KafkaSubscriptionOptions): Promise<KafkaSubscription> {
    const kafka = new Kafka({
      clientId: options.clientId ?? 'qicore-subscription',
      ...kafkaConnectionConfig(options),
      logLevel: logLevel.NOTHING,
    });
    const consumer = kafka.consumer({
      groupId: options.groupId,
      maxWaitTimeInMs: options.fetchMaxWaitMs ?? 100,
      sessionTimeout: options.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: options.heartbeatIntervalMs ?? 1_000,
      allowAutoTopicCreation: true,
    });
    const sub = new KafkaSubscription(consumer, options.topic, options);
    const joinTimeoutMs = options.joinTimeoutMs ?? 30_000;
    let removeJoin: (() => void) | undefined;
    const joined = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new KafkaConsumerError(`group ${options.groupId} not joined within ${joinTimeoutMs} ms`)),
        joinTimeoutMs,
      );
      removeJoin = consumer.on(consumer.events.GROUP_JOIN, () => {
        clearTimeout(timer);
        resolve();
      });
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [options.topic], fromBeginning: true });
      // every (re)join restarts from the committed offsets: what was buffered would be delivered twice
      consumer.on(consumer.events.GROUP_JOIN, () => sub.reset());
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        if (!payload.restart) sub.fail(payload.error);
      });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: true,
        eachBatch: async (payload) => sub.accept(payload),
      });
      await joined;
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      if (error instanceof KafkaConsumerError) throw error;
      throw new KafkaConsumerError(`cannot subscribe group ${options.groupId} to ${options.topic}: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      removeJoin?.();
    }
    return sub;
  }

  async poll(max: number, waitMs: number): Promise<readonly StreamRecord[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (this.failure) throw new KafkaConsumerError(`consumer of ${this.topic} stopped: ${this.failure.message}`, { cause: this.failure });
      const batch = this.take(max);
      if (batch.length > 0 || this.closed) return batch;
      const left = deadline - Date.now();
      if (left <= 0) return [];
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async checkpoint(shardId: string, sequenceNumber: string): Promise<void> {
    const partition = this.partitionOf(shardId);
    try {
      await this.consumer.commitOffsets([{ topic: this.topic, partition, offset: (BigInt(sequenceNumber) + 1n).toString() }]);
    } catch (error) {
      throw new KafkaConsumerError(`commit of ${shardId}@${sequenceNumber} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  rewind(shardId: string, sequenceNumber: string): void {
    const partition = this.partitionOf(shardId);
    const buffer = this.buffers.get(partition);
    if (buffer) {
      buffer.records = [];
      buffer.bytes = 0;
    }
    this.pendingSeeks.set(partition, BigInt(sequenceNumber));
    this.consumer.seek({ topic: this.topic, partition, offset: sequenceNumber });
    this.resumeIfRoom(partition);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    await this.consumer.disconnect();
  }

  /** Shard id of a partition, as StreamRecord.shardId carries it. */
  shardIdOf(partition: number): string {
    return `${this.topic}-${partition}`;
  }

  private accept({ batch }: EachBatchPayload): void {
    const partition = batch.partition;
    const buffer = this.buffer(partition);
    for (const m of batch.messages) {
      const offset = BigInt(m.offset);
      const seek = this.pendingSeeks.get(partition);
      if (seek !== undefined) {
        // a batch fetched before the seek took effect: skip until the re-read starts
        if (offset !== seek) continue;
        this.pendingSeeks.delete(partition);
      }
      const data = m.value ?? Buffer.alloc(0);
      buffer.records.push({
        partitionKey: m.key?.toString('utf8') ?? '',
        data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        sequenceNumber: m.offset,
        shardId: this.shardIdOf(partition),
        arrivalTs: Number(m.timestamp),
      });
      buffer.bytes += data.byteLength;
    }
    if (!buffer.paused && buffer.bytes >= this.maxBufferedBytes) {
      buffer.paused = true;
      this.consumer.pause([{ topic: this.topic, partitions: [partition] }]);
    }
    this.wake();
  }

  private take(max: number): StreamRecord[] {
    const partitions = [...this.buffers.keys()].sort((a, b) => a - b);
    for (let i = 0; i < partitions.length; i++) {
      const partition = partitions[(this.nextPartition + i) % partitions.length]!;
      const buffer = this.buffers.get(partition)!;
      if (buffer.records.length === 0) continue;
      this.nextPartition = (this.nextPartition + i + 1) % partitions.length;
      const batch = buffer.records.splice(0, max);
      for (const r of batch) buffer.bytes -= r.data.byteLength;
      this.resumeIfRoom(partition);
      return batch;
    }
    return [];
  }

  private resumeIfRoom(partition: number): void {
    const buffer = this.buffers.get(partition);
    if (buffer?.paused && buffer.bytes < this.maxBufferedBytes) {
      buffer.paused = false;
      this.consumer.resume([{ topic: this.topic, partitions: [partition] }]);
    }
  }

  private reset(): void {
    for (const [partition, buffer] of this.buffers) {
      buffer.records = [];
      buffer.bytes = 0;
      this.resumeIfRoom(partition);
      buffer.paused = false;
    }
    this.pendingSeeks.clear();
  }

  private fail(error: Error): void {
    this.failure = error;
    this.wake();
  }

  private buffer(partition: number): PartitionBuffer {
    let buffer = this.buffers.get(partition);
    if (!buffer) {
      buffer = { records: [], bytes: 0, paused: false };
      this.buffers.set(partition, buffer);
    }
    return buffer;
  }

  private partitionOf(shardId: string): number {
    const prefix = `${this.topic}-`;
    const partition = shardId.startsWith(prefix) ? Number(shardId.slice(prefix.length)) : Number.NaN;
    if (!Number.isInteger(partition) || partition < 0) {
      throw new UnknownKafkaShardError(`shard ${shardId} is not a partition of topic ${this.topic} (expected ${prefix}<n>)`);
    }
    return partition;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
