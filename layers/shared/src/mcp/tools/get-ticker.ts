import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { Ticker } from '../../domain/index.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso, marketInput, normalizeMarket } from './schemas.js';

const price = (what: string) => z.number().nullable().describe(`${what}; null when the exchange does not report it.`);

const TickerOutput = z
  .object({
    ts: z.number().describe('Exchange time of the ticker, ms epoch.'),
    tsIso: z.string().describe('ts as ISO-8601 UTC.'),
    localTs: z.number().describe('When the collector received it, ms epoch.'),
    bid: price('Best bid price'),
    bidSize: price('Amount at the best bid, base currency'),
    ask: price('Best ask price'),
    askSize: price('Amount at the best ask, base currency'),
    last: price('Last trade price'),
    open24h: price('Price 24h ago'),
    high24h: price('24h high'),
    low24h: price('24h low'),
    baseVolume24h: price('24h volume in base currency'),
    quoteVolume24h: price('24h volume in quote currency'),
    change24hPct: price('24h change in percent'),
  })
  .nullable()
  .describe('Latest ticker held; null when this market has no ticker channel (see list_markets).');

const Output = {
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  ticker: TickerOutput,
  freshness: FreshnessOutput,
};

/** Registers `get_ticker`: the latest stored ticker of one market. */
export function registerGetTickerTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'get_ticker',
    {
      title: 'Latest ticker',
      description:
        'Returns the latest stored ticker of one market: best bid/ask with sizes, last price, 24h open/high/low, ' +
        '24h base and quote volume and 24h change in percent, with exchange time (ms epoch) and freshness (ageMs). ' +
        'Use it for the current price of a market; check freshness.ageMs before treating it as live. ' +
        'Get valid exchange/symbol values from list_markets.',
      inputSchema: marketInput,
      outputSchema: Output,
      annotations: readOnlyAnnotations('Latest ticker'),
    },
    (args) =>
      runTool('get_ticker', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { ticker, freshness } = await deps.query.getTicker(exchange, symbol);
        return toolSuccess({ exchange, symbol, ticker: ticker && tickerOut(ticker), freshness: freshnessOut(freshness) });
      }),
  );
}

function tickerOut(t: Ticker): NonNullable<z.infer<typeof TickerOutput>> {
  return {
    ts: t.ts,
    tsIso: iso(t.ts),
    localTs: t.localTs,
    bid: t.bid,
    bidSize: t.bidSize,
    ask: t.ask,
    askSize: t.askSize,
    last: t.last,
    open24h: t.open24h,
    high24h: t.high24h,
    low24h: t.low24h,
    baseVolume24h: t.baseVolume24h,
    quoteVolume24h: t.quoteVolume24h,
    change24hPct: t.change24hPct,
  };
}
