/**
 * SVG -> PNG with resvg (Rust, no browser), using only the font bundled in layers/shared/assets/fonts:
 * system fonts are never loaded, so the same SVG gives the same PNG bytes on a laptop, in CI and on
 * Fargate, and a host without fonts still draws text.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Resvg, renderAsync, type ResvgRenderOptions } from '@resvg/resvg-js';
import { PlatformError } from '../domain/errors.js';
import { CHART_FONT_FAMILY } from './candle-chart-svg.js';

/** The bundled font file was not found where the code or its bundle keeps it. */
export class ChartFontMissingError extends PlatformError {}

const FONT_FILE = 'DejaVuSans.ttf';

/**
 * Where the font may be: beside the sources (layers/shared/src/charts -> layers/shared/assets/fonts:
 * the repository and the Fargate image, which runs the sources with tsx), or in assets/fonts beside
 * a bundle's entry file (esbuild puts every module in one file; copy the folder next to it).
 */
const FONT_CANDIDATES = [
  new URL(`../../assets/fonts/${FONT_FILE}`, import.meta.url),
  new URL(`./assets/fonts/${FONT_FILE}`, import.meta.url),
];

let options: ResvgRenderOptions | undefined;

/** The render options, resolved once: the font's path and every setting that fixes the output. */
export function chartRenderOptions(): ResvgRenderOptions {
  if (options) return options;
  const paths = FONT_CANDIDATES.map((u) => fileURLToPath(u));
  const fontFile = paths.find((p) => existsSync(p));
  if (!fontFile) {
    throw new ChartFontMissingError(`chart font ${FONT_FILE} not found; looked in ${paths.join(', ')}. Ship layers/shared/assets/fonts with the code.`);
  }
  options = {
    font: { fontFiles: [fontFile], loadSystemFonts: false, defaultFontFamily: CHART_FONT_FAMILY, sansSerifFamily: CHART_FONT_FAMILY },
    // the SVG's own size, whatever the host's DPI or defaults
    fitTo: { mode: 'original' },
    shapeRendering: 2,
    textRendering: 1,
    logLevel: 'off',
  };
  return options;
}

/**
 * Renders at the same time at most. A render takes one of libuv's 4 pool threads for tens to hundreds
 * of ms; a burst of charts must not take them all from DNS lookups and file reads.
 */
const MAX_CONCURRENT_RENDERS = 2;
let running = 0;
const waiting: (() => void)[] = [];

/** Renders the SVG to PNG bytes on libuv's thread pool, so the event loop keeps serving other sessions. */
export async function renderChartPng(svg: string): Promise<Buffer> {
  const options = chartRenderOptions();
  if (running >= MAX_CONCURRENT_RENDERS) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    const image = await renderAsync(svg, options);
    return image.asPng();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** The same rendering on the calling thread (benchmarks, scripts). */
export function renderChartPngSync(svg: string): Buffer {
  return new Resvg(svg, chartRenderOptions()).render().asPng();
}
