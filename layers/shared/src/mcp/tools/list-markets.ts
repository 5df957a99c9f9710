import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { ChannelCoverage, MarketSummary } from '../../query/market-query.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, pageInput, pageOutput } from './schemas.js';

const ChannelOutput = z
  .object({
    firstTs: z.number().describe('Exchange time of the oldest item held, ms epoch.'),
    lastTs: z.number().describe('Exchange time of the newest item held, ms epoch.'),
    ageMs: z.number().describe('Server time minus lastTs: how stale this channel is.'),
    events: z.number().describe('Events received (replays count again, so an upper bound of items held).'),
  })
  .optional();

const MarketOutput = z.object({
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  channels: z
    .object({
      trades: ChannelOutput.describe('Trades (get_trades; also the source of get_candles).'),
      tickers: ChannelOutput.describe('Tickers (get_ticker).'),
      books: ChannelOutput.describe('Order book snapshots (get_order_book).'),
      quotes: ChannelOutput.describe('Best bid/ask at every change of the top of book (get_order_book quote, get_market_snapshot).'),
      candles: ChannelOutput.describe('Candles taken from the exchange (get_candles).'),
    })
    .describe('Channels held for this market; a missing channel has no data.'),
});

const Output = {
  markets: z.array(MarketOutput).describe('Markets held, ordered by exchange then symbol.'),
  total: z.number().int().describe('Markets matching the filter across all pages.'),
  ...pageOutput,
  freshness: FreshnessOutput,
};

/** Registers `list_markets`: what the store holds, per exchange/symbol/channel, with ranges and age. */
export function registerListMarketsTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'list_markets',
    {
      title: 'List markets held',
      description:
        'Lists the markets (exchange + symbol) this server holds data for and, per channel (trades, tickers, books, candles), ' +
        'the first/last exchange timestamps (ms epoch), ageMs of the newest item and an event count. ' +
        'Call this first: it gives the valid exchange and symbol values for get_ticker, get_order_book, get_trades and get_candles, ' +
        'and shows whether a feed is live (small ageMs) or stale. Optional exchange filter; paged with limit and cursor.',
      inputSchema: {
        exchange: z
          .string()
          .min(1)
          .max(64)
          .optional()
          .describe("Only markets of this ccxt exchange id, e.g. 'binance'. Omit to list all exchanges."),
        ...pageInput,
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('List markets held'),
    },
    (args) =>
      runTool('list_markets', deps, async () => {
        const page = await deps.query.listMarkets({
          ...(args.exchange !== undefined && { exchange: args.exchange.trim().toLowerCase() }),
          limit: args.limit,
          ...(args.cursor !== undefined && { cursor: args.cursor }),
        });
        const markets = page.markets.map(marketOut);
        const lastTs = page.markets.flatMap((m) => Object.values(m.channels).map((c) => c.lastTs));
        const newestTs = lastTs.length ? Math.max(...lastTs) : null;
        return toolSuccess({
          markets,
          total: page.total,
          count: markets.length,
          nextCursor: page.nextCursor,
          freshness: freshnessOut({
            asOf: page.asOf,
            newestTs,
            ageMs: newestTs === null ? null : Math.max(0, page.asOf - newestTs),
          }),
        });
      }),
  );
}

function marketOut(m: MarketSummary): z.infer<typeof MarketOutput> {
  const channels: z.infer<typeof MarketOutput>['channels'] = {};
  for (const name of ['trades', 'tickers', 'books', 'quotes', 'candles'] as const) {
    const c = m.channels[name];
    if (c) channels[name] = channelOut(c);
  }
  return { exchange: m.exchange, symbol: m.symbol, channels };
}

function channelOut(c: ChannelCoverage): NonNullable<z.infer<typeof ChannelOutput>> {
  return { firstTs: c.firstTs, lastTs: c.lastTs, ageMs: c.ageMs, events: c.events };
}
