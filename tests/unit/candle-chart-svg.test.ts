import { describe, expect, it } from 'vitest';
import {
  buildCandleChartSvg,
  CANDLE_COLORS,
  chooseTimeTicks,
  escapeXml,
  formatCompact,
  formatNumber,
  niceTicks,
  type CandleChartInput,
  type ChartCandle,
} from '../../layers/shared/src/charts/candle-chart-svg.js';
import { computeOverlays, overlayWarmupBars, sliceOverlays } from '../../layers/shared/src/charts/chart-overlays.js';
import { INDICATORS } from '../../layers/shared/src/indicators/indicators.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 0, 0); // a Monday

/** A seeded walk of hourly candles; `skip` buckets hold no candle. */
function walk(count: number, skip: ReadonlySet<number> = new Set(), start = 100): ChartCandle[] {
  let seed = 11;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  const out: ChartCandle[] = [];
  let price = start;
  for (let i = 0; i < count; i++) {
    const open = price;
    const close = open * (1 + (rnd() - 0.5) * 0.04);
    price = close;
    if (skip.has(i)) continue;
    out.push({
      ts: T0 + i * HOUR,
      open,
      close,
      high: Math.max(open, close) * (1 + rnd() * 0.01),
      low: Math.min(open, close) * (1 - rnd() * 0.01),
      volume: 1 + rnd() * 50,
    });
  }
  return out;
}

function input(candles: ChartCandle[], overrides: Partial<CandleChartInput> = {}): CandleChartInput {
  return {
    exchange: 'binance',
    symbol: 'BTC/USDT',
    timeframe: '1h',
    window: { from: T0, to: T0 + 60 * HOUR },
    candles,
    width: 1000,
    height: 600,
    ...overrides,
  };
}

interface Wick { ts: number; x: number; y1: number; y2: number; stroke: string }
const wicks = (svg: string): Wick[] =>
  [...svg.matchAll(/<line data-ts="(\d+)" x1="([\d.]+)" y1="([\d.]+)" x2="[\d.]+" y2="([\d.]+)" stroke="([^"]+)"/g)].map((m) => ({
    ts: Number(m[1]),
    x: Number(m[2]),
    y1: Number(m[3]),
    y2: Number(m[4]),
    stroke: m[5]!,
  }));
