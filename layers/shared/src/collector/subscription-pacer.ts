/**
 * Paces the start of subscriptions per exchange, under the exchange's documented WebSocket limits,
 * so that starting (or restarting after a drop) many feeds at once never trips them.
 */

/** At most `limit` starts in any window of `perMs`. */
export interface RateWindow {
  readonly limit: number;
  readonly perMs: number;
}

/**
 * Documented limits, with a margin:
 * - Binance spot market streams: "WebSocket connections have a limit of 5 incoming messages per
 *   second" (SUBSCRIBE/UNSUBSCRIBE, PING and PONG frames count) and "300 connections per attempt
 *   every 5 minutes per IP"; a connection carries at most 1024 streams. ccxt.pro opens one
 *   connection per watched stream (up to `streamLimits.spot`, 50), so every start is a new
 *   connection plus one SUBSCRIBE: 4 a second leaves room for pongs, 280 per 5 minutes for reconnects.
 * - OKX public WebSocket: "3 requests per second" for new connections (per IP), and "480 times per
 *   hour" for subscribe/unsubscribe/login requests per connection (ccxt.pro puts every public
 *   subscription on one connection): 3 a second and 400 an hour.
 * - Anything else: 2 a second, a conservative default until its limits are looked up.
 */
export const SUBSCRIPTION_LIMITS: Readonly<Record<string, readonly RateWindow[]>> = {
  binance: [
    { limit: 4, perMs: 1_000 },
    { limit: 280, perMs: 300_000 },
  ],
  okx: [
    { limit: 3, perMs: 1_000 },
    { limit: 400, perMs: 3_600_000 },
  ],
};

export const DEFAULT_SUBSCRIPTION_LIMITS: readonly RateWindow[] = [{ limit: 2, perMs: 1_000 }];

export function subscriptionLimitsFor(exchangeId: string): readonly RateWindow[] {
  return Object.hasOwn(SUBSCRIPTION_LIMITS, exchangeId) ? SUBSCRIPTION_LIMITS[exchangeId]! : DEFAULT_SUBSCRIPTION_LIMITS;
}

/** Sliding-window limiter: `take()` resolves, in call order, once every window has room. */
export class SubscriptionPacer {
  private readonly starts: number[] = [];
  private queue: Promise<void> = Promise.resolve();
  private readonly keep: number;

  constructor(
    readonly windows: readonly RateWindow[],
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    for (const w of windows) {
      if (!(Number.isInteger(w.limit) && w.limit >= 1 && w.perMs > 0)) throw new RangeError(`bad rate window ${JSON.stringify(w)}`);
    }
    this.keep = Math.max(1, ...windows.map((w) => w.limit));
  }

  /** Waits for a slot; calls are served first come, first served. */
  take(): Promise<void> {
    const turn = this.queue.then(() => this.waitForRoom());
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** ms until the next start would be allowed (0: now). */
  delay(): number {
    const now = this.now();
    let wait = 0;
    for (const w of this.windows) {
      if (this.starts.length < w.limit) continue;
      const oldestInWindow = this.starts[this.starts.length - w.limit]!;
      wait = Math.max(wait, oldestInWindow + w.perMs - now);
    }
    return wait;
  }

  private async waitForRoom(): Promise<void> {
    for (let wait = this.delay(); wait > 0; wait = this.delay()) await this.sleep(wait);
    this.starts.push(this.now());
    if (this.starts.length > this.keep) this.starts.splice(0, this.starts.length - this.keep);
  }
}
