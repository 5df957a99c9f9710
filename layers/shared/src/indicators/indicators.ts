/**
 * Technical indicators over candles, to TA-Lib's conventions (seeding, smoothing, first output bar),
 * checked against golden vectors from TA-Lib's C library (tests/fixtures/talib).
 *
 * Libraries measured against those vectors (max difference over all bars, 400 bars):
 * - trading-signals 8.3: SMA 2e-13, RSI 3e-14, BBANDS 2e-11, STOCH 1e-13 - used for those four;
 *   EMA 0.52 (seeded from the first price), MACD 0.23, ATR 0.05, ADX 1.2 (even on the last bars).
 * - technicalindicators 3.1: RSI 5e-3 (rounded to 2 decimals), ADX 0.53, OBV offset 25 (starts at 0).
 * - indicatorts 2.2: EMA 0.52, RSI 0.52, ATR 0.26, OBV offset 25.
 * EMA, MACD, ATR, ADX (+DI/-DI), OBV and VWAP (not in TA-Lib) are therefore written here.
 */
import { BollingerBands, RSI, SMA, StochasticOscillator } from 'trading-signals';
import { z } from 'zod';

/** One candle as the indicators see it. */
export interface Bar {
  readonly ts: number;
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
  readonly volume: number;
}

/** Output columns of one indicator, one value per input bar; null before the first output bar. */
export type IndicatorColumns = Readonly<Record<string, readonly (number | null)[]>>;

const Period = (def: number) => z.number().int().min(1).max(500).default(def);

export const INDICATOR_PARAMS = {
  sma: z.object({ period: Period(20).describe('Bars averaged.') }),
  ema: z.object({ period: Period(20).describe('Bars; smoothing factor 2/(period+1).') }),
  rsi: z.object({ period: Period(14).describe("Bars of Wilder's smoothing.") }),
  macd: z
    .object({
      fast: Period(12).describe('Fast EMA period.'),
      slow: Period(26).describe('Slow EMA period.'),
      signal: Period(9).describe('Signal EMA period (over the MACD line).'),
    })
    .refine((p) => p.fast < p.slow, 'fast must be shorter than slow'),
  bbands: z.object({
    period: Period(20).describe('Bars of the middle SMA and the standard deviation.'),
    stdDev: z.number().positive().max(10).default(2).describe('Band width in population standard deviations.'),
  }),
  atr: z.object({ period: Period(14).describe("Bars of Wilder's smoothing of the true range.") }),
  adx: z.object({ period: Period(14).describe("Bars of Wilder's smoothing (DM, TR and DX).") }),
  stoch: z.object({
    kPeriod: Period(14).describe('Bars of the highest-high/lowest-low window (fast %K).'),
    kSmoothing: Period(3).describe('SMA bars turning fast %K into slow %K (the k output).'),
    dPeriod: Period(3).describe('SMA bars of slow %K giving %D.'),
  }),
  obv: z.object({}),
  vwap: z.object({
    anchor: z
      .enum(['day', 'week', 'month'])
      .default('day')
      .describe('Session the VWAP resets at: 00:00 UTC each day, Monday 00:00 UTC, or the 1st of the month 00:00 UTC.'),
  }),
} as const;

export type IndicatorName = keyof typeof INDICATOR_PARAMS;
export const INDICATOR_NAMES = Object.keys(INDICATOR_PARAMS) as IndicatorName[];
export type IndicatorParams<N extends IndicatorName> = z.output<(typeof INDICATOR_PARAMS)[N]>;

export interface IndicatorDefinition<N extends IndicatorName = IndicatorName> {
  readonly name: N;
  readonly title: string;
  /** output column names */
  readonly outputs: readonly string[];
  /** bars before the first output (TA-Lib's lookback) */
  lookback(params: IndicatorParams<N>): number;
  /**
   * Extra bars to read before the first wanted value so a recursive indicator (EMA, Wilder) no longer
   * depends on where the history starts; 0 for those with finite memory.
   */
  settle(params: IndicatorParams<N>): number;
  /** seeding, smoothing and warm-up, stated for the caller */
  convention(params: IndicatorParams<N>): string;
  compute(bars: readonly Bar[], params: IndicatorParams<N>): IndicatorColumns;
}

const nulls = (n: number): (number | null)[] => new Array<number | null>(n).fill(null);

