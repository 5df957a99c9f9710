/**
 * Overlays a candle chart can carry: a fixed menu of the usual lines, each computed with the
 * platform's indicator engine (TA-Lib conventions) so a chart and compute_indicators agree.
 */
import { timeframeMs, type Timeframe } from '../domain/index.js';
import { INDICATORS, vwapSessionStart, type Bar } from '../indicators/indicators.js';

/** Overlay names the chart tool accepts. A menu rather than free parameters: charts want the usual lines. */
export const CHART_OVERLAYS = ['sma20', 'sma50', 'sma200', 'ema9', 'ema21', 'ema50', 'ema200', 'bbands', 'vwap'] as const;
export type ChartOverlayName = (typeof CHART_OVERLAYS)[number];

/** One polyline of an overlay, one value per candle (null where it has none). */
export interface OverlayLine {
  readonly values: readonly (number | null)[];
  readonly dashed?: boolean;
  /** true where the line restarts (a new VWAP session): not joined to the point before */
  readonly breakBefore?: readonly boolean[];
}

/** An overlay as the chart draws it: its lines, and for bands the area between two of them. */
export interface ChartOverlay {
  readonly name: ChartOverlayName;
  readonly label: string;
  readonly color: string;
  readonly lines: readonly OverlayLine[];
  /** indexes into `lines` of the band's upper and lower edges, filled between */
  readonly band?: { readonly upper: number; readonly lower: number };
}

type MovingAverage = { kind: 'sma' | 'ema'; period: number };
const AVERAGES: Partial<Record<ChartOverlayName, MovingAverage>> = {
  sma20: { kind: 'sma', period: 20 },
  sma50: { kind: 'sma', period: 50 },
  sma200: { kind: 'sma', period: 200 },
  ema9: { kind: 'ema', period: 9 },
  ema21: { kind: 'ema', period: 21 },
  ema50: { kind: 'ema', period: 50 },
  ema200: { kind: 'ema', period: 200 },
};

const BBANDS = { period: 20, stdDev: 2 } as const;

/** Fixed colours, distinct from the candle colours, so a chart reads the same every time. */
export const OVERLAY_COLORS: Readonly<Record<ChartOverlayName, string>> = {
  sma20: '#1e88e5',
  sma50: '#fb8c00',
  sma200: '#6d4c41',
  ema9: '#00acc1',
  ema21: '#8e24aa',
  ema50: '#c0ca33',
  ema200: '#3949ab',
  bbands: '#7e57c2',
  vwap: '#ff4081',
};

/** One line of description per overlay, for the tool's input schema. */
export const OVERLAY_DESCRIPTIONS: Readonly<Record<ChartOverlayName, string>> = {
  sma20: 'SMA 20 of closes',
  sma50: 'SMA 50',
  sma200: 'SMA 200',
  ema9: 'EMA 9 (TA-Lib seeding)',
  ema21: 'EMA 21',
  ema50: 'EMA 50',
  ema200: 'EMA 200',
  bbands: 'Bollinger Bands 20, 2 standard deviations (filled band, dashed middle)',
  vwap: 'VWAP anchored at 00:00 UTC each day (restarts each session)',
};

/**
 * Candles to read before the first one drawn so each overlay is drawn from the left edge: an SMA
 * needs period-1; a recursive EMA is read 4 periods further, where the seed's weight is e^-8 of
 * the value (well under a pixel; compute_indicators reads to 1e-10 instead); VWAP needs its
 * session from 00:00 UTC.
 */
export function overlayWarmupBars(names: readonly ChartOverlayName[], timeframe: Timeframe): number {
  let bars = 0;
  for (const name of names) {
    const avg = AVERAGES[name];
    if (avg) bars = Math.max(bars, avg.period - 1 + (avg.kind === 'ema' ? 4 * avg.period : 0));
    else if (name === 'bbands') bars = Math.max(bars, BBANDS.period - 1);
    else if (name === 'vwap') bars = Math.max(bars, Math.ceil(86_400_000 / timeframeMs(timeframe)) - 1);
  }
  return bars;
}

/**
 * Overlays among `names` drawn from less history than they need, with `first` candles of `bars`
 * before the first one shown: their lines start late, or (EMA) lean on where history starts.
 */
export function shortOfHistory(bars: readonly Bar[], first: number, names: readonly ChartOverlayName[], timeframe: Timeframe): ChartOverlayName[] {
  return CHART_OVERLAYS.filter((name) => {
    if (!names.includes(name)) return false;
    if (name !== 'vwap') return first < overlayWarmupBars([name], timeframe);
    // VWAP needs its session from the start, which the store may hold even with few bars
    const shown = bars[first];
    return shown !== undefined && (bars[0]?.ts ?? Infinity) > vwapSessionStart(shown.ts, 'day');
  });
}

/** Computes the overlays over `bars` (oldest first, warm-up included); values align with `bars`. */
export function computeOverlays(bars: readonly Bar[], names: readonly ChartOverlayName[]): ChartOverlay[] {
  // de-duplicated, in the menu's order, so the same set always draws the same way
  const wanted = CHART_OVERLAYS.filter((n) => names.includes(n));
  return wanted.map((name): ChartOverlay => {
    const color = OVERLAY_COLORS[name];
    const avg = AVERAGES[name];
    if (avg) {
      const values = INDICATORS[avg.kind].compute(bars, { period: avg.period }).value!;
      return { name, label: `${avg.kind.toUpperCase()} ${avg.period}`, color, lines: [{ values }] };
    }
    if (name === 'bbands') {
      const c = INDICATORS.bbands.compute(bars, { ...BBANDS });
      return {
        name,
        label: `BB ${BBANDS.period}, ${BBANDS.stdDev}`,
        color,
        lines: [{ values: c.upper! }, { values: c.middle!, dashed: true }, { values: c.lower! }],
        band: { upper: 0, lower: 2 },
      };
    }
    const values = INDICATORS.vwap.compute(bars, { anchor: 'day' }).value!;
    const breakBefore = bars.map((b, i) => i > 0 && vwapSessionStart(b.ts, 'day') !== vwapSessionStart(bars[i - 1]!.ts, 'day'));
    return { name, label: 'VWAP (day)', color, lines: [{ values, breakBefore }] };
  });
}

/** The overlays restricted to the candles from index `first` on (dropping the warm-up). */
export function sliceOverlays(overlays: readonly ChartOverlay[], first: number): ChartOverlay[] {
  return overlays.map((o) => ({
    ...o,
    lines: o.lines.map((l) => ({
      ...l,
      values: l.values.slice(first),
      ...(l.breakBefore && { breakBefore: l.breakBefore.slice(first) }),
    })),
  }));
}
