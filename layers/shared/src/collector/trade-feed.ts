/**
 * One market's trade feed made complete: every trade, from the live stream or a REST fill, goes
 * through a tracker that drops duplicates and finds holes; holes and interruptions are filled from
 * REST in the live stream's id space, and every gap and its fate goes into the ledger.
 */
import type { GapReason, Trade } from '../domain/index.js';
import { exchangeSample, NormalizationError, normalizeTrade, type CcxtTradeLike } from '../normalize/ccxt-normalizer.js';
import type { Clock } from '../ports/index.js';
import type { Logger } from '../observability/logger.js';
import type { FeedLedger, FeedState, LedgerGap } from './feed-ledger.js';
import { fallbackTradeKey, SequentialTradeTracker, TradeKeyTracker, type OpenGap, type TradeSource } from './trade-gap-tracker.js';
import {
  IdSpaceMismatchError,
  sequentialId,
  type HistoryExchange,
  type TradeCompleteness,
  type TradeIdHistory,
  type TradeTimeHistory,
} from './trade-history.js';
import type { FillQueue } from './fill-queue.js';

export interface TradeFillTuning {
  /** a hole still open this long after it appeared is a gap (shorter ones were reordering) */
  readonly reorderGraceMs: number;
  /** gaps with more missing trades than this are recorded unfilled without asking REST */
  readonly maxFillTrades: number;
  /** REST attempts per page before a fill gives up */
  readonly maxFillAttempts: number;
  /** ids before the first live trade a start-up fill looks at (trades since the subscription began) */
  readonly startupLookback: number;
}

export interface TradeFeedOptions {
  readonly exchange: HistoryExchange;
  readonly symbol: string;
  readonly state: FeedState;
  readonly completeness: TradeCompleteness;
  readonly ledger: FeedLedger;
  readonly fills: FillQueue;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly tuning: TradeFillTuning;
  /** hands accepted trades on (to the stream) */
  readonly emit: (trades: readonly Trade[]) => void;
  /** reports an input that did not map to a valid trade */
  readonly reject: (sample: string, reason: string) => void;
  /**
   * The last trade id a previous run published (or journaled) for this market: the start-up fill
   * then reaches back to it, so trades printed while no collector ran are fetched too (at most
   * maxFillTrades of them; the rest is recorded as an unfilled gap).
   */
  readonly resumeAfterId?: number;
}

/** A trade the fills compare REST answers against: same id, so it must be the same trade. */
interface Anchor {
  readonly id: number;
  readonly trade: Trade;
}

const sameTrade = ({ trade: a }: Anchor, t: Trade): boolean =>
  a.ts === t.ts && Math.abs(a.price - t.price) <= 1e-9 * a.price && Math.abs(a.amount - t.amount) <= 1e-9 * Math.max(a.amount, 1e-12);

/** Trade feed state and its fills (see the module comment). */
export class TradeFeed {
  private readonly seq: SequentialTradeTracker | null;
  private readonly keys: TradeKeyTracker | null;
  private head: Anchor | null = null;
  /** the trade before each open gap, by gap seq */
  private readonly anchors = new Map<number, Anchor>();
  private readonly declared = new Map<number, LedgerGap>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** when the feed's first subscription started (collector clock), for the start-up fill */
  private startedAt: number | null = null;
  private stopped = false;

  constructor(private readonly o: TradeFeedOptions) {
    this.seq = o.completeness.mode === 'id' ? new SequentialTradeTracker() : null;
    this.keys = o.completeness.mode === 'time' ? new TradeKeyTracker() : null;
  }

  /** The newest trade id taken (id-tracked feeds), for a later run to resume after. */
  get lastId(): number | null {
    return this.seq ? (this.head?.id ?? null) : null;
  }

  /** The live subscription starts (the first time, or again after an interruption). */
  subscribed(): void {
    this.startedAt ??= this.o.clock.now();
  }

  /** Live trades of one watch call: normalized, deduplicated, tracked; returns what is new. */
  onLive(raw: readonly CcxtTradeLike[], localTs: number): Trade[] {
    const firstBefore = this.seq?.firstId ?? null;
    const out = this.takeRaw(raw, localTs, 'live');
    if (this.seq && firstBefore === null && this.seq.firstId !== null) this.scheduleStartupFill(localTs);
    return out;
  }

