import type { StreamEvent } from '../domain/index.js';
import type { StreamBus } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { Backoff } from './backoff.js';

export type BatcherCounter = 'published_events' | 'published_records' | 'publish_failures' | 'dropped_events';

export interface EventBatcherOptions {
  readonly bus: StreamBus;
  readonly logger: Logger;
  readonly counters: Counters<BatcherCounter>;
  /** publish when this many events wait */
  readonly maxEvents?: number;
  /** publish at least this often while events wait */
  readonly maxDelayMs?: number;
  /** events held while the stream refuses them; past it the oldest are dropped and counted */
  readonly maxBuffered?: number;
}

/**
 * Buffers events between the sockets and the stream and publishes them in batches, so a slow
 * stream never stalls a socket. Failed publishes are retried with backoff, in order.
 */
export class EventBatcher {
  private buffer: StreamEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private readonly backoff = new Backoff(200, 10_000);
  private retryAt = 0;
  private readonly maxEvents: number;
  private readonly maxDelayMs: number;
  private readonly maxBuffered: number;

  constructor(private readonly options: EventBatcherOptions) {
    this.maxEvents = options.maxEvents ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 100;
    this.maxBuffered = options.maxBuffered ?? 200_000;
  }

  /** Events waiting to be published. */
  get pending(): number {
    return this.buffer.length;
  }

  add(events: readonly StreamEvent[]): void {
    for (const e of events) this.buffer.push(e);
    if (this.buffer.length > this.maxBuffered) {
      const excess = this.buffer.length - this.maxBuffered;
      this.buffer.splice(0, excess);
      this.options.counters.add('dropped_events', excess);
      this.options.logger.error('stream backlog over limit; oldest events dropped', { dropped: excess });
    }
    if (this.buffer.length >= this.maxEvents) void this.flushSoon(0);
    else void this.flushSoon(this.maxDelayMs);
  }

  /** Publishes everything buffered; resolves when the buffer is empty or the stream keeps failing. */
  async flush(deadlineMs = 10_000): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    while (this.buffer.length > 0 || this.inFlight) {
      if (this.inFlight) await this.inFlight;
      else await this.publishOnce();
      if (Date.now() > deadline) break;
      if (this.buffer.length > 0 && Date.now() < this.retryAt) {
        await new Promise((r) => setTimeout(r, Math.min(this.retryAt - Date.now(), Math.max(0, deadline - Date.now()))));
      }
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private flushSoon(delayMs: number): void {
    if (this.timer || this.inFlight) return;
    const wait = Math.max(delayMs, this.retryAt - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.publishOnce().then(() => {
        if (this.buffer.length > 0) this.flushSoon(this.buffer.length >= this.maxEvents ? 0 : this.maxDelayMs);
      });
    }, wait);
  }

  private publishOnce(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (this.buffer.length === 0) return Promise.resolve();
    const batch = this.buffer.slice(0, this.maxEvents);
    const { bus, counters, logger } = this.options;
    this.inFlight = bus
      .publish(batch)
      .then(
        (receipt) => {
          this.buffer.splice(0, batch.length);
          counters.add('published_events', receipt.events);
          counters.add('published_records', receipt.records);
          this.backoff.reset();
          this.retryAt = 0;
        },
        (error: unknown) => {
          counters.add('publish_failures');
          const delay = this.backoff.next();
          this.retryAt = Date.now() + delay;
          logger.warn('stream publish failed; will retry', { error, retryInMs: delay, pending: this.buffer.length });
        },
      )
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }
}
