import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand } from '@aws-sdk/client-kinesis';
import type { KinesisClient, Shard, ShardIteratorType, _Record } from '@aws-sdk/client-kinesis';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, PlatformError } from '../../domain/errors.js';
import type { StreamRecord, StreamSubscription } from '../../ports/index.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { KinesisConnectionOptions } from './kinesis-stream-bus.js';
import { createKinesisClient } from './kinesis-stream-bus.js';

/** A shard id the subscription does not know (not in the stream's shard list). */
export class UnknownShardError extends PlatformError {}

export interface KinesisSubscriptionOptions extends KinesisConnectionOptions {
  readonly streamName: string;
  readonly checkpoints: CheckpointStore;
  /** names this consumer's checkpoints, so several consumers of one stream keep their own; @default 'default' */
  readonly consumerName?: string;
  /** where a shard without a checkpoint starts; @default 'TRIM_HORIZON' */
  readonly startAt?: 'TRIM_HORIZON' | 'LATEST';
  /** pause between rounds over idle shards (Kinesis allows 5 GetRecords per shard per second); @default 200 */
  readonly idleDelayMs?: number;
}

type Position =
  | { readonly type: 'TRIM_HORIZON' | 'LATEST' }
  | { readonly type: 'AFTER_SEQUENCE_NUMBER' | 'AT_SEQUENCE_NUMBER'; readonly seq: string };

interface ShardState {
  readonly id: string;
  /** undefined: to be fetched from `position`; null: the shard is closed and read to its end */
  iterator: string | null | undefined;
  /** where a new iterator starts: after the last record delivered, or where rewind() said */
  position: Position;
}

/** GetRecords returns at most 10,000 records. */
const GET_RECORDS_LIMIT = 10_000;

/**
 * A checkpointed reader of one Kinesis stream, as Lambda's event source mapping reads it: shards take
 * turns, one batch comes from one shard, and a new subscription with the same checkpoint store and
 * consumer name resumes after the last checkpoint of every shard.
 *
 * Shards are listed once, at the first poll: records of shards created later by resharding are not read.
 */
export class KinesisSubscription implements StreamSubscription {
  readonly streamName: string;
  private readonly client: KinesisClient;
  private readonly ownsClient: boolean;
  private readonly store: CheckpointStore;
  private readonly scope: string;
  private readonly startAt: 'TRIM_HORIZON' | 'LATEST';
  private readonly idleDelayMs: number;
  private shards: ShardState[] = [];
  private readonly checkpointed = new Map<string, string>();
  /** rewinds asked for before the shards were listed */
  private readonly earlyRewinds = new Map<string, string>();
  private ready: Promise<void> | null = null;
  private nextShard = 0;
  private closed = false;

  constructor(options: KinesisSubscriptionOptions) {
    if (!options.streamName) throw new ConfigError('KinesisSubscription needs a streamName');
    this.streamName = options.streamName;
    this.client = options.client ?? createKinesisClient(options);
    this.ownsClient = !options.client;
    this.store = options.checkpoints;
    this.scope = `${options.streamName}/${options.consumerName ?? 'default'}`;
    this.startAt = options.startAt ?? 'TRIM_HORIZON';
    this.idleDelayMs = options.idleDelayMs ?? 200;
  }

