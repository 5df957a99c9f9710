/**
 * Completeness bookkeeping of one trade feed, pure (no I/O, no timers): which trades were seen,
 * which are duplicates, and which holes are open. Two kinds:
 *
 * - SequentialTradeTracker, for exchanges whose trade ids are consecutive integers per market
 *   (Binance raw trade ids, OKX tradeId): a jump in ids opens a gap; a late id inside an open gap
 *   is accepted and shrinks it; an id already seen is a duplicate.
 * - TradeKeyTracker, for the rest: duplicates by trade id or, where the exchange gives none, by
 *   the fallback key of `fallbackTradeKey`, over a time window; holes can only be found by time
 *   (after a reconnect), which the collector does.
 */
import type { GapReason } from '../domain/index.js';

/** Where a trade came from: the live stream or a REST fill. */
export type TradeSource = 'live' | 'rest';

/** A hole of consecutive missing ids, from its opening until every id arrived or it is given up. */
export interface OpenGap {
  /** per tracker, increasing */
  readonly seq: number;
  readonly fromId: number;
  readonly toId: number;
  /** exchange time of the trade before the hole and of the one that revealed it */
  readonly fromTs: number | null;
  readonly toTs: number | null;
  readonly reason: GapReason;
  /** ids of the range not seen yet */
  remaining: number;
  /** ids of the range that came from REST */
  recovered: number;
  /** declared to the ledger (the reorder grace passed with the hole still open) */
  declared: boolean;
}

export type AcceptResult =
  | {
      readonly accepted: true;
      /** the gap this trade revealed */
      readonly opened: OpenGap | null;
      /** gaps this trade completed */
      readonly closed: readonly OpenGap[];
      /** the open gap this trade belongs to (it came late or from a fill), if any */
      readonly within: OpenGap | null;
      /** the trade landed in a gap not yet declared: it came late, not lost */
      readonly reordered: boolean;
    }
  | { readonly accepted: false; readonly duplicate: true };

const DUPLICATE: AcceptResult = { accepted: false, duplicate: true };
// the common outcome, shared: no allocation per trade on the hot path
const TAKEN: AcceptResult = Object.freeze({ accepted: true, opened: null, closed: Object.freeze([]) as readonly OpenGap[], within: null, reordered: false });
/** How many given-up ranges are remembered, so that their trades are still taken if they turn up late. */
const ABANDONED_KEPT = 32;

/** Bookkeeping of a feed with consecutive integer trade ids. */
export class SequentialTradeTracker {
  private started = false;
  /** first id seen: ids below it are the start-up window's (taken once while it is open) */
  private floor = 0;
  private startupOpen = true;
  private readonly belowFloor = new Set<number>();
  /** every id <= watermark is accounted for (seen, or its gap given up) */
  private watermark = 0;
  private highestId = 0;
  private highestTs: number | null = null;
  /** ids above the watermark already seen */
  private readonly above = new Set<number>();
  private readonly open: OpenGap[] = [];
  private readonly abandoned: { from: number; to: number; seen: Set<number> }[] = [];
  private nextSeq = 1;
  /** why the next gap opens (set after a reconnect or resubscribe) */
  private pendingReason: GapReason | null = null;

  /** Highest id seen and its exchange time (null before the first trade). */
  get head(): { readonly id: number; readonly ts: number | null } | null {
    return this.started ? { id: this.highestId, ts: this.highestTs } : null;
  }

  /** First id seen (null before the first trade). */
  get firstId(): number | null {
    return this.started ? this.floor : null;
  }

  /** Every id up to this one is accounted for. */
  get contiguousUpTo(): number | null {
    return this.started ? this.watermark : null;
  }

  get openGaps(): readonly OpenGap[] {
    return this.open;
  }

  /** The next gap to open is attributed to `reason` (the connection was interrupted). */
  markDiscontinuity(reason: GapReason): void {
    this.pendingReason = reason;
  }

  /** Ends the start-up window: from now on ids below the first one are duplicates. */
  closeStartup(): void {
    this.startupOpen = false;
    this.belowFloor.clear();
  }

  isOpen(gap: OpenGap): boolean {
    return this.open.includes(gap);
  }

