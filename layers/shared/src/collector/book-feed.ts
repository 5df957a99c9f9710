/**
 * One market's order book made trustworthy. ccxt.pro keeps the L2 book (snapshot plus deltas) and
 * checks the sequence where the exchange numbers its updates (OKX prevSeqId, Binance U/u: it raises
 * InvalidNonce / ChecksumError and drops the book). What ccxt does not do is done here:
 * - OKX's CRC32 of the top 25 levels, sent with every `books` push, is checked against ccxt's book
 *   right after ccxt applied the frame (the message guard's `handled` hook); a checksum of 0 (OKX
 *   stops sending it from 2026-06-23) or none leaves the book `unverified`;
 * - a book whose best bid is at or above its best ask is broken, whatever the sequence said;
 * - every few minutes, and right after a fresh snapshot that no checksum verified, the book is
 *   compared with a REST snapshot (`compareWithRest`), allowing for updates in flight.
 * A break makes the book `resyncing` and asks the collector for a fresh snapshot (unWatch, watch);
 * it is `healthy` again once a fresh snapshot is applied and verified. Every stored snapshot carries
 * the health it was taken with, and a change of health is published at once (not at the throttle).
 * Between snapshots, every change of the top of book (best bid/ask price or size) is published as a
 * quote, not throttled: read after each frame ccxt applies (where the frame is recognised) and at
 * each watch return, so a change is not lost when several frames arrive before the watch returns.
 */
import ccxt from 'ccxt';
import type { BookHealth, OrderBook, Quote } from '../domain/index.js';
import { NormalizationError, normalizeOrderBook, normalizeQuote, type CcxtOrderBookLike } from '../normalize/ccxt-normalizer.js';
import { isCanonicalOkxDecimal, okxBookChecksumOfNumbers } from '../normalize/okx-book-checksum.js';
import type { Clock } from '../ports/index.js';
import type { Logger } from '../observability/logger.js';
import type { FeedState } from './feed-ledger.js';

export type BookBreak = 'checksum' | 'sequence' | 'cross-check' | 'crossed';

/** What a book frame says, read after ccxt applied it. */
export interface BookFrame {
  /** the exchange's market id (`BTC-USDT`, `BTCUSDT`) */
  readonly marketId: string;
  readonly kind: 'snapshot' | 'update';
  /** the exchange's checksum of the resulting book; null when it sends none (or 0) */
  readonly checksum: number | null;
  /** false when a level was sent in a form ccxt's numbers do not print back to (e.g. `"1.10"`) */
  readonly canonical: boolean;
  /** the prices the frame changes (parsed as ccxt parses them); read only while a cross-check needs it */
  touched(): { readonly bids: ReadonlySet<number>; readonly asks: ReadonlySet<number> };
}

function pricesOf(side: unknown): Set<number> {
  const out = new Set<number>();
  if (Array.isArray(side)) for (const level of side as unknown[][]) out.add(parseFloat(String(level[0])));
  return out;
}

const OKX_CHECKSUM_CHANNELS = new Set(['books', 'books-l2-tbt', 'books50-l2-tbt']);