/** Runs a trading-signals streaming indicator over a series; null until it is stable. */
function streamed<R>(n: number, update: (i: number) => R | null | undefined): (R | null)[] {
  const out: (R | null)[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = update(i) ?? null;
  return out;
}

/** TA-Lib's EMA: seeded with the SMA of the first `period` values; first output at index period-1+from. */
export function emaSeries(values: readonly (number | null)[], period: number, from = 0): (number | null)[] {
  const out = nulls(values.length);
  const seedEnd = from + period - 1;
  if (seedEnd >= values.length) return out;
  let sum = 0;
  for (let i = from; i <= seedEnd; i++) sum += values[i]!;
  const k = 2 / (period + 1);
  let prev = sum / period;
  out[seedEnd] = prev;
  for (let i = seedEnd + 1; i < values.length; i++) {
    prev = (values[i]! - prev) * k + prev;
    out[i] = prev;
  }
  return out;
}

function trueRange(bars: readonly Bar[], i: number): number {
  const { high, low } = bars[i]!;
  const prevClose = bars[i - 1]!.close;
  return Math.max(high - low, Math.abs(high - prevClose), Math.abs(low - prevClose));
}

/** TA-Lib's TA_IS_ZERO */
const isZero = (v: number): boolean => v > -1e-14 && v < 1e-14;

/** +DI, -DI and ADX exactly as TA-Lib's TA_PLUS_DI / TA_MINUS_DI / TA_ADX compute them. */
function directional(bars: readonly Bar[], period: number): { plusDI: (number | null)[]; minusDI: (number | null)[]; adx: (number | null)[] } {
  const n = bars.length;
  const plusDI = nulls(n);
  const minusDI = nulls(n);
  const adx = nulls(n);
  if (n <= period) return { plusDI, minusDI, adx };
  let plusDM = 0;
  let minusDM = 0;
  let tr = 0;
  let sumDX = 0;
  let prevADX = 0;
  for (let i = 1; i < n; i++) {
    const diffP = bars[i]!.high - bars[i - 1]!.high;
    const diffM = bars[i - 1]!.low - bars[i]!.low;
    const dmP = diffP > 0 && diffP > diffM ? diffP : 0;
    const dmM = diffM > 0 && diffP < diffM ? diffM : 0;
    const range = trueRange(bars, i);
    if (i < period) {
      // the first period-1 moves are summed, not smoothed
      plusDM += dmP;
      minusDM += dmM;
      tr += range;
      continue;
    }
    plusDM = plusDM - plusDM / period + dmP;
    minusDM = minusDM - minusDM / period + dmM;
    tr = tr - tr / period + range;
    let dx = 0;
    let hasDx = false;
    if (!isZero(tr)) {
      const p = (100 * plusDM) / tr;
      const m = (100 * minusDM) / tr;
      plusDI[i] = p;
      minusDI[i] = m;
      const sum = p + m;
      if (!isZero(sum)) {
        dx = (100 * Math.abs(m - p)) / sum;
        hasDx = true;
      }
    } else {
      plusDI[i] = 0;
      minusDI[i] = 0;
    }
    if (i < 2 * period - 1) {
      if (hasDx) sumDX += dx;
    } else if (i === 2 * period - 1) {
      if (hasDx) sumDX += dx;
      prevADX = sumDX / period;
      adx[i] = prevADX;
    } else {
      // TA-Lib keeps the previous DX when TR or DI+ + DI- is zero
      if (hasDx) prevADX = (prevADX * (period - 1) + dx) / period;
      adx[i] = prevADX;
    }
  }
  return { plusDI, minusDI, adx };
}

const MS_DAY = 86_400_000;

/** Start of the VWAP session holding `ts`. */
function sessionStart(ts: number, anchor: 'day' | 'week' | 'month'): number {
  if (anchor === 'day') return Math.floor(ts / MS_DAY) * MS_DAY;
  if (anchor === 'week') {
    const day = Math.floor(ts / MS_DAY);
    // 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7
    return (day - ((day + 3) % 7)) * MS_DAY;
  }
  const d = new Date(ts);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

const closes = (bars: readonly Bar[]) => bars.map((b) => b.close);

function define<N extends IndicatorName>(def: IndicatorDefinition<N>): IndicatorDefinition<N> {
  return def;
}

/** Bars an EMA-like recursion needs before its weight on the seed falls under ~1e-10 of the result. */
const settleBars = (period: number, alpha: number): number => Math.min(2_000, Math.ceil(Math.log(1e-10) / Math.log(1 - alpha)) - period);

export const INDICATORS: { readonly [N in IndicatorName]: IndicatorDefinition<N> } = {
  sma: define({
    name: 'sma',
    title: 'Simple moving average of closes',
    outputs: ['value'],
    lookback: (p) => p.period - 1,
    settle: () => 0,
    convention: (p) => `Mean of the last ${p.period} closes; first value on bar ${p.period}.`,
    compute(bars, p) {
      const sma = new SMA(p.period);
      return { value: streamed(bars.length, (i) => sma.update(bars[i]!.close, false)) };
    },
  }),
  ema: define({
    name: 'ema',
    title: 'Exponential moving average of closes',
    outputs: ['value'],
    lookback: (p) => p.period - 1,
    settle: (p) => settleBars(p.period, 2 / (p.period + 1)),
    convention: (p) =>
      `TA-Lib EMA: factor 2/(period+1) = ${(2 / (p.period + 1)).toFixed(6)}, seeded with the SMA of the first ${p.period} closes (not the first price); ` +
      'recursive, so the history read before the returned values is stated in warmupBars.',
    compute: (bars, p) => ({ value: emaSeries(closes(bars), p.period) }),
  }),
  rsi: define({
    name: 'rsi',
    title: 'Relative strength index',
    outputs: ['value'],
    lookback: (p) => p.period,
    settle: (p) => settleBars(p.period, 1 / p.period),
    convention: (p) =>
      `Wilder's RSI (TA-Lib): average gain and loss seeded with the simple mean of the first ${p.period} changes, then smoothed with 1/${p.period}; ` +
      '0..100, not rounded; first value after period+1 closes.',
    compute(bars, p) {
      const rsi = new RSI(p.period);
      return { value: streamed(bars.length, (i) => rsi.update(bars[i]!.close, false)) };
    },
  }),
  macd: define({
    name: 'macd',
    title: 'Moving average convergence/divergence',
    outputs: ['macd', 'signal', 'histogram'],
    lookback: (p) => p.slow - 1 + p.signal - 1,
    settle: (p) => settleBars(p.fast, 2 / (p.slow + 1)),
    convention: (p) =>
      `TA-Lib MACD(${p.fast},${p.slow},${p.signal}): both EMAs start on bar ${p.slow} (the fast one seeded with the SMA of the ${p.fast} closes ending there, ` +
      'the slow one with the SMA of the first slow closes); signal = EMA of the MACD line seeded the same way; histogram = macd - signal.',
    compute(bars, p) {
      const c = closes(bars);
      const start = p.slow - 1;
      const fast = emaSeries(c, p.fast, start - (p.fast - 1));
      const slow = emaSeries(c, p.slow);
      const line = c.map((_, i) => (i >= start ? fast[i]! - slow[i]! : null));
      const signal = emaSeries(line, p.signal, start);
      const first = start + p.signal - 1;
      return {
        macd: line.map((v, i) => (i >= first ? v : null)),
        signal,
        histogram: line.map((v, i) => (i >= first ? v! - signal[i]! : null)),
      };
    },
  }),
  bbands: define({
    name: 'bbands',
    title: 'Bollinger Bands',
    outputs: ['upper', 'middle', 'lower'],
    lookback: (p) => p.period - 1,
    settle: () => 0,
    convention: (p) => `Middle = SMA(${p.period}) of closes; upper/lower = middle ± ${p.stdDev} × population standard deviation of the same closes.`,
    compute(bars, p) {
      const bb = new BollingerBands(p.period, p.stdDev);
      const out = streamed(bars.length, (i) => bb.update(bars[i]!.close, false));
      return {
        upper: out.map((r) => r?.upper ?? null),
        middle: out.map((r) => r?.middle ?? null),
        lower: out.map((r) => r?.lower ?? null),
      };
    },
  }),
  atr: define({
    name: 'atr',
    title: 'Average true range',
    outputs: ['value'],
    lookback: (p) => p.period,
    settle: (p) => settleBars(p.period, 1 / p.period),
    convention: (p) =>
      `Wilder's ATR (TA-Lib): true range from the second bar on; seeded with the mean of the first ${p.period} true ranges, then ` +
      `atr = (prev × ${p.period - 1} + tr) / ${p.period}.`,
    compute(bars, p) {
      const out = nulls(bars.length);
      if (bars.length <= p.period) return { value: out };
      let sum = 0;
      for (let i = 1; i <= p.period; i++) sum += trueRange(bars, i);
      let atr = sum / p.period;
      out[p.period] = atr;
      for (let i = p.period + 1; i < bars.length; i++) {
        atr = (atr * (p.period - 1) + trueRange(bars, i)) / p.period;
        out[i] = atr;
      }
      return { value: out };
    },
  }),
  adx: define({
    name: 'adx',
    title: 'Average directional index, with +DI and -DI',
    outputs: ['adx', 'plusDI', 'minusDI'],
    lookback: (p) => 2 * p.period - 1,
    settle: (p) => settleBars(p.period, 1 / p.period),
    convention: (p) =>
      `Wilder's ADX (TA-Lib): +DM/-DM and TR summed over the first ${p.period - 1} moves, then Wilder-smoothed; +DI/-DI from bar ${p.period + 1}; ` +
      `ADX seeded with the mean of the first ${p.period} DX values, first value on bar ${2 * p.period}.`,
    compute(bars, p) {
      const d = directional(bars, p.period);
      return { adx: d.adx, plusDI: d.plusDI, minusDI: d.minusDI };
    },
  }),
  stoch: define({
    name: 'stoch',
    title: 'Stochastic oscillator (slow)',
    outputs: ['k', 'd'],
    lookback: (p) => p.kPeriod - 1 + p.kSmoothing - 1 + p.dPeriod - 1,
    settle: () => 0,
    convention: (p) =>
      `TA-Lib STOCH(${p.kPeriod},${p.kSmoothing},SMA,${p.dPeriod},SMA): fast %K over ${p.kPeriod} bars, k = SMA(${p.kSmoothing}) of fast %K, ` +
      `d = SMA(${p.dPeriod}) of k; 0..100.`,
    compute(bars, p) {
      const st = new StochasticOscillator({ kPeriod: p.kPeriod, kSlowingPeriod: p.kSmoothing, dPeriod: p.dPeriod });
      const out = streamed(bars.length, (i) => st.update(bars[i]!, false));
      return { k: out.map((r) => r?.stochK ?? null), d: out.map((r) => r?.stochD ?? null) };
    },
  }),
  obv: define({
    name: 'obv',
    title: 'On-balance volume',
    outputs: ['value'],
    lookback: () => 0,
    settle: () => 0,
    convention: () =>
      'TA-Lib OBV: starts at the first bar\'s volume, then adds the volume on an up close and subtracts it on a down close; a cumulative sum, ' +
      'so only changes between bars are comparable across windows.',
    compute(bars) {
      const out = nulls(bars.length);
      let obv = 0;
      for (let i = 0; i < bars.length; i++) {
        const b = bars[i]!;
        if (i === 0) obv = b.volume;
        else if (b.close > bars[i - 1]!.close) obv += b.volume;
        else if (b.close < bars[i - 1]!.close) obv -= b.volume;
        out[i] = obv;
      }
      return { value: out };
    },
  }),
  vwap: define({
    name: 'vwap',
    title: 'Volume-weighted average price, session anchored',
    outputs: ['value'],
    lookback: () => 0,
    settle: () => 0,
    convention: (p) =>
      `Typical price (high+low+close)/3 weighted by volume, cumulative from the session start (${
        { day: '00:00 UTC each day', week: 'Monday 00:00 UTC', month: 'the 1st of the month 00:00 UTC' }[p.anchor]
      }); null until the session has volume. Needs the session's bars from its start: they are read.`,
    compute(bars, p) {
      const out = nulls(bars.length);
      let session = Number.NaN;
      let pv = 0;
      let v = 0;
      for (let i = 0; i < bars.length; i++) {
        const b = bars[i]!;
        const s = sessionStart(b.ts, p.anchor);
        if (s !== session) {
          session = s;
          pv = 0;
          v = 0;
        }
        pv += ((b.high + b.low + b.close) / 3) * b.volume;
        v += b.volume;
        out[i] = v > 0 ? pv / v : null;
      }
      return { value: out };
    },
  }),
};

/** Where the session holding `ts` starts, for VWAP; exported for the query layer's history reads. */
export { sessionStart as vwapSessionStart };
