/**
 * render_chart's work without the database: candles -> overlays -> SVG (hand-built) -> PNG (resvg, the
 * bundled DejaVu Sans). Reference, same run: resvg rendering an SVG with the chart's element count at
 * the same size, its text elements swapped for small rects and no font file loaded, so the ratio is
 * what the chart's own drawing (text, overlays, anti-aliased lines) costs on top of rasterizing
 * and PNG-encoding that many elements. Rendering runs on the calling thread here; the tool renders the
 * same way on libuv's pool (renderAsync), which moves the work off the event loop, not away.
 */
import { Resvg } from '@resvg/resvg-js';
import { PNG } from 'pngjs';
import { buildCandleChartSvg, type ChartCandle } from '../layers/shared/src/charts/candle-chart-svg.js';
import { computeOverlays, sliceOverlays, type ChartOverlayName } from '../layers/shared/src/charts/chart-overlays.js';
import { renderChartPngSync } from '../layers/shared/src/charts/render-png.js';
import { defineBench } from './lib/measure.js';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5);
const WARMUP = 120;

/** A seeded walk of hourly candles: `shown` of them drawn, WARMUP more before for the overlays. */
function history(shown: number): ChartCandle[] {
  let seed = 42;
  const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
  let price = 43_000;
  return Array.from({ length: shown + WARMUP }, (_, i) => {
    const open = price;
    const close = open * (1 + (rnd() - 0.5) * 0.01);
    price = close;
    return { ts: T0 + i * HOUR, open, close, high: Math.max(open, close) * (1 + rnd() * 0.003), low: Math.min(open, close) * (1 - rnd() * 0.003), volume: rnd() * 200 };
  });
}

/** What the tool does after reading candles: overlays over the history, the SVG of the window. */
function chartSvg(shown: number, overlays: readonly ChartOverlayName[], width: number, height: number): string {
  const all = history(shown);
  return buildCandleChartSvg({
    exchange: 'binance',
    symbol: 'BTC/USDT',
    timeframe: '1h',
    window: { from: all[WARMUP]!.ts, to: all.at(-1)!.ts + HOUR },
    candles: all.slice(WARMUP),
    overlays: sliceOverlays(computeOverlays(all, overlays), WARMUP),
    width,
    height,
  }).svg;
}

const DEFAULT_OVERLAYS: ChartOverlayName[] = ['sma20', 'bbands', 'vwap'];
const defaultSvg = chartSvg(100, DEFAULT_OVERLAYS, 1000, 600);
// same element count: each <text> becomes a rect, every other element stays
const textless = defaultSvg.replace(/<text [^>]*>[^<]*<\/text>/g, '<rect x="0" y="0" width="2" height="2" fill="#eceff1"/>');
const noFont = { font: { loadSystemFonts: false }, fitTo: { mode: 'original' as const }, logLevel: 'off' as const };
const elements = (svg: string) => (svg.match(/<[a-z]+[\s/>]/g) ?? []).length;

export default defineBench({
  name: 'render-chart',
  title: `render_chart without I/O: overlays + SVG + PNG (ns/chart / 1e6 = ms per chart; default chart ${elements(defaultSvg)} elements, ${Math.round(defaultSvg.length / 1024)} KB of SVG)`,
  unit: 'chart',
  unitsPerOp: 1,
  reference: { name: 'resvg PNG of as many elements, no text, no font, 1000x600', fn: () => new Resvg(textless, noFont).render().asPng() },
  cases: [
    { name: 'overlays + SVG only, 100 candles, sma20+bbands+vwap', fn: () => chartSvg(100, DEFAULT_OVERLAYS, 1000, 600) },
    { name: 'chart 1000x600, 100 candles, no overlays', fn: () => renderChartPngSync(chartSvg(100, [], 1000, 600)) },
    { name: 'chart 1000x600, 100 candles, sma20+bbands+vwap (tool defaults + 3 overlays)', fn: () => renderChartPngSync(chartSvg(100, DEFAULT_OVERLAYS, 1000, 600)) },
    { name: 'chart 320x200, 100 candles, sma20+bbands+vwap', fn: () => renderChartPngSync(chartSvg(100, DEFAULT_OVERLAYS, 320, 200)) },
    {
      name: 'chart 2000x1200, 500 candles, sma20+bbands+vwap (the largest)',
      fn: () => renderChartPngSync(chartSvg(500, DEFAULT_OVERLAYS, 2000, 1200)),
      note: '4x the pixels of the reference',
    },
  ],
  check() {
    if (elements(textless) !== elements(defaultSvg) || /<text/.test(textless)) throw new Error('the reference SVG does not match the chart element for element');
    for (const [svg, w, h] of [
      [defaultSvg, 1000, 600],
      [chartSvg(500, DEFAULT_OVERLAYS, 2000, 1200), 2000, 1200],
    ] as const) {
      const png = PNG.sync.read(renderChartPngSync(svg));
      if (png.width !== w || png.height !== h) throw new Error(`chart decoded to ${png.width}x${png.height}, not ${w}x${h}`);
    }
    if (Buffer.compare(renderChartPngSync(defaultSvg), renderChartPngSync(chartSvg(100, DEFAULT_OVERLAYS, 1000, 600))) !== 0) {
      throw new Error('the same chart rendered to different bytes');
    }
  },
});
