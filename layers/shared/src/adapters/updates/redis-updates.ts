import { Redis } from 'ioredis';
import { z } from 'zod';
import { EpochMsSchema, ExchangeIdSchema, SymbolSchema } from '../../domain/index.js';
import type { Counters } from '../../observability/counters.js';
import type { Logger } from '../../observability/logger.js';
import type { MarketUpdate, MarketUpdateListener, MarketUpdates, MarketUpdatesCounter } from '../../ports/market-updates.js';
import { deliver } from './in-process-updates.js';

/** The pub/sub channel every writer publishes to and every MCP server task listens on. */
export const DEFAULT_UPDATES_CHANNEL = 'qicore:market-updates';

/** Updates per PUBLISH at most: a batch touching more markets goes out as several messages. */
const MAX_UPDATES_PER_MESSAGE = 500;
/** PUBLISHes awaiting Redis at most; beyond it updates are dropped (and counted) rather than queued without end. */
const MAX_PENDING_PUBLISHES = 100;

const UpdateMessageSchema = z.object({
  v: z.literal(1),
  updates: z
    .array(
      z.object({
        exchange: ExchangeIdSchema,
        symbol: SymbolSchema,
        channel: z.enum(['trades', 'tickers', 'books', 'quotes', 'candles']),
        ts: EpochMsSchema,
      }),
    )
    .max(MAX_UPDATES_PER_MESSAGE),
});

export interface RedisUpdatesOptions {
  /** redis:// or rediss:// URL (the password stays out of logs) */
  readonly url: string;
  /** @default DEFAULT_UPDATES_CHANNEL */
  readonly channel?: string;
  /** false for a publisher only (the store writers): no subscriber connection is opened. @default true */
  readonly receive?: boolean;
  /** a PUBLISH not answered within this fails (and is counted). @default 2000 */
  readonly commandTimeoutMs?: number;
  readonly logger: Logger;
  readonly counters?: Counters<MarketUpdatesCounter>;
}

/**
 * The hub of service mode: writers PUBLISH one message per write batch on one channel; every MCP
 * server task SUBSCRIBEs to it on a connection of its own (a subscribed connection can run nothing
 * else) and hands each message to its local listeners. Redis trouble is logged and counted, never
 * thrown at the writer: a lost message only delays a notification.
 */
export class RedisUpdates implements MarketUpdates {
  private readonly channel: string;
  private readonly publisher: Redis;
  private readonly subscriber: Redis | null;
  private readonly listeners = new Set<MarketUpdateListener>();
  private readonly logger: Logger;
  private readonly counters: Counters<MarketUpdatesCounter> | undefined;
  private readonly subscribed: Promise<void>;
  private pending = 0;
  private closed = false;

  constructor(options: RedisUpdatesOptions) {
    this.channel = options.channel ?? DEFAULT_UPDATES_CHANNEL;
    this.logger = options.logger;
    this.counters = options.counters;
    const common = {
      // a notification is worth little late: fail fast, and keep the offline queue short-lived
      commandTimeout: options.commandTimeoutMs ?? 2_000,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt: number) => Math.min(attempt * 200, 5_000),
    };
    this.publisher = new Redis(options.url, { ...common, connectionName: 'qicore-updates-pub' });
    watchErrors(this.publisher, 'publisher', this.logger);
    if (options.receive === false) {
      this.subscriber = null;
      this.subscribed = Promise.resolve();
      return;
    }
    // SUBSCRIBE is issued on every (re)connect by us, not by ioredis: a first SUBSCRIBE that failed
    // would otherwise never be retried.
    const subscriber = new Redis(options.url, { ...common, commandTimeout: undefined, autoResubscribe: false, connectionName: 'qicore-updates-sub' });
    this.subscriber = subscriber;
    watchErrors(subscriber, 'subscriber', this.logger);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.receive(message);
    });
    this.subscribed = new Promise<void>((resolve) => {
      const subscribe = () => {
        subscriber.subscribe(this.channel).then(
          () => resolve(),
          (error: unknown) => this.logger.warn('market updates: subscribe failed; retried on reconnect', { error }),
        );
      };
      subscriber.on('ready', subscribe);
    });
  }

  /** Resolves once this task receives what is published (the subscription is active); a publisher-only hub at once. */
  ready(): Promise<void> {
    return this.subscribed;
  }

  async publish(updates: readonly MarketUpdate[]): Promise<void> {
    if (this.closed || updates.length === 0) return;
    for (let i = 0; i < updates.length; i += MAX_UPDATES_PER_MESSAGE) {
      const chunk = updates.slice(i, i + MAX_UPDATES_PER_MESSAGE);
      if (this.pending >= MAX_PENDING_PUBLISHES) {
        this.counters?.add('publish_failures');
        this.logger.warn('market updates: too many publishes pending; updates dropped', { updates: chunk.length });
        continue;
      }
      const message = JSON.stringify({
        v: 1,
        updates: chunk.map(({ exchange, symbol, channel, ts }) => ({ exchange, symbol, channel, ts })),
      });
      this.pending += 1;
      try {
        await this.publisher.publish(this.channel, message);
        this.counters?.add('published', chunk.length);
      } catch (error) {
        this.counters?.add('publish_failures');
        this.logger.warn('market updates: publish failed; updates dropped', { error, updates: chunk.length });
      } finally {
        this.pending -= 1;
      }
    }
  }

  subscribe(listener: MarketUpdateListener): () => void {
    const entry: MarketUpdateListener = (updates) => listener(updates);
    if (!this.closed) this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    await Promise.all([quit(this.publisher), this.subscriber && quit(this.subscriber)]);
  }

  private receive(message: string): void {
    let parsed: z.infer<typeof UpdateMessageSchema>;
    try {
      parsed = UpdateMessageSchema.parse(JSON.parse(message));
    } catch (error) {
      // another publisher's format, or garbage on a shared channel: counted, never thrown
      this.counters?.add('rejected');
      this.logger.warn('market updates: message rejected', { error, bytes: message.length });
      return;
    }
    this.counters?.add('received', parsed.updates.length);
    if (parsed.updates.length > 0) deliver(this.listeners, parsed.updates, { logger: this.logger, counters: this.counters });
  }
}

/** ioredis emits 'error' on every failed connection attempt; logged once per outage, not per retry. */
function watchErrors(redis: Redis, role: string, logger: Logger): void {
  let down = false;
  redis.on('error', (error: unknown) => {
    if (down) return;
    down = true;
    logger.warn('market updates: redis connection failed; retrying', { role, error });
  });
  redis.on('ready', () => {
    if (down) logger.info('market updates: redis connection back', { role });
    down = false;
  });
}

async function quit(redis: Redis): Promise<void> {
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}