/** The book frame a decoded WebSocket message is, or null (cheap: most frames are not). */
export function readBookFrame(message: unknown): BookFrame | null {
  if (typeof message !== 'object' || message === null) return null;
  const m = message as Record<string, unknown>;
  // Binance: depthUpdate events carry no checksum; ccxt checks their U/u continuity
  if (m['e'] === 'depthUpdate') {
    if (typeof m['s'] !== 'string') return null;
    return { marketId: m['s'], kind: 'update', checksum: null, canonical: true, touched: () => ({ bids: pricesOf(m['b']), asks: pricesOf(m['a']) }) };
  }
  const arg = m['arg'] as Record<string, unknown> | undefined;
  if (!arg || typeof arg !== 'object' || !OKX_CHECKSUM_CHANNELS.has(arg['channel'] as string)) return null;
  const action = m['action'];
  const data = m['data'];
  if ((action !== 'snapshot' && action !== 'update') || !Array.isArray(data) || data.length === 0 || typeof arg['instId'] !== 'string') return null;
  const last = data[data.length - 1] as Record<string, unknown>;
  const sum = last['checksum'];
  const checksum = typeof sum === 'number' && Number.isInteger(sum) && sum !== 0 ? sum : null;
  let canonical = true;
  if (checksum !== null) {
    for (const item of data as Record<string, unknown>[]) {
      for (const side of [item['bids'], item['asks']]) {
        if (!Array.isArray(side)) continue;
        for (const level of side as unknown[][]) {
          if (!isCanonicalOkxDecimal(String(level[0])) || !isCanonicalOkxDecimal(String(level[1]))) canonical = false;
        }
      }
    }
  }
  const touched = () => {
    const bids = new Set<number>();
    const asks = new Set<number>();
    for (const item of data as Record<string, unknown>[]) {
      for (const p of pricesOf(item['bids'])) bids.add(p);
      for (const p of pricesOf(item['asks'])) asks.add(p);
    }
    return { bids, asks };
  };
  return { marketId: arg['instId'], kind: action, checksum, canonical, touched };
}

// ---- REST cross-check ---------------------------------------------------------------------------

/** The top levels of one state of the live book. */
export interface BookTop {
  readonly nonce: number | null;
  readonly bids: ReadonlyMap<number, number>;
  readonly asks: ReadonlyMap<number, number>;
  /** lowest bid / highest ask held; -Infinity / Infinity when the side had fewer than the levels asked (all of it is held) */
  readonly bidFloor: number;
  readonly askCeil: number;
  /** prices the frame that made this state changed, where known */
  readonly touchedBids: ReadonlySet<number> | null;
  readonly touchedAsks: ReadonlySet<number> | null;
}

type Side = readonly (readonly unknown[])[];

function sideMap(side: Side, levels: number): { map: Map<number, number>; edge: number | null } {
  const map = new Map<number, number>();
  let edge: number | null = null;
  for (let i = 0; i < side.length && i < levels; i++) {
    const [price, amount] = side[i]!;
    if (typeof price !== 'number' || typeof amount !== 'number') continue;
    map.set(price, amount);
    edge = price;
  }
  return { map, edge: side.length >= levels ? edge : null };
}

/** The top `levels` of each side of a ccxt book, and the prices the frame that made it changed (when known). */
export function bookTop(book: CcxtOrderBookLike, levels: number, touched?: { readonly bids: ReadonlySet<number>; readonly asks: ReadonlySet<number> }): BookTop {
  const bids = sideMap(book.bids, levels);
  const asks = sideMap(book.asks, levels);
  const nonce = typeof book.nonce === 'number' ? book.nonce : null;
  return {
    nonce,
    bids: bids.map,
    asks: asks.map,
    bidFloor: bids.edge ?? -Infinity,
    askCeil: asks.edge ?? Infinity,
    touchedBids: touched?.bids ?? null,
    touchedAsks: touched?.asks ?? null,
  };
}

export type CrossCheckOutcome =
  | { readonly kind: 'agree'; readonly compared: number }
  | { readonly kind: 'mismatch'; readonly detail: string }
  | { readonly kind: 'inconclusive'; readonly detail: string };

const sameAmount = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b), 1e-12);

/**
 * Compares a REST snapshot with the live book's states while it was asked for. The REST book was
 * taken at some moment those states span, so only the levels that stood still through them are
 * compared: a level that changed meanwhile (a different amount in two states, or named by a frame
 * in between: a frame coalesces changes, so REST may hold a value no state shows) is left out.
 * Within the price range both hold (the overlapping top levels), every such level must have the
 * same amount in REST, absent included. Where both carry the exchange's update id, only the two
 * states around the REST snapshot's id count.
 */
