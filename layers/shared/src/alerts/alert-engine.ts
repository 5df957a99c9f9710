import type { MarketEvent, OrderBook, Quote, SignalDirection, StreamEvent, Ticker, Timeframe, Trade } from '../domain/index.js';
import { isMarketEvent } from '../domain/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import type { Clock } from '../ports/index.js';
import type { PublishedSignal, SignalInput, SignalPublisher } from '../query/signal-service.js';
import { SignalRateLimitError, SignalValidationError } from '../query/signal-service.js';
import type { AlertRule, PriceCrossRule, SpreadBlowoutRule, StaleFeedRule, VolumeSpikeRule } from './alert-rules.js';
import { DEFAULT_HORIZON, ruleMatches } from './alert-rules.js';

/** Counter names: engine-wide ones, and per rule `fired.<id>`, `published.<id>`, `dropped.<id>`, `failed.<id>`. */
export type AlertCounter =
  | 'records'
  | 'records_unreadable'
  | 'events'
  | 'events_rejected'
  /** signals, funding and ledger events: no rule looks at them */
  | 'events_ignored'
  /** events of markets beyond maxMarkets (bounded state) */
  | 'markets_over_limit'
  | `fired.${string}`
  | `published.${string}`
  /** not published, not retried: the signal was refused (validation) or over the publisher's rate */
  | `dropped.${string}`
  /** publish failed (store down): the record is retried */
  | `failed.${string}`;

/** One rule firing for one market, with the signal to publish. */
export interface AlertFiring {
  readonly rule: AlertRule;
  readonly exchange: string;
  readonly symbol: string;
  /** exchange time of the triggering event (stale_feed: of the last event seen, null if none) */
  readonly triggerTs: number | null;
  readonly signal: SignalInput;
}

/** What a firing needs of SignalService. */
export interface SignalPublishing {
  publish(input: unknown, publisher: SignalPublisher): Promise<PublishedSignal>;
}

export interface AlertEngineDeps {
  readonly rules: readonly AlertRule[];
  readonly signals: SignalPublishing;
  /** stale_feed's time source (event rules run on exchange time) */
  readonly clock: Clock;
  readonly counters: Counters<AlertCounter>;
  readonly logger: Logger;
  /** publisher identity of the signals (default `alerts`) */
  readonly publisher?: SignalPublisher;
  /** markets with state at most (default 10 000): bounded memory whatever the stream carries */
  readonly maxMarkets?: number;
}

interface RuleState {
  /** time of the last firing: exchange time for event rules, clock time for stale_feed */
  lastFiredAt: number;
  /** edge trigger: the condition was false since the last firing */
  armed: boolean;
}

/** Tumbling windows of volume: the current one and a ring of the trailing ones, with their sum. */
interface VolumeState {
  windowStart: number;
  volume: number;
  buyVolume: number;
  readonly ring: Float64Array;
  next: number;
  filled: number;
  sum: number;
}

interface Watch {
  readonly rule: AlertRule;
  readonly state: RuleState;
  readonly volume?: VolumeState;
}

interface MarketState {
  readonly exchange: string;
  readonly symbol: string;
  readonly watches: readonly Watch[];
  lastPrice: number | null;
  /** receipt time (localTs) of the newest event; the engine's start for a market not seen yet */
  lastSeenAt: number;
  /** exchange time of the newest event */
  lastEventTs: number | null;
}

const iso = (ts: number) => new Date(ts).toISOString();
const round = (n: number, digits = 2) => Number(n.toFixed(digits));
const clamp01 = (n: number) => Math.min(1, Math.max(0, n));

/**
 * Evaluates alert rules incrementally as events arrive: per event O(rules of its market), per market
 * a fixed amount of state (last price, one window ring per volume rule), so a busy stream costs no
 * more memory than a quiet one. Event-driven rules (price_cross, volume_spike, spread_blowout) run
 * on exchange time, so a replay fires the same way; stale_feed runs on the clock via checkStale().
 *
 * Signals derived from each rule (strength, confidence in 0..1):
 * - price_cross: `long` up through the level, `short` down through it; strength 0.5 + overshoot in
 *   bps / 100 (max 1); confidence 0.6 (one print can be an outlier).
 * - volume_spike: `long` when taker buys are >= 60% of the window's volume, `short` at <= 40%, else
 *   `flat`; strength = ratio / (2 x factor) (0.5 at the threshold); confidence 0.5 + 0.4 x imbalance.
 * - spread_blowout: `flat` (liquidity is gone: stay out); strength = bps / (2 x maxBps); confidence 0.8
 *   from a verified (`healthy`) book, else 0.5.
 * - stale_feed: `flat` (the data cannot be trusted); strength = silence / (2 x afterMs); confidence 0.5
 *   (a quiet market and a dead feed look the same from here).
 */
