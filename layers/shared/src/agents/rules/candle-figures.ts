/**
 * Figures the rules agents compute from candles they read through get_candles. Pure and
 * deterministic: the same candles always give the same figures.
 */
import type { Bar } from '../../indicators/indicators.js';

/** A candle as get_candles returns it (the fields the rules use). */
export interface RuleCandle extends Bar {
  readonly closed: boolean;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Sample standard deviation (n - 1); 0 for fewer than two values. */
export function stdev(values: readonly number[]): number {
  if (values.length < 2) return 0;
  const m = mean(values);
  return Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / (values.length - 1));
}

/** Close-to-close simple returns. */
export function returns(closes: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < closes.length; i++) out.push(closes[i - 1]! === 0 ? 0 : closes[i]! / closes[i - 1]! - 1);
  return out;
}

/** True ranges of candles 1..n-1 (each against the previous close). */
export function trueRanges(candles: readonly RuleCandle[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < candles.length; i++) {
    const c = candles[i]!;
    const prev = candles[i - 1]!.close;
    out.push(Math.max(c.high - c.low, Math.abs(c.high - prev), Math.abs(c.low - prev)));
  }
  return out;
}

/** Simple average true range over the last `period` true ranges; null without enough candles. */
export function simpleAtr(candles: readonly RuleCandle[], period: number): number | null {
  const tr = trueRanges(candles);
  if (tr.length < period) return null;
  return mean(tr.slice(tr.length - period));
}

/** Pearson correlation; null when fewer than 3 pairs or a side does not vary. */
export function correlation(a: readonly number[], b: readonly number[]): number | null {
  const n = Math.min(a.length, b.length);
  if (n < 3) return null;
  const x = a.slice(a.length - n);
  const y = b.slice(b.length - n);
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  if (sxx === 0 || syy === 0) return null;
  return sxy / Math.sqrt(sxx * syy);
}

/** Returns of two candle series over the open times both hold (each return between consecutive common times). */
export function alignedReturns(a: readonly RuleCandle[], b: readonly RuleCandle[]): { a: number[]; b: number[] } {
  const byTs = new Map(b.map((c) => [c.ts, c.close]));
  const common = a.filter((c) => byTs.has(c.ts));
  return { a: returns(common.map((c) => c.close)), b: returns(common.map((c) => byTs.get(c.ts)!)) };
}

/** Rounds for rationales and figures: 4 significant digits past the point where it matters. */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** What the market monitor reads from one market's recent candles. */
export interface MarketFigures {
  /** closed candles used */
  readonly bars: number;
  readonly lastClose: number;
  /** last closed candle's return, % */
  readonly lastMovePct: number;
  /** that return in standard deviations of the returns before it */
  readonly moveZ: number | null;
  /** last closed candle's volume / mean volume of the candles before it */
  readonly volumeRatio: number | null;
  /** ATR over the last `shortPeriod` candles / ATR over the last `longPeriod` */
  readonly atrRatio: number | null;
  readonly atrShort: number | null;
  readonly atrLong: number | null;
}

/**
 * Anomaly and regime figures of one market from its closed candles (oldest first): the last
 * candle's move against the spread of the earlier returns, its volume against their mean, and
 * short against long ATR.
 */
export function marketFigures(candles: readonly RuleCandle[], periods: { short: number; long: number } = { short: 14, long: 60 }): MarketFigures | null {
  const closed = candles.filter((c) => c.closed);
  if (closed.length < 3) return null;
  const closes = closed.map((c) => c.close);
  const r = returns(closes);
  const last = r[r.length - 1]!;
  const before = r.slice(0, -1);
  const sd = stdev(before);
  const volumesBefore = closed.slice(0, -1).map((c) => c.volume);
  const meanVolume = mean(volumesBefore);
  const atrShort = simpleAtr(closed, periods.short);
  const atrLong = simpleAtr(closed, Math.min(periods.long, closed.length - 1));
  return {
    bars: closed.length,
    lastClose: closes[closes.length - 1]!,
    lastMovePct: last * 100,
    moveZ: before.length >= 10 && sd > 0 ? (last - mean(before)) / sd : null,
    volumeRatio: volumesBefore.length >= 10 && meanVolume > 0 ? closed[closed.length - 1]!.volume / meanVolume : null,
    atrShort,
    atrLong,
    atrRatio: atrShort !== null && atrLong !== null && atrLong > 0 && closed.length - 1 >= periods.long ? atrShort / atrLong : null,
  };
}
