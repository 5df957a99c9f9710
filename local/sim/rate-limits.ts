/**
 * REST rate limits of the simulated exchanges: fixed windows of request weight, as Binance counts
 * `REQUEST_WEIGHT` per minute and OKX counts requests per endpoint per 2 seconds. A protocol says
 * what a request costs and which budget it draws on; a request over budget is answered 429 in the
 * exchange's own format, so a client that goes too fast meets what it would meet for real.
 */
import { ConfigError } from '../../layers/shared/src/domain/errors.js';

/** One budget: `limit` weight per fixed window of `windowMs`. */
export interface RateBudget {
  /** what the budget covers, e.g. `REQUEST_WEIGHT` or an OKX endpoint path */
  readonly key: string;
  readonly limit: number;
  readonly windowMs: number;
}

/** The outcome of asking for `cost` weight of a budget. */
export type RateDecision =
  | { readonly ok: true; readonly used: number }
  | { readonly ok: false; readonly used: number; readonly retryAfterMs: number };

/** Checks a rate budget's numbers; throws ConfigError naming the bad one. */
export function checkRateBudget(what: string, limit: number, windowMs: number): void {
  if (!(Number.isFinite(limit) && limit > 0)) throw new ConfigError(`${what} limit must be a positive number, got ${limit}`);
  if (!(Number.isInteger(windowMs) && windowMs >= 1)) throw new ConfigError(`${what} window must be a whole number of ms >= 1, got ${windowMs}`);
}

/** Fixed-window weight counters, one per budget key (windows aligned to the epoch, as Binance's minute). */
export class FixedWindowLimiter {
  private readonly windows = new Map<string, { start: number; used: number }>();
  private rejectedCount = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes `cost` from `budget` unless that would exceed it; a rejected request costs nothing. */
  take(budget: RateBudget, cost: number): RateDecision {
    const now = this.now();
    const start = Math.floor(now / budget.windowMs) * budget.windowMs;
    let w = this.windows.get(budget.key);
    if (!w || w.start !== start) {
      w = { start, used: 0 };
      this.windows.set(budget.key, w);
    }
    if (w.used + cost > budget.limit) {
      this.rejectedCount++;
      return { ok: false, used: w.used, retryAfterMs: start + budget.windowMs - now };
    }
    w.used += cost;
    return { ok: true, used: w.used };
  }

  /** Requests answered 429 so far. */
  get rejected(): number {
    return this.rejectedCount;
  }
}