  /** The connection was interrupted (`reconnect`) or the watchdog resubscribed: fill what was missed meanwhile. */
  interrupted(reason: 'reconnect' | 'resubscribe'): void {
    if (this.stopped) return;
    this.seq?.markDiscontinuity(reason);
    void this.o.fills.run(() => (this.seq ? this.catchUpById(reason) : this.catchUpByTime(reason)));
  }

  /** Cancels pending checks; running fills stop at their next page. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  // ---- intake -----------------------------------------------------------------------------------

  /** Normalizes ccxt trades (bad ones are rejected and skipped), then tracks them (see `take`). */
  private takeRaw(raw: readonly CcxtTradeLike[], localTs: number, source: TradeSource): Trade[] {
    const trades: Trade[] = [];
    const sameKey = new Map<string, number>();
    for (const item of raw) {
      const noId = item.id === undefined || item.id === null || item.id === '';
      try {
        // the documented fallback key stands in for a missing id, only where ids are not sequential
        const keyed = noId && this.keys ? withFallbackKey(item, sameKey) : item;
        trades.push(normalizeTrade(this.o.exchange.id, keyed, localTs));
      } catch (error) {
        if (!(error instanceof NormalizationError)) throw error;
        this.o.reject(exchangeSample(item), source === 'rest' ? `REST: ${error.message}` : error.message);
      }
    }
    return this.take(trades, source);
  }

  /**
   * Tracks normalized trades: drops duplicates, finds holes; emits the accepted ones and returns
   * them. `fresh` gets the accepted trades that filled no open gap (for the fills' own records;
   * trades that landed in a gap are that gap's recovered trades).
   */
  private take(trades: readonly Trade[], source: TradeSource, fresh?: Trade[]): Trade[] {
    const { state } = this.o;
    const out: Trade[] = [];
    for (const trade of trades) {
      if (this.seq) {
        const id = sequentialId(trade);
        if (id === null) {
          this.o.reject(JSON.stringify(trade), `trade id '${trade.id}' is not a sequential integer id`);
          continue;
        }
        const before = this.head;
        const r = this.seq.accept(id, trade.ts, source);
        if (!r.accepted) {
          state.duplicates += 1;
          continue;
        }
        // the trade itself is the anchor (no copy on the hot path)
        if (before === null || id > before.id) this.head = { id, trade };
        if (r.reordered) state.reordered += 1;
        if (r.opened && before) {
          this.anchors.set(r.opened.seq, before);
          this.scheduleGapCheck(r.opened);
        }
        // a fill reached a hole before its grace ran out: it was a gap, recorded now
        if (source === 'rest' && r.within && !r.within.declared) this.declare(r.within);
        for (const g of r.closed) this.onClosed(g);
        if (!r.within) fresh?.push(trade);
      } else if (!this.keys!.accept(trade.id, trade.ts)) {
        state.duplicates += 1;
        continue;
      } else fresh?.push(trade);
      if (source === 'rest') state.tradesRecovered += 1;
      out.push(trade);
    }
    if (out.length > 0) this.o.emit(out);
    return out;
  }