  /** Next records of one shard, shards taking turns; waits up to `waitMs` while every shard is empty. */
  async poll(max: number, waitMs: number): Promise<readonly StreamRecord[]> {
    if (this.closed) return [];
    await this.init();
    const deadline = Date.now() + waitMs;
    const limit = Math.max(1, Math.min(max, GET_RECORDS_LIMIT));
    for (;;) {
      const n = this.shards.length;
      for (let i = 0; i < n; i++) {
        const shard = this.shards[(this.nextShard + i) % n]!;
        const records = await this.read(shard, limit);
        if (records.length > 0) {
          this.nextShard = (this.nextShard + i + 1) % n;
          return records;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return [];
      await sleep(Math.min(this.idleDelayMs, left));
    }
  }

  /** Persists the position; an older sequence number than the saved one is ignored, as checkpoints only move forward. */
  async checkpoint(shardId: string, sequenceNumber: string): Promise<void> {
    await this.init();
    this.shard(shardId);
    const saved = this.checkpointed.get(shardId);
    if (saved !== undefined && BigInt(sequenceNumber) <= BigInt(saved)) return;
    this.checkpointed.set(shardId, sequenceNumber);
    await this.store.save(this.scope, shardId, sequenceNumber);
  }

  /** The next read of `shardId` starts at `sequenceNumber` itself (AT_SEQUENCE_NUMBER). */
  rewind(shardId: string, sequenceNumber: string): void {
    if (this.shards.length === 0) {
      this.earlyRewinds.set(shardId, sequenceNumber);
      return;
    }
    const shard = this.shard(shardId);
    shard.position = { type: 'AT_SEQUENCE_NUMBER', seq: sequenceNumber };
    shard.iterator = undefined;
  }

  /** Stops reading; destroys the client when the subscription created it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ready?.catch(() => undefined);
    if (this.ownsClient) this.client.destroy();
  }

  private init(): Promise<void> {
    // a failed start (stream not there yet) is tried again at the next poll
    this.ready ??= this.start().catch((error: unknown) => {
      this.ready = null;
      throw error;
    });
    return this.ready;
  }

  private async start(): Promise<void> {
    const [saved, listed] = await Promise.all([this.store.load(this.scope), this.listShards()]);
    for (const [shardId, seq] of saved) this.checkpointed.set(shardId, seq);
    this.shards = listed.map((s) => {
      const id = s.ShardId!;
      const seq = saved.get(id);
      return {
        id,
        iterator: undefined,
        position: seq === undefined ? { type: this.startAt } : { type: 'AFTER_SEQUENCE_NUMBER', seq },
      };
    });
    for (const [shardId, seq] of this.earlyRewinds) this.rewind(shardId, seq);
    this.earlyRewinds.clear();
  }

  private async listShards(): Promise<Shard[]> {
    const shards: Shard[] = [];
    let token: string | undefined;
    do {
      // StreamName and NextToken must not be sent together
      const out = await this.client.send(
        new ListShardsCommand(token ? { NextToken: token } : { StreamName: this.streamName }),
      );
      shards.push(...(out.Shards ?? []));
      token = out.NextToken;
    } while (token);
    if (shards.length === 0) throw new PlatformError(`Kinesis stream ${this.streamName} has no shards`);
    return shards;
  }

  private async read(shard: ShardState, limit: number): Promise<StreamRecord[]> {
    for (let refreshed = false; ; refreshed = true) {
      if (shard.iterator === undefined) shard.iterator = await this.iteratorFor(shard);
      if (shard.iterator === null) return [];
      try {
        const out = await this.client.send(new GetRecordsCommand({ ShardIterator: shard.iterator, Limit: limit }));
        shard.iterator = out.NextShardIterator ?? null;
        const records = out.Records ?? [];
        const last = records.at(-1);
        if (last) shard.position = { type: 'AFTER_SEQUENCE_NUMBER', seq: last.SequenceNumber! };
        return records.map((r) => toStreamRecord(r, shard.id));
      } catch (error) {
        const name = (error as Error).name;
        // iterators live 5 minutes: an idle consumer gets a new one from where it stood
        if (name === 'ExpiredIteratorException' && !refreshed) {
          shard.iterator = undefined;
          continue;
        }
        // the shard's read limit: the other shards take their turn, this one is asked again next round
        if (name === 'ProvisionedThroughputExceededException') return [];
        throw error;
      }
    }
  }

  private async iteratorFor(shard: ShardState): Promise<string | null> {
    const { position } = shard;
    const out = await this.client.send(
      new GetShardIteratorCommand({
        StreamName: this.streamName,
        ShardId: shard.id,
        ShardIteratorType: position.type satisfies ShardIteratorType,
        ...('seq' in position ? { StartingSequenceNumber: position.seq } : {}),
      }),
    );
    return out.ShardIterator ?? null;
  }

  private shard(shardId: string): ShardState {
    const shard = this.shards.find((s) => s.id === shardId);
    if (!shard) throw new UnknownShardError(`Kinesis stream ${this.streamName} has no shard ${shardId}`);
    return shard;
  }
}

function toStreamRecord(r: _Record, shardId: string): StreamRecord {
  return {
    partitionKey: r.PartitionKey!,
    data: r.Data!,
    sequenceNumber: r.SequenceNumber!,
    shardId,
    // Kinesis always sets it; the time of reading is the closest bound should one ever lack it
    arrivalTs: r.ApproximateArrivalTimestamp?.getTime() ?? Date.now(),
  };
}
