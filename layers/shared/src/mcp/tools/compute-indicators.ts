import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import { INDICATOR_PARAMS, INDICATORS, type IndicatorName } from '../../indicators/indicators.js';
import { INDICATOR_LIMITS, IndicatorService, type IndicatorPoint } from '../../query/indicator-service.js';
import type { McpDeps } from '../server.js';
import { csvTable, readOnlyAnnotations, runTool, toolSuccess, type TableColumn } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, marketInput, normalizeMarket, parseTimeRange } from './schemas.js';

/** One input variant per indicator, so each one's parameters are described to the model. */
const IndicatorInput = z.discriminatedUnion(
  'name',
  (Object.keys(INDICATOR_PARAMS) as IndicatorName[]).map((name) =>
    z.object({
      name: z.literal(name).describe(INDICATORS[name].title),
      params: INDICATOR_PARAMS[name].optional().describe('Parameters; omitted ones take the usual defaults.'),
    }),
  ) as unknown as [z.ZodObject, ...z.ZodObject[]],
);

const PointOutput = z.object({
  ts: z.number().describe('Open time of the candle the value belongs to, ms epoch.'),
  closed: z.boolean().describe('false while that candle is still forming: the value can still change.'),
  values: z.record(z.string(), z.number().nullable()).describe('One entry per output column; null during warm-up.'),
});

const Output = {
  exchange: z.string(),
  symbol: z.string(),
  timeframe: TimeframeSchema,
  results: z.array(
    z.object({
      name: z.string().describe('Indicator.'),
      title: z.string(),
      params: z.record(z.string(), z.unknown()).describe('Parameters used, defaults filled in.'),
      outputs: z.array(z.string()).describe('Output columns.'),
      convention: z.string().describe('Seeding, smoothing and warm-up, TA-Lib conventions unless stated.'),
      lookback: z.number().int().describe('Candles before the first value (warm-up).'),
      settled: z
        .boolean()
        .describe('false when the store held less history than the indicator needs, so early values depend on where history starts.'),
      points: z.array(PointOutput).describe('Recent values, oldest first, one per candle.'),
      latest: PointOutput.nullable().describe('The newest point with every output computed.'),
    }),
  ),
  warmupBars: z.number().int().describe('Candles read before the first returned point.'),
  missingBars: z.number().int().describe('Candle buckets with no data in the candles read; indicators treat present candles as consecutive.'),
  freshness: FreshnessOutput,
};

/** Registers `compute_indicators`: indicators computed on the server from stored candles. */
export function registerComputeIndicatorsTool(server: McpServer, deps: McpDeps): void {
  const service = new IndicatorService(deps.query);
  server.registerTool(
    'compute_indicators',
    {
      title: 'Technical indicators',
      description:
        'Computes technical indicators of one market on the server from its stored candles (you never send data): ' +
        'sma, ema, rsi, macd, bbands, atr, adx (+DI/-DI), stoch, obv, vwap (session anchored at 00:00 UTC by default). ' +
        "Values follow TA-Lib's conventions; each result states its convention and warm-up. Returns the last `limit` values per indicator, " +
        'oldest first, each marked closed or forming, and the latest complete value. Timeframes 1m to 1w (default 1h). ' +
        `Up to ${INDICATOR_LIMITS.maxIndicators} indicators per call. Get valid exchange/symbol values from list_markets.`,
      inputSchema: {
        ...marketInput,
        timeframe: TimeframeSchema.default('1h').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        indicators: z
          .array(IndicatorInput)
          .min(1)
          .max(INDICATOR_LIMITS.maxIndicators)
          .describe('Indicators to compute, e.g. [{"name":"rsi"},{"name":"macd","params":{"fast":12,"slow":26,"signal":9}}].'),
        limit: z
          .number()
          .int()
          .min(1)
          .max(INDICATOR_LIMITS.maxLimit)
          .default(INDICATOR_LIMITS.defaultLimit)
          .describe(`Values returned per indicator (default ${INDICATOR_LIMITS.defaultLimit}, at most ${INDICATOR_LIMITS.maxLimit}).`),
        until: z
          .union([z.number(), z.string()])
          .optional()
          .describe('Use candles opening before this time (ms epoch or ISO-8601); the newest when omitted.'),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Technical indicators'),
    },
    (args) =>
      runTool('compute_indicators', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { until } = parseTimeRange({ until: args.until });
        const answer = await service.compute({
          exchange,
          symbol,
          timeframe: args.timeframe,
          indicators: args.indicators as { name: IndicatorName; params?: Record<string, unknown> }[],
          limit: args.limit,
          ...(until !== undefined && { until }),
        });
        const structured = {
          exchange,
          symbol,
          timeframe: args.timeframe,
          results: answer.results.map((r) => ({ ...r, points: r.points.map(pointOut), latest: r.latest && pointOut(r.latest) })),
          warmupBars: answer.warmupBars,
          missingBars: answer.missingBars,
          freshness: freshnessOut(answer.freshness),
        };
        return toolSuccess(structured, indicatorText(structured));
      }),
  );
}

/** The answer as JSON without the points, then each indicator's points as a CSV table. */
function indicatorText(answer: { readonly results: readonly { name: string; outputs: readonly string[]; points: readonly z.infer<typeof PointOutput>[] }[] } & Record<string, unknown>): string {
  const head = { ...answer, results: answer.results.map(({ points: _points, ...r }) => r) };
  const tables = answer.results.map((r) => {
    const columns: TableColumn<z.infer<typeof PointOutput>>[] = ['ts', 'closed', ...r.outputs.map((o) => [o, (p: z.infer<typeof PointOutput>) => p.values[o] ?? null] as const)];
    return `${r.name} points (${r.points.length}, CSV, oldest first, same values as structuredContent.results[].points):\n${csvTable(columns, r.points)}`;
  });
  return [JSON.stringify(head), ...tables].join('\n');
}

function pointOut(p: IndicatorPoint): z.infer<typeof PointOutput> {
  return { ts: p.ts, closed: p.closed, values: { ...p.values } };
}
