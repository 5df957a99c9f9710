import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { buildCandleChartSvg, CANDLE_COLORS, type ChartCandle } from '../../layers/shared/src/charts/candle-chart-svg.js';
import { computeOverlays } from '../../layers/shared/src/charts/chart-overlays.js';
import { chartRenderOptions, renderChartPng, renderChartPngSync } from '../../layers/shared/src/charts/render-png.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 5, 9, 0);
/** Minutes 25-29 hold no candle. */
const GAP = [25, 26, 27, 28, 29];

function candles(): ChartCandle[] {
  const out: ChartCandle[] = [];
  let price = 2_000;
  for (let i = 0; i < 60; i++) {
    // alternating runs of three up and three down candles
    const up = Math.floor(i / 3) % 2 === 0;
    const open = price;
    const close = open + (up ? 4 : -3);
    price = close;
    if (GAP.includes(i)) continue;
    out.push({ ts: T0 + i * MIN, open, close, high: Math.max(open, close) + 1, low: Math.min(open, close) - 1, volume: 10 + (i % 7) });
  }
  return out;
}

function chart(width: number, height: number, overlays = true) {
  const cs = candles();
  return buildCandleChartSvg({
    exchange: 'binance',
    symbol: 'ETH/USDT',
    timeframe: '1m',
    window: { from: T0, to: T0 + 60 * MIN },
    candles: cs,
    overlays: overlays ? computeOverlays(cs, ['sma20', 'bbands']) : [],
    width,
    height,
  });
}

const rgb = (hex: string): [number, number, number] => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];

/** Pixels of this colour (each channel within `tolerance`), optionally only in columns [x0, x1) and rows [y0, y1). */
function count(png: PNG, hex: string, box?: { x0: number; x1: number; y0: number; y1: number }, tolerance = 0): number {
  const [r, g, b] = rgb(hex);
  const { x0 = 0, x1 = png.width, y0 = 0, y1 = png.height } = box ?? {};
  const near = (v: number | undefined, want: number) => Math.abs(v! - want) <= tolerance;
  let n = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * png.width + x) * 4;
      if (near(png.data[i], r) && near(png.data[i + 1], g) && near(png.data[i + 2], b) && png.data[i + 3] === 255) n++;
    }
  }
  return n;
}

/** A volume bar's colour: the candle colour at 45% over white. */
const volumeColor = (hex: string) => `#${rgb(hex).map((c) => Math.round(255 + (c - 255) * 0.45).toString(16).padStart(2, '0')).join('')}`;

describe('candle chart PNG (resvg, bundled font)', () => {
  it('decodes to exactly the requested size, with both candle colours drawn', async () => {
    for (const [width, height] of [
      [1000, 600],
      [320, 200],
      [777, 333],
      [2000, 1200],
    ] as const) {
      const png = PNG.sync.read(await renderChartPng(chart(width, height).svg));
      expect([png.width, png.height]).toEqual([width, height]);
      expect(count(png, CANDLE_COLORS.up), `${width}x${height} up`).toBeGreaterThan(20);
      expect(count(png, CANDLE_COLORS.down), `${width}x${height} down`).toBeGreaterThan(20);
      // the background is white and dominates, but is not all there is
      expect(count(png, '#ffffff')).toBeGreaterThan((width * height) / 3);
      expect(count(png, '#ffffff')).toBeLessThan(width * height * 0.98);
    }
  });

  it('leaves the missing minutes empty in the picture', async () => {
    const { svg, layout } = chart(1000, 600, false);
    const png = PNG.sync.read(await renderChartPng(svg));
    const slotX = (i: number) => layout.pricePane.left + i * layout.slotWidth;
    // inside the gap's slots (a pixel in from each edge): no candle and no volume bar
    const gap = { x0: Math.ceil(slotX(GAP[0]!)) + 1, x1: Math.floor(slotX(GAP.at(-1)! + 1)) - 1, y0: Math.ceil(layout.pricePane.top), y1: Math.floor(layout.volumePane.bottom) };
    expect(gap.x1 - gap.x0).toBeGreaterThan(40);
    const drawn = (box: typeof gap) => ({
      candles: count(png, CANDLE_COLORS.up, box) + count(png, CANDLE_COLORS.down, box),
      volume: count(png, volumeColor(CANDLE_COLORS.up), box, 2) + count(png, volumeColor(CANDLE_COLORS.down), box, 2),
    });
    expect(drawn(gap)).toEqual({ candles: 0, volume: 0 });
    // while the same width just before the gap holds candles and volume bars
    const before = drawn({ ...gap, x0: gap.x0 - (gap.x1 - gap.x0) - 4, x1: gap.x0 - 4 });
    expect(before.candles).toBeGreaterThan(50);
    expect(before.volume).toBeGreaterThan(50);
  });

  it('gives identical bytes for identical input, on the thread pool and on the calling thread', async () => {
    const a = await renderChartPng(chart(800, 400).svg);
    const b = await renderChartPng(chart(800, 400).svg);
    expect(Buffer.compare(a, b)).toBe(0);
    expect(Buffer.compare(a, renderChartPngSync(chart(800, 400).svg))).toBe(0);
    expect(Buffer.compare(a, await renderChartPng(chart(800, 401).svg))).not.toBe(0);
    // a burst waits its turn for the renderer (2 at a time) and every call still gets its chart
    const burst = await Promise.all(Array.from({ length: 6 }, () => renderChartPng(chart(800, 400).svg)));
    for (const png of burst) expect(Buffer.compare(png, a)).toBe(0);
  });

  it('draws text with the bundled font only (no system fonts)', async () => {
    const options = chartRenderOptions();
    expect(options.font?.loadSystemFonts).toBe(false);
    expect(options.font?.fontFiles).toHaveLength(1);
    expect(options.font?.fontFiles?.[0]).toMatch(/layers\/shared\/assets\/fonts\/DejaVuSans\.ttf$/);
    const blank = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="200" height="40" fill="#ffffff"/>';
    const withText = `${blank}<text x="10" y="28" font-family="DejaVu Sans" font-size="20" fill="#000000">BTC 43,210</text></svg>`;
    const plain = PNG.sync.read(await renderChartPng(`${blank}</svg>`));
    const text = PNG.sync.read(await renderChartPng(withText));
    expect(count(plain, '#ffffff')).toBe(200 * 40);
    // glyphs were drawn: a fair share of the pixels are no longer white
    expect(200 * 40 - count(text, '#ffffff')).toBeGreaterThan(300);
  });
});
