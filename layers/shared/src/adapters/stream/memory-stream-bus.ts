import { createHash } from 'node:crypto';
import { PlatformError } from '../../domain/errors.js';
import type { StreamEvent } from '../../domain/index.js';
import { partitionKeyOf } from '../../domain/index.js';
import type { PublishReceipt, StreamBus, StreamRecord, StreamSubscription } from '../../ports/index.js';
import { encodeEvents } from '../../stream/event-codec.js';

/** The in-process stream is full and did not drain within the publish timeout. */
export class StreamFullError extends PlatformError {}

/** The stream was closed. */
export class StreamClosedError extends PlatformError {}

export interface MemoryStreamOptions {
  /** shards, as on Kinesis: one partition key always maps to one shard */
  readonly shards?: number;
  /** records held before publishers wait for the consumer (backpressure, bounded memory) */
  readonly capacity?: number;
  /** how long a publisher waits for room before StreamFullError */
  readonly publishTimeoutMs?: number;
  /** events per record at most */
  readonly maxEventsPerRecord?: number;
}

interface Shard {
  readonly id: string;
  records: StreamRecord[];
  /** sequence number of records[0] */
  base: bigint;
  next: bigint;
  /** next sequence number to deliver */
  cursor: bigint;
}

/**
 * In-process stream with Kinesis semantics: shards by hash of the partition key, ordered
 * sequence numbers per shard, a checkpointed reader, at-least-once redelivery on rewind.
 */
export class MemoryStream implements StreamBus {
  private readonly shards: Shard[];
  private readonly capacity: number;
  private readonly publishTimeoutMs: number;
  private readonly maxEventsPerRecord: number;
  private waiters: (() => void)[] = [];
  private roomWaiters: (() => void)[] = [];
  private closed = false;
  private held = 0;
  private nextShard = 0;
  private readonly shardOfKey = new Map<string, Shard>();

  constructor(options: MemoryStreamOptions = {}) {
    const n = options.shards ?? 4;
    this.shards = Array.from({ length: n }, (_, i) => ({
      id: `shardId-${String(i).padStart(12, '0')}`,
      records: [],
      base: 1n,
      next: 1n,
      cursor: 1n,
    }));
    this.capacity = options.capacity ?? 50_000;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 10_000;
    this.maxEventsPerRecord = options.maxEventsPerRecord ?? 500;
  }

  /** Records published but not yet checkpointed by the consumer. */
  get backlog(): number {
    return this.held;
  }

  async publish(events: readonly StreamEvent[]): Promise<PublishReceipt> {
    if (this.closed) throw new StreamClosedError('stream is closed');
    const byKey = new Map<string, StreamEvent[]>();
    for (const e of events) {
      const key = partitionKeyOf(e);
      const list = byKey.get(key);
      if (list) list.push(e);
      else byKey.set(key, [e]);
    }
    let records = 0;
    let bytes = 0;
    for (const [key, list] of byKey) {
      for (let i = 0; i < list.length; i += this.maxEventsPerRecord) {
        await this.waitForRoom();
        const data = encodeEvents(list.slice(i, i + this.maxEventsPerRecord));
        const shard = this.shardFor(key);
        shard.records.push({
          partitionKey: key,
          data,
          sequenceNumber: shard.next.toString(),
          shardId: shard.id,
          arrivalTs: Date.now(),
        });
        shard.next += 1n;
        this.held += 1;
        records += 1;
        bytes += data.byteLength;
      }
    }
    this.wake();
    return { records, events: events.length, bytes };
  }

  /** A checkpointed reader; the in-process stream has one consumer group, so a new reader resumes after its checkpoints. */
  subscribe(): StreamSubscription {
    for (const shard of this.shards) shard.cursor = shard.base;
    return {
      poll: (max, waitMs) => this.poll(max, waitMs),
      checkpoint: async (shardId, seq) => this.checkpoint(shardId, BigInt(seq)),
      rewind: (shardId, seq) => {
        const shard = this.shard(shardId);
        shard.cursor = BigInt(seq) < shard.base ? shard.base : BigInt(seq);
      },
      close: async () => undefined,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    for (const w of this.roomWaiters.splice(0)) w();
  }

  private async poll(max: number, waitMs: number): Promise<readonly StreamRecord[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      // like Lambda's event source, one batch comes from one shard; shards take turns
      for (let i = 0; i < this.shards.length; i++) {
        const shard = this.shards[(this.nextShard + i) % this.shards.length]!;
        const start = Number(shard.cursor - shard.base);
        if (start < shard.records.length) {
          this.nextShard = (this.nextShard + i + 1) % this.shards.length;
          const batch = shard.records.slice(start, start + max);
          shard.cursor += BigInt(batch.length);
          return batch;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return [];
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private checkpoint(shardId: string, seq: bigint): void {
    const shard = this.shard(shardId);
    const drop = Number(seq - shard.base + 1n);
    if (drop <= 0) return;
    const removed = shard.records.splice(0, drop).length;
    shard.base += BigInt(removed);
    if (shard.cursor < shard.base) shard.cursor = shard.base;
    this.held -= removed;
    for (const w of this.roomWaiters.splice(0)) w();
  }

  private async waitForRoom(): Promise<void> {
    const deadline = Date.now() + this.publishTimeoutMs;
    while (this.held >= this.capacity) {
      if (this.closed) throw new StreamClosedError('stream is closed');
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new StreamFullError(`in-process stream holds ${this.held} records and the consumer did not drain it`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.roomWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private shard(id: string): Shard {
    const shard = this.shards.find((s) => s.id === id);
    if (!shard) throw new PlatformError(`unknown shard ${id}`);
    return shard;
  }

  /** The shard of a partition key, hashed once per key (publish is on the collector's hot path). */
  private shardFor(key: string): Shard {
    let shard = this.shardOfKey.get(key);
    if (!shard) {
      const h = createHash('md5').update(key).digest();
      shard = this.shards[h.readUInt32BE(0) % this.shards.length]!;
      this.shardOfKey.set(key, shard);
    }
    return shard;
  }
}
