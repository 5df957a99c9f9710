import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { Trade } from '../../domain/index.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, tableText, toolSuccess } from '../tool-result.js';
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

const TradeOutput = z.object({
  id: z.string().describe('Exchange trade id.'),
  ts: z.number().describe('Exchange time, ms epoch.'),
  localTs: z.number().describe('When the collector received it, ms epoch.'),
  price: z.number().describe('Price in quote currency.'),
  amount: z.number().describe('Amount in base currency.'),
  side: z.enum(['buy', 'sell']).describe('Taker side.'),
});

const Output = {
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  trades: z.array(TradeOutput).describe('Trades, always oldest first within the page.'),
  ...pageOutput,
  freshness: FreshnessOutput,
};

/** Registers `get_trades`: stored trades of one market, forward from `since` or the most recent ones, paged. */
export function registerGetTradesTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'get_trades',
    {
      title: 'Trades',
      description:
        'Returns individual trades of one market (id, exchange time in ms epoch, price, amount, taker side), oldest first within a page, with freshness. ' +
        'Without since: the most recent trades (before until, if given), and nextCursor pages further back in time. ' +
        'With since: trades from since onward, and nextCursor pages forward. ' +
        'Use it for tape reading, VWAP or trade-level analysis; for price history over longer spans use get_candles. ' +
        'since/until accept ms epoch numbers or ISO-8601 strings. Get valid exchange/symbol values from list_markets.',
      inputSchema: { ...marketInput, ...rangeInput, ...pageInput },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Trades'),
    },
    (args) =>
      runTool('get_trades', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const page = await deps.query.getTrades({
          exchange,
          symbol,
          ...parseTimeRange(args),
          limit: args.limit,
          ...(args.cursor !== undefined && { cursor: args.cursor }),
        });
        const trades = page.trades.map(tradeOut);
        const answer = { exchange, symbol, trades, count: trades.length, nextCursor: page.nextCursor, freshness: freshnessOut(page.freshness) };
        return toolSuccess(answer, tableText(answer, 'trades', TRADE_COLUMNS, trades));
      }),
  );
}

const TRADE_COLUMNS = Object.keys(TradeOutput.shape) as (keyof z.infer<typeof TradeOutput>)[];

function tradeOut(t: Trade): z.infer<typeof TradeOutput> {
  return { id: t.id, ts: t.ts, localTs: t.localTs, price: t.price, amount: t.amount, side: t.side };
}
