import { ValidationError } from '../domain/errors.js';
import { timeframeMs, type Timeframe } from '../domain/index.js';
import {
  CANDLE_PATTERN_NAMES,
  CANDLE_PATTERNS,
  patternDirection,
  type CandlePatternDefinition,
  type CandlePatternName,
  type PatternDirection,
} from '../indicators/candle-patterns.js';
import type { CandleView, Freshness, MarketQueryService } from './market-query.js';
import type { Bar } from '../indicators/indicators.js';

export interface PatternRequest {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  /** newest candles searched (the signal candle of a match is among them) */
  readonly lookback: number;
  /** all patterns when omitted */
  readonly patterns?: readonly CandlePatternName[];
  /** most matches returned, newest first */
  readonly limit: number;
  /** exclusive end (open time) of the candles used; the newest when omitted */
  readonly until?: number;
}

export interface PatternCandle extends Bar {
  readonly closed: boolean;
}

export interface PatternMatch {
  /** open time of the signal (last) candle */
  readonly ts: number;
  readonly pattern: CandlePatternName;
  readonly direction: PatternDirection;
  /** TA-Lib's output: +-100, or +-80 for the weaker engulfing/harami */
  readonly signal: number;
  /** false while the signal candle is forming: the match can still disappear */
  readonly closed: boolean;
  /** the candles the rule compares, oldest first: `context` earlier ones, then the pattern's own */
  readonly candles: readonly PatternCandle[];
  readonly context: number;
}

export interface CandleRun {
  /** open time of the first missing bucket */
  readonly from: number;
  /** open time of the next candle present */
  readonly to: number;
  readonly buckets: number;
}

export interface PatternAnswer {
  readonly patterns: readonly CandlePatternDefinition[];
  /** newest first */
  readonly matches: readonly PatternMatch[];
  /** matches beyond `limit` */
  readonly omitted: number;
  /** candles searched, and their range in open times */
  readonly window: { readonly candles: number; readonly from: number | null; readonly to: number | null };
  /** candles read before the window so every pattern can be evaluated on its first candle */
  readonly warmupBars: number;
  /** patterns that could not be evaluated on the oldest candles of the window (too little history), and from when they were */
  readonly unevaluated: readonly { readonly pattern: CandlePatternName; readonly from: number | null }[];
  /** missing buckets between the candles read, oldest first (at most MAX_GAPS_LISTED) */
  readonly gaps: readonly CandleRun[];
  readonly missingBars: number;
  /** matches left out because their candles are not consecutive (a missing bucket between them) */
  readonly acrossGaps: number;
  readonly freshness: Freshness;
}

export const PATTERN_LIMITS = { defaultLookback: 100, maxLookback: 1000, defaultLimit: 25, maxLimit: 100 } as const;
const MAX_GAPS_LISTED = 20;

/** Finds candlestick patterns in one market's stored candles. */
export class PatternDetector {
  constructor(private readonly query: MarketQueryService) {}

  async detect(req: PatternRequest): Promise<PatternAnswer> {
    const names = req.patterns?.length ? [...new Set(req.patterns)] : CANDLE_PATTERN_NAMES;
    const defs = names.map((n, i) => {
      const def = CANDLE_PATTERNS[n] as CandlePatternDefinition | undefined;
      if (!def) throw new ValidationError(`patterns[${i}]: unknown pattern '${String(n)}'; known: ${CANDLE_PATTERN_NAMES.join(', ')}`);
      return def;
    });
    const lookback = Math.min(Math.max(1, Math.floor(req.lookback)), PATTERN_LIMITS.maxLookback);
    const warm = Math.max(...defs.map((d) => d.lookback));
    const { candles, freshness } = await this.query.getCandleHistory({
      exchange: req.exchange,
      symbol: req.symbol,
      timeframe: req.timeframe,
      ...(req.until !== undefined && { until: req.until }),
      count: lookback + warm,
    });
    const size = timeframeMs(req.timeframe);
    const first = Math.max(0, candles.length - lookback);
    // the run of consecutive buckets each candle ends: a pattern spans a gap when its first candle is before the run
    const runStart: number[] = [];
    candles.forEach((c, i) => runStart.push(i > 0 && c.ts - candles[i - 1]!.ts === size ? runStart[i - 1]! : i));
    const found: PatternMatch[] = [];
    let acrossGaps = 0;
    const unevaluated: { pattern: CandlePatternName; from: number | null }[] = [];
    for (const def of defs) {
      if (first < def.lookback) unevaluated.push({ pattern: def.name, from: candles[def.lookback]?.ts ?? null });
      const out = def.compute(candles);
      const span = def.candles + def.context;
      for (let i = first; i < candles.length; i++) {
        const signal = out[i];
        if (!signal) continue;
        if (runStart[i]! > i - span + 1) {
          acrossGaps++;
          continue;
        }
        found.push({
          ts: candles[i]!.ts,
          pattern: def.name,
          direction: patternDirection(def.name, signal),
          signal,
          closed: candles[i]!.closed,
          candles: candles.slice(i - span + 1, i + 1).map(candleOut),
          context: def.context,
        });
      }
    }
    found.sort((a, b) => b.ts - a.ts || names.indexOf(a.pattern) - names.indexOf(b.pattern));
    const gaps = gapRuns(candles, size);
    const window = candles.slice(first);
    return {
      patterns: defs,
      matches: found.slice(0, req.limit),
      omitted: Math.max(0, found.length - req.limit),
      window: { candles: window.length, from: window[0]?.ts ?? null, to: window.at(-1)?.ts ?? null },
      warmupBars: first,
      unevaluated,
      gaps: gaps.slice(0, MAX_GAPS_LISTED),
      missingBars: gaps.reduce((n, g) => n + g.buckets, 0),
      acrossGaps,
      freshness,
    };
  }
}

function candleOut(c: CandleView): PatternCandle {
  return { ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume, closed: c.closed };
}

function gapRuns(candles: readonly CandleView[], size: number): CandleRun[] {
  const runs: CandleRun[] = [];
  for (let i = 1; i < candles.length; i++) {
    const prev = candles[i - 1]!.ts;
    const cur = candles[i]!.ts;
    if (cur - prev > size) runs.push({ from: prev + size, to: cur, buckets: Math.round((cur - prev) / size) - 1 });
  }
  return runs;
}
