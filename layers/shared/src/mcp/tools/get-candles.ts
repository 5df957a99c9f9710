import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import { DEFAULT_QUERY_LIMITS, type CandleGap, type CandlePageItem } from '../../query/market-query.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, tableText, toolSuccess } from '../tool-result.js';
import {
  FreshnessOutput,
  freshnessOut,
  iso,
  marketInput,
  normalizeMarket,
  pageInput,
  pageOutput,
  parseTimeRange,
  rangeInput,
} from './schemas.js';

const CandleOutput = z.object({
  ts: z.number().describe('Open time of the candle, ms epoch (UTC-aligned; weeks open Monday 00:00 UTC).'),
  open: z.number().describe('First price.'),
  high: z.number().describe('Highest price.'),
  low: z.number().describe('Lowest price.'),
  close: z.number().describe('Last price (so far, while forming).'),
  volume: z.number().describe('Volume in base currency.'),
  trades: z.number().int().describe('Trades in the candle; 0 where the exchange does not say.'),
  closed: z.boolean().describe('false while the candle is still forming: its values can still change.'),
  source: z
    .enum(['trades', 'exchange', 'mixed'])
    .describe(
      "Provenance. 'trades': built by this platform from individual trades it stored (collected live, recovered by a gap fill, " +
        "or backfilled by trade id: the same rows, so get_trades lists them). 'exchange': the exchange's own 1m OHLCV, streamed live " +
        "or backfilled (fetchOHLCV), used for minutes without stored trades; the store does not keep which of the two. " +
        "'mixed': a rolled-up candle whose minutes are of both kinds (per minute, stored trades win).",
    ),
  missingMinutes: z
    .number()
    .int()
    .nullable()
    .describe(
      'Minutes of the candle that have ended and hold no data (no trade collected, no exchange candle): 0 means every minute is there; ' +
        'always 0 at 1m. A rolled-up candle with missing minutes is built from the minutes it has (its open may not be the bucket\'s first price). ' +
        `null when not counted: pages spanning more than ${DEFAULT_QUERY_LIMITS.maxCountedMinutes} minutes (e.g. many daily candles) are not counted; ask for fewer candles to get the counts.`,
    ),
  feedGap: z
    .enum(['unfilled', 'open', 'filled'])
    .nullable()
    .describe(
      "The completeness ledger's worst trade-feed gap touching this candle: 'unfilled' = trades lost, the candle is short of them; " +
        "'open' = being filled now, retry later; 'filled' = recovered; null = none recorded.",
    ),
  complete: z
    .boolean()
    .nullable()
    .describe('true when missingMinutes is 0 and no unfilled or open feed gap touches the candle; null when minutes cannot be counted.'),
});

const GapOutput = z.object({
  from: z.number().describe('Open time of the first missing bucket, ms epoch.'),
  to: z.number().describe('Open time of the first bucket after the gap (exclusive), ms epoch.'),
  fromIso: z.string(),
  toIso: z.string(),
  buckets: z.number().int().describe('Missing candles in this range.'),
  reason: z
    .enum(['no_trades', 'feed_gap_unfilled', 'feed_gap_open', 'before_first_data', 'after_last_data', 'unverified'])
    .describe(
      "no_trades: no trade happened as far as the collector knows (no feed gap recorded, or one filled without trades here): a quiet or " +
        'illiquid market, not an error. feed_gap_unfilled: the trade feed lost data here and it could not be recovered. feed_gap_open: a ' +
        "feed gap here is being filled; retry later. before_first_data / after_last_data: outside the range held for this market " +
        '(after_last_data: nothing newer is stored; check freshness and get_data_health). unverified: nothing stored and no ' +
        'completeness ledger is available to tell a quiet market from lost data.',
    ),
});

