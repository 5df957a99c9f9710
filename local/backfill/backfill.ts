/**
 * Historical backfill: candles and trades of one exchange, page by page, into the store that holds
 * each page's range. Resumable (a checkpoint per job after each stored page), within the exchange's
 * rate limits (ccxt's limiter, plus backoff on 429 and network errors) and idempotent (the stores
 * write on natural keys, and a finished range is not fetched again).
 *
 * Candles come as the exchange's OHLCV (source 'exchange'), closed bars only, in windows of the
 * exchange's page size. Trades come by raw trade id (see exchange.ts), so they are the same rows
 * the live collector stores.
 */
import ccxt, { type Exchange } from 'ccxt';
import { Backoff } from '../../layers/shared/src/collector/backoff.js';
import { PlatformError } from '../../layers/shared/src/domain/errors.js';
import {
  bucketStart,
  CandleSchema,
  timeframeMs,
  type Candle,
  type MarketEvent,
  type Timeframe,
  type Trade,
} from '../../layers/shared/src/domain/index.js';
import { NormalizationError, normalizeTrade, type CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';
import { systemClock, type Clock } from '../../layers/shared/src/ports/index.js';
import type { Checkpoint, CheckpointStore, JobKey } from './checkpoint.js';
import { candleRecipe, IdSpaceMismatchError, numericTradeId, tradeRecipe } from './exchange.js';
import type { JobProgress, ProgressListener } from './progress.js';
import type { RoutedWrite } from './store-router.js';

/** The exchange kept failing a request after every retry, or refused it outright. */
export class BackfillExchangeError extends PlatformError {}

/** One job: one exchange, symbol and kind (candles of one timeframe, or trades) over [since, until). */
export interface BackfillJob extends JobKey {
  /** ms epoch, inclusive */
  readonly since: number;
  /** ms epoch, exclusive */
  readonly until: number;
}

/** Where pages are written (BackfillStoreRouter). */
export interface PageWriter {
  write(events: readonly MarketEvent[]): Promise<RoutedWrite>;
}

export interface RetryPolicy {
  /** tries per request, the first included */
  readonly attempts: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseMs: 500, maxMs: 30_000 };

export interface BackfillDeps {
  /** a ccxt client with markets loaded (connectBackfillExchange) */
  readonly exchange: Exchange;
  readonly writer: PageWriter;
  readonly checkpoints: CheckpointStore;
  /** identity of the stores written to: a checkpoint made for other stores is not resumed */
  readonly target: string;
  readonly clock?: Clock;
  readonly progress?: ProgressListener;
  /** stops the run between pages; the page in flight is stored and checkpointed first */
  readonly signal?: AbortSignal;
  /** stop after this many pages in all (the run resumes from there) */
  readonly maxPages?: number;
  readonly retry?: RetryPolicy;
  /** bars not yet this long closed are left for a later run (default 10 s: exchange clocks differ) */
  readonly closeGraceMs?: number;
}

export type JobStatus = 'complete' | 'up-to-date' | 'stopped';

export interface JobReport {
  readonly key: JobKey;
  readonly label: string;
  readonly status: JobStatus;
  /** pages and rows of this run */
  readonly pages: number;
  readonly rows: number;
  /** rows that did not pass the schema (counted, not stored) */
  readonly rejected: number;
  /** rows written to the recent store and to ClickHouse this run */
  readonly recentRows: number;
  readonly historyRows: number;
  /** requests retried, and how many of those were answered 429 (rate limited) */
  readonly retries: number;
  readonly rateLimited: number;
  /** the job continued from a checkpoint */
  readonly resumed: boolean;
  /** every row with since <= ts < coveredTo is stored (ms epoch) */
  readonly since: number;
  readonly coveredTo: number;
}

export interface BackfillReport {
  readonly jobs: readonly JobReport[];
  /** stopped early (signal or page limit): run it again to resume */
  readonly stopped: boolean;
}

/** What a job would do now, from its checkpoint (dry run). */
export interface JobPlan {
  readonly key: JobKey;
  readonly label: string;
  readonly since: number;
  /** end of the range this run can cover (closed candles only) */
  readonly end: number;
  /** where it starts: a checkpoint's cursor (open time or trade id), or null for the start of the range */
  readonly resumeFrom: number | null;
  readonly upToDate: boolean;
  /** candles: requests left; trades: unknown before asking the exchange */
  readonly pagesLeft: number | null;
  readonly pageSize: number;
}

/** `binance BTC/USDT candles 1m` */
export function jobLabel(key: JobKey): string {
  return `${key.exchange} ${key.symbol} ${key.kind}${key.kind === 'candles' ? ` ${key.timeframe}` : ''}`;
}

/** The smallest bucket open time of `tf` at or after `ts`. */
function alignUp(ts: number, tf: Timeframe): number {
  const start = bucketStart(ts, tf);
  return start === ts ? ts : start + timeframeMs(tf);
}

/** A checkpoint this job may continue from: same stores, and its stored range reaches the requested start. */
function usable(cp: Checkpoint | undefined, target: string, since: number): boolean {
  return cp !== undefined && cp.target === target && cp.since <= since && since <= cp.coveredTo;
}

/** Runs the jobs one after another (one exchange, one rate limit) and reports each. */
export async function runBackfill(jobs: readonly BackfillJob[], deps: BackfillDeps): Promise<BackfillReport> {
  const runner = new BackfillRunner(deps);
  const reports: JobReport[] = [];
  for (const [i, job] of jobs.entries()) {
    const report = await runner.run(job, i + 1, jobs.length);
    reports.push(report);
    if (report.status === 'stopped') {
      return { jobs: reports, stopped: true };
    }
  }
  return { jobs: reports, stopped: false };
}

/** What each job would do, without fetching any data (the exchange's markets are loaded already). */
export async function planBackfill(jobs: readonly BackfillJob[], deps: Pick<BackfillDeps, 'exchange' | 'checkpoints' | 'target' | 'clock' | 'closeGraceMs'>): Promise<JobPlan[]> {
  const clock = deps.clock ?? systemClock;
  const plans: JobPlan[] = [];
  for (const job of jobs) {
    const cp = await deps.checkpoints.load(job);
    if (job.kind === 'candles') {
      const tf = job.timeframe as Timeframe;
      const { pageSize } = candleRecipe(deps.exchange);
      const since = alignUp(job.since, tf);
      const end = candleEnd(job, clock.now(), deps.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS);
      const resume = usable(cp, deps.target, since) ? cp!.cursor : null;
      const from = resume === null ? since : Math.max(since, resume);
      plans.push({
        key: job,
        label: jobLabel(job),
        since,
        end,
        resumeFrom: resume,
        upToDate: from >= end,
        pagesLeft: Math.max(0, Math.ceil((end - from) / (timeframeMs(tf) * pageSize))),
        pageSize,
      });
    } else {
      const { pageSize } = tradeRecipe(deps.exchange.id);
      const resume = usable(cp, deps.target, job.since) ? cp! : undefined;
      plans.push({
        key: job,
        label: jobLabel(job),
        since: job.since,
        end: job.until,
        resumeFrom: resume ? resume.cursor : null,
        upToDate: resume !== undefined && resume.coveredTo >= job.until,
        pagesLeft: null,
        pageSize,
      });
    }
  }
  return plans;
}

const DEFAULT_CLOSE_GRACE_MS = 10_000;

/** Exclusive end of a candle job's range now: before `until`, closed bars only. */
function candleEnd(job: BackfillJob, now: number, graceMs: number): number {
  const tf = job.timeframe as Timeframe;
  return Math.min(alignUp(job.until, tf), bucketStart(now - graceMs, tf));
}

/** The run was asked to stop (signal or page limit). */
class StopRequested extends Error {}

interface JobState {
  pages: number;
  rows: number;
  rejected: number;
  recentRows: number;
  historyRows: number;
  retries: number;
  rateLimited: number;
}

class BackfillRunner {
  private readonly clock: Clock;
  private readonly retry: RetryPolicy;
  private pagesThisRun = 0;

  constructor(private readonly deps: BackfillDeps) {
    this.clock = deps.clock ?? systemClock;
    this.retry = deps.retry ?? DEFAULT_RETRY;
  }

  async run(job: BackfillJob, index: number, jobs: number): Promise<JobReport> {
    return job.kind === 'candles' ? this.candles(job, index, jobs) : this.trades(job, index, jobs);
  }

  private async candles(job: BackfillJob, index: number, jobs: number): Promise<JobReport> {
    const { exchange, checkpoints, target, writer } = this.deps;
    const tf = job.timeframe as Timeframe;
    const size = timeframeMs(tf);
    const { pageSize } = candleRecipe(exchange);
    const label = jobLabel(job);
    const start = alignUp(job.since, tf);
    const end = candleEnd(job, this.clock.now(), this.deps.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS);
    const cp = await this.loadCheckpoint(job, start);
    const resumed = cp !== undefined;
    const rangeSince = cp?.since ?? start;
    let cursor = cp ? Math.max(start, cp.cursor) : start;
    let totalPages = cp?.pages ?? 0;
    let totalRows = cp?.rows ?? 0;
    const state = emptyState();
    const startedAt = this.clock.now();
    const fraction = () => (end > rangeSince ? (cursor - rangeSince) / (end - rangeSince) : 1);
    const startFraction = fraction();
    const progress = (): JobProgress => ({
      label,
      index,
      jobs,
      pages: totalPages,
      rows: totalRows,
      fraction: fraction(),
      startedAt,
      startFraction,
      rowsThisRun: state.rows,
    });
    const report = (status: JobStatus): JobReport => ({ key: job, label, status, ...state, resumed, since: rangeSince, coveredTo: cursor });
    if (cursor >= end) {
      this.deps.progress?.jobDone(progress(), `up to date (stored to ${iso(cursor)})`);
      return report('up-to-date');
    }
    try {
      while (cursor < end) {
        this.checkStop();
        const windowStart = cursor;
        const windowEnd = Math.min(end, cursor + pageSize * size);
        // until = the window's last ms: Binance takes it as endTime (inclusive), OKX as `after` (exclusive)
        const ohlcv = await this.request(state, `${label}: fetchOHLCV`, () =>
          exchange.fetchOHLCV(job.symbol, tf, windowStart, pageSize, { until: windowEnd - 1 }),
        );
        const byTs = new Map<number, (typeof ohlcv)[number]>();
        for (const row of ohlcv) {
          const ts = row[0];
          if (typeof ts === 'number' && ts >= windowStart && ts < windowEnd) byTs.set(ts, row);
        }
        const rows = [...byTs.values()].sort((a, b) => a[0]! - b[0]!);
        const events: Candle[] = [];
        for (const [ts, open, high, low, close, volume] of rows) {
          const parsed = CandleSchema.safeParse({
            type: 'candle',
            exchange: job.exchange,
            symbol: job.symbol,
            timeframe: tf,
            ts,
            open,
            high,
            low,
            close,
            volume,
            closed: true,
            source: 'exchange',
          });
          if (parsed.success) events.push(parsed.data);
          else state.rejected++;
        }
        await this.store(state, events);
        // an empty window is a gap in the exchange's data: go past it
        cursor = rows.length > 0 ? rows.at(-1)![0]! + size : windowEnd;
        totalPages++;
        totalRows += events.length;
        state.pages++;
        this.pagesThisRun++;
        await checkpoints.save({
          version: 1,
          exchange: job.exchange,
          symbol: job.symbol,
          kind: 'candles',
          timeframe: tf,
          target,
          since: rangeSince,
          coveredTo: cursor,
          cursor,
          pages: totalPages,
          rows: totalRows,
          updatedAt: Date.now(),
        });
        this.deps.progress?.page(progress());
      }
    } catch (error) {
      if (!(error instanceof StopRequested)) throw error;
      this.deps.progress?.jobDone(progress(), `stopped at ${iso(cursor)} (${state.pages} pages, ${state.rows} rows this run); run again to resume`);
      return report('stopped');
    }
    const left = end < alignUp(job.until, tf) ? `; bars from ${iso(end)} on are not closed yet` : '';
    this.deps.progress?.jobDone(progress(), `complete to ${iso(cursor)}: ${summary(state)}${left}`);
    return report('complete');
  }

  private async trades(job: BackfillJob, index: number, jobs: number): Promise<JobReport> {
    const { exchange, checkpoints, target } = this.deps;
    const recipe = tradeRecipe(exchange.id);
    const label = jobLabel(job);
    const until = job.until;
    const cp = await this.loadCheckpoint(job, job.since);
    const resumed = cp !== undefined;
    const rangeSince = cp?.since ?? job.since;
    let coveredTo = cp?.coveredTo ?? job.since;
    let nextId: number | null = cp?.cursor ?? null;
    let totalPages = cp?.pages ?? 0;
    let totalRows = cp?.rows ?? 0;
    const state = emptyState();
    const startedAt = this.clock.now();
    const fraction = () => (until > rangeSince ? Math.min(1, (coveredTo - rangeSince) / (until - rangeSince)) : 1);
    const startFraction = fraction();
    const progress = (): JobProgress => ({
      label,
      index,
      jobs,
      pages: totalPages,
      rows: totalRows,
      fraction: fraction(),
      startedAt,
      startFraction,
      rowsThisRun: state.rows,
    });
    const report = (status: JobStatus): JobReport => ({ key: job, label, status, ...state, resumed, since: rangeSince, coveredTo });
    if (coveredTo >= until) {
      this.deps.progress?.jobDone(progress(), `up to date (stored to ${iso(coveredTo)})`);
      return report('up-to-date');
    }
    try {
      this.checkStop();
      if (nextId === null) {
        nextId = await this.request(state, `${label}: first trade id at ${iso(job.since)}`, () =>
          recipe.firstIdAtOrAfter(exchange, job.symbol, job.since, until),
        );
        if (nextId === null) {
          this.deps.progress?.jobDone(progress(), `no trades from ${iso(job.since)} to ${iso(until)}`);
          return report('complete');
        }
      }
      for (;;) {
        this.checkStop();
        const fromId: number = nextId;
        const page = await this.request(state, `${label}: trades from id ${fromId}`, () => recipe.page(exchange, job.symbol, fromId));
        checkIds(page, fromId, label);
        const localTs = this.clock.now();
        // ids rise with time: the trades before `until` are a prefix of the page
        let kept = page.findIndex((t) => (t.timestamp ?? 0) >= until);
        if (kept < 0) kept = page.length;
        const events: Trade[] = [];
        for (const t of page.slice(0, kept)) {
          try {
            events.push(normalizeTrade(job.exchange, { ...t, symbol: job.symbol }, localTs));
          } catch (error) {
            if (!(error instanceof NormalizationError)) throw error;
            state.rejected++;
          }
        }
        await this.store(state, events);
        const reachedUntil = kept < page.length;
        if (reachedUntil) {
          nextId = numericTradeId(page[kept]!);
          coveredTo = until;
        } else if (page.length > 0) {
          nextId = numericTradeId(page.at(-1)!) + 1;
          coveredTo = Math.max(coveredTo, page.at(-1)!.timestamp ?? coveredTo);
        }
        totalPages++;
        totalRows += events.length;
        state.pages++;
        this.pagesThisRun++;
        await checkpoints.save({
          version: 1,
          exchange: job.exchange,
          symbol: job.symbol,
          kind: 'trades',
          timeframe: null,
          target,
          since: rangeSince,
          coveredTo,
          cursor: nextId,
          pages: totalPages,
          rows: totalRows,
          updatedAt: Date.now(),
        });
        this.deps.progress?.page(progress());
        if (reachedUntil) break;
        if (page.length < recipe.pageSize) {
          // the newest trade the exchange has: the rest of the range is still to come
          this.deps.progress?.jobDone(progress(), `complete to the newest trade (${iso(coveredTo)}): ${summary(state)}`);
          return report('complete');
        }
      }
    } catch (error) {
      if (!(error instanceof StopRequested)) throw error;
      this.deps.progress?.jobDone(progress(), `stopped at ${iso(coveredTo)} (${state.pages} pages, ${state.rows} rows this run); run again to resume`);
      return report('stopped');
    }
    this.deps.progress?.jobDone(progress(), `complete to ${iso(coveredTo)}: ${summary(state)}`);
    return report('complete');
  }

  /** The job's checkpoint if this run may continue from it; says why when it may not. */
  private async loadCheckpoint(job: BackfillJob, since: number): Promise<Checkpoint | undefined> {
    const cp = await this.deps.checkpoints.load(job);
    if (!cp) return undefined;
    if (usable(cp, this.deps.target, since)) return cp;
    const why =
      cp.target !== this.deps.target
        ? `it was made for other stores (${cp.target})`
        : `its stored range ${iso(cp.since)}..${iso(cp.coveredTo)} does not reach --since ${iso(since)}`;
    this.deps.progress?.note(`${jobLabel(job)}: not resuming the checkpoint, ${why}; starting at --since (stored rows are rewritten idempotently)`);
    return undefined;
  }

  private checkStop(): void {
    if (this.deps.signal?.aborted) throw new StopRequested();
    if (this.deps.maxPages !== undefined && this.pagesThisRun >= this.deps.maxPages) throw new StopRequested();
  }

  private async store(state: JobState, events: readonly MarketEvent[]): Promise<void> {
    const written = await this.deps.writer.write(events);
    state.rows += events.length;
    state.recentRows += written.recent;
    state.historyRows += written.history;
  }

  /**
   * One exchange request with retries: network errors, 5xx and 429 are retried with exponential
   * backoff and jitter (after a 429 at least the Retry-After the exchange sent); anything else
   * (bad symbol, bad request) fails at once.
   */
  private async request<T>(state: JobState, what: string, call: () => Promise<T>): Promise<T> {
    const backoff = new Backoff(this.retry.baseMs, this.retry.maxMs);
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (error instanceof IdSpaceMismatchError) throw error;
        const retryable = error instanceof ccxt.NetworkError;
        if (!retryable || attempt >= this.retry.attempts) {
          const tries = retryable ? ` after ${attempt} attempts` : '';
          throw new BackfillExchangeError(`${what} failed${tries}: ${(error as Error).message}`, { cause: error });
        }
        state.retries++;
        const limited = error instanceof ccxt.RateLimitExceeded || error instanceof ccxt.DDoSProtection;
        if (limited) state.rateLimited++;
        const delay = Math.max(backoff.next(), limited ? retryAfterMs(this.deps.exchange) : 0);
        this.deps.progress?.note(`${what}: ${(error as Error).constructor.name}, retry ${attempt} in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay, this.deps.signal);
        if (this.deps.signal?.aborted) throw new StopRequested();
      }
    }
  }
}

function emptyState(): JobState {
  return { pages: 0, rows: 0, rejected: 0, recentRows: 0, historyRows: 0, retries: 0, rateLimited: 0 };
}

/** Trades of a page must continue the raw-id history at `fromId`, ascending. */
function checkIds(page: readonly CcxtTradeLike[], fromId: number, label: string): void {
  let previous = fromId - 1;
  for (const t of page) {
    const id = numericTradeId(t);
    if (id <= previous) {
      throw new IdSpaceMismatchError(
        `${label}: asked for trades from id ${fromId}, got id ${id} after ${previous}: not the raw trade id history`,
      );
    }
    previous = id;
  }
}

/** Retry-After of the last response (seconds, as Binance sends it), in ms; 0 when absent. */
function retryAfterMs(exchange: Exchange): number {
  const headers = (exchange as unknown as { last_response_headers?: Record<string, unknown> }).last_response_headers ?? {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== 'retry-after') continue;
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds, 300) * 1000;
  }
  return 0;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function summary(s: JobState): string {
  const parts = [`${s.pages} pages`, `${s.rows} rows this run`];
  if (s.historyRows > 0) parts.push(`${s.historyRows} to ClickHouse, ${s.recentRows} to the recent store`);
  if (s.rejected > 0) parts.push(`${s.rejected} rejected`);
  if (s.retries > 0) parts.push(`${s.retries} retries (${s.rateLimited} rate limited)`);
  return parts.join(', ');
}

const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');
