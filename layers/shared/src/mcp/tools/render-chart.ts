import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { bucketStart, timeframeMs, TimeframeSchema } from '../../domain/index.js';
import type { Logger } from '../../observability/logger.js';
import type { MarketQueryService } from '../../query/market-query.js';
import { buildCandleChartSvg } from '../../charts/candle-chart-svg.js';
import { CHART_OVERLAYS, OVERLAY_DESCRIPTIONS, computeOverlays, overlayWarmupBars, shortOfHistory, sliceOverlays } from '../../charts/chart-overlays.js';
import { renderChartPng } from '../../charts/render-png.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, toolFailure } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso, marketInput, normalizeMarket, parseTimeRange } from './schemas.js';

/** Bounds of a chart: enough candles to read a trend, pixels small enough to send as one image. */
export const CHART_LIMITS = {
  defaultCandles: 100,
  maxCandles: 500,
  width: { min: 320, max: 2000, default: 1000 },
  height: { min: 200, max: 1200, default: 600 },
} as const;

/** What the picture shows, as data: the model can quote it without reading pixels. */
const Output = {
  exchange: z.string(),
  symbol: z.string(),
  timeframe: TimeframeSchema,
  image: z.object({ width: z.number().int(), height: z.number().int(), mimeType: z.literal('image/png'), bytes: z.number().int() }).describe('The PNG in content.'),
  window: z
    .object({ from: z.number(), to: z.number(), fromIso: z.string(), toIso: z.string() })
    .describe('Buckets drawn, [from, to) in open times (ms epoch, UTC), left to right.'),
  candles: z.number().int().describe('Candles drawn.'),
  missingBuckets: z.number().int().describe('Buckets of the window without data, left empty; get_candles gives each gap its reason.'),
  last: z
    .object({ ts: z.number(), close: z.number(), closed: z.boolean().describe('false while it is still forming.') })
    .describe('The newest candle drawn.'),
  range: z.object({ low: z.number(), high: z.number() }).describe('Lowest low and highest high of the candles drawn.'),
  overlays: z.array(z.string()).describe('Overlays drawn, as labelled in the legend.'),
  overlaysShortOfHistory: z
    .array(z.string())
    .describe('Overlays with less stored history before the chart than they need: their lines start late or are approximate at first.'),
  freshness: FreshnessOutput,
};

export interface RenderChartDeps {
  readonly query: MarketQueryService;
  readonly logger?: Logger;
  readonly metrics?: McpMetrics;
}

