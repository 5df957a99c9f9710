import type { StreamEvent } from '../domain/index.js';
import type { StreamBus } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { Backoff } from './backoff.js';
import type { DiskJournal, JournalCounter, JournalPosition } from './disk-journal.js';

export type BatcherCounter =
  | 'published_events'
  | 'published_records'
  | 'publish_failures'
  /** lost: the journal was full (or the disk failed), or there was no journal and memory was full */
  | 'dropped_events'
  /** written to the disk journal */
  | 'journaled_events'
  /** published from the disk journal */
  | 'replayed_events'
  | JournalCounter;

export interface EventBatcherOptions {
  readonly bus: StreamBus;
  readonly logger: Logger;
  readonly counters: Counters<BatcherCounter>;
  /** publish when this many events wait */
  readonly maxEvents?: number;
  /** publish at least this often while events wait */
  readonly maxDelayMs?: number;
  /** events held in memory at most; past it they go to the journal (without one, the oldest are dropped and counted) */
  readonly maxBuffered?: number;
  /** where events wait on disk while the stream is down or memory is full; without it, memory is all there is */
  readonly journal?: DiskJournal;
  /** publishes failing (or one hanging) this long mean the stream is down: events then go to the journal as they come */
  readonly spillAfterMs?: number;
  /** how long close() keeps publishing before the journal takes the rest */
  readonly drainTimeoutMs?: number;
}

export const BATCHER_DEFAULTS = {
  maxEvents: 500,
  maxDelayMs: 100,
  maxBuffered: 100_000,
  spillAfterMs: 5_000,
  drainTimeoutMs: 20_000,
} as const;

/** A batch taken from memory and being published. */
interface Sending {
  readonly events: readonly StreamEvent[];
  /** the journal holds it too (or refused it): memory no longer answers for it */
  spilled: boolean;
  /** where its copy ends in the journal, to skip the copy if this publish succeeds after all */
  journaledTo: JournalPosition | null;
}

/** What close() did with what was left. */
export interface BatcherCloseSummary {
  /** events in memory when the drain ended (the stream down, or the deadline passed), now in the journal */
  readonly journaled: number;
  /** events lost (no journal, or it refused them) */
  readonly dropped: number;
  /** bytes the journal holds for the next run */
  readonly journalBytes: number;
}

const DROP_LOG_INTERVAL_MS = 5_000;
/** While the stream is down, events wait in memory at most about this long before going to disk (what a SIGKILL would cost). */
const SPILL_INTERVAL_MS = 1_000;

/**
 * Buffers events between the sockets and the stream and publishes them in batches, so a slow
 * stream never stalls a socket. Failed publishes are retried with backoff, in order.
 *
 * Memory is bounded: past maxBuffered events, or once the stream has been failing for spillAfterMs,
 * events go to the disk journal; when the stream takes events again the journal is published first,
 * oldest first, then what is in memory. The journal only ever holds events older than those in
 * memory, so order (per partition key, and overall) holds. Events are lost only when the journal
 * reaches its cap on disk bytes (counted as dropped_events, logged as errors).
 */
export class EventBatcher {
  private buffer: StreamEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private sending: Sending | null = null;
  private inFlightSince: number | null = null;
  private readonly backoff = new Backoff(200, 10_000);
  private retryAt = 0;
  /** start of the first failed publish since the last success */
  private failingSince: number | null = null;
  private spilling = false;
  /** set by drainBy/close: no flush runs past it */
  private drainDeadline: number | null = null;
  private peak = 0;
  private lastDropLog = 0;
  private lastSpill = 0;
  /** close() ran: nothing is published any more, what comes goes to the journal */
  private closed = false;
  private dropsSinceLog = 0;
  private readonly maxEvents: number;
  private readonly maxDelayMs: number;
  private readonly maxBuffered: number;
  private readonly spillAfterMs: number;

  constructor(private readonly options: EventBatcherOptions) {
    this.maxEvents = options.maxEvents ?? BATCHER_DEFAULTS.maxEvents;
    this.maxDelayMs = options.maxDelayMs ?? BATCHER_DEFAULTS.maxDelayMs;
    this.maxBuffered = options.maxBuffered ?? BATCHER_DEFAULTS.maxBuffered;
    this.spillAfterMs = options.spillAfterMs ?? BATCHER_DEFAULTS.spillAfterMs;
    // a journal left by an earlier run goes out first, before anything this run collects
    if (options.journal && !options.journal.isEmpty) this.flushSoon(0);
  }

