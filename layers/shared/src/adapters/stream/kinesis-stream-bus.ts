import { KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import type { PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, PlatformError } from '../../domain/errors.js';
import type { MarketEvent } from '../../domain/index.js';
import { partitionKeyOf } from '../../domain/index.js';
import type { PublishReceipt, StreamBus } from '../../ports/index.js';
import { encodeEvents } from '../../stream/event-codec.js';
import { StreamClosedError } from './memory-stream-bus.js';

/** Kinesis API limits (PutRecords): records per call, bytes per call, bytes per record (data + partition key). */
export const KINESIS_LIMITS = {
  recordsPerCall: 500,
  bytesPerCall: 5 * 1024 * 1024,
  bytesPerRecord: 1024 * 1024,
} as const;

/** Some events were not accepted by the stream within the retry budget (part of the publish may have landed). */
export class StreamPublishError extends PlatformError {
  constructor(
    message: string,
    /** events of this publish the stream did not accept */
    readonly failedEvents: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** One event alone encodes to more than a Kinesis record may hold. */
export class RecordTooLargeError extends PlatformError {}

/** How to reach Kinesis when no client is injected. */
export interface KinesisConnectionOptions {
  /** a ready client; it is not destroyed by close() */
  readonly client?: KinesisClient;
  readonly region?: string;
  /** e.g. kinesalite's `http://127.0.0.1:4567` */
  readonly endpoint?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** A Kinesis client over HTTP/1.1 (kinesalite rejects HTTP/2); `sdkRetries: false` leaves retrying to the caller. */
export function createKinesisClient(options: KinesisConnectionOptions, sdkRetries = true): KinesisClient {
  return new KinesisClient({
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
    requestHandler: new NodeHttpHandler({ connectionTimeout: 5_000, requestTimeout: 30_000 }),
    ...(sdkRetries ? {} : { maxAttempts: 1 }),
  });
}

export interface KinesisStreamBusOptions extends KinesisConnectionOptions {
  readonly streamName: string;
  /** retries of one record (or of a whole call) before publish rejects; @default 8 */
  readonly maxRetries?: number;
  /** first backoff ceiling, doubled per retry, full jitter; @default 50 */
  readonly backoffBaseMs?: number;
  /** @default 2000 */
  readonly backoffMaxMs?: number;
  /**
   * bytes a record is filled to before the next one starts; @default 96 KiB. Kept well under the
   * 1 MiB limit because V8 encodes JSON strings over ~128 KiB markedly slower.
   */
  readonly recordTargetBytes?: number;
}

interface PendingRecord {
  readonly key: string;
  readonly data: Uint8Array;
  readonly events: number;
  /** data + partition key, as Kinesis counts it against its limits */
  readonly size: number;
  attempts: number;
}

const encoder = new TextEncoder();
/** `{"v":1,"events":[` + `]}` and a margin: what encodeEvents adds around the events */
const ENVELOPE_BYTES = 64;
const RETRYABLE_ERRORS = new Set([
  'ProvisionedThroughputExceededException',
  'LimitExceededException',
  'ThrottlingException',
  'InternalFailure',
  'InternalFailureException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'KMSThrottlingException',
  'TimeoutError',
  'RequestTimeout',
]);

/**
 * StreamBus on Kinesis Data Streams: events aggregated into records per partition key
 * `exchange:symbol`, PutRecords within the API limits, failed records retried with backoff.
 *
 * Order per key holds under partial failures because a PutRecords call carries at most one record
 * per partition key and only one call is in flight: a key's next record is sent only after the
 * previous one was accepted. A key whose record exhausts the retry budget is given up (the other keys
 * still go out) and the publish then rejects with StreamPublishError.
 */
export class KinesisStreamBus implements StreamBus {
  readonly streamName: string;
  private readonly client: KinesisClient;
  private readonly ownsClient: boolean;
  private readonly maxRetries: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly recordTargetBytes: number;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(options: KinesisStreamBusOptions) {
    if (!options.streamName) throw new ConfigError('KinesisStreamBus needs a streamName');
    this.streamName = options.streamName;
    // the bus owns retries (per record, with backoff): SDK retries on top would multiply the budget
    this.client = options.client ?? createKinesisClient(options, false);
    this.ownsClient = !options.client;
    this.maxRetries = options.maxRetries ?? 8;
    this.backoffBaseMs = options.backoffBaseMs ?? 50;
    this.backoffMaxMs = options.backoffMaxMs ?? 2_000;
    this.recordTargetBytes = options.recordTargetBytes ?? 96 * 1024;
    if (!(this.recordTargetBytes >= 1024 && this.recordTargetBytes <= KINESIS_LIMITS.bytesPerRecord - 1024)) {
      throw new ConfigError(
        `recordTargetBytes ${this.recordTargetBytes} must be between 1024 and ${KINESIS_LIMITS.bytesPerRecord - 1024} (Kinesis holds at most 1 MiB per record)`,
      );
    }
  }

  /** Publishes after every earlier publish has settled (one PutRecords in flight keeps order per key). */
  publish(events: readonly MarketEvent[]): Promise<PublishReceipt> {
    if (this.closed) return Promise.reject(new StreamClosedError(`Kinesis stream ${this.streamName}: bus is closed`));
    const run = this.tail.then(() => this.send(events));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Waits for the publish in flight; destroys the client when the bus created it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    if (this.ownsClient) this.client.destroy();
  }

  private async send(events: readonly MarketEvent[]): Promise<PublishReceipt> {
    const queues = this.toRecords(events);
    let records = 0;
    let bytes = 0;
    let start = 0;
    /** events of keys given up after the budget: the publish rejects once the other keys are done */
    let givenUp = 0;
    let firstCause: unknown;
    while (queues.size > 0) {
      // one record per key per call: a failed record is retried before its key's later records leave
      const batch: PendingRecord[] = [];
      let callBytes = 0;
      const keys = [...queues.keys()];
      for (let i = 0; i < keys.length && batch.length < KINESIS_LIMITS.recordsPerCall; i++) {
        // rotate the start so that, with more than 500 keys, every key gets its turn
        const head = queues.get(keys[(start + i) % keys.length]!)![0]!;
        if (callBytes + head.size > KINESIS_LIMITS.bytesPerCall) continue;
        batch.push(head);
        callBytes += head.size;
      }
      start += batch.length;

      const failed: PendingRecord[] = [];
      let cause: unknown;
      try {
        const entries: PutRecordsRequestEntry[] = batch.map((r) => ({ PartitionKey: r.key, Data: r.data }));
        const out = await this.client.send(new PutRecordsCommand({ StreamName: this.streamName, Records: entries }));
        const results = out.Records ?? [];
        batch.forEach((record, i) => {
          const result = results[i];
          if (result && !result.ErrorCode && result.SequenceNumber) {
            const queue = queues.get(record.key)!;
            queue.shift();
            if (queue.length === 0) queues.delete(record.key);
            records += 1;
            bytes += record.data.byteLength;
          } else {
            failed.push(record);
            cause ??= new PlatformError(`${result?.ErrorCode ?? 'NoResult'}: ${result?.ErrorMessage ?? 'no result for the record'}`);
          }
        });
      } catch (error) {
        if (!isRetryable(error)) throw this.publishError(queues, givenUp, `PutRecords failed: ${describe(error)}`, error);
        if (batch.every((r) => r.attempts >= this.maxRetries)) {
          // the stream itself keeps failing: nothing queued has a better chance
          throw this.publishError(queues, givenUp, `PutRecords still failing after ${this.maxRetries} retries: ${describe(error)}`, error);
        }
        failed.push(...batch);
        cause = error;
      }
      if (failed.length === 0) continue;
      firstCause ??= cause;

      let attempts = 0;
      for (const record of failed) {
        record.attempts += 1;
        if (record.attempts > this.maxRetries) {
          // this key is given up; the others still go out, so one hot shard does not hold back the rest
          for (const r of queues.get(record.key) ?? []) givenUp += r.events;
          queues.delete(record.key);
        } else {
          attempts = Math.max(attempts, record.attempts);
        }
      }
      if (attempts === 0) continue;
      // full jitter: spreads producers that were throttled together
      const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (attempts - 1));
      await sleep(Math.random() * ceiling);
    }
    if (givenUp > 0) {
      throw this.publishError(queues, givenUp, `records still failing after ${this.maxRetries} retries: ${describe(firstCause)}`, firstCause);
    }
    return { records, events: events.length, bytes };
  }

  private publishError(queues: Map<string, PendingRecord[]>, givenUp: number, reason: string, cause: unknown): StreamPublishError {
    let events = givenUp;
    for (const queue of queues.values()) for (const r of queue) events += r.events;
    return new StreamPublishError(`Kinesis stream ${this.streamName}: ${events} events were not accepted - ${reason}`, events, {
      cause,
    });
  }

  /** Groups events by key in order and fills records up to the byte target. */
  private toRecords(events: readonly MarketEvent[]): Map<string, PendingRecord[]> {
    const byKey = new Map<string, MarketEvent[]>();
    for (const e of events) {
      const key = partitionKeyOf(e);
      const list = byKey.get(key);
      if (list) list.push(e);
      else byKey.set(key, [e]);
    }
    const queues = new Map<string, PendingRecord[]>();
    for (const [key, list] of byKey) {
      const keyBytes = encoder.encode(key).byteLength;
      const queue: PendingRecord[] = [];
      let chunk: MarketEvent[] = [];
      let chunkBytes = ENVELOPE_BYTES + keyBytes;
      const flush = () => {
        if (chunk.length === 0) return;
        const data = encodeEvents(chunk);
        const size = data.byteLength + keyBytes;
        if (size > KINESIS_LIMITS.bytesPerRecord) {
          throw new RecordTooLargeError(
            `an event of ${key} encodes to ${size} bytes with its key; a Kinesis record holds at most ${KINESIS_LIMITS.bytesPerRecord}`,
          );
        }
        queue.push({ key, data, events: chunk.length, size, attempts: 0 });
        chunk = [];
        chunkBytes = ENVELOPE_BYTES + keyBytes;
      };
      for (const e of list) {
        // the exact size of the event in the record (plus its comma); events are plain JSON objects
        const size = Buffer.byteLength(JSON.stringify(e), 'utf8') + 1;
        if (chunk.length > 0 && chunkBytes + size > this.recordTargetBytes) flush();
        chunk.push(e);
        chunkBytes += size;
      }
      flush();
      queues.set(key, queue);
    }
    return queues;
  }
}

function isRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
  if (e.$retryable) return true;
  if (e.name && RETRYABLE_ERRORS.has(e.name)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429;
  // no HTTP response at all: connection refused/reset, socket timeout (a bug's TypeError is not retried)
  return typeof e.code === 'string' && /^E[A-Z]+/.test(e.code);
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