export function compareWithRest(rest: CcxtOrderBookLike, states: readonly BookTop[], levels: number): CrossCheckOutcome {
  if (states.length === 0) return { kind: 'inconclusive', detail: 'no live book state was seen' };
  let window = states;
  const restNonce = typeof rest.nonce === 'number' ? rest.nonce : null;
  if (restNonce !== null && states.every((s) => s.nonce !== null)) {
    const after = states.findIndex((s) => s.nonce! >= restNonce);
    if (after < 0) return { kind: 'inconclusive', detail: `the live book did not reach the REST snapshot's update id ${restNonce}` };
    if (after === 0 && states[0]!.nonce! > restNonce) return { kind: 'inconclusive', detail: `the REST snapshot (${restNonce}) is older than the live book (${states[0]!.nonce})` };
    window = states.slice(Math.max(0, after - 1), after + 1);
  }
  const r = bookTop(rest, levels);
  const problems: string[] = [];
  let compared = 0;
  let moving = 0;
  const check = (side: 'bid' | 'ask', restSide: ReadonlyMap<number, number>, inRange: (p: number) => boolean, liveSide: (s: BookTop) => ReadonlyMap<number, number>, touched: (s: BookTop) => ReadonlySet<number> | null) => {
    const prices = new Set<number>(restSide.keys());
    for (const s of window) for (const p of liveSide(s).keys()) prices.add(p);
    for (const price of prices) {
      if (!inRange(price)) continue;
      const live = liveSide(window[0]!).get(price) ?? 0;
      // changed while REST was asked: any of its values (or one in between) may be in REST
      const changed = window.some((s, i) => !sameAmount(liveSide(s).get(price) ?? 0, live) || (i > 0 && touched(s)?.has(price) === true));
      if (changed) {
        moving++;
        continue;
      }
      compared++;
      const got = restSide.get(price) ?? 0;
      if (!sameAmount(got, live)) problems.push(got === 0 ? `live ${side} ${price} x ${live} is not in REST` : `REST ${side} ${price} x ${got}, live ${live}`);
    }
  };
  const bidFloor = Math.max(r.bidFloor, ...window.map((s) => s.bidFloor));
  const askCeil = Math.min(r.askCeil, ...window.map((s) => s.askCeil));
  check('bid', r.bids, (p) => p >= bidFloor, (s) => s.bids, (s) => s.touchedBids);
  check('ask', r.asks, (p) => p <= askCeil, (s) => s.asks, (s) => s.touchedAsks);
  if (problems.length > 0) return { kind: 'mismatch', detail: `${problems.length} level(s) differ: ${problems.slice(0, 3).join('; ')}` };
  if (compared === 0) return { kind: 'inconclusive', detail: `every one of ${moving} levels in range changed meanwhile` };
  return { kind: 'agree', compared };
}

// ---- the feed -----------------------------------------------------------------------------------

export interface BookCrossCheck {
  /** how often the book is compared with a REST snapshot */
  readonly intervalMs: number;
  /** levels per side asked for and compared */
  readonly levels: number;
  /** how long the live book may take to catch up with the REST snapshot */
  readonly graceMs: number;
  readonly fetch: (symbol: string, limit: number) => Promise<CcxtOrderBookLike>;
}

export interface BookFeedOptions {
  readonly exchange: string;
  readonly symbol: string;
  readonly state: FeedState;
  readonly clock: Clock;
  readonly logger: Logger;
  /** levels per side in stored snapshots */
  readonly depth: number;
  /** at most one stored snapshot this often while the health stays the same */
  readonly intervalMs: number;
  /** null: no REST cross-check (the exchange has no fetchOrderBook, or it is switched off) */
  readonly crossCheck: BookCrossCheck | null;
  /** ccxt's live book of the market (undefined while ccxt has none) */
  readonly current: () => CcxtOrderBookLike | undefined;
  /** asks for a fresh snapshot: unWatch, then watch again */
  readonly resync: (reason: string) => void;
  /** book snapshots and quotes to publish */
  readonly emit: (events: readonly (OrderBook | Quote)[]) => void;
  readonly reject: (sample: string, reason: string) => void;
  readonly setError: (message: string) => void;
  readonly count: (name: 'book_breaks' | 'book_resyncs') => void;
}