  /** Events waiting in memory to be published (the journal's are on disk). */
  get pending(): number {
    return this.buffer.length + (this.sending && !this.sending.spilled ? this.sending.events.length : 0);
  }

  /** The most events ever held in memory at once. */
  get peakPending(): number {
    return this.peak;
  }

  /** Bytes of the journal on disk (0 without one). */
  get journalBytes(): number {
    return this.options.journal?.bytes ?? 0;
  }

  /** True while the stream has been failing for spillAfterMs or more (events go to the journal). */
  get streamDown(): boolean {
    const since = this.failingSince ?? this.inFlightSince;
    return since !== null && Date.now() - since >= this.spillAfterMs;
  }

  add(events: readonly StreamEvent[]): void {
    for (const e of events) this.buffer.push(e);
    const { journal } = this.options;
    if (this.closed) {
      // late events of a shutdown (a watch loop that outlived the deadline): straight to disk
      if (journal) this.spill('after close');
      else this.dropOldest(0);
      return;
    }
    if (this.pending > this.maxBuffered) {
      if (journal) this.spill('memory full');
      else this.dropOldest();
    } else if (journal && this.buffer.length > 0 && this.streamDown && (this.buffer.length >= this.maxEvents || Date.now() - this.lastSpill >= SPILL_INTERVAL_MS)) {
      this.spill('stream down');
    }
    if (this.pending > this.peak) this.peak = this.pending;
    if (this.buffer.length >= this.maxEvents) this.flushSoon(0);
    else this.flushSoon(this.maxDelayMs);
  }

  /**
   * Publishes everything waiting (the journal first); resolves when nothing is left, at the
   * deadline, or, once a drain began (drainBy, close), as soon as the stream is down.
   */
  async flush(deadlineMs = 10_000): Promise<void> {
    const deadline = Math.min(Date.now() + deadlineMs, this.drainDeadline ?? Infinity);
    while (this.hasWork() || this.inFlight) {
      // shutting down with the stream down: retrying only delays the exit, the journal takes the rest
      if (this.drainDeadline !== null && this.options.journal && this.streamDown) break;
      if (this.inFlight) await until(this.inFlight, deadline);
      else await this.publishOnce();
      if (Date.now() >= deadline) break;
      if (this.hasWork() && !this.inFlight && Date.now() < this.retryAt) {
        await new Promise((r) => setTimeout(r, Math.max(0, Math.min(this.retryAt, deadline) - Date.now())));
      }
    }
  }