/** Registers `render_chart`: a PNG candle chart of one market with overlays and a volume pane. */
export function registerRenderChartTool(server: McpServer, deps: RenderChartDeps): void {
  const { width, height } = CHART_LIMITS;
  server.registerTool(
    'render_chart',
    {
      title: 'Candle chart (PNG)',
      description:
        'Draws a candle chart of one market from its stored candles and returns it as a PNG image, with a short text and structured data saying ' +
        'what is drawn (market, timeframe, time range in UTC, candles and missing buckets, last close, overlays, freshness). Up candles green, down candles red, ' +
        'a volume pane below, price axis on the right, time axis in UTC. Buckets without data are left empty, never drawn as flat candles. ' +
        `Overlays (optional): ${CHART_OVERLAYS.map((o) => `${o} (${OVERLAY_DESCRIPTIONS[o]})`).join(', ')}; ` +
        'computed on the server as compute_indicators computes them. The chart covers the newest `limit` buckets (or those before `until`). ' +
        'Use it to look at price action; for exact numbers call get_candles or compute_indicators. Get valid exchange/symbol values from list_markets.',
      inputSchema: {
        ...marketInput,
        timeframe: TimeframeSchema.default('1h').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        limit: z
          .number()
          .int()
          .min(10)
          .max(CHART_LIMITS.maxCandles)
          .default(CHART_LIMITS.defaultCandles)
          .describe(`Candle buckets shown, ending with the newest (default ${CHART_LIMITS.defaultCandles}, 10-${CHART_LIMITS.maxCandles}).`),
        overlays: z
          .array(z.enum(CHART_OVERLAYS))
          .max(CHART_OVERLAYS.length)
          .default([])
          .describe('Lines drawn over the candles, e.g. ["sma20","bbands"]; none by default.'),
        width: z
          .number()
          .int()
          .min(width.min)
          .max(width.max)
          .default(width.default)
          .describe(`Image width in pixels (${width.min}-${width.max}, default ${width.default}).`),
        height: z
          .number()
          .int()
          .min(height.min)
          .max(height.max)
          .default(height.default)
          .describe(`Image height in pixels (${height.min}-${height.max}, default ${height.default}).`),
        until: z
          .union([z.number(), z.string().max(64)])
          .optional()
          .describe("End of the chart, exclusive (ms epoch or ISO-8601 such as '2026-01-05T12:00:00Z'); the newest candle when omitted."),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Candle chart (PNG)'),
    },
    (args) =>
      runTool('render_chart', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { until } = parseTimeRange({ until: args.until });
        const { timeframe, limit } = args;
        const size = timeframeMs(timeframe);
        const warmup = overlayWarmupBars(args.overlays, timeframe);
        const { candles, freshness } = await deps.query.getCandleHistory({
          exchange,
          symbol,
          timeframe,
          ...(until !== undefined && { until }),
          count: limit + warmup,
        });
        const market = `${exchange} ${symbol}`;
        const newest = candles.at(-1);
        if (!newest) {
          return toolFailure(
            `No ${timeframe} candles are stored for ${market}${until === undefined ? '' : ` before ${iso(until)}`}. ` +
              (until === undefined
                ? 'Call list_markets to see which markets have candles or trades, and get_data_health for this feed.'
                : 'Retry without until (the newest candles), or with a later until; list_markets shows the time range held.'),
          );
        }
        // the window: `limit` buckets ending at until's bucket, else at the newest candle's
        const to = until === undefined ? newest.ts + size : bucketStart(until - 1, timeframe) + size;
        const from = to - limit * size;
        const first = candles.findIndex((c) => c.ts >= from);
        if (first < 0) {
          return toolFailure(
            `No ${timeframe} candles of ${market} in the ${limit} buckets from ${iso(from)} to ${iso(to)}; the newest before them opens at ` +
              `${iso(newest.ts)}. Retry with until after that (or omitted), a larger limit, or a longer timeframe.`,
          );
        }
        const shown = candles.slice(first);
        const short = shortOfHistory(candles, first, args.overlays, timeframe);
        const overlays = sliceOverlays(computeOverlays(candles, args.overlays), first);
        const { svg, layout } = buildCandleChartSvg({
          exchange,
          symbol,
          timeframe,
          window: { from, to },
          candles: shown,
          overlays,
          width: args.width,
          height: args.height,
        });
        const png = await renderChartPng(svg);
        const last = shown.at(-1)!;
        const low = Math.min(...shown.map((c) => c.low));
        const high = Math.max(...shown.map((c) => c.high));
        const labels = overlays.map((o) => o.label);
        const shortLabels = short.map((name) => overlays.find((o) => o.name === name)!.label);
        const lines = [
          `${market} ${timeframe} candle chart, ${args.width}x${args.height} PNG: ${limit} buckets opening ${iso(from)} to ${iso(to - size)} (UTC), ` +
            `${shown.length} candles` +
            (layout.missingBuckets > 0 ? `, ${layout.missingBuckets} buckets without data left empty (get_candles gives their reasons).` : '.'),
          `Last close ${last.close} (candle opening ${iso(last.ts)}${last.closed ? '' : ', still forming'}); shown range low ${low}, high ${high}.`,
          labels.length > 0
            ? `Overlays: ${labels.join(', ')}.` +
              (shortLabels.length > 0
                ? ` Stored history before the chart is shorter than ${shortLabels.join(', ')} need: those lines start late or are approximate at first.`
                : '')
            : 'No overlays.',
          freshness.ageMs === null ? 'Freshness unknown.' : `Newest data is ${Math.round(freshness.ageMs / 1000)} s old (as of ${iso(freshness.asOf)}).`,
        ];
        const structured: z.infer<z.ZodObject<typeof Output>> = {
          exchange,
          symbol,
          timeframe,
          image: { width: args.width, height: args.height, mimeType: 'image/png', bytes: png.length },
          window: { from, to, fromIso: iso(from), toIso: iso(to) },
          candles: shown.length,
          missingBuckets: layout.missingBuckets,
          last: { ts: last.ts, close: last.close, closed: last.closed },
          range: { low, high },
          overlays: labels,
          overlaysShortOfHistory: shortLabels,
          freshness: freshnessOut(freshness),
        };
        return {
          content: [
            { type: 'text', text: lines.join('\n') },
            { type: 'image', data: png.toString('base64'), mimeType: 'image/png' },
          ],
          structuredContent: structured,
        };
      }),
  );
}
