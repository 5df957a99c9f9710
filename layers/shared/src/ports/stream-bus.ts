import type { StreamEvent } from '../domain/index.js';

/** One record as a stream holds it (Kinesis record / Kafka message). */
export interface StreamRecord {
  readonly partitionKey: string;
  readonly data: Uint8Array;
  /** position in its shard/partition; decimal string, increasing */
  readonly sequenceNumber: string;
  readonly shardId: string;
  /** ms epoch the stream accepted the record */
  readonly arrivalTs: number;
}

/** Producer side of the stream. At-least-once: a publish that rejects may still have landed in part. */
export interface StreamBus {
  /**
   * Publishes events grouped by partition key `exchange:symbol` (`signal:<symbol>` for signals,
   * which may name no exchange), several events per record, preserving order per key. Resolves
   * once the stream has accepted every record. Market events, funding snapshots, ledger events
   * and signals alike.
   */
  publish(events: readonly StreamEvent[]): Promise<PublishReceipt>;
  close(): Promise<void>;
}

export interface PublishReceipt {
  readonly records: number;
  readonly events: number;
  readonly bytes: number;
}

/** Consumer side: a checkpointed reader of one stream (what Lambda's event source does on AWS). */
export interface StreamSubscription {
  /** Next records after the checkpoint, at most `max`; waits up to `waitMs` when none are there. */
  poll(max: number, waitMs: number): Promise<readonly StreamRecord[]>;
  /** Marks everything up to and including `sequenceNumber` of `shardId` as handled. */
  checkpoint(shardId: string, sequenceNumber: string): Promise<void>;
  /** Makes the next poll start again at `sequenceNumber` (inclusive) of `shardId`. */
  rewind(shardId: string, sequenceNumber: string): void;
  close(): Promise<void>;
}