  /** Takes one trade id; a duplicate is refused. */
  accept(id: number, ts: number, source: TradeSource): AcceptResult {
    if (!this.started) {
      this.started = true;
      this.floor = id;
      this.watermark = id;
      this.highestId = id;
      this.highestTs = ts;
      return TAKEN;
    }
    if (id < this.floor) {
      if (!this.startupOpen || this.belowFloor.has(id)) return DUPLICATE;
      this.belowFloor.add(id);
      return TAKEN;
    }
    if (id <= this.watermark) return this.lateOrDuplicate(id);
    if (this.above.has(id)) return DUPLICATE;
    if (id > this.highestId) {
      let opened: OpenGap | null = null;
      if (id > this.highestId + 1) {
        opened = {
          seq: this.nextSeq++,
          fromId: this.highestId + 1,
          toId: id - 1,
          fromTs: this.highestTs,
          toTs: ts,
          reason: this.pendingReason ?? 'sequence',
          remaining: id - 1 - this.highestId,
          recovered: 0,
          declared: false,
        };
        this.open.push(opened);
      }
      if (source === 'live') this.pendingReason = null;
      this.highestId = id;
      this.highestTs = ts;
      if (this.open.length === 0) this.watermark = id;
      else this.above.add(id);
      return opened ? { accepted: true, opened, closed: [], within: null, reordered: false } : TAKEN;
    }
    // watermark < id < highest and not seen: it belongs to an open gap
    const gap = this.open.find((g) => id >= g.fromId && id <= g.toId);
    if (!gap) return DUPLICATE;
    this.above.add(id);
    gap.remaining -= 1;
    if (source === 'rest') gap.recovered += 1;
    const reordered = !gap.declared && source === 'live';
    const closed: OpenGap[] = [];
    if (gap.remaining === 0) {
      this.open.splice(this.open.indexOf(gap), 1);
      closed.push(gap);
      this.advance();
    }
    return { accepted: true, opened: null, closed, within: gap, reordered };
  }

  /** Gives a gap up: its missing ids stop holding the watermark back (a late one is still taken). */
  abandon(gap: OpenGap): void {
    const i = this.open.indexOf(gap);
    if (i < 0) return;
    this.open.splice(i, 1);
    const seen = new Set<number>();
    for (const id of this.above) if (id >= gap.fromId && id <= gap.toId) seen.add(id);
    this.abandoned.push({ from: gap.fromId, to: gap.toId, seen });
    if (this.abandoned.length > ABANDONED_KEPT) this.abandoned.shift();
    this.advance();
  }

  private lateOrDuplicate(id: number): AcceptResult {
    const range = this.abandoned.find((r) => id >= r.from && id <= r.to);
    if (!range || range.seen.has(id)) return DUPLICATE;
    range.seen.add(id);
    return TAKEN;
  }

  /** Moves the watermark up to the lowest open gap and forgets the ids below it. */
  private advance(): void {
    const lowest = this.open.reduce((min, g) => Math.min(min, g.fromId), Number.POSITIVE_INFINITY);
    const next = lowest === Number.POSITIVE_INFINITY ? this.highestId : lowest - 1;
    if (next <= this.watermark) return;
    this.watermark = next;
    if (this.open.length === 0) this.above.clear();
    else for (const id of this.above) if (id <= next) this.above.delete(id);
  }
}

/**
 * Key of a trade the exchange gives no id for: exchange time, price, amount, taker side and the
 * trade's position among identical ones of the same batch (`n`, from 0). Two identical trades in
 * the same millisecond that arrive in different batches get the same key: the second is then
 * taken for a duplicate. That is the documented limit of this fallback.
 */
export function fallbackTradeKey(t: { readonly ts: number; readonly price: number; readonly amount: number; readonly side: string }, n: number): string {
  return `${t.ts}:${t.price}:${t.amount}:${t.side}:${n}`;
}

/** Duplicate filter by trade key (id or fallback key) over a window of exchange time. */
export class TradeKeyTracker {
  private readonly keys = new Map<string, number>();
  private newestTs: number | null = null;
  private oldestKept = Number.NEGATIVE_INFINITY;

  constructor(private readonly windowMs = 15 * 60_000) {}

  /** Exchange time of the newest trade taken (null before the first). */
  get newest(): number | null {
    return this.newestTs;
  }

  /** True when taken, false for a key already seen (or older than the window: it cannot be told apart). */
  accept(key: string, ts: number): boolean {
    if (this.keys.has(key) || ts < this.oldestKept) return false;
    this.keys.set(key, ts);
    if (this.newestTs === null || ts > this.newestTs) this.newestTs = ts;
    // prune in bulk, so the cost per trade stays constant
    if (this.keys.size % 4096 === 0) this.prune();
    return true;
  }

  private prune(): void {
    if (this.newestTs === null) return;
    this.oldestKept = this.newestTs - this.windowMs;
    for (const [key, ts] of this.keys) if (ts < this.oldestKept) this.keys.delete(key);
  }
}
