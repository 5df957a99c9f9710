/**
 * A candle chart as SVG, built by hand: no chart library, no DOM, no clock, so the same input
 * always gives the same bytes (and, rendered with the bundled font, the same PNG).
 *
 * Time runs on a bucket grid: each bucket of the window has its slot, so a missing bucket is an
 * empty slot and overlay lines break across it; a gap is never drawn as a flat candle.
 */
import { timeframeMs, type Timeframe } from '../domain/index.js';
import type { ChartOverlay } from './chart-overlays.js';
import type { Bar } from '../indicators/indicators.js';

/** One candle as the chart needs it: what the indicators take. */
export type ChartCandle = Bar;

export interface CandleChartInput {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  /** the buckets drawn, [from, to) in open times; `to - from` is a whole number of buckets */
  readonly window: { readonly from: number; readonly to: number };
  /** candles holding data within the window, oldest first; buckets without one stay empty */
  readonly candles: readonly ChartCandle[];
  /** overlays aligned with `candles` (one value per candle) */
  readonly overlays?: readonly ChartOverlay[];
  readonly width: number;
  readonly height: number;
}

export interface Rect {
  readonly left: number;
  readonly top: number;
  readonly right: number;
  readonly bottom: number;
}

/** Where things went: for callers placing annotations, and for tests checking the scales. */
export interface ChartLayout {
  readonly pricePane: Rect;
  readonly volumePane: Rect;
  /** price range of the price pane: `max` at its top edge, `min` at its bottom edge */
  readonly price: { readonly min: number; readonly max: number };
  readonly maxVolume: number;
  readonly slotWidth: number;
  readonly priceTicks: readonly number[];
  readonly timeTicks: readonly { readonly ts: number; readonly label: string }[];
  /** buckets of the window without a candle */
  readonly missingBuckets: number;
}

export interface CandleChartSvg {
  readonly svg: string;
  readonly layout: ChartLayout;
}

export const CANDLE_COLORS = { up: '#26a69a', down: '#ef5350' } as const;
const COLORS = { background: '#ffffff', grid: '#eceff1', axis: '#b0bec5', text: '#37474f', muted: '#78909c' } as const;
export const CHART_FONT_FAMILY = 'DejaVu Sans';

const PAD = 8;
const HEADER = 44;
const TIME_AXIS = 20;
const PANE_GAP = 6;
/** Estimated advance of a DejaVu Sans character, in em (digits are 0.636 em): for fitting labels only. */
const CHAR_EM = 0.62;
const LABEL_PX = 11;