export class AlertEngine {
  private readonly markets = new Map<string, MarketState>();
  private readonly maxMarkets: number;
  private readonly publisher: SignalPublisher;

  constructor(private readonly deps: AlertEngineDeps) {
    this.maxMarkets = deps.maxMarkets ?? 10_000;
    this.publisher = deps.publisher ?? { name: 'alerts' };
    // markets named exactly by a stale_feed rule are watched from the start, even if they never send a thing
    const start = deps.clock.now();
    for (const r of deps.rules) {
      if (r.kind === 'stale_feed' && r.exchange !== '*' && r.symbol !== '*') this.market(r.exchange, r.symbol, start);
    }
  }

  /** Markets with state (bounded by maxMarkets). */
  get marketCount(): number {
    return this.markets.size;
  }

  /** Evaluates one event against its market's rules; returns what fired (nothing is published here). */
  evaluate(event: StreamEvent): AlertFiring[] {
    const { counters } = this.deps;
    counters.add('events');
    if (!isMarketEvent(event)) {
      counters.add('events_ignored');
      return [];
    }
    const m = this.market(event.exchange, event.symbol, this.deps.clock.now());
    if (!m) {
      counters.add('markets_over_limit');
      return [];
    }
    const fired: AlertFiring[] = [];
    const spread = spreadOf(event);
    for (const w of m.watches) {
      let f: AlertFiring | null = null;
      switch (w.rule.kind) {
        case 'price_cross':
          if (event.type === 'trade') f = this.priceCross(m, w.rule, w.state, event);
          break;
        case 'volume_spike':
          if (event.type === 'trade') f = this.volumeSpike(m, w.rule, w.state, w.volume!, event);
          break;
        case 'spread_blowout':
          if (spread) f = this.spreadBlowout(m, w.rule, w.state, event, spread);
          break;
        case 'stale_feed':
          w.state.armed = true; // data again: the next silence may fire
          break;
      }
      if (f) {
        counters.add(`fired.${w.rule.id}`);
        fired.push(f);
      }
    }
    if (event.type === 'trade') m.lastPrice = event.price;
    const seenAt = 'localTs' in event ? event.localTs : event.ts;
    if (seenAt > m.lastSeenAt) m.lastSeenAt = seenAt;
    if (m.lastEventTs === null || event.ts > m.lastEventTs) m.lastEventTs = event.ts;
    return fired;
  }

  /** stale_feed: every market silent for at least its rule's afterMs at `now`, once per silence. */
  checkStale(now = this.deps.clock.now()): AlertFiring[] {
    const fired: AlertFiring[] = [];
    for (const m of this.markets.values()) {
      for (const w of m.watches) {
        if (w.rule.kind !== 'stale_feed') continue;
        const f = this.staleFeed(m, w.rule, w.state, now);
        if (f) {
          this.deps.counters.add(`fired.${w.rule.id}`);
          fired.push(f);
        }
      }
    }
    return fired;
  }

  /**
   * Publishes a firing's signal. Resolves `true` when stored, `false` when refused for good
   * (validation, the publisher's rate limit: counted and logged, retrying would not help);
   * rejects on anything else (store down), for the caller to retry.
   */
  async publish(firing: AlertFiring): Promise<boolean> {
    const { counters, logger } = this.deps;
    const id = firing.rule.id;
    try {
      const { signal } = await this.deps.signals.publish(firing.signal, this.publisher);
      counters.add(`published.${id}`);
      logger.info('alert published', { rule: id, kind: firing.rule.kind, exchange: firing.exchange, symbol: firing.symbol, signal: signal.id });
      return true;
    } catch (error) {
      if (error instanceof SignalValidationError || error instanceof SignalRateLimitError) {
        counters.add(`dropped.${id}`);
        logger.warn('alert signal dropped', { rule: id, exchange: firing.exchange, symbol: firing.symbol, error });
        return false;
      }
      counters.add(`failed.${id}`);
      throw error;
    }
  }

