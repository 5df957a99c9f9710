import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import type { Logger } from '../../observability/logger.js';
import type { MarketQueryService } from '../../query/market-query.js';
import { COMPARATORS, MarketScanner, SCAN_LIMITS, SERIES_HELP, type Comparator } from '../../query/market-scanner.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso } from './schemas.js';

export interface ScanMarketsDeps {
  readonly query: MarketQueryService;
  readonly logger?: Logger;
  readonly metrics?: McpMetrics;
}

/** A series of the condition language (query/market-scanner.ts), e.g. 'rsi:14'. */
export const Series = z.string().min(1).max(64);

/** One condition, as scan_markets and backtest_strategy take it. */
export const Condition = z.object({
  series: Series.describe(`Left side. ${SERIES_HELP}`),
  op: z
    .enum(COMPARATORS as [Comparator, ...Comparator[]])
    .describe("Comparator; crosses_above/crosses_below: at or below (above) on the previous candle, above (below) on the evaluated one."),
  value: z.union([z.number(), Series]).describe("Right side: a number (e.g. 30) or another series (e.g. 'volume_sma:20', 'ema:50')."),
});

const Output = {
  timeframe: TimeframeSchema,
  matches: z
    .array(
      z.object({
        exchange: z.string(),
        symbol: z.string(),
        ts: z.number().describe('Open time of the candle evaluated, ms epoch.'),
        iso: z.string(),
        closed: z.boolean().describe('false when a forming candle was evaluated (at=latest).'),
        values: z.record(z.string(), z.number()).describe("Each series of the request on that candle; '<series>@prev' is the previous candle (crossings)."),
        held: z.array(z.boolean()).describe('Which conditions held, in request order.'),
        settled: z.boolean().describe('false when a recursive series (ema, rsi, macd, atr, adx) had less history than it needs to be exact.'),
        missingBars: z.number().int().describe('Missing candle buckets in the candles read; indicators treat present candles as consecutive.'),
        ageMs: z.number().nullable().describe("Age of the market's newest data: large means the feed stopped and the candle is old."),
      }),
    )
    .describe('Markets meeting the conditions, sorted by sortBy.'),
  matched: z.number().int().describe('Markets meeting the conditions, before limit.'),
  sortBy: z.string(),
  scanned: z.number().int().describe('Markets scanned.'),
  totalMarkets: z.number().int().describe('Markets held (of the requested exchanges).'),
  notScanned: z.number().int().describe('Markets left out by maxMarkets; raise it or narrow exchanges to scan them.'),
  skipped: z
    .array(
      z.object({
        exchange: z.string(),
        symbol: z.string(),
        reason: z.enum(['no_candles', 'not_enough_candles', 'no_closed_candle']),
        detail: z.string(),
      }),
    )
    .describe(`Scanned markets that could not be evaluated, and why (first ${SCAN_LIMITS.maxSkippedListed}).`),
  skippedOmitted: z.number().int(),
  candlesRead: z.number().int(),
  freshness: FreshnessOutput.describe("newestTs: the newest candle evaluated among the matches (each match has its market's own ageMs); null without matches."),
};

/** Registers `scan_markets`: screens every market held by indicator conditions. */
export function registerScanMarketsTool(server: McpServer, deps: ScanMarketsDeps): void {
  const scanner = new MarketScanner(deps.query);
  server.registerTool(
    'scan_markets',
    {
      title: 'Scan markets by conditions',
      description:
        'Screens every market the store holds (or those of some exchanges) by conditions on one timeframe, evaluated on each market\'s last closed candle ' +
        "by default, e.g. RSI oversold with volume above its mean: conditions [{series:'rsi:14',op:'<',value:30},{series:'volume',op:'>',value:'volume_sma:20'}], match 'all'. " +
        'Indicators are computed as compute_indicators does (TA-Lib conventions). Returns the matching markets with the values behind each condition, ' +
        'sorted by a series; markets without enough candles are listed as skipped with the reason. ' +
        `At most ${SCAN_LIMITS.maxMarkets} markets per call (maxMarkets) and ${SCAN_LIMITS.maxConditions} conditions.`,
      inputSchema: {
        timeframe: TimeframeSchema.default('1h').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        conditions: z.array(Condition).min(1).max(SCAN_LIMITS.maxConditions).describe('Conditions on each market.'),
        match: z.enum(['all', 'any']).default('all').describe("'all': every condition must hold; 'any': at least one."),
        exchanges: z
          .array(z.string().min(1).max(64))
          .max(50)
          .optional()
          .describe('ccxt exchange ids to scan, e.g. ["binance"]; every exchange held when omitted.'),
        at: z
          .enum(['last_closed', 'latest'])
          .default('last_closed')
          .describe("Evaluate on each market's last closed candle (default), or on the newest one even while it is forming."),
        sortBy: Series.optional().describe("Series to sort matches by, e.g. 'rsi:14'; the first condition's series when omitted."),
        order: z.enum(['asc', 'desc']).default('asc').describe('Sort order of sortBy.'),
        limit: z
          .number()
          .int()
          .min(1)
          .max(SCAN_LIMITS.maxLimit)
          .default(SCAN_LIMITS.defaultLimit)
          .describe(`Most matches returned (default ${SCAN_LIMITS.defaultLimit}, at most ${SCAN_LIMITS.maxLimit}).`),
        maxMarkets: z
          .number()
          .int()
          .min(1)
          .max(SCAN_LIMITS.maxMarkets)
          .default(SCAN_LIMITS.defaultMaxMarkets)
          .describe(`Most markets scanned, in list_markets order (default ${SCAN_LIMITS.defaultMaxMarkets}, at most ${SCAN_LIMITS.maxMarkets}).`),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Scan markets by conditions'),
    },
    (args) =>
      runTool('scan_markets', deps, async () => {
        const exchanges = args.exchanges && [...new Set(args.exchanges.map((e) => e.trim().toLowerCase()))];
        const answer = await scanner.scan({
          timeframe: args.timeframe,
          conditions: args.conditions,
          match: args.match,
          at: args.at,
          order: args.order,
          limit: args.limit,
          maxMarkets: args.maxMarkets,
          ...(exchanges && { exchanges }),
          ...(args.sortBy !== undefined && { sortBy: args.sortBy }),
        });
        return toolSuccess({
          timeframe: args.timeframe,
          matches: answer.matches.map((m) => ({ ...m, iso: iso(m.ts), values: { ...m.values }, held: [...m.held] })),
          matched: answer.matched,
          sortBy: answer.sortBy,
          scanned: answer.scanned,
          totalMarkets: answer.totalMarkets,
          notScanned: answer.notScanned,
          skipped: answer.skipped.map((s) => ({ ...s })),
          skippedOmitted: answer.skippedOmitted,
          candlesRead: answer.candlesRead,
          freshness: freshnessOut(scanFreshness(answer.asOf, answer.matches)),
        });
      }),
  );
}

function scanFreshness(asOf: number, matches: readonly { ts: number }[]): { asOf: number; newestTs: number | null; ageMs: number | null } {
  const newestTs = matches.length === 0 ? null : Math.max(...matches.map((m) => m.ts));
  return { asOf, newestTs, ageMs: newestTs === null ? null : Math.max(0, asOf - newestTs) };
}
