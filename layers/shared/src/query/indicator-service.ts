import { ValidationError } from '../domain/errors.js';
import { formatIssues } from '../domain/issues.js';
import { timeframeMs, type Timeframe } from '../domain/index.js';
import {
  INDICATOR_PARAMS,
  INDICATORS,
  vwapSessionStart,
  type Bar,
  type IndicatorDefinition,
  type IndicatorName,
} from '../indicators/indicators.js';
import type { CandleView, Freshness, MarketQueryService } from './market-query.js';

export interface IndicatorRequestItem {
  readonly name: IndicatorName;
  readonly params?: Readonly<Record<string, unknown>>;
}

export interface IndicatorsRequest {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  readonly indicators: readonly IndicatorRequestItem[];
  /** values returned per indicator, newest last */
  readonly limit?: number;
  /** exclusive end (open time) of the candles used; the newest when omitted */
  readonly until?: number;
}

export interface IndicatorPoint {
  /** open time of the candle the value belongs to */
  readonly ts: number;
  /** false while that candle is still forming: the value can still change */
  readonly closed: boolean;
  /** one entry per output column; null during warm-up */
  readonly values: Readonly<Record<string, number | null>>;
}

export interface IndicatorResult {
  readonly name: IndicatorName;
  readonly title: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly outputs: readonly string[];
  readonly convention: string;
  /** bars before the first value (TA-Lib's lookback) */
  readonly lookback: number;
  /** false when less history was available than the indicator needs to be independent of where it starts */
  readonly settled: boolean;
  readonly points: readonly IndicatorPoint[];
  /** the newest point with every output computed, null when none */
  readonly latest: IndicatorPoint | null;
}

export interface IndicatorsAnswer {
  readonly results: readonly IndicatorResult[];
  /** candles read before the first returned point (warm-up) */
  readonly warmupBars: number;
  /** candle buckets missing in the candles read; indicators treat present candles as consecutive */
  readonly missingBars: number;
  readonly freshness: Freshness;
}

export const INDICATOR_LIMITS = { defaultLimit: 50, maxLimit: 500, maxIndicators: 10 } as const;

/** Computes indicators on the server from stored candles: agents never ship data in. */
export class IndicatorService {
  constructor(private readonly query: MarketQueryService) {}

  async compute(req: IndicatorsRequest): Promise<IndicatorsAnswer> {
    if (req.indicators.length === 0) throw new ValidationError('indicators: ask for at least one indicator');
    if (req.indicators.length > INDICATOR_LIMITS.maxIndicators) {
      throw new ValidationError(`indicators: at most ${INDICATOR_LIMITS.maxIndicators} per call, got ${req.indicators.length}`);
    }
    const limit = Math.min(Math.max(1, Math.floor(req.limit ?? INDICATOR_LIMITS.defaultLimit)), INDICATOR_LIMITS.maxLimit);
    const specs = req.indicators.map((item, i) => {
      const def = INDICATORS[item.name] as IndicatorDefinition | undefined;
      if (!def) throw new ValidationError(`indicators[${i}].name: unknown indicator '${item.name}'; known: ${Object.keys(INDICATORS).join(', ')}`);
      const parsed = INDICATOR_PARAMS[item.name].safeParse(item.params ?? {});
      if (!parsed.success) throw new ValidationError(`indicators[${i}] (${item.name}) params: ${formatIssues(parsed.error.issues)}`);
      return { def, params: parsed.data as never };
    });
    const size = timeframeMs(req.timeframe);
    const needVwapSession = specs.some((s) => s.def.name === 'vwap');
    // history each indicator needs before the first returned value
    const need = Math.max(...specs.map((s) => s.def.lookback(s.params) + s.def.settle(s.params)));
    // VWAP needs its session from the start: at most one session of bars more (a month at 1m is capped)
    const vwapExtra = needVwapSession ? Math.ceil(this.longestSession(specs) / size) : 0;
    const { candles, freshness } = await this.query.getCandleHistory({
      exchange: req.exchange,
      symbol: req.symbol,
      timeframe: req.timeframe,
      ...(req.until !== undefined && { until: req.until }),
      count: limit + Math.max(need, vwapExtra),
    });
    const bars: Bar[] = candles.map((c) => ({ ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume }));
    const first = Math.max(0, candles.length - limit);
    const results = specs.map(({ def, params }): IndicatorResult => {
      const columns = def.compute(bars, params);
      const points: IndicatorPoint[] = [];
      for (let i = first; i < candles.length; i++) {
        const values: Record<string, number | null> = {};
        for (const out of def.outputs) values[out] = columns[out]![i] ?? null;
        points.push({ ts: candles[i]!.ts, closed: candles[i]!.closed, values });
      }
      const latest = [...points].reverse().find((p) => Object.values(p.values).every((v) => v !== null)) ?? null;
      return {
        name: def.name,
        title: def.title,
        params,
        outputs: def.outputs,
        convention: def.convention(params),
        lookback: def.lookback(params),
        settled: this.settled(def, params, candles, first),
        points,
        latest,
      };
    });
    return { results, warmupBars: first, missingBars: missingBuckets(candles, size), freshness };
  }

  private settled(def: IndicatorDefinition, params: never, candles: readonly CandleView[], first: number): boolean {
    if (def.name === 'vwap') {
      const start = candles[first];
      return start === undefined || (candles[0]?.ts ?? Infinity) <= vwapSessionStart(start.ts, (params as { anchor: 'day' | 'week' | 'month' }).anchor);
    }
    return first >= def.lookback(params) + def.settle(params);
  }

  private longestSession(specs: readonly { def: IndicatorDefinition; params: never }[]): number {
    const days = { day: 1, week: 7, month: 31 } as const;
    let ms = 0;
    for (const s of specs) {
      if (s.def.name === 'vwap') ms = Math.max(ms, days[(s.params as { anchor: keyof typeof days }).anchor] * 86_400_000);
    }
    return ms;
  }
}

function missingBuckets(candles: readonly CandleView[], size: number): number {
  if (candles.length < 2) return 0;
  // rollups of weeks/months are not uniform in ms; only count for fixed-size buckets
  const span = candles.at(-1)!.ts - candles[0]!.ts;
  return Math.max(0, Math.round(span / size) + 1 - candles.length);
}