const candleBodies = (svg: string) => [...(svg.split('<g class="candles"')[1]!.split('</g>')[0]!.matchAll(/<rect data-ts="(\d+)"[^>]* fill="([^"]+)"/g))];
const volumeBars = (svg: string) =>
  [...(svg.split('<g class="volume"')[1]!.split('</g>')[0]!.matchAll(/<rect data-ts="(\d+)" x="[\d.]+" y="([\d.]+)"/g))].map((m) => ({
    ts: Number(m[1]),
    y: Number(m[2]),
  }));
const polylines = (svg: string, overlay: string) =>
  [...svg.matchAll(new RegExp(`<polyline class="overlay" data-overlay="${overlay}" points="([^"]+)"`, 'g'))].map((m) =>
    m[1]!.split(' ').map((p) => p.split(',').map(Number) as [number, number]),
  );

describe('buildCandleChartSvg', () => {
  it('maps the highest high to the top of the price pane and the lowest low to its bottom', () => {
    const candles = walk(60);
    const { svg, layout } = buildCandleChartSvg(input(candles));
    const highest = candles.reduce((a, b) => (b.high > a.high ? b : a));
    const lowest = candles.reduce((a, b) => (b.low < a.low ? b : a));
    const ws = wicks(svg);
    expect(ws).toHaveLength(60);
    expect(ws.find((w) => w.ts === highest.ts)!.y1).toBeCloseTo(layout.pricePane.top, 1);
    expect(ws.find((w) => w.ts === lowest.ts)!.y2).toBeCloseTo(layout.pricePane.bottom, 1);
    expect(Math.min(...ws.map((w) => w.y1))).toBeCloseTo(layout.pricePane.top, 1);
    expect(layout.price).toEqual({ min: lowest.low, max: highest.high });
    // the volume pane sits below the price pane and the largest volume fills it
    expect(layout.volumePane.top).toBeGreaterThan(layout.pricePane.bottom);
    const loudest = candles.reduce((a, b) => (b.volume > a.volume ? b : a));
    const bars = volumeBars(svg);
    expect(bars.find((b) => b.ts === loudest.ts)!.y).toBeCloseTo(layout.volumePane.top, 1);
    expect(Math.min(...bars.map((b) => b.y))).toBeCloseTo(layout.volumePane.top, 1);
  });

  it('places candles on the bucket grid, left to right, coloured by direction', () => {
    const candles = walk(60);
    const { svg, layout } = buildCandleChartSvg(input(candles));
    const ws = wicks(svg);
    for (const [i, w] of ws.entries()) {
      expect(w.x).toBeCloseTo(layout.pricePane.left + (i + 0.5) * layout.slotWidth, 1);
      const c = candles[i]!;
      expect(w.stroke).toBe(c.close >= c.open ? CANDLE_COLORS.up : CANDLE_COLORS.down);
    }
    const fills = new Set(candleBodies(svg).map((m) => m[2]));
    expect(fills).toEqual(new Set([CANDLE_COLORS.up, CANDLE_COLORS.down]));
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="600"')).toBe(true);
  });

  it('leaves missing buckets empty: no candle, no volume bar, overlay lines broken across them', () => {
    const missing = new Set([30, 31, 32]);
    const all = walk(100, missing); // 40 candles of warm-up before the window
    const first = all.findIndex((c) => c.ts >= T0 + 40 * HOUR);
    const shown = all.slice(first);
    const overlays = sliceOverlays(computeOverlays(all, ['sma20']), first);
    const window = { from: T0 + 40 * HOUR, to: T0 + 100 * HOUR };
    // the gap is inside the warm-up here; put one inside the window too
    const gapInWindow = new Set([70, 71]);
    const all2 = walk(100, new Set([...missing, ...gapInWindow]));
    const first2 = all2.findIndex((c) => c.ts >= window.from);
    const { svg, layout } = buildCandleChartSvg(
      input(all2.slice(first2), { window, overlays: sliceOverlays(computeOverlays(all2, ['sma20']), first2) }),
    );
    expect(layout.missingBuckets).toBe(2);
    const ts = wicks(svg).map((w) => w.ts);
    expect(ts).toHaveLength(58);
    expect(ts).not.toContain(T0 + 70 * HOUR);
    expect(ts).not.toContain(T0 + 71 * HOUR);
    expect(volumeBars(svg).map((b) => b.ts)).toEqual(ts);
    // the candle after the gap keeps its own slot: time is not compacted
    const after = wicks(svg).find((w) => w.ts === T0 + 72 * HOUR)!;
    expect(after.x).toBeCloseTo(layout.pricePane.left + (72 - 40 + 0.5) * layout.slotWidth, 1);
    // the SMA is drawn in two pieces, none of its points inside the gap's slots
    const pieces = polylines(svg, 'sma20');
    expect(pieces).toHaveLength(2);
    const gapLeft = layout.pricePane.left + (70 - 40) * layout.slotWidth;
    const gapRight = layout.pricePane.left + (72 - 40) * layout.slotWidth;
    for (const piece of pieces) for (const [x] of piece) expect(x < gapLeft || x > gapRight).toBe(true);
    // and without the gap in the window the line is one piece
    const whole = buildCandleChartSvg(input(shown, { window, overlays }));
    expect(polylines(whole.svg, 'sma20')).toHaveLength(1);
  });

  it('draws the requested overlays from the indicator engine, including their range in the price scale', () => {
    const all = walk(120);
    const names = ['sma20', 'ema21', 'bbands', 'vwap'] as const;
    const first = 60;
    const overlays = sliceOverlays(computeOverlays(all, names), first);
    const window = { from: T0 + 60 * HOUR, to: T0 + 120 * HOUR };
    const { svg, layout } = buildCandleChartSvg(input(all.slice(first), { window, overlays }));
    for (const name of ['sma20', 'ema21', 'bbands', 'vwap']) expect(polylines(svg, name).length, name).toBeGreaterThan(0);
    expect(polylines(svg, 'bbands')).toHaveLength(3); // upper, middle, lower
    expect(svg).toContain('class="band" data-overlay="bbands"');
    for (const label of ['SMA 20', 'EMA 21', 'BB 20, 2', 'VWAP (day)']) expect(svg).toContain(`>${label}</text>`);
    // the SMA's last point sits where the engine's last SMA value maps
    const sma = INDICATORS.sma.compute(all, { period: 20 }).value;
    const lastY = polylines(svg, 'sma20')[0]!.at(-1)![1];
    const span = layout.pricePane.bottom - layout.pricePane.top;
    expect(lastY).toBeCloseTo(layout.pricePane.top + ((layout.price.max - sma!.at(-1)!) / (layout.price.max - layout.price.min)) * span, 1);
    // the upper band reaches above every high here, so it - not a candle - touches the top
    const upper = Math.max(...overlays.find((o) => o.name === 'bbands')!.lines[0]!.values.map((v) => v ?? -Infinity));
    const highest = Math.max(...all.slice(first).map((c) => c.high));
    expect(upper).toBeGreaterThan(highest);
    expect(layout.price.max).toBe(upper);
    expect(Math.min(...polylines(svg, 'bbands')[0]!.map(([, y]) => y))).toBeCloseTo(layout.pricePane.top, 1);
    // VWAP restarts each UTC day: 60 hours from 12:00 touch 3 days
    expect(polylines(svg, 'vwap')).toHaveLength(3);
  });

  it('asks for enough warm-up for each overlay', () => {
    expect(overlayWarmupBars([], '1h')).toBe(0);
    expect(overlayWarmupBars(['sma20'], '1h')).toBe(19);
    expect(overlayWarmupBars(['sma20', 'sma200'], '1h')).toBe(199);
    expect(overlayWarmupBars(['ema21'], '1h')).toBe(20 + 84);
    expect(overlayWarmupBars(['vwap'], '1h')).toBe(23);
    expect(overlayWarmupBars(['vwap'], '1d')).toBe(0);
    // de-duplicated and drawn in a fixed order whatever the request's order
    expect(computeOverlays(walk(30), ['vwap', 'sma20', 'vwap']).map((o) => o.name)).toEqual(['sma20', 'vwap']);
  });

  it('puts round price ticks inside the pane and UTC time labels on bucket boundaries', () => {
    const candles = walk(60, new Set(), 43_000);
    const { svg, layout } = buildCandleChartSvg(input(candles));
    expect(layout.priceTicks.length).toBeGreaterThanOrEqual(3);
    const step = layout.priceTicks[1]! - layout.priceTicks[0]!;
    expect([1, 2, 5, 10]).toContain(Number((step / 10 ** Math.floor(Math.log10(step))).toFixed(6)));
    for (const t of layout.priceTicks) {
      expect(t).toBeGreaterThanOrEqual(layout.price.min);
      expect(t).toBeLessThanOrEqual(layout.price.max);
      expect(svg).toContain(`>${formatNumber(t, 0)}</text>`);
    }
    for (const t of layout.timeTicks) expect((t.ts - T0) % HOUR).toBe(0);
    // 60 hours from Monday 00:00: midnights are dates, the rest hours
    const labels = layout.timeTicks.map((t) => t.label);
    expect(labels).toContain('Jan 6');
    expect(labels.filter((l) => /^\d\d:\d\d$/.test(l)).length).toBeGreaterThan(0);
    expect(svg).toContain('2026-01-05 00:00 – 2026-01-07 11:00 UTC');
  });

  it('chooses time ticks per scale: hours, days, Mondays, months', () => {
    const hours = chooseTimeTicks(T0, T0 + 24 * HOUR, HOUR, 1000);
    expect(hours.map((t) => t.label)).toEqual(['Jan 5', '02:00', '04:00', '06:00', '08:00', '10:00', '12:00', '14:00', '16:00', '18:00', '20:00', '22:00']);
    const days = chooseTimeTicks(T0, T0 + 10 * 24 * HOUR, 4 * HOUR, 1000);
    expect(days[0]).toEqual({ ts: T0, label: 'Jan 5' });
    const week = 7 * 24 * HOUR;
    const weeks = chooseTimeTicks(T0, T0 + 100 * week, week, 1000);
    expect(weeks.length).toBeGreaterThan(3);
    for (const t of weeks) expect((t.ts - T0) % week).toBe(0);
    expect(weeks.map((t) => t.label)).toContain('2027');
    const daily = chooseTimeTicks(T0, T0 + 60 * 24 * HOUR, 24 * HOUR, 400);
    // weekly labels fall on Mondays
    for (const t of daily) expect(new Date(t.ts).getUTCDay()).toBe(1);
  });

  it('is deterministic and escapes caller text', () => {
    const candles = walk(60);
    const a = buildCandleChartSvg(input(candles, { overlays: computeOverlays(candles, ['sma20', 'bbands']) }));
    const b = buildCandleChartSvg(input(candles, { overlays: computeOverlays(candles, ['bbands', 'sma20']) }));
    expect(a.svg).toBe(b.svg);
    const odd = buildCandleChartSvg(input(candles, { symbol: 'A<B>&"C' }));
    expect(odd.svg).toContain('A&lt;B&gt;&amp;&quot;C');
    expect(odd.svg).not.toContain('A<B');
    expect(escapeXml("'")).toBe('&apos;');
  });

  it('draws a flat market and an empty window without dividing by zero', () => {
    const flat = Array.from({ length: 10 }, (_, i) => ({ ts: T0 + i * HOUR, open: 5, high: 5, low: 5, close: 5, volume: 0 }));
    const { svg, layout } = buildCandleChartSvg(input(flat, { window: { from: T0, to: T0 + 10 * HOUR } }));
    expect(layout.price.max).toBeGreaterThan(layout.price.min);
    expect(svg).not.toMatch(/NaN|Infinity/);
    const empty = buildCandleChartSvg(input([]));
    expect(empty.svg).toContain('No candles in this window');
    expect(empty.svg).not.toMatch(/NaN|Infinity/);
    expect(empty.layout.missingBuckets).toBe(60);
  });
});

describe('chart number formatting', () => {
  it('formats without the host locale', () => {
    expect(formatNumber(43_210.5, 2)).toBe('43,210.50');
    expect(formatNumber(1_234_567, 0)).toBe('1,234,567');
    expect(formatNumber(0.00012345, 8)).toBe('0.00012345');
    expect(formatNumber(-1500.25, 1)).toBe('-1,500.3');
    expect(formatCompact(1234)).toBe('1.23K');
    expect(formatCompact(5_600_000)).toBe('5.6M');
    expect(formatCompact(12.5)).toBe('12.5');
  });

  it('picks 1-2-5 steps inside the range', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(0.1, 0.35, 5)).toEqual([0.1, 0.15, 0.2, 0.25, 0.3, 0.35]);
    expect(niceTicks(43_012, 43_988, 4)).toEqual([43_200, 43_400, 43_600, 43_800]);
    // never a lone tick: the step shrinks until two fit
    expect(niceTicks(101, 109, 1)).toEqual([102, 104, 106, 108]);
  });
});
