import { Sleeper } from './sleeper.js';
import ccxt from 'ccxt';
import { Backoff } from './backoff.js';

/**
 * REST fills of one exchange, one at a time: ccxt's rate limiter paces each call, and running
 * fills in series keeps a burst of gaps (after a drop of every socket) from queueing dozens of
 * calls at once. Transient failures are retried with backoff.
 */
export class FillQueue {
  private tail: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly sleeper = new Sleeper();

  constructor(
    private readonly backoffBaseMs = 500,
    private readonly backoffMaxMs = 10_000,
  ) {}

  /** Runs `job` after the jobs queued before it; its failure is the job's own business (it must catch). */
  run(job: () => Promise<void>): Promise<void> {
    const next = this.tail.then(() => (this.stopped ? undefined : job())).catch(() => undefined);
    this.tail = next;
    return next;
  }

  /** Resolves when every queued job has finished. */
  idle(): Promise<void> {
    return this.tail;
  }

  /**
   * Calls `call` up to `attempts` times while it fails transiently (network errors, 429, 5xx,
   * unreadable answers: ccxt's OperationFailed family); other errors are thrown at once.
   */
  async retry<T>(call: () => Promise<T>, attempts: number, stopped: () => boolean = () => false): Promise<T> {
    const backoff = new Backoff(this.backoffBaseMs, this.backoffMaxMs);
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error) || attempt >= attempts || stopped() || this.stopped) throw error;
        // a 429 asks for a pause: never retry sooner than a second after one
        const delay = Math.max(backoff.next(), error instanceof ccxt.RateLimitExceeded || error instanceof ccxt.DDoSProtection ? 1_000 : 0);
        await this.sleep(delay);
      }
    }
  }

  /** Skips queued jobs and cuts retry waits short. */
  stop(): void {
    this.stopped = true;
    this.sleeper.wakeAll();
  }

  private sleep(ms: number): Promise<void> {
    return this.sleeper.sleep(ms);
  }
}

/** A failure worth retrying: the call may well succeed later. */
export function isTransient(error: unknown): boolean {
  return error instanceof ccxt.OperationFailed;
}
