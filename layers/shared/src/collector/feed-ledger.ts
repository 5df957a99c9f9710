import { randomUUID } from 'node:crypto';
import type { BookHealth, FeedChannel, FeedStatus, GapEvent, GapReason, GapStatus, StreamEvent } from '../domain/index.js';
import type { Clock } from '../ports/index.js';

/** Counters and times of one subscription (exchange, symbol, channel); what feed_status snapshots carry. */
export interface FeedState {
  readonly exchange: string;
  /** `*` for the exchange-wide entry */
  readonly symbol: string;
  readonly channel: FeedChannel;
  messages: number;
  events: number;
  rejected: number;
  malformed: number;
  duplicates: number;
  reordered: number;
  gapsDetected: number;
  gapsFilled: number;
  gapsUnfilled: number;
  tradesRecovered: number;
  reconnects: number;
  resubscribes: number;
  /** failed watch calls (the old `errors`) */
  errors: number;
  /** books: breaks found (checksum mismatch, sequence gap, REST cross-check disagreement, crossed book) */
  bookBreaks: number;
  /** books: fresh snapshots asked for after a break (each also counts as a resubscribe) */
  bookResyncs: number;
  /** books: REST cross-checks that agreed / that could not be made (REST failed, book replaced meanwhile) */
  bookCrossChecks: number;
  bookCrossChecksSkipped: number;
  /** books: the book's health now (null for other channels, and before the first book) */
  bookHealth: BookHealth | null;
  /** exchange time of the newest event */
  lastEventTs: number | null;
  /** receipt time of the newest message (collector clock) */
  lastMessageAt: number | null;
  lastError: string | null;
  malformedSample: string | null;
}

/** A gap as the ledger reports it; ids as numbers (strings on the stream). */
export interface GapFacts {
  readonly exchange: string;
  readonly symbol: string;
  readonly kind: 'id' | 'time';
  readonly reason: GapReason;
  readonly fromId: number | null;
  readonly toId: number | null;
  readonly fromTs: number | null;
  readonly toTs: number | null;
  readonly missing: number | null;
  readonly detectedAt: number;
}

/** Handle of one recorded gap: every state change is published with the same gap id. */
export interface LedgerGap {
  readonly gapId: string;
  readonly facts: GapFacts;
  readonly status: GapStatus;
}

const SAMPLE_MAX = 1000;
const ERROR_MAX = 500;

/**
 * The completeness ledger of one collector run: counters per feed, published as `feed_status`
 * snapshots every few seconds, and every gap's state changes published as `gap` events at once.
 * The collector runs without database access, so the stream carries both to the store writer.
 */