const Output = {
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  timeframe: TimeframeSchema.describe('Timeframe of the candles.'),
  candles: z.array(CandleOutput).describe('Candles that hold data, always oldest first within the page. A bucket without data is never a candle: see gaps.'),
  window: z
    .object({ from: z.number(), to: z.number(), fromIso: z.string(), toIso: z.string() })
    .describe('The buckets this page accounts for, [from, to) in open times: each is in candles or in gaps. Pages met through nextCursor have adjoining windows.'),
  gaps: z
    .array(GapOutput)
    .describe(`Buckets of the window without any candle, merged into ranges, oldest first (at most ${DEFAULT_QUERY_LIMITS.maxGapRanges}; see gapsOmitted).`),
  gapsOmitted: z.number().int().describe('Newest gap ranges left out to keep the answer bounded; missingBuckets still counts them.'),
  missingBuckets: z.number().int().describe('Buckets of the window without a candle, in total.'),
  ledger: z
    .enum(['checked', 'partial', 'absent'])
    .describe("Whether gap reasons come from the completeness ledger: 'partial' when it holds more gaps than one answer reads; 'absent' when this deployment has none."),
  ...pageOutput,
  freshness: FreshnessOutput,
};

/** Registers `get_candles`: OHLCV candles of one market in any ccxt timeframe, each marked closed or forming. */
export function registerGetCandlesTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'get_candles',
    {
      title: 'OHLCV candles',
      description:
        'Returns OHLCV candles of one market (open time in ms epoch, open, high, low, close, volume, trade count), oldest first within a page, ' +
        'each with closed (false while still forming), source (built from stored trades, or the exchange\'s own OHLCV: live or backfilled), ' +
        'missingMinutes and feedGap (is the candle whole?), plus freshness. Timeframes 1m to 1w (default 1m), rolled up from 1m candles. ' +
        'Missing data is never a flat candle: every bucket of the answer\'s window without data is listed in gaps (merged ranges) with a ' +
        "reason: no_trades (a quiet market), feed_gap_unfilled (lost data), feed_gap_open, before_first_data, after_last_data. " +
        'Without since: the most recent candles, and nextCursor pages back in time; with since: candles from since onward, paging forward. ' +
        'Use it for price history, trends and volatility. Get valid exchange/symbol values from list_markets.',
      inputSchema: {
        ...marketInput,
        timeframe: TimeframeSchema.default('1m').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        ...rangeInput,
        ...pageInput,
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('OHLCV candles'),
    },
    (args) =>
      runTool('get_candles', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const page = await deps.query.getCandles(
          {
            exchange,
            symbol,
            timeframe: args.timeframe,
            ...parseTimeRange(args),
            limit: args.limit,
            ...(args.cursor !== undefined && { cursor: args.cursor }),
          },
          deps.ledger,
        );
        const candles = page.candles.map(candleOut);
        const answer = {
          exchange,
          symbol,
          timeframe: args.timeframe,
          candles,
          count: candles.length,
          window: { ...page.window, fromIso: iso(page.window.from), toIso: iso(page.window.to) },
          gaps: page.gaps.map(gapOut),
          gapsOmitted: page.gapsOmitted,
          missingBuckets: page.missingBuckets,
          ledger: page.ledger,
          nextCursor: page.nextCursor,
          freshness: freshnessOut(page.freshness),
        };
        return toolSuccess(answer, tableText(answer, 'candles', CANDLE_COLUMNS, candles));
      }),
  );
}

const CANDLE_COLUMNS = Object.keys(CandleOutput.shape) as (keyof z.infer<typeof CandleOutput>)[];

function candleOut(c: CandlePageItem): z.infer<typeof CandleOutput> {
  return {
    ts: c.ts,
    open: c.open,
    high: c.high,
    low: c.low,
    close: c.close,
    volume: c.volume,
    trades: c.trades,
    closed: c.closed,
    source: c.source,
    missingMinutes: c.missingMinutes,
    feedGap: c.feedGap,
    complete: c.missingMinutes === null ? null : c.missingMinutes === 0 && c.feedGap !== 'unfilled' && c.feedGap !== 'open',
  };
}

function gapOut(g: CandleGap): z.infer<typeof GapOutput> {
  return { from: g.from, to: g.to, fromIso: iso(g.from), toIso: iso(g.to), buckets: g.buckets, reason: g.reason };
}
