import { Kafka, logLevel, type Message, type Producer } from 'kafkajs';
import { PlatformError } from '../../domain/errors.js';
import type { MarketEvent } from '../../domain/index.js';
import { partitionKeyOf } from '../../domain/index.js';
import type { PublishReceipt, StreamBus } from '../../ports/index.js';
import { encodeEvents } from '../../stream/event-codec.js';
import { kafkaConnectionConfig, type KafkaConnectionOptions } from './kafka-connection.js';

/** The broker did not accept a publish within the retry budget; part of it may have landed (at-least-once). */
export class KafkaPublishError extends PlatformError {}

/** One event encodes to more bytes than a Kafka message may hold; nothing of the publish was sent. */
export class KafkaRecordTooLargeError extends PlatformError {}

/** The bus was closed. */
export class KafkaBusClosedError extends PlatformError {}

/** Broker default `message.max.bytes` (MSK, Redpanda and Apache Kafka: 1 MB); a record batch must stay below it. */
export const KAFKA_MAX_MESSAGE_BYTES = 1_000_000;

/** Where and how KafkaStreamBus publishes (brokers, TLS and auth: see KafkaConnectionOptions). */
export interface KafkaStreamBusOptions extends KafkaConnectionOptions {
  readonly topic: string;
  readonly clientId?: string;
  /** target size of one record (several events of one key); default 96 KiB */
  readonly maxRecordBytes?: number;
  /** bytes of records per produce request; below the broker's max message size, since one request's records for a partition form one batch */
  readonly maxRequestBytes?: number;
  /**
   * Idempotent producer (no duplicates on producer retries). Default false: librdkafka's mock cluster
   * reports controller id 0, which kafkajs cannot resolve to a broker for InitProducerId. Turn on for MSK.
   */
  readonly idempotent?: boolean;
  /** attempts after the first before KafkaPublishError */
  readonly retries?: number;
  /** first backoff in ms (exponential, capped at maxRetryTimeMs) */
  readonly initialRetryTimeMs?: number;
  readonly maxRetryTimeMs?: number;
  /** per-request timeout in ms */
  readonly requestTimeoutMs?: number;
}

// `{"v":1,"events":[` + `]}`: the envelope around the comma-separated events (see encodeEvents)
const ENVELOPE_BYTES = 19;

interface Chunk {
  readonly key: string;
  readonly events: MarketEvent[];
}

/**
 * StreamBus on Kafka (MSK, Redpanda, librdkafka's mock): one topic, message key = partition key
 * `exchange:symbol` so one market stays on one partition in order, value = several events of that key
 * (byte-capped), acks=all, bounded retries with exponential backoff.
 */
export class KafkaStreamBus implements StreamBus {
  private readonly producer: Producer;
  private readonly topic: string;
  private readonly maxRecordBytes: number;
  private readonly maxRequestBytes: number;
  private connecting: Promise<void> | null = null;
  private closed = false;

  constructor(options: KafkaStreamBusOptions) {
    this.topic = options.topic;
    this.maxRecordBytes = options.maxRecordBytes ?? 96 * 1024;
    this.maxRequestBytes = options.maxRequestBytes ?? 900_000;
    if (this.maxRecordBytes > this.maxRequestBytes || this.maxRequestBytes >= KAFKA_MAX_MESSAGE_BYTES) {
      throw new PlatformError(
        `maxRecordBytes (${this.maxRecordBytes}) must be <= maxRequestBytes (${this.maxRequestBytes}) < ${KAFKA_MAX_MESSAGE_BYTES}`,
      );
    }
    const kafka = new Kafka({
      clientId: options.clientId ?? 'qicore-stream-bus',
      ...kafkaConnectionConfig(options),
      logLevel: logLevel.NOTHING,
      requestTimeout: options.requestTimeoutMs ?? 10_000,
      retry: {
        retries: options.retries ?? 5,
        initialRetryTime: options.initialRetryTimeMs ?? 100,
        maxRetryTime: options.maxRetryTimeMs ?? 3_000,
      },
    });
    this.producer = kafka.producer({
      idempotent: options.idempotent ?? false,
      // one request in flight per broker: a retried request can never overtake a later one (order per key)
      maxInFlightRequests: 1,
      allowAutoTopicCreation: true,
    });
  }

  async publish(events: readonly MarketEvent[]): Promise<PublishReceipt> {
    if (this.closed) throw new KafkaBusClosedError(`kafka bus for topic ${this.topic} is closed`);
    if (events.length === 0) return { records: 0, events: 0, bytes: 0 };
    const messages = this.encode(events);
    await this.connect();
    let bytes = 0;
    let request: Message[] = [];
    let requestBytes = 0;
    for (const message of messages) {
      const size = (message.value as Buffer).byteLength;
      if (request.length > 0 && requestBytes + size > this.maxRequestBytes) {
        await this.send(request);
        request = [];
        requestBytes = 0;
      }
      request.push(message);
      requestBytes += size;
      bytes += size;
    }
    await this.send(request);
    return { records: messages.length, events: events.length, bytes };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.connecting?.catch(() => undefined);
    // also after a failed connect: kafkajs keeps the sockets of a refused SASL handshake open
    await this.producer.disconnect();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.producer.connect().catch((error: unknown) => {
      this.connecting = null;
      throw new KafkaPublishError(`cannot connect to kafka for topic ${this.topic}: ${(error as Error).message}`, { cause: error });
    });
    return this.connecting;
  }

  private async send(messages: Message[]): Promise<void> {
    try {
      await this.producer.send({ topic: this.topic, acks: -1, messages });
    } catch (error) {
      throw new KafkaPublishError(
        `kafka did not accept ${messages.length} records on ${this.topic} within the retry budget: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /** Groups by key (order kept) and cuts each key's events into records of at most maxRecordBytes. */
  private encode(events: readonly MarketEvent[]): Message[] {
    const byKey = new Map<string, MarketEvent[]>();
    for (const e of events) {
      const key = partitionKeyOf(e);
      const list = byKey.get(key);
      if (list) list.push(e);
      else byKey.set(key, [e]);
    }
    const chunks: Chunk[] = [];
    for (const [key, list] of byKey) {
      let current: MarketEvent[] = [];
      let size = ENVELOPE_BYTES;
      for (const e of list) {
        const eventBytes = Buffer.byteLength(JSON.stringify(e));
        if (ENVELOPE_BYTES + eventBytes > this.maxRequestBytes) {
          throw new KafkaRecordTooLargeError(
            `one ${e.type} event of ${key} encodes to ${eventBytes} bytes, more than a record may hold (${this.maxRequestBytes})`,
          );
        }
        // +1 for the comma between events
        const added = current.length === 0 ? eventBytes : eventBytes + 1;
        if (current.length > 0 && size + added > this.maxRecordBytes) {
          chunks.push({ key, events: current });
          current = [];
          size = ENVELOPE_BYTES;
          size += eventBytes;
        } else {
          size += added;
        }
        current.push(e);
      }
      if (current.length > 0) chunks.push({ key, events: current });
    }
    return chunks.map((c) => {
      const data = encodeEvents(c.events);
      return { key: c.key, value: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
    });
  }
}