/** Live states kept while a cross-check waits, at most (a busy book in a slow answer). */
const MAX_RECORDED_STATES = 2_000;
/** Breaks in a row before resyncs are spaced out (a book that breaks on every snapshot must not hammer the exchange). */
const RESYNC_BACKOFF_BASE_MS = 500;
const RESYNC_BACKOFF_MAX_MS = 30_000;
/** Tries to verify a fresh snapshot against REST before leaving it to the periodic check. */
const FRESH_CHECK_ATTEMPTS = 5;
const FRESH_CHECK_RETRY_MS = 500;

/** Order book health and its publishing (see the module comment). */
export class BookFeed {
  private health: BookHealth | null = null;
  /** ccxt's book object now; ccxt makes a new one for every snapshot */
  private book: CcxtOrderBookLike | null = null;
  /** the book the last matching checksum was computed on (verified as of that frame) */
  private checksummed: CcxtOrderBookLike | null = null;
  /** the book a REST cross-check agreed with */
  private crossChecked: CcxtOrderBookLike | null = null;
  private resyncing = false;
  /** the book that broke: a different one is the fresh snapshot */
  private broken: CcxtOrderBookLike | null = null;
  private stale = false;
  private uncheckableLogged = false;
  private lastPublishedAt = -Infinity;
  private breaksInARow = 0;
  private checking = false;
  private recording: BookTop[] | null = null;
  private caughtUp: { readonly nonce: number; readonly resolve: () => void } | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  // the top of book the last quote was made of (or last rejected): an unchanged top is not repeated
  private topBid: number | null | undefined = NaN;
  private topBidSize: number | null | undefined = NaN;
  private topAsk: number | null | undefined = NaN;
  private topAskSize: number | null | undefined = NaN;
  private interval: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly o: BookFeedOptions) {
    this.log = o.logger;
  }

  /** The book's health now (null before the first book). */
  get currentHealth(): BookHealth | null {
    return this.health;
  }

  /** Starts the periodic REST cross-check. */
  start(): void {
    const cc = this.o.crossCheck;
    if (!cc || this.interval || cc.intervalMs <= 0) return;
    this.interval = setInterval(() => void this.crossCheck(), cc.intervalMs);
    this.interval.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.interval) clearInterval(this.interval);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.caughtUp?.resolve();
  }

  /** A book frame, right after ccxt applied it (synchronously, before the watch call returns). */
  onFrame(frame: BookFrame): void {
    const book = this.o.current();
    // no book: ccxt found a sequence gap and dropped it (the watch call reports that); a book the
    // watch has not returned yet is still being built (Binance: deltas buffered until the REST snapshot)
    if (!book || (book !== this.book && frame.kind !== 'snapshot')) return;
    if (frame.checksum !== null && frame.canonical) {
      const computed = okxBookChecksumOfNumbers(book.bids, book.asks);
      if (computed === frame.checksum) this.checksummed = book;
      else {
        this.adopt(book);
        this.breakBook('checksum', `checksum mismatch after ${frame.kind} ${String(book.nonce ?? '')}: exchange ${frame.checksum}, book ${computed}`, true);
        return;
      }
    } else {
      if (frame.checksum !== null && !this.uncheckableLogged) {
        this.uncheckableLogged = true;
        this.log.warn('book checksum not checked: the exchange sent a level in a form the parsed book does not print back to');
      }
      // this state of the book is not covered by a checksum
      if (this.checksummed === book) this.checksummed = null;
    }
    this.adopt(book);
    this.record(book, frame);
    this.refresh(frame.kind === 'snapshot' ? 'snapshot applied' : 'update applied');
    this.quote(book);
  }

  /** A watch call returned the book: stored at the throttled cadence, at once when the health changed. */
  onBook(book: CcxtOrderBookLike, localTs: number): void {
    this.stale = false;
    this.adopt(book);
    this.record(book);
    this.quote(book, localTs);
    const bid = book.bids[0]?.[0];
    const ask = book.asks[0]?.[0];
    if (typeof bid === 'number' && typeof ask === 'number' && bid >= ask && !this.resyncing) {
      this.breakBook('crossed', `crossed book: best bid ${bid} >= best ask ${ask}`, true);
      return;
    }
    if (!this.refresh('update', localTs) && localTs - this.lastPublishedAt >= this.o.intervalMs) this.publish(book, localTs);
  }

  /** A watch call failed: ccxt's sequence errors are breaks (ccxt dropped the book; the next watch subscribes anew). */
  watchFailed(error: unknown): void {
    if (error instanceof ccxt.InvalidNonce) {
      this.breakBook('sequence', `${(error as Error).name}: ${(error as Error).message}`, false);
    }
  }

  /** No update within the stale window (the collector resubscribes). */
  markStale(quietMs: number): void {
    if (this.stale) return;
    this.stale = true;
    this.refresh(`no update for ${quietMs} ms`);
  }

  // ---- state ------------------------------------------------------------------------------------

  private computeHealth(): BookHealth {
    if (this.resyncing) return 'resyncing';
    if (this.stale) return 'stale';
    const book = this.book;
    if (book && (this.checksummed === book || this.crossChecked === book)) return 'healthy';
    return 'unverified';
  }

  /** Takes ccxt's current book object; a new one is a fresh snapshot. */
  private adopt(book: CcxtOrderBookLike): void {
    if (book === this.book) return;
    this.book = book;
    if (this.resyncing && book !== this.broken) {
      this.resyncing = false;
      this.broken = null;
    }
    // a snapshot no checksum covers is verified against REST at once
    if (this.checksummed !== book && !this.resyncing) this.soon(() => this.verifyFresh(book, 1), 0);
  }

  /** Cross-checks a fresh snapshot; an inconclusive answer (a busy book) is tried again a few times. */
  private async verifyFresh(book: CcxtOrderBookLike, attempt: number): Promise<void> {
    if (this.book !== book || this.resyncing || this.checksummed === book || this.crossChecked === book) return;
    const outcome = await this.crossCheck();
    if (outcome?.kind === 'inconclusive' && attempt < FRESH_CHECK_ATTEMPTS) this.soon(() => this.verifyFresh(book, attempt + 1), FRESH_CHECK_RETRY_MS * attempt);
  }

  /** Publishes the book at once when its health changed; true if it did. */
  private refresh(reason: string, localTs = this.o.clock.now()): boolean {
    const next = this.computeHealth();
    if (next === this.health) return false;
    const from = this.health;
    this.health = next;
    this.o.state.bookHealth = next;
    if (next === 'healthy') this.breaksInARow = 0;
    const fields = { from, to: next, reason };
    if (next === 'resyncing' || next === 'stale') this.log.warn('book health changed', fields);
    else this.log.info('book health changed', fields);
    if (this.book) this.publish(this.book, localTs);
    return true;
  }

  private breakBook(kind: BookBreak, detail: string, requestResync: boolean): void {
    // a break reported again before the fresh snapshot (ccxt replays a rejection once) is the same break
    if (this.resyncing) return;
    const { state } = this.o;
    state.bookBreaks += 1;
    state.bookResyncs += 1;
    this.o.count('book_breaks');
    this.o.count('book_resyncs');
    this.o.setError(`book ${kind} break: ${detail}`);
    this.resyncing = true;
    this.broken = this.book;
    this.breaksInARow += 1;
    this.refresh(`${kind} break: ${detail}`);
    if (!requestResync) return;
    const delay = this.breaksInARow <= 1 ? 0 : Math.min(RESYNC_BACKOFF_MAX_MS, RESYNC_BACKOFF_BASE_MS * 2 ** (this.breaksInARow - 2));
    // not from inside ccxt's message handling
    this.soon(() => {
      if (this.resyncing) this.o.resync(`${kind} break: ${detail}`);
    }, delay);
  }

  private publish(book: CcxtOrderBookLike, localTs: number): void {
    this.lastPublishedAt = localTs;
    let event: OrderBook;
    try {
      event = normalizeOrderBook(this.o.exchange, book, this.o.depth, localTs, this.health ?? 'unverified');
    } catch (error) {
      if (!(error instanceof NormalizationError)) throw error;
      this.o.reject(sampleOf(book, this.o.depth), error.message);
      return;
    }
    this.o.emit([event]);
  }

  /** Publishes a quote if the top of the book changed since the last one; a crossed or one-sided top is rejected. */
  private quote(book: CcxtOrderBookLike, localTs?: number): void {
    // the hot path: four numbers compared, nothing allocated while the top stands still
    const bid = book.bids[0];
    const ask = book.asks[0];
    const bidPrice = bid?.[0];
    const bidSize = bid?.[1];
    const askPrice = ask?.[0];
    const askSize = ask?.[1];
    if (bidPrice === this.topBid && askPrice === this.topAsk && bidSize === this.topBidSize && askSize === this.topAskSize) return;
    this.topBid = bidPrice;
    this.topBidSize = bidSize;
    this.topAsk = askPrice;
    this.topAskSize = askSize;
    let event: Quote;
    try {
      event = normalizeQuote(this.o.exchange, book, localTs ?? this.o.clock.now(), this.health ?? 'unverified');
    } catch (error) {
      if (!(error instanceof NormalizationError)) throw error;
      this.o.reject(sampleOf(book, 1), error.message);
      return;
    }
    this.o.emit([event]);
  }

  private soon(run: () => unknown, ms: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void run();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  // ---- REST cross-check -------------------------------------------------------------------------

  private record(book: CcxtOrderBookLike, frame?: BookFrame): void {
    const recording = this.recording;
    if (!recording || !this.o.crossCheck) return;
    if (recording.length >= MAX_RECORDED_STATES) return;
    const top = bookTop(book, this.o.crossCheck.levels, frame?.touched());
    recording.push(top);
    if (this.caughtUp && top.nonce !== null && top.nonce >= this.caughtUp.nonce) this.caughtUp.resolve();
  }

  /** Compares the live book with a REST snapshot; a mismatch is a break, agreement verifies the book. */
  async crossCheck(): Promise<CrossCheckOutcome | null> {
    const cc = this.o.crossCheck;
    const book = this.book;
    if (!cc || this.checking || this.stopped || !book || this.resyncing) return null;
    this.checking = true;
    this.recording = [bookTop(book, cc.levels)];
    try {
      let rest: CcxtOrderBookLike;
      try {
        rest = await cc.fetch(this.o.symbol, cc.levels);
      } catch (error) {
        return this.skipped(`REST snapshot failed: ${(error as Error).name}: ${(error as Error).message}`);
      }
      await this.catchUp(typeof rest.nonce === 'number' ? rest.nonce : null, cc.graceMs);
      if (this.stopped) return null;
      if (this.book !== book || this.resyncing) return this.skipped('the book was replaced meanwhile');
      if (this.recording.length >= MAX_RECORDED_STATES) return this.skipped('too many updates while the REST snapshot was asked for');
      const outcome = compareWithRest(rest, this.recording, cc.levels);
      if (outcome.kind === 'inconclusive') return this.skipped(outcome.detail);
      if (outcome.kind === 'mismatch') {
        this.breakBook('cross-check', `REST snapshot disagrees: ${outcome.detail}`, true);
        return outcome;
      }
      this.o.state.bookCrossChecks += 1;
      this.crossChecked = book;
      this.refresh(`REST cross-check agreed on ${outcome.compared} levels`);
      return outcome;
    } finally {
      this.checking = false;
      this.recording = null;
      this.caughtUp = null;
    }
  }

  private skipped(detail: string): CrossCheckOutcome {
    this.o.state.bookCrossChecksSkipped += 1;
    this.log.debug('book cross-check skipped', { detail });
    return { kind: 'inconclusive', detail };
  }

  /** Waits until the live book has passed the REST snapshot's update id, or `graceMs` (ids unknown: the whole grace). */
  private catchUp(nonce: number | null, graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, graceMs);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      if (nonce === null) return;
      const last = this.recording?.at(-1);
      if (last && last.nonce !== null && last.nonce >= nonce) return done();
      this.caughtUp = { nonce, resolve: done };
    });
  }
}

function sampleOf(book: CcxtOrderBookLike, depth: number): string {
  try {
    return JSON.stringify({ symbol: book.symbol, timestamp: book.timestamp, nonce: book.nonce, bids: book.bids.slice(0, depth), asks: book.asks.slice(0, depth) });
  } catch {
    return String(book);
  }
}
