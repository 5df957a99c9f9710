import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import type { CandleView } from '../../query/market-query.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import {
  FreshnessOutput,
  freshnessOut,
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
    .describe("'trades': built from collected trades; 'exchange': taken from the exchange; 'mixed': minutes of both."),
});

const Output = {
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  timeframe: TimeframeSchema.describe('Timeframe of the candles.'),
  candles: z.array(CandleOutput).describe('Candles, always oldest first within the page.'),
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
        'each with closed (false while still forming) and source (built from collected trades or taken from the exchange), plus freshness. ' +
        'Timeframes 1m to 1w (default 1m), rolled up from 1m candles. ' +
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
        const page = await deps.query.getCandles({
          exchange,
          symbol,
          timeframe: args.timeframe,
          ...parseTimeRange(args),
          limit: args.limit,
          ...(args.cursor !== undefined && { cursor: args.cursor }),
        });
        const candles = page.candles.map(candleOut);
        return toolSuccess({
          exchange,
          symbol,
          timeframe: args.timeframe,
          candles,
          count: candles.length,
          nextCursor: page.nextCursor,
          freshness: freshnessOut(page.freshness),
        });
      }),
  );
}

function candleOut(c: CandleView): z.infer<typeof CandleOutput> {
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
  };
}