/** Builds the SVG of a candle chart with overlays and a volume pane. Pure. */
export function buildCandleChartSvg(input: CandleChartInput): CandleChartSvg {
  const { width, height, window } = input;
  const size = timeframeMs(input.timeframe);
  const slots = Math.max(1, Math.round((window.to - window.from) / size));
  const candles = input.candles.filter((c) => c.ts >= window.from && c.ts < window.to);
  const overlays = input.overlays ?? [];

  // price range over what is drawn: candles and the overlay values beside them
  let min = Infinity;
  let max = -Infinity;
  for (const c of candles) {
    min = Math.min(min, c.low);
    max = Math.max(max, c.high);
  }
  for (const o of overlays) {
    for (const line of o.lines) {
      for (let i = 0; i < input.candles.length; i++) {
        const v = line.values[i];
        const ts = input.candles[i]!.ts;
        if (v === null || v === undefined || !Number.isFinite(v) || ts < window.from || ts >= window.to) continue;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
    }
  }
  if (!Number.isFinite(min)) {
    min = 0;
    max = 1;
  } else if (max - min <= Math.abs(max) * 1e-12) {
    // a flat market still needs a range to scale into
    const pad = Math.abs(max) * 0.005 || 1;
    min -= pad;
    max += pad;
  }

  const plotTop = HEADER;
  const plotBottom = height - TIME_AXIS - 2;
  const available = plotBottom - plotTop;
  const volumeHeight = Math.round(available * 0.2);
  const priceHeightGuess = available - volumeHeight - PANE_GAP;
  const priceTicks = niceTicks(min, max, Math.max(2, Math.floor(priceHeightGuess / 48)));
  const decimals = tickDecimals(priceTicks);
  const priceLabels = priceTicks.map((t) => formatNumber(t, decimals));
  const lastClose = candles.at(-1)?.close;
  const lastLabel = lastClose === undefined ? '' : formatNumber(lastClose, Math.max(decimals, significantDecimals(lastClose)));
  const axisChars = Math.max(4, lastLabel.length, ...priceLabels.map((l) => l.length));
  const axisWidth = Math.ceil(axisChars * CHAR_EM * LABEL_PX) + 14;

  const left = PAD;
  const right = width - axisWidth;
  const pricePane: Rect = { left, top: plotTop, right, bottom: plotTop + priceHeightGuess };
  const volumePane: Rect = { left, top: pricePane.bottom + PANE_GAP, right, bottom: plotBottom };
  const slotWidth = (right - left) / slots;
  const bodyWidth = Math.max(1, slotWidth * 0.7);
  const xOf = (ts: number) => left + ((ts - window.from) / size + 0.5) * slotWidth;
  const yOf = (price: number) => pricePane.top + ((max - price) / (max - min)) * (pricePane.bottom - pricePane.top);
  const maxVolume = candles.reduce((m, c) => Math.max(m, c.volume), 0);
  const volumeY = (v: number) => volumePane.bottom - (maxVolume > 0 ? (v / maxVolume) * (volumePane.bottom - volumePane.top) : 0);

  const timeTicks = chooseTimeTicks(window.from, window.to, size, right - left);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="${CHART_FONT_FAMILY}" font-size="${LABEL_PX}">`,
    `<rect width="${width}" height="${height}" fill="${COLORS.background}"/>`,
  );

  // grid and axes
  out.push(`<g stroke="${COLORS.grid}" stroke-width="1" shape-rendering="crispEdges">`);
  for (const t of priceTicks) out.push(hLine(left, right, yOf(t)));
  for (const t of timeTicks) {
    const x = xOf(t.ts);
    out.push(`<line x1="${n(x)}" y1="${n(pricePane.top)}" x2="${n(x)}" y2="${n(volumePane.bottom)}"/>`);
  }
  out.push('</g>');
  out.push(
    `<g stroke="${COLORS.axis}" stroke-width="1" fill="none" shape-rendering="crispEdges">` +
      `<rect x="${n(left)}" y="${n(pricePane.top)}" width="${n(right - left)}" height="${n(pricePane.bottom - pricePane.top)}"/>` +
      `<rect x="${n(left)}" y="${n(volumePane.top)}" width="${n(right - left)}" height="${n(volumePane.bottom - volumePane.top)}"/>` +
      '</g>',
  );

  // volume bars, coloured like their candles
  out.push('<g class="volume" shape-rendering="crispEdges" fill-opacity="0.45">');
  for (const c of candles) {
    const y = volumeY(c.volume);
    out.push(
      `<rect data-ts="${c.ts}" x="${n(xOf(c.ts) - bodyWidth / 2)}" y="${n(y)}" width="${n(bodyWidth)}" height="${n(volumePane.bottom - y)}" ` +
        `fill="${c.close >= c.open ? CANDLE_COLORS.up : CANDLE_COLORS.down}"/>`,
    );
  }
  out.push('</g>');

  // band fills under the lines and candles
  for (const o of overlays) {
    if (!o.band) continue;
    const upper = o.lines[o.band.upper]!;
    const lower = o.lines[o.band.lower]!;
    for (const run of runs(input.candles, upper, size, window)) {
      const pts = run.filter((i) => lower.values[i] != null);
      if (pts.length < 2) continue;
      const top = pts.map((i) => `${n(xOf(input.candles[i]!.ts))},${n(yOf(upper.values[i]!))}`);
      const bottom = pts.reverse().map((i) => `${n(xOf(input.candles[i]!.ts))},${n(yOf(lower.values[i]!))}`);
      out.push(`<polygon class="band" data-overlay="${o.name}" points="${[...top, ...bottom].join(' ')}" fill="${o.color}" fill-opacity="0.08"/>`);
    }
  }

  // candles: wick from high to low, body from open to close (at least 1 px)
  out.push('<g class="candles" shape-rendering="crispEdges">');
  for (const c of candles) {
    const color = c.close >= c.open ? CANDLE_COLORS.up : CANDLE_COLORS.down;
    const x = xOf(c.ts);
    const yTop = yOf(Math.max(c.open, c.close));
    const bodyHeight = Math.max(1, yOf(Math.min(c.open, c.close)) - yTop);
    out.push(
      `<line data-ts="${c.ts}" x1="${n(x)}" y1="${n(yOf(c.high))}" x2="${n(x)}" y2="${n(yOf(c.low))}" stroke="${color}"/>` +
        `<rect data-ts="${c.ts}" x="${n(x - bodyWidth / 2)}" y="${n(yTop)}" width="${n(bodyWidth)}" height="${n(bodyHeight)}" fill="${color}"/>`,
    );
  }
  out.push('</g>');

  // overlay lines, broken at missing buckets (and where a line restarts)
  for (const o of overlays) {
    for (const line of o.lines) {
      for (const run of runs(input.candles, line, size, window)) {
        if (run.length === 0) continue;
        const pts = run.map((i) => `${n(xOf(input.candles[i]!.ts))},${n(yOf(line.values[i]!))}`);
        // a lone point (between gaps) is still shown, as a dot
        if (pts.length === 1) pts.push(pts[0]!);
        out.push(
          `<polyline class="overlay" data-overlay="${o.name}" points="${pts.join(' ')}" fill="none" stroke="${o.color}" stroke-width="1.5" ` +
            `stroke-linejoin="round" stroke-linecap="round"${line.dashed ? ' stroke-dasharray="4 3"' : ''}/>`,
        );
      }
    }
  }

  // last close: a dashed line and its value on the axis
  if (lastClose !== undefined) {
    const last = candles.at(-1)!;
    const color = last.close >= last.open ? CANDLE_COLORS.up : CANDLE_COLORS.down;
    const y = yOf(lastClose);
    out.push(
      `<line x1="${n(left)}" y1="${n(y)}" x2="${n(right)}" y2="${n(y)}" stroke="${color}" stroke-opacity="0.7" stroke-dasharray="2 2" shape-rendering="crispEdges"/>`,
    );
  }

  // price axis labels
  out.push(`<g fill="${COLORS.text}">`);
  for (let i = 0; i < priceTicks.length; i++) {
    out.push(`<text x="${n(right + 6)}" y="${n(yOf(priceTicks[i]!) + 4)}">${priceLabels[i]}</text>`);
  }
  out.push('</g>');
  if (lastClose !== undefined) {
    const last = candles.at(-1)!;
    const y = clamp(yOf(lastClose), pricePane.top + 7, pricePane.bottom - 7);
    out.push(
      `<rect class="last-close" x="${n(right + 1)}" y="${n(y - 8)}" width="${n(axisWidth - 2)}" height="16" rx="2" ` +
        `fill="${last.close >= last.open ? CANDLE_COLORS.up : CANDLE_COLORS.down}"/>` +
        `<text x="${n(right + 6)}" y="${n(y + 4)}" fill="#ffffff">${lastLabel}</text>`,
    );
  }

  // time axis labels (UTC), centred under their bucket, dropped where they would be cut off
  out.push(`<g fill="${COLORS.text}" text-anchor="middle">`);
  for (const t of timeTicks) {
    const x = xOf(t.ts);
    const half = (t.label.length * CHAR_EM * LABEL_PX) / 2;
    if (x - half < 0 || x + half > right) continue;
    out.push(`<text x="${n(x)}" y="${n(height - 6)}">${t.label}</text>`);
  }
  out.push('</g>');

  // volume scale
  const volumeLabel = `Vol ${formatCompact(maxVolume)}`;
  out.push(
    `<rect x="${n(left + 1)}" y="${n(volumePane.top + 1)}" width="${n(volumeLabel.length * CHAR_EM * 10 + 6)}" height="14" fill="${COLORS.background}" fill-opacity="0.8"/>` +
      `<text x="${n(left + 4)}" y="${n(volumePane.top + 12)}" fill="${COLORS.muted}" font-size="10">${escapeXml(volumeLabel)}</text>`,
  );

  // header: market and timeframe, the window in UTC, then the overlay legend
  const title = `${input.exchange} ${input.symbol} · ${input.timeframe}`;
  out.push(`<text x="${left}" y="18" font-size="13" fill="${COLORS.text}">${escapeXml(title)}</text>`);
  const range = `${formatUtc(window.from)} – ${formatUtc(window.to - size)} UTC`;
  if ((title.length * 13 + range.length * LABEL_PX) * CHAR_EM + 16 < right - left) {
    out.push(`<text x="${n(right)}" y="18" text-anchor="end" fill="${COLORS.muted}">${escapeXml(range)}</text>`);
  }
  let legendX = left;
  for (const o of overlays) {
    const textWidth = o.label.length * CHAR_EM * LABEL_PX;
    if (legendX + 14 + textWidth > width - PAD) break;
    out.push(
      `<rect x="${n(legendX)}" y="31" width="10" height="3" fill="${o.color}"/>` +
        `<text x="${n(legendX + 14)}" y="36" fill="${COLORS.text}">${escapeXml(o.label)}</text>`,
    );
    legendX += 14 + textWidth + 14;
  }
  if (candles.length === 0) {
    out.push(
      `<text x="${n((left + right) / 2)}" y="${n((pricePane.top + pricePane.bottom) / 2)}" text-anchor="middle" fill="${COLORS.muted}">` +
        'No candles in this window</text>',
    );
  }
  out.push('</svg>');

  return {
    svg: out.join('\n'),
    layout: {
      pricePane,
      volumePane,
      price: { min, max },
      maxVolume,
      slotWidth,
      priceTicks,
      timeTicks,
      missingBuckets: slots - new Set(candles.map((c) => c.ts)).size,
    },
  };
}

/**
 * Index runs of consecutive candles (adjacent buckets, inside the window) where `line` has values;
 * a missing bucket, a null value or a restart ends a run.
 */
function runs(
  candles: readonly ChartCandle[],
  line: ChartOverlay['lines'][number],
  size: number,
  window: CandleChartInput['window'],
): number[][] {
  const out: number[][] = [];
  let run: number[] = [];
  let prevTs = Number.NaN;
  for (let i = 0; i < candles.length; i++) {
    const ts = candles[i]!.ts;
    const v = line.values[i];
    const inside = ts >= window.from && ts < window.to && v !== null && v !== undefined && Number.isFinite(v);
    const joined = ts - prevTs === size && !line.breakBefore?.[i];
    if (!inside || !joined) {
      if (run.length > 0) out.push(run);
      run = [];
    }
    if (inside) run.push(i);
    prevTs = ts;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/** Round tick values (1, 2 or 5 times a power of ten) inside [min, max], about `target` of them (at least 2). */
export function niceTicks(min: number, max: number, target: number): number[] {
  if (!(max > min)) return [min];
  let step = niceStep((max - min) / Math.max(1, target));
  for (;;) {
    const first = Math.ceil(min / step - 1e-9);
    const last = Math.floor(max / step + 1e-9);
    if (last - first >= 1 || step < (max - min) / 100) {
      const ticks: number[] = [];
      for (let k = first; k <= last; k++) ticks.push(roundTo(k * step, step));
      return ticks;
    }
    step = smallerNiceStep(step);
  }
}

/** The 1-2-5 value nearest to `raw`. */
function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * power;
}

/** The 1-2-5 value below `step`. */
function smallerNiceStep(step: number): number {
  const power = 10 ** Math.floor(Math.log10(step) + 1e-9);
  const f = Math.round(step / power);
  return f === 1 ? power / 2 : f === 2 ? power : 2 * power;
}

/** k*step without float noise (0.1*3 = 0.30000000000000004). */
function roundTo(value: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(value.toFixed(Math.min(decimals, 20)));
}

/** Decimals the tick labels need to tell neighbouring ticks apart. */
function tickDecimals(ticks: readonly number[]): number {
  if (ticks.length < 2) return significantDecimals(ticks[0] ?? 0);
  const step = Math.abs(ticks[1]! - ticks[0]!);
  return Math.min(12, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

/** Decimals that show a price to about 6 significant digits (43210.5 -> 1, 0.00012345 -> 8). */
function significantDecimals(value: number): number {
  if (value === 0) return 0;
  return Math.min(12, Math.max(0, 5 - Math.floor(Math.log10(Math.abs(value)))));
}

/** Fixed decimals with thousands separators; locale-free, so the output never depends on the host. */
export function formatNumber(value: number, decimals: number): string {
  const [int, frac] = Math.abs(value).toFixed(decimals).split('.');
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const sign = value < 0 && Number(value.toFixed(decimals)) !== 0 ? '-' : '';
  return `${sign}${grouped}${frac ? `.${frac}` : ''}`;
}

/** 1234 -> 1.23K, 5600000 -> 5.6M. */
export function formatCompact(value: number): string {
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']];
  for (const [size, suffix] of units) {
    if (Math.abs(value) >= size) return `${trimZeros((value / size).toFixed(2))}${suffix}`;
  }
  return trimZeros(value.toFixed(value >= 100 ? 0 : value >= 1 ? 2 : 4));
}

function trimZeros(text: string): string {
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Label spacings tried, smallest first; months are handled apart (they are not a fixed length). */
const TIME_STEPS = [MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];
const MONTH_STEPS = [1, 3, 6, 12];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** Least distance between two time labels, px. */
const TIME_LABEL_SPACING = 80;

/** UTC-aligned time ticks on bucket open times in [from, to), spaced at least TIME_LABEL_SPACING px apart. */
export function chooseTimeTicks(from: number, to: number, bucketMs: number, plotWidth: number): { ts: number; label: string }[] {
  const pxPerMs = plotWidth / Math.max(1, to - from);
  const minMs = TIME_LABEL_SPACING / pxPerMs;
  // a step the buckets divide, so every label sits on a bucket; else whole buckets (3d: 6d, 9d, ...)
  let step = TIME_STEPS.find((s) => s >= minMs && s % bucketMs === 0);
  if (step === undefined && minMs <= 14 * DAY) step = Math.ceil(minMs / bucketMs) * bucketMs;
  const ticks: { ts: number; label: string }[] = [];
  if (step !== undefined) {
    // weeks on Mondays (the epoch was a Thursday), as weekly buckets are; other steps from 00:00 UTC
    const offset = step % (7 * DAY) === 0 ? 4 * DAY : 0;
    for (let t = Math.ceil((from - offset) / step) * step + offset; t < to; t += step) ticks.push({ ts: t, label: timeLabel(t, step) });
    return ticks;
  }
  const months = MONTH_STEPS.find((m) => m * 30 * DAY >= minMs) ?? Math.ceil(minMs / (365 * DAY)) * 12;
  const start = new Date(from);
  let y = start.getUTCFullYear();
  let mo = start.getUTCMonth();
  for (;;) {
    const t = Date.UTC(y, mo, 1);
    if (t >= to) break;
    if (t >= from && mo % months === 0) {
      // a month starts inside a bucket (weeks): label the bucket holding it
      const bucket = from + Math.floor((t - from) / bucketMs) * bucketMs;
      ticks.push({ ts: bucket, label: mo === 0 ? String(y) : MONTHS[mo]! });
    }
    mo += 1;
    if (mo === 12) {
      mo = 0;
      y += 1;
    }
  }
  return ticks;
}

function timeLabel(ts: number, step: number): string {
  const d = new Date(ts);
  const date = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  if (step < DAY && ts % DAY !== 0) return `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  if (d.getUTCMonth() === 0 && d.getUTCDate() === 1) return String(d.getUTCFullYear());
  return date;
}

/** 2026-01-05 14:00 */
function formatUtc(ts: number): string {
  const d = new Date(ts);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
}

const pad2 = (v: number) => String(v).padStart(2, '0');
const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Coordinates with at most 2 decimals: shorter SVG, and no float noise in the bytes. */
function n(v: number): string {
  return String(Math.round(v * 100) / 100);
}

function hLine(x1: number, x2: number, y: number): string {
  return `<line x1="${n(x1)}" y1="${n(y)}" x2="${n(x2)}" y2="${n(y)}"/>`;
}

/** Text from the caller (exchange ids, symbols) goes into XML. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}
