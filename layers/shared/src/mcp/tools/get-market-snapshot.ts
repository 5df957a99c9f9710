import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { MarketSnapshot, SnapshotFigure } from '../../query/market-query.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut } from './schemas.js';

export const MAX_SNAPSHOT_SYMBOLS = 20;

const Figure = (what: string) =>
  z
    .object({
      value: z.number(),
      ts: z.number().describe('Exchange time the figure is from, ms epoch.'),
      ageMs: z.number().describe('How old the figure is at asOf.'),
      source: z
        .enum(['trade', 'ticker', 'book', 'quote'])
        .describe('What it was read from: a trade, the ticker, a book snapshot, or a quote (best bid/ask stored at every change of the top of book).'),
    })
    .nullable()
    .describe(`${what}; null when the market has no data for it.`);

const SnapshotOutput = z.object({
  exchange: z.string(),
  symbol: z.string(),
  price: Figure('Last price: the newer of the last stored trade and the ticker'),
  change24hPct: Figure('24h change in percent (ticker)'),
  baseVolume24h: Figure('24h volume in base currency (ticker)'),
  quoteVolume24h: Figure('24h volume in quote currency (ticker)'),
  bid: Figure('Best bid: the newest of the latest quote, book snapshot and ticker'),
  ask: Figure('Best ask, from the same source as bid'),
  spread: Figure('ask - bid, quote currency'),
  spreadBps: Figure('Spread in basis points of the mid price'),
});

const Output = {
  snapshots: z.array(SnapshotOutput).describe('One entry per exchange holding each symbol, ordered by symbol then exchange.'),
  missing: z.array(z.string()).describe('Requested symbols no (requested) exchange holds; list_markets shows what is held.'),
  freshness: FreshnessOutput,
};

/** Registers `get_market_snapshot`: price, 24h change and volume, spread and best bid/ask across exchanges. */
export function registerGetMarketSnapshotTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'get_market_snapshot',
    {
      title: 'Market snapshot across exchanges',
      description:
        'For one or more symbols, returns per exchange: last price, 24h change and volume, best bid/ask, spread (absolute and in bps), ' +
        'each figure with its exchange time, age and source (trade, ticker, book or quote). Best bid/ask come from the newest of the latest quote ' +
        '(stored at every change of the top of book), book snapshot and ticker. Use it for a quick cross-exchange view; ' +
        'compare ageMs values before comparing prices. Symbols are ccxt unified symbols; list_markets shows what is held.',
      inputSchema: {
        symbols: z
          .array(z.string().min(1).max(64))
          .min(1)
          .max(MAX_SNAPSHOT_SYMBOLS)
          .describe(`ccxt unified symbols, e.g. ["BTC/USDT","ETH/USDT"] (at most ${MAX_SNAPSHOT_SYMBOLS}).`),
        exchanges: z
          .array(z.string().min(1).max(64))
          .max(50)
          .optional()
          .describe('ccxt exchange ids to include, e.g. ["binance","okx"]; every exchange holding the symbols when omitted.'),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Market snapshot across exchanges'),
    },
    (args) =>
      runTool('get_market_snapshot', deps, async () => {
        const symbols = [...new Set(args.symbols.map((s) => s.trim().toUpperCase()))];
        const exchanges = args.exchanges && [...new Set(args.exchanges.map((e) => e.trim().toLowerCase()))];
        const answer = await deps.query.getMarketSnapshot({ symbols, ...(exchanges && { exchanges }) });
        const newest = Math.max(...answer.snapshots.flatMap(figures).map((f) => f.ts));
        return toolSuccess({
          snapshots: answer.snapshots.map((s) => ({ ...s })),
          missing: [...answer.missing],
          freshness: freshnessOut({
            asOf: answer.asOf,
            newestTs: Number.isFinite(newest) ? newest : null,
            ageMs: Number.isFinite(newest) ? Math.max(0, answer.asOf - newest) : null,
          }),
        });
      }),
  );
}

function figures(s: MarketSnapshot): SnapshotFigure[] {
  return [s.price, s.bid, s.ask, s.change24hPct].filter((f): f is SnapshotFigure => f !== null);
}