  // ---- gaps -------------------------------------------------------------------------------------

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(timer);
  }

  /** After the reorder grace, a hole still open becomes a gap: recorded, then filled. */
  private scheduleGapCheck(gap: OpenGap): void {
    this.later(this.o.tuning.reorderGraceMs, () => {
      if (gap.declared) return;
      if (!this.seq!.isOpen(gap)) {
        this.anchors.delete(gap.seq);
        return;
      }
      this.declare(gap);
    });
  }

  /** Records an open hole as a gap in the ledger and queues its fill. */
  private declare(gap: OpenGap): void {
    gap.declared = true;
    const ledgerGap = this.o.ledger.openGap({
      exchange: this.o.exchange.id,
      symbol: this.o.symbol,
      kind: 'id',
      reason: gap.reason,
      fromId: gap.fromId,
      toId: gap.toId,
      fromTs: gap.fromTs,
      toTs: gap.toTs,
      // what was missing when it was found (a fill may have just taken one of them)
      missing: gap.remaining + gap.recovered,
      detectedAt: this.o.clock.now(),
    });
    this.declared.set(gap.seq, ledgerGap);
    this.o.logger.info('trade gap detected', { gapId: ledgerGap.gapId, fromId: gap.fromId, toId: gap.toId, missing: gap.remaining + gap.recovered });
    void this.o.fills.run(() => this.fillGap(gap));
  }

  private onClosed(gap: OpenGap): void {
    this.anchors.delete(gap.seq);
    const ledgerGap = this.declared.get(gap.seq);
    if (!ledgerGap) return;
    this.declared.delete(gap.seq);
    const size = gap.toId - gap.fromId + 1;
    const detail =
      gap.recovered === 0 ? 'closed by late live trades' : `filled from ${this.historyName()}: ${gap.recovered} of ${size} trades`;
    this.o.ledger.resolveGap(ledgerGap, 'filled', gap.recovered, detail);
    this.o.logger.info('trade gap filled', { gapId: ledgerGap.gapId, recovered: gap.recovered, detail });
  }

  private giveUp(gap: OpenGap, detail: string): void {
    const seq = this.seq!;
    if (!seq.isOpen(gap)) return;
    seq.abandon(gap);
    this.anchors.delete(gap.seq);
    const ledgerGap = this.declared.get(gap.seq);
    this.declared.delete(gap.seq);
    if (ledgerGap) this.o.ledger.resolveGap(ledgerGap, 'unfilled', gap.recovered, detail);
    this.o.logger.warn('trade gap left unfilled', { exchange: this.o.exchange.id, symbol: this.o.symbol, fromId: gap.fromId, toId: gap.toId, detail });
  }

  private async fillGap(gap: OpenGap): Promise<void> {
    const seq = this.seq!;
    if (this.stopped || !seq.isOpen(gap)) return;
    const size = gap.toId - gap.fromId + 1;
    if (size > this.o.tuning.maxFillTrades) {
      this.giveUp(gap, `${size} missing trades exceed the fill limit of ${this.o.tuning.maxFillTrades}`);
      return;
    }
    const anchor = this.anchors.get(gap.seq) ?? null;
    try {
      const trades = await this.fetchRange(anchor?.id ?? gap.fromId, gap.toId, anchor, size);
      // a trade of the range must lie between the trades around it: REST numbering trades differently shows here
      for (const t of trades) {
        const id = sequentialId(t)!;
        if (id < gap.fromId || id > gap.toId) continue;
        if ((gap.fromTs !== null && t.ts < gap.fromTs) || (gap.toTs !== null && t.ts > gap.toTs)) {
          throw new IdSpaceMismatchError(
            `id space mismatch: REST trade ${id} is at ${t.ts}, outside the gap's time range ${gap.fromTs}..${gap.toTs} (${this.historyName()})`,
          );
        }
      }
      this.take(trades, 'rest');
    } catch (error) {
      this.giveUp(gap, describeError(error));
      return;
    }
    if (seq.isOpen(gap)) {
      this.giveUp(gap, `${this.historyName()} returned ${gap.recovered} of ${size} missing trades; ${gap.remaining} not available`);
    }
  }

  /** After an interruption: everything after the newest trade seen, up to the newest the exchange has. */
  private async catchUpById(reason: GapReason): Promise<void> {
    const head = this.head;
    if (this.stopped || !head) return;
    const detectedAt = this.o.clock.now();
    let trades: Trade[];
    try {
      trades = (await this.fetchRange(head.id, null, head, this.o.tuning.maxFillTrades)).filter((t) => sequentialId(t)! > head.id);
    } catch (error) {
      // the next live trade reveals the hole as a sequence gap, which is filled (or recorded) then
      this.o.ledger.setError(this.o.state, `fill after ${reason} failed: ${describeError(error)}`);
      this.o.logger.warn('fill after interruption failed', { exchange: this.o.exchange.id, symbol: this.o.symbol, reason, error });
      return;
    }
    // trades that landed in gaps opened meanwhile are those gaps' own recovered trades
    const taken: Trade[] = [];
    this.take(trades, 'rest', taken);
    this.o.logger.info('fill after interruption', { reason, fromId: head.id + 1, fetched: trades.length, recovered: taken.length });
    if (taken.length === 0) return;
    const ids = taken.map((t) => sequentialId(t)!);
    const gap = this.o.ledger.openGap({
      exchange: this.o.exchange.id,
      symbol: this.o.symbol,
      kind: 'id',
      reason,
      fromId: head.id + 1,
      toId: Math.max(...ids),
      fromTs: head.trade.ts,
      toTs: Math.max(...taken.map((t) => t.ts)),
      missing: taken.length,
      detectedAt,
    });
    this.o.ledger.resolveGap(gap, 'filled', taken.length, `filled from ${this.historyName()} after ${reason}: ${taken.length} trades`);
  }

  /** The first live trade arrived: take the trades printed since the subscription began that it came after. */
  private scheduleStartupFill(firstLocalTs: number): void {
    const seq = this.seq!;
    const first = this.head!;
    // exchange-time window: as long as the feed waited for its first trade, plus a second for skew
    const windowMs = Math.max(0, firstLocalTs - (this.startedAt ?? firstLocalTs)) + 1_000;
    // a previous run's last id: everything after it was printed while no collector ran, or since
    const resume = this.o.resumeAfterId !== undefined && this.o.resumeAfterId < first.id ? this.o.resumeAfterId : null;
    void this.o.fills.run(async () => {
      if (this.stopped) return;
      const fromId =
        resume === null ? Math.max(1, first.id - this.o.tuning.startupLookback) : Math.max(resume + 1, first.id - this.o.tuning.maxFillTrades);
      const detectedAt = this.o.clock.now();
      try {
        if (resume !== null && fromId > resume + 1) {
          // more than one fill takes: the oldest part is left, and said so
          const lost = this.o.ledger.openGap({
            exchange: this.o.exchange.id,
            symbol: this.o.symbol,
            kind: 'id',
            reason: 'startup',
            fromId: resume + 1,
            toId: fromId - 1,
            fromTs: null,
            toTs: null,
            missing: fromId - 1 - resume,
            detectedAt,
          });
          this.o.ledger.resolveGap(lost, 'unfilled', 0, `more trades since the previous run than one fill takes (${this.o.tuning.maxFillTrades})`);
        }
        if (first.id > fromId) {
          const earlier = (await this.fetchRange(fromId, first.id, first, first.id - fromId + 1)).filter((t) => {
            const id = sequentialId(t)!;
            return id < first.id && (resume !== null || t.ts >= first.trade.ts - windowMs);
          });
          const taken: Trade[] = [];
          this.take(earlier, 'rest', taken);
          if (taken.length > 0) {
            const gap = this.o.ledger.openGap({
              exchange: this.o.exchange.id,
              symbol: this.o.symbol,
              kind: 'id',
              reason: 'startup',
              fromId: Math.min(...taken.map((t) => sequentialId(t)!)),
              toId: first.id - 1,
              fromTs: Math.min(...taken.map((t) => t.ts)),
              toTs: first.trade.ts,
              missing: taken.length,
              detectedAt,
            });
            this.o.ledger.resolveGap(
              gap,
              'filled',
              taken.length,
              resume === null
                ? `trades printed after the subscription began, before its first message`
                : `trades printed since the previous run's last one (id ${resume}), before this run's first message`,
            );
          }
        }
      } catch (error) {
        this.o.ledger.setError(this.o.state, `start-up fill failed: ${describeError(error)}`);
        this.o.logger.warn('start-up fill failed', { exchange: this.o.exchange.id, symbol: this.o.symbol, error });
      } finally {
        seq.closeStartup();
      }
    });
  }

  /**
   * Trades with ids `fromId..toId` (toId null: up to the newest) from the id history, at most
   * `max`, normalized. When `anchor` is in the range, REST must return it unchanged, or the
   * source numbers trades differently from the live stream (IdSpaceMismatchError).
   */
  private async fetchRange(fromId: number, toId: number | null, anchor: Anchor | null, max: number): Promise<Trade[]> {
    const history = this.o.completeness.history as TradeIdHistory;
    const byId = new Map<number, Trade>();
    let cursor: unknown = null;
    let pages = 0;
    do {
      if (this.stopped) break;
      const page = await this.withRetries(() => history.page(this.o.exchange, this.o.symbol, { fromId, toId }, cursor));
      const localTs = this.o.clock.now();
      for (const item of page.trades) {
        let t: Trade;
        try {
          t = normalizeTrade(this.o.exchange.id, item, localTs);
        } catch (error) {
          if (!(error instanceof NormalizationError)) throw error;
          this.o.reject(exchangeSample(item), `REST: ${error.message}`);
          continue;
        }
        const id = sequentialId(t);
        if (id === null) continue;
        if (id >= fromId && (toId === null || id <= toId)) byId.set(id, t);
      }
      cursor = page.next;
      pages += 1;
    } while (cursor !== null && byId.size < max && pages < Math.ceil(max / 50) + 2);
    if (anchor && anchor.id >= fromId && (toId === null || anchor.id <= toId)) {
      const same = byId.get(anchor.id);
      if (!same) {
        throw new IdSpaceMismatchError(`id space mismatch: ${history.describe} has no trade ${anchor.id}, which the live stream delivered`);
      }
      if (!sameTrade(anchor, same)) {
        throw new IdSpaceMismatchError(
          `id space mismatch: ${history.describe} trade ${anchor.id} is ${same.ts} ${same.price} x ${same.amount}, ` +
            `the live stream's is ${anchor.trade.ts} ${anchor.trade.price} x ${anchor.trade.amount}`,
        );
      }
    }
    return [...byId.values()].sort((a, b) => sequentialId(a)! - sequentialId(b)!);
  }

  /** After an interruption, for exchanges without sequential ids: REST trades since the newest seen. */
  private async catchUpByTime(reason: GapReason): Promise<void> {
    const since = this.keys!.newest;
    if (this.stopped || since === null) return;
    const history = this.o.completeness.history as TradeTimeHistory;
    const detectedAt = this.o.clock.now();
    let recovered = 0;
    let to = since;
    try {
      let from = since;
      for (let page = 0; page < Math.ceil(this.o.tuning.maxFillTrades / 1000) && !this.stopped; page++) {
        const raw = await this.withRetries(() => history.page(this.o.exchange, this.o.symbol, from));
        const taken = this.takeRaw(raw, this.o.clock.now(), 'rest');
        recovered += taken.length;
        for (const t of taken) to = Math.max(to, t.ts);
        const newest = raw.reduce((m, t) => Math.max(m, t.timestamp ?? 0), from);
        if (raw.length < 1000 || newest <= from) break;
        from = newest;
      }
    } catch (error) {
      this.o.ledger.setError(this.o.state, `fill after ${reason} failed: ${describeError(error)}`);
      this.o.logger.warn('fill after interruption failed', { exchange: this.o.exchange.id, symbol: this.o.symbol, reason, error });
      return;
    }
    if (recovered === 0) return;
    const gap = this.o.ledger.openGap({
      exchange: this.o.exchange.id,
      symbol: this.o.symbol,
      kind: 'time',
      reason,
      fromId: null,
      toId: null,
      fromTs: since,
      toTs: to,
      missing: null,
      detectedAt,
    });
    this.o.ledger.resolveGap(gap, 'filled', recovered, `filled from ${history.describe} after ${reason}: ${recovered} trades`);
  }

  /** One REST call with retries: transient failures (network, 429, 5xx) back off and try again. */
  private async withRetries<T>(call: () => Promise<T>): Promise<T> {
    return this.o.fills.retry(call, this.o.tuning.maxFillAttempts, () => this.stopped);
  }

  private historyName(): string {
    return this.o.completeness.history.describe;
  }
}

function withFallbackKey(t: CcxtTradeLike, seen: Map<string, number>): CcxtTradeLike {
  const base = { ts: t.timestamp ?? 0, price: t.price ?? 0, amount: t.amount ?? 0, side: t.side ?? '' };
  const k = fallbackTradeKey(base, 0);
  const n = seen.get(k) ?? 0;
  seen.set(k, n + 1);
  return { ...t, id: fallbackTradeKey(base, n) };
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message.split('\n')[0]?.slice(0, 300)}` : String(error);
}