  private market(exchange: string, symbol: string, now: number): MarketState | undefined {
    const key = `${exchange}\u0000${symbol}`;
    const known = this.markets.get(key);
    if (known) return known;
    if (this.markets.size >= this.maxMarkets) return undefined;
    const watches: Watch[] = this.deps.rules
      .filter((r) => ruleMatches(r, exchange, symbol))
      .map((rule) => ({
        rule,
        state: { lastFiredAt: Number.NEGATIVE_INFINITY, armed: true },
        ...(rule.kind === 'volume_spike' && {
          volume: { windowStart: Number.NaN, volume: 0, buyVolume: 0, ring: new Float64Array(rule.trailingWindows), next: 0, filled: 0, sum: 0 },
        }),
      }));
    const m: MarketState = { exchange, symbol, watches, lastPrice: null, lastSeenAt: now, lastEventTs: null };
    this.markets.set(key, m);
    return m;
  }

  private cooled(rule: AlertRule, state: RuleState, at: number): boolean {
    return at - state.lastFiredAt >= rule.cooldownMs;
  }

  private priceCross(m: MarketState, rule: PriceCrossRule, state: RuleState, trade: Trade): AlertFiring | null {
    const prev = m.lastPrice;
    if (prev === null) return null; // the first print only tells which side of the level we are on
    const { level } = rule;
    const up = prev < level && trade.price >= level;
    const down = prev > level && trade.price <= level;
    if (!(up && rule.direction !== 'down') && !(down && rule.direction !== 'up')) return null;
    if (!this.cooled(rule, state, trade.ts)) return null;
    state.lastFiredAt = trade.ts;
    const overshootBps = (Math.abs(trade.price - level) / level) * 10_000;
    const way = up ? 'up' : 'down';
    return this.firing(m, rule, trade.ts, {
      direction: up ? 'long' : 'short',
      strength: clamp01(0.5 + overshootBps / 100),
      confidence: 0.6,
      rationale:
        `price_cross rule "${rule.id}": ${m.symbol} on ${m.exchange} traded ${trade.price} (trade ${trade.id}, ${trade.side} taker) ` +
        `at ${iso(trade.ts)} (exchange ts ${trade.ts}), crossing ${way} through level ${level} from ${prev}; ` +
        `${round(overshootBps)} bps beyond the level.`,
    });
  }

  private volumeSpike(m: MarketState, rule: VolumeSpikeRule, state: RuleState, v: VolumeState, trade: Trade): AlertFiring | null {
    const start = Math.floor(trade.ts / rule.windowMs) * rule.windowMs;
    if (Number.isNaN(v.windowStart)) v.windowStart = start;
    else if (start > v.windowStart) {
      // close the current window, then the empty ones skipped (at most the ring's length matter)
      const skipped = Math.min((start - v.windowStart) / rule.windowMs - 1, v.ring.length);
      pushWindow(v, v.volume);
      for (let i = 0; i < skipped; i++) pushWindow(v, 0);
      v.windowStart = start;
      v.volume = 0;
      v.buyVolume = 0;
      state.armed = true; // at most one firing per window
    }
    // a late trade (older window) counts in the current one: the windows never go back
    v.volume += trade.amount;
    if (trade.side === 'buy') v.buyVolume += trade.amount;
    if (v.filled < v.ring.length || !state.armed) return null;
    const mean = v.sum / v.ring.length;
    if (!(mean > 0) || v.volume <= rule.factor * mean) return null;
    if (!this.cooled(rule, state, trade.ts)) return null;
    state.armed = false;
    state.lastFiredAt = trade.ts;
    const ratio = v.volume / mean;
    const buyShare = v.buyVolume / v.volume;
    const direction: SignalDirection = buyShare >= 0.6 ? 'long' : buyShare <= 0.4 ? 'short' : 'flat';
    return this.firing(m, rule, trade.ts, {
      direction,
      strength: clamp01(ratio / (2 * rule.factor)),
      confidence: clamp01(0.5 + 0.4 * Math.abs(2 * buyShare - 1)),
      rationale:
        `volume_spike rule "${rule.id}": ${m.symbol} on ${m.exchange} traded ${round(v.volume, 8)} in the ${rule.windowMs} ms window from ` +
        `${iso(v.windowStart)}, ${round(ratio)}x the mean ${round(mean, 8)} of the ${rule.trailingWindows} windows before it ` +
        `(threshold ${rule.factor}x); taker buys ${Math.round(buyShare * 100)}% of it. Triggering trade ${trade.id} at ${trade.price} ` +
        `at ${iso(trade.ts)} (exchange ts ${trade.ts}).`,
    });
  }

