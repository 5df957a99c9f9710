/**
 * Synthetic trade history of the simulator: what the exchange "printed" before the simulator
 * started, so backfills have years of klines and trades to page through without storing any.
 *
 * Time is cut into slots of `tradeIntervalMs`; slot `j` holds exactly one raw trade, id `j`, at
 * `j * interval + jitter` (jitter < interval / 2, so times strictly increase with ids). Everything
 * about a trade is a seeded function of (seed, symbol, j): the same seed gives the same history in
 * every run, however late the simulator starts, which is what a resumed backfill against a
 * restarted simulator needs. The live market numbers its trades on from the first slot after the
 * start, so history and live trades share one id space (Binance raw ids / OKX tradeIds).
 * A scripted scenario (scenarios.ts) lays a shape over one symbol's tape: a function of time too,
 * so the tape stays the same for the same seed and scenario.
 */
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { deriveSeed, hashString, Prng } from './prng.js';

/** Options of the synthetic history (MarketOptions.history). */
export interface HistoryOptions {
  /** one trade per symbol every this many ms; must divide a minute (default 10 000) */
  readonly tradeIntervalMs?: number;
  /** first instant with history, ms epoch (default 2017-01-01T00:00:00Z) */
  readonly from?: number;
}

export const DEFAULT_HISTORY_INTERVAL_MS = 10_000;
export const DEFAULT_HISTORY_FROM = Date.UTC(2017, 0, 1);

/** One synthetic trade, in the market's integer units. */
export interface HistorySlot {
  readonly id: number;
  readonly ts: number;
  /** price in ticks */
  readonly ticks: number;
  /** amount in lot steps */
  readonly steps: number;
  readonly side: 'buy' | 'sell';
}

/** What the tape needs of a symbol's spec, in the market's integer units. */
export interface HistoryMarketParams {
  readonly symbol: string;
  readonly initialTicks: number;
  readonly medianSteps: number;
  readonly minSteps: number;
  readonly maxSteps: number;
  /** relative standard deviation of the per-trade noise */
  readonly volatility: number;
  /** a scripted shape laid over the tape (scenarios.ts) */
  readonly shape?: PriceShape;
}

/** A scripted shape over one symbol's prices and volumes; scenarios.ts builds them. */
export interface PriceShape {
  /** log-price offset at `ts` (0 = the unshaped path) */
  offset(ts: number): number;
  /** factor on the median trade size at `ts` */
  volume(ts: number): number;
  /** from this instant the slow cycles hold still: a quiet range */
  readonly quietFrom?: number;
  /** no trades from this instant on: a feed that stopped */
  readonly haltFrom?: number;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Cycles the price follows (relative amplitude, period): months-long swings down to an hourly ripple. */
const CYCLES: readonly (readonly [number, number])[] = [
  [0.08, 30 * DAY_MS],
  [0.03, 7 * DAY_MS],
  [0.01, DAY_MS],
  [0.004, 4 * HOUR_MS],
  [0.002, HOUR_MS],
];

/** Checks history options; throws ConfigError naming the bad one. */
export function checkHistoryOptions(options: HistoryOptions): { intervalMs: number; from: number } {
  const intervalMs = options.tradeIntervalMs ?? DEFAULT_HISTORY_INTERVAL_MS;
  if (!Number.isInteger(intervalMs) || intervalMs < 2 || 60_000 % intervalMs !== 0) {
    throw new ConfigError(`history tradeIntervalMs must be a whole number of ms >= 2 that divides a minute, got ${intervalMs}`);
  }
  const from = options.from ?? DEFAULT_HISTORY_FROM;
  if (!Number.isInteger(from) || from < 0) throw new ConfigError(`history from must be a ms epoch, got ${from}`);
  return { intervalMs, from };
}

/** One symbol's synthetic trades before `origin` (the simulator's start). */
export class HistoryTape {
  readonly intervalMs: number;
  /** id (= slot) of the oldest trade */
  readonly firstId: number;
  /** one past the newest trade's id: the live market's first trade id */
  readonly endId: number;
  private readonly seed: number;
  private readonly phases: readonly number[];

  constructor(
    private readonly params: HistoryMarketParams,
    seed: number,
    origin: number,
    options: HistoryOptions = {},
  ) {
    const { intervalMs, from } = checkHistoryOptions(options);
    this.intervalMs = intervalMs;
    this.seed = deriveSeed(seed, `${params.symbol}:history`);
    const rng = new Prng(this.seed);
    this.phases = CYCLES.map(() => rng.next() * 2 * Math.PI);
    this.firstId = Math.ceil(from / intervalMs);
    // slot j's trade is before j*I + I/2, so every slot up to this one ends before origin
    const end = Math.min(origin, params.shape?.haltFrom ?? origin);
    this.endId = Math.max(this.firstId, Math.floor((end - intervalMs / 2) / intervalMs) + 1);
  }

  /** Whether the tape has no trade at all (origin before `from`). */
  get empty(): boolean {
    return this.endId <= this.firstId;
  }

  /** The trade with id `id` (firstId <= id < endId). */
  slot(id: number): HistorySlot {
    const rng = new Prng(hashString(String(id), this.seed));
    const ts = id * this.intervalMs + Math.floor(rng.next() * (this.intervalMs / 2));
    const side = rng.chance(0.5) ? 'buy' : 'sell';
    const p = this.params;
    const noise = rng.normal() * p.volatility * 3;
    const shape = p.shape;
    const g = shape ? this.wave(Math.min(ts, shape.quietFrom ?? ts)) + shape.offset(ts) : this.wave(ts);
    const ticks = Math.max(1, Math.round(p.initialTicks * Math.exp(g + noise)));
    const median = shape ? p.medianSteps * shape.volume(ts) : p.medianSteps;
    const steps = Math.min(p.maxSteps, Math.max(p.minSteps, Math.round(rng.logNormal(median, 1))));
    return { id, ts, ticks, steps, side };
  }

  /** Id of the first trade at or after `ts` (endId when none is). */
  idAtOrAfter(ts: number): number {
    if (this.empty) return this.endId;
    const j = Math.floor(ts / this.intervalMs);
    if (j < this.firstId) return this.firstId;
    if (j >= this.endId) return this.endId;
    return this.slot(j).ts >= ts ? j : j + 1;
  }

  /** Timestamp of the oldest trade, if any. */
  firstTs(): number | undefined {
    return this.empty ? undefined : this.slot(this.firstId).ts;
  }

  /** Log-price offset of the slow cycles at `ts`. */
  private wave(ts: number): number {
    let g = 0;
    for (const [i, [amp, period]] of CYCLES.entries()) g += amp * Math.sin((2 * Math.PI * ts) / period + this.phases[i]!);
    return g;
  }
}