  /** Bounds every flush from now on by `deadline` (ms epoch): the start of a shutdown. */
  drainBy(deadline: number): void {
    this.drainDeadline = Math.min(deadline, this.drainDeadline ?? Infinity);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Shutdown: publishes what the stream accepts until the drain deadline, then writes what is left
   * in memory to the journal (a publish still in flight included) and fsyncs it.
   */
  async close(deadlineMs = this.options.drainTimeoutMs ?? BATCHER_DEFAULTS.drainTimeoutMs): Promise<BatcherCloseSummary> {
    this.drainBy(Date.now() + deadlineMs);
    await this.flush(deadlineMs);
    this.closed = true;
    this.stop();
    const { journal, counters, logger } = this.options;
    const left = this.pending;
    const droppedBefore = counters.get('dropped_events');
    const journaledBefore = counters.get('journaled_events');
    if (journal) {
      if (left > 0) this.spill('shutdown');
      journal.close();
    } else if (left > 0) {
      counters.add('dropped_events', left);
      logger.error('stream did not take every event before shutdown and there is no journal: events lost', { dropped: left });
    }
    return {
      journaled: counters.get('journaled_events') - journaledBefore,
      dropped: counters.get('dropped_events') - droppedBefore,
      journalBytes: journal?.bytes ?? 0,
    };
  }

  private hasWork(): boolean {
    return this.buffer.length > 0 || (this.options.journal !== undefined && !this.options.journal.isEmpty);
  }

  private flushSoon(delayMs: number): void {
    if (this.timer || this.inFlight || this.closed) return;
    const wait = Math.max(delayMs, this.retryAt - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.options.journal && this.buffer.length > 0 && this.streamDown) this.spill('stream down');
      void this.publishOnce();
    }, wait);
  }

  /** Takes the next batch (the journal's head first) and publishes it; failures are retried after a backoff. */
  private publishOnce(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const { bus, counters, logger, journal } = this.options;
    let events: readonly StreamEvent[] | null = null;
    let succeeded: () => void = () => undefined;
    let failed: () => void = () => undefined;

    const read = journal && !journal.isEmpty ? journal.read(this.maxEvents) : null;
    if (read) {
      events = read.events;
      succeeded = () => {
        journal!.commit(read.end);
        counters.add('replayed_events', read.events.length);
        if (journal!.isEmpty) logger.info('journal replayed: publishing from memory again', { journalBytes: journal!.bytes });
      };
    } else if (this.buffer.length > 0) {
      const sending: Sending = { events: this.buffer.splice(0, this.maxEvents), spilled: false, journaledTo: null };
      this.sending = sending;
      events = sending.events;
      succeeded = () => {
        // its copy is the journal's head entry: published now, so skipped
        if (sending.journaledTo) journal!.commit(sending.journaledTo);
      };
      failed = () => {
        if (!sending.spilled) this.buffer.unshift(...sending.events);
      };
    }
    if (events === null) return Promise.resolve();

    const startedAt = Date.now();
    this.inFlightSince = startedAt;
    this.inFlight = bus.publish(events).then(
      (receipt) => {
        this.settle();
        succeeded();
        counters.add('published_events', receipt.events);
        counters.add('published_records', receipt.records);
        if (this.spilling) {
          this.spilling = false;
          logger.info('stream takes events again: replaying the journal first', { journalBytes: this.journalBytes });
        }
        this.failingSince = null;
        this.backoff.reset();
        this.retryAt = 0;
        this.next();
      },
      (error: unknown) => {
        this.settle();
        failed();
        counters.add('publish_failures');
        this.failingSince ??= startedAt;
        const delay = this.backoff.next();
        this.retryAt = Date.now() + delay;
        logger.warn('stream publish failed; will retry', { error, retryInMs: delay, pending: this.pending, journalBytes: this.journalBytes });
        if (journal && this.streamDown && this.buffer.length > 0) this.spill('stream down');
        this.next();
      },
    );
    return this.inFlight;
  }

  private settle(): void {
    this.inFlight = null;
    this.inFlightSince = null;
    this.sending = null;
  }

  private next(): void {
    if (this.hasWork()) this.flushSoon(this.buffer.length >= this.maxEvents || this.options.journal?.isEmpty === false ? 0 : this.maxDelayMs);
  }

  /**
   * Moves every event in memory to the journal, the batch in flight first (it is older than the
   * buffer; should its publish succeed after all, its copy is skipped). Order holds: the journal
   * only ever holds events older than those left in memory.
   */
  private spill(reason: string): void {
    const { journal, logger } = this.options;
    if (!journal) return;
    if (!this.spilling) {
      this.spilling = true;
      logger.warn('events go to the disk journal', { reason, pending: this.pending, journalBytes: journal.bytes, dir: journal.dir });
    }
    this.lastSpill = Date.now();
    const sending = this.sending;
    if (sending && !sending.spilled) {
      sending.spilled = true;
      sending.journaledTo = this.journal(sending.events);
    }
    const events = this.buffer;
    this.buffer = [];
    for (let i = 0; i < events.length; i += this.maxEvents) this.journal(events.slice(i, i + this.maxEvents));
  }

  /** One entry into the journal; a refusal (cap reached, disk failing) is the one place events are lost. */
  private journal(events: readonly StreamEvent[]): JournalPosition | null {
    const { counters, logger, journal } = this.options;
    try {
      const at = journal!.append(events);
      counters.add('journaled_events', events.length);
      return at;
    } catch (error) {
      counters.add('dropped_events', events.length);
      this.dropsSinceLog += events.length;
      const now = Date.now();
      if (now - this.lastDropLog >= DROP_LOG_INTERVAL_MS) {
        logger.error('EVENTS LOST: the disk journal refused them', {
          error,
          dropped: this.dropsSinceLog,
          droppedTotal: counters.get('dropped_events'),
          journalBytes: journal!.bytes,
          maxBytes: journal!.maxBytes,
        });
        this.lastDropLog = now;
        this.dropsSinceLog = 0;
      }
      return null;
    }
  }

  /** Without a journal, memory is bounded by dropping the oldest events past `keep` (counted). */
  private dropOldest(keep = this.maxBuffered): void {
    const excess = Math.min(this.pending - keep, this.buffer.length);
    if (excess <= 0) return;
    this.buffer.splice(0, excess);
    this.options.counters.add('dropped_events', excess);
    this.options.logger.error('stream backlog over limit and no journal: oldest events dropped', { dropped: excess });
  }
}

/** Waits for `promise`, or until `deadline` (ms epoch), whichever comes first. */
async function until(promise: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    }),
  ]);
  clearTimeout(timer);
}