  private spreadBlowout(m: MarketState, rule: SpreadBlowoutRule, state: RuleState, event: MarketEvent, s: Spread): AlertFiring | null {
    const bps = ((s.ask - s.bid) / ((s.ask + s.bid) / 2)) * 10_000;
    if (bps <= rule.maxBps) {
      state.armed = true;
      return null;
    }
    if (!state.armed || !this.cooled(rule, state, event.ts)) return null;
    state.armed = false;
    state.lastFiredAt = event.ts;
    return this.firing(m, rule, event.ts, {
      direction: 'flat',
      strength: clamp01(bps / (2 * rule.maxBps)),
      confidence: s.health === 'healthy' ? 0.8 : 0.5,
      rationale:
        `spread_blowout rule "${rule.id}": ${m.symbol} on ${m.exchange} ${event.type} at ${iso(event.ts)} (exchange ts ${event.ts}) ` +
        `has bid ${s.bid} / ask ${s.ask}: spread ${round(bps)} bps, above ${rule.maxBps} bps` +
        `${s.health ? ` (book ${s.health})` : ''}.`,
    });
  }

  private staleFeed(m: MarketState, rule: StaleFeedRule, state: RuleState, now: number): AlertFiring | null {
    const silentMs = now - m.lastSeenAt;
    if (silentMs < rule.afterMs || !state.armed || !this.cooled(rule, state, now)) return null;
    state.armed = false;
    state.lastFiredAt = now;
    const last = m.lastEventTs === null ? 'none since the alerts consumer started' : `the last at ${iso(m.lastEventTs)} (exchange ts ${m.lastEventTs})`;
    return this.firing(m, rule, m.lastEventTs, {
      direction: 'flat',
      strength: clamp01(silentMs / (2 * rule.afterMs)),
      confidence: 0.5,
      rationale: `stale_feed rule "${rule.id}": no event from ${m.symbol} on ${m.exchange} for ${silentMs} ms (threshold ${rule.afterMs} ms); ${last}.`,
    });
  }

  private firing(
    m: MarketState,
    rule: AlertRule,
    triggerTs: number | null,
    s: { direction: SignalDirection; strength: number; confidence: number; rationale: string },
  ): AlertFiring {
    const horizon: Timeframe = rule.horizon ?? DEFAULT_HORIZON[rule.kind];
    return {
      rule,
      exchange: m.exchange,
      symbol: m.symbol,
      triggerTs,
      signal: { symbol: m.symbol, exchange: m.exchange, horizon, ...s, strength: round(s.strength, 4), confidence: round(s.confidence, 4) },
    };
  }
}

function pushWindow(v: VolumeState, volume: number): void {
  v.sum += volume - v.ring[v.next]!;
  v.ring[v.next] = volume;
  v.next = (v.next + 1) % v.ring.length;
  if (v.filled < v.ring.length) v.filled += 1;
  // float drift of the running sum can leave a tiny negative after zeros replace values
  if (v.sum < 0) v.sum = 0;
}

interface Spread {
  readonly bid: number;
  readonly ask: number;
  readonly health?: string;
}

/** Best bid and ask of a quote, ticker or book; null when one side is missing or the top is crossed. */
function spreadOf(e: MarketEvent): Spread | null {
  let s: Spread | null = null;
  if (e.type === 'quote') s = { bid: (e as Quote).bid, ask: (e as Quote).ask, health: (e as Quote).health };
  else if (e.type === 'ticker') {
    const t = e as Ticker;
    if (t.bid !== null && t.ask !== null) s = { bid: t.bid, ask: t.ask };
  } else if (e.type === 'book') {
    const b = e as OrderBook;
    const bid = b.bids[0]?.[0];
    const ask = b.asks[0]?.[0];
    if (bid !== undefined && ask !== undefined) s = { bid, ask, health: b.health };
  }
  return s && s.ask > s.bid ? s : null;
}