export class FeedLedger {
  readonly runId: string;
  readonly startedAt: number;
  private readonly feeds = new Map<string, FeedState>();
  private readonly gapStates = new Map<string, { facts: GapFacts; status: GapStatus; recovered: number; resolvedAt: number | null; detail: string | null }>();
  private readonly gapSeq = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly publish: (events: readonly StreamEvent[]) => void,
    runId: string = randomUUID(),
  ) {
    this.runId = runId;
    this.startedAt = clock.now();
  }

  /** The state of a feed, created on first use. */
  feed(exchange: string, symbol: string, channel: FeedChannel): FeedState {
    const key = `${exchange}|${symbol}|${channel}`;
    let state = this.feeds.get(key);
    if (!state) {
      state = {
        exchange,
        symbol,
        channel,
        messages: 0,
        events: 0,
        rejected: 0,
        malformed: 0,
        duplicates: 0,
        reordered: 0,
        gapsDetected: 0,
        gapsFilled: 0,
        gapsUnfilled: 0,
        tradesRecovered: 0,
        reconnects: 0,
        resubscribes: 0,
        errors: 0,
        bookBreaks: 0,
        bookResyncs: 0,
        bookCrossChecks: 0,
        bookCrossChecksSkipped: 0,
        bookHealth: null,
        lastEventTs: null,
        lastMessageAt: null,
        lastError: null,
        malformedSample: null,
      };
      this.feeds.set(key, state);
    }
    return state;
  }

  /** Every feed known so far. */
  all(): readonly FeedState[] {
    return [...this.feeds.values()];
  }

  /** Keeps the first bad input of a feed; true when this was the first (the caller logs it once). */
  sample(feed: FeedState, sample: string): boolean {
    if (feed.malformedSample !== null) return false;
    feed.malformedSample = sample.length > SAMPLE_MAX ? `${sample.slice(0, SAMPLE_MAX - 1)}…` : sample;
    return true;
  }

  setError(feed: FeedState, message: string): void {
    feed.lastError = message.length > ERROR_MAX ? `${message.slice(0, ERROR_MAX - 1)}…` : message;
  }

  /** Records a new gap (detected, open) and publishes it. */
  openGap(facts: GapFacts): LedgerGap {
    const feedKey = `${facts.exchange}|${facts.symbol}`;
    const seq = (this.gapSeq.get(feedKey) ?? 0) + 1;
    this.gapSeq.set(feedKey, seq);
    const gapId = `${this.runId}:${facts.exchange}:${facts.symbol}:${seq}`;
    this.gapStates.set(gapId, { facts, status: 'open', recovered: 0, resolvedAt: null, detail: null });
    this.feed(facts.exchange, facts.symbol, 'trades').gapsDetected += 1;
    this.publishGap(gapId);
    return { gapId, facts, status: 'open' };
  }

  /** Closes a gap as filled or unfilled (once; later calls are ignored) and publishes it. */
  resolveGap(gap: LedgerGap, status: 'filled' | 'unfilled', recovered: number, detail: string | null, facts?: Partial<GapFacts>): void {
    const state = this.gapStates.get(gap.gapId);
    if (!state || state.status !== 'open') return;
    state.status = status;
    state.recovered = recovered;
    state.detail = detail;
    state.resolvedAt = this.clock.now();
    if (facts) state.facts = { ...state.facts, ...facts };
    const feed = this.feed(state.facts.exchange, state.facts.symbol, 'trades');
    if (status === 'filled') feed.gapsFilled += 1;
    else feed.gapsUnfilled += 1;
    this.publishGap(gap.gapId);
    // resolved gaps are in the store now; only open ones need to be remembered
    this.gapStates.delete(gap.gapId);
  }

  /** A feed_status event per feed, as of now. */
  snapshot(): FeedStatus[] {
    const ts = this.clock.now();
    return this.all().map((f) => ({
      type: 'feed_status',
      exchange: f.exchange,
      symbol: f.symbol,
      channel: f.channel,
      runId: this.runId,
      startedAt: this.startedAt,
      ts,
      messages: f.messages,
      events: f.events,
      rejected: f.rejected,
      malformed: f.malformed,
      duplicates: f.duplicates,
      reordered: f.reordered,
      gapsDetected: f.gapsDetected,
      gapsFilled: f.gapsFilled,
      gapsUnfilled: f.gapsUnfilled,
      tradesRecovered: f.tradesRecovered,
      reconnects: f.reconnects,
      resubscribes: f.resubscribes,
      watchErrors: f.errors,
      lastMessageTs: f.lastEventTs,
      lastMessageLocalTs: f.lastMessageAt,
      lastError: f.lastError,
      malformedSample: f.malformedSample,
    }));
  }

  /** Publishes a snapshot now and then every `intervalMs`. */
  start(intervalMs: number): void {
    if (this.timer) return;
    this.flush();
    this.timer = setInterval(() => this.flush(), intervalMs);
    this.timer.unref();
  }

  /** Publishes a last snapshot and stops the timer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.flush();
  }

  flush(): void {
    const events = this.snapshot();
    if (events.length > 0) this.publish(events);
  }

  private publishGap(gapId: string): void {
    const state = this.gapStates.get(gapId)!;
    const f = state.facts;
    const event: GapEvent = {
      type: 'gap',
      exchange: f.exchange,
      symbol: f.symbol,
      channel: 'trades',
      gapId,
      runId: this.runId,
      kind: f.kind,
      reason: f.reason,
      status: state.status,
      fromId: f.fromId === null ? null : String(f.fromId),
      toId: f.toId === null ? null : String(f.toId),
      fromTs: f.fromTs,
      toTs: f.toTs,
      missing: f.missing,
      recovered: state.recovered,
      detectedAt: f.detectedAt,
      resolvedAt: state.resolvedAt,
      detail: state.detail === null ? null : state.detail.slice(0, ERROR_MAX),
      ts: this.clock.now(),
    };
    this.publish([event]);
  }
}
