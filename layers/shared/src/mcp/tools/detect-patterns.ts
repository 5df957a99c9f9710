import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import { CANDLE_PATTERN_NAMES, type CandlePatternName } from '../../indicators/candle-patterns.js';
import type { Logger } from '../../observability/logger.js';
import type { MarketQueryService } from '../../query/market-query.js';
import { PATTERN_LIMITS, PatternDetector } from '../../query/pattern-detector.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso, marketInput, normalizeMarket, parseTimeRange } from './schemas.js';

export interface DetectPatternsDeps {
  readonly query: MarketQueryService;
  readonly logger?: Logger;
  readonly metrics?: McpMetrics;
}

const PatternName = z.enum(CANDLE_PATTERN_NAMES as [CandlePatternName, ...CandlePatternName[]]);

const CandleOutput = z.object({
  ts: z.number().describe('Open time, ms epoch.'),
  open: z.number(),
  high: z.number(),
  low: z.number(),
  close: z.number(),
  volume: z.number(),
  closed: z.boolean().describe('false while the candle is still forming.'),
});

const Output = {
  exchange: z.string(),
  symbol: z.string(),
  timeframe: TimeframeSchema,
  matches: z
    .array(
      z.object({
        ts: z.number().describe('Open time of the signal (last) candle, ms epoch.'),
        iso: z.string().describe('ts as ISO-8601 UTC.'),
        pattern: PatternName,
        direction: z.enum(['bullish', 'bearish', 'neutral']).describe('neutral only for doji (indecision).'),
        signal: z.number().int().describe("TA-Lib's output: +100 bullish, -100 bearish, +-80 a weaker engulfing/harami (one end of the bodies equal); doji +100."),
        closed: z.boolean().describe('false while the signal candle is still forming: the match can still disappear.'),
        candles: z.array(CandleOutput).describe('The candles the rule compares, oldest first: `context` earlier ones, then the pattern itself.'),
        context: z.number().int().describe('How many of the candles are context before the pattern (e.g. the previous low a hammer is near).'),
      }),
    )
    .describe('Matches, newest first.'),
  omitted: z.number().int().describe('Matches beyond limit (older ones).'),
  patterns: z
    .array(
      z.object({
        pattern: PatternName,
        title: z.string(),
        talib: z.string().describe('TA-Lib function followed.'),
        candles: z.number().int(),
        convention: z.string().describe('The rule and the candle size settings (TA-Lib defaults).'),
      }),
    )
    .describe('Each pattern searched and its convention.'),
  window: z
    .object({
      candles: z.number().int(),
      from: z.number().nullable().describe('Open time of the oldest candle searched.'),
      to: z.number().nullable().describe('Open time of the newest candle searched.'),
    })
    .describe('The candles searched for signal candles.'),
  warmupBars: z.number().int().describe('Candles read before the window for the size averages.'),
  unevaluated: z
    .array(z.object({ pattern: PatternName, from: z.number().nullable().describe('First candle it could be evaluated on; null: none.') }))
    .describe('Patterns the store held too little history for on the oldest window candles.'),
  gaps: z
    .array(z.object({ from: z.number(), to: z.number(), buckets: z.number().int() }))
    .describe('Missing candle buckets between the candles read, [from, to) in open times, oldest first (first 20).'),
  missingBars: z.number().int().describe('Missing buckets in all the candles read.'),
  acrossGaps: z.number().int().describe('Matches not reported because a missing bucket lies between their candles.'),
  freshness: FreshnessOutput,
};

/** Registers `detect_patterns`: TA-Lib candlestick patterns in one market's stored candles. */
export function registerDetectPatternsTool(server: McpServer, deps: DetectPatternsDeps): void {
  const detector = new PatternDetector(deps.query);
  server.registerTool(
    'detect_patterns',
    {
      title: 'Candlestick patterns',
      description:
        "Finds candlestick patterns in one market's stored candles, by TA-Lib's rules and default candle settings (body and shadow sizes " +
        `compared with averages of the previous candles): ${CANDLE_PATTERN_NAMES.join(', ')}. ` +
        'Returns matches newest first with the signal candle time, direction, the candles involved and whether the signal candle is closed ' +
        '(a forming candle can still change). Patterns are not trend-filtered: a hammer counts wherever it prints. ' +
        'A pattern whose candles straddle a missing bucket is not reported (counted in acrossGaps); gaps are listed. Get exchange/symbol from list_markets.',
      inputSchema: {
        ...marketInput,
        timeframe: TimeframeSchema.default('1h').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        lookback: z
          .number()
          .int()
          .min(1)
          .max(PATTERN_LIMITS.maxLookback)
          .default(PATTERN_LIMITS.defaultLookback)
          .describe(`Newest candles to search (default ${PATTERN_LIMITS.defaultLookback}, at most ${PATTERN_LIMITS.maxLookback}).`),
        patterns: z.array(PatternName).min(1).max(CANDLE_PATTERN_NAMES.length).optional().describe('Patterns to look for; all when omitted.'),
        limit: z
          .number()
          .int()
          .min(1)
          .max(PATTERN_LIMITS.maxLimit)
          .default(PATTERN_LIMITS.defaultLimit)
          .describe(`Most matches returned, newest first (default ${PATTERN_LIMITS.defaultLimit}, at most ${PATTERN_LIMITS.maxLimit}).`),
        until: z
          .union([z.number(), z.string().max(64)])
          .optional()
          .describe('Use candles opening before this time (ms epoch or ISO-8601); the newest when omitted.'),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Candlestick patterns'),
    },
    (args) =>
      runTool('detect_patterns', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { until } = parseTimeRange({ until: args.until });
        const answer = await detector.detect({
          exchange,
          symbol,
          timeframe: args.timeframe,
          lookback: args.lookback,
          limit: args.limit,
          ...(args.patterns && { patterns: args.patterns }),
          ...(until !== undefined && { until }),
        });
        return toolSuccess({
          exchange,
          symbol,
          timeframe: args.timeframe,
          matches: answer.matches.map((m) => ({
            ts: m.ts,
            iso: iso(m.ts),
            pattern: m.pattern,
            direction: m.direction,
            signal: m.signal,
            closed: m.closed,
            candles: m.candles.map((c) => ({ ...c })),
            context: m.context,
          })),
          omitted: answer.omitted,
          patterns: answer.patterns.map((p) => ({ pattern: p.name, title: p.title, talib: p.talib, candles: p.candles, convention: p.convention })),
          window: { ...answer.window },
          warmupBars: answer.warmupBars,
          unevaluated: answer.unevaluated.map((u) => ({ ...u })),
          gaps: answer.gaps.map((g) => ({ ...g })),
          missingBars: answer.missingBars,
          acrossGaps: answer.acrossGaps,
          freshness: freshnessOut(answer.freshness),
        });
      }),
  );
}
