import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { Logger } from '../../observability/logger.js';
import { compareExchanges } from '../../query/exchange-comparison.js';
import type { MarketQueryService } from '../../query/market-query.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut } from './schemas.js';

export interface CompareExchangesDeps {
  readonly query: MarketQueryService;
  readonly logger?: Logger;
  readonly metrics?: McpMetrics;
}

export const MAX_COMPARE_SYMBOLS = 20;
const DEFAULT_STALE_MS = 60_000;

const Figure = (what: string) =>
  z
    .object({
      value: z.number(),
      ts: z.number().describe('Exchange time of the figure, ms epoch.'),
      ageMs: z.number().describe('Age at asOf.'),
      source: z.enum(['trade', 'ticker', 'book', 'quote']).describe('What it was read from.'),
      stale: z.boolean().describe('ageMs above staleAfterMs: left out of the median and the best spread.'),
    })
    .nullable()
    .describe(`${what}; null when the exchange has no data for it.`);

const Output = {
  staleAfterMs: z.number(),
  symbols: z.array(
    z.object({
      symbol: z.string(),
      exchanges: z.array(
        z.object({
          exchange: z.string(),
          last: Figure('Last price: the newer of the last trade and the ticker'),
          bid: Figure('Best bid: the newest of the latest quote, book snapshot and ticker'),
          ask: Figure('Best ask, from the same source as bid'),
          divergenceBps: z.number().nullable().describe('(last - medianPrice) / medianPrice x 10000; null without a last price or a median.'),
          staleSides: z.array(z.enum(['last', 'bid', 'ask'])).describe('Figures older than staleAfterMs.'),
        }),
      ),
      medianPrice: z.number().nullable().describe('Median of the fresh last prices across exchanges; null when none is fresh.'),
      medianOf: z.number().int().describe('Fresh last prices the median is of.'),
      bestSpread: z
        .object({
          buyExchange: z.string().describe('Exchange with the ask bought at.'),
          ask: z.number(),
          sellExchange: z.string().describe('Another exchange, with the bid sold at.'),
          bid: z.number(),
          bps: z.number().describe('(bid - ask) / ask x 10000: positive = a cross-exchange opportunity before fees and transfer; negative = its cost.'),
        })
        .nullable()
        .describe('Best of buying at one exchange\'s fresh ask and selling at another\'s fresh bid; null with fewer than two exchanges quoting fresh sides.'),
    }),
  ),
  missing: z.array(z.string()).describe('Requested symbols no (requested) exchange holds.'),
  freshness: FreshnessOutput,
};

/** Registers `compare_exchanges`: one symbol's price, bid and ask across exchanges, divergence and best cross-exchange spread. */
export function registerCompareExchangesTool(server: McpServer, deps: CompareExchangesDeps): void {
  server.registerTool(
    'compare_exchanges',
    {
      title: 'Compare exchanges',
      description:
        'For one or more symbols, compares the exchanges holding them: each exchange\'s last price, best bid and ask with their ages, ' +
        'the divergence of its last price from the median of the fresh ones in bps, and the best cross-exchange spread (buy at the lowest ask, ' +
        'sell at the highest bid on another exchange) in bps. Figures older than staleAfterMs are flagged stale and left out of the median and the spread. ' +
        'Symbols are ccxt unified symbols; list_markets shows what is held.',
      inputSchema: {
        symbols: z
          .array(z.string().min(1).max(64))
          .min(1)
          .max(MAX_COMPARE_SYMBOLS)
          .describe(`ccxt unified symbols, e.g. ["BTC/USDT"] (at most ${MAX_COMPARE_SYMBOLS}).`),
        exchanges: z
          .array(z.string().min(1).max(64))
          .max(50)
          .optional()
          .describe('ccxt exchange ids to compare, e.g. ["binance","okx"]; every exchange holding the symbols when omitted.'),
        staleAfterMs: z
          .number()
          .int()
          .min(100)
          .max(86_400_000)
          .default(DEFAULT_STALE_MS)
          .describe(`A figure older than this (ms) is stale (default ${DEFAULT_STALE_MS}).`),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Compare exchanges'),
    },
    (args) =>
      runTool('compare_exchanges', deps, async () => {
        const symbols = [...new Set(args.symbols.map((s) => s.trim().toUpperCase()))];
        const exchanges = args.exchanges && [...new Set(args.exchanges.map((e) => e.trim().toLowerCase()))];
        const snapshot = await deps.query.getMarketSnapshot({ symbols, ...(exchanges && { exchanges }) });
        const compared = compareExchanges(snapshot, args.staleAfterMs);
        const times = snapshot.snapshots.flatMap((s) => [s.price, s.bid, s.ask]).flatMap((f) => (f ? [f.ts] : []));
        const newestTs = times.length ? Math.max(...times) : null;
        return toolSuccess({
          staleAfterMs: args.staleAfterMs,
          symbols: compared.map((c) => ({
            ...c,
            exchanges: c.exchanges.map((e) => ({ ...e, staleSides: [...e.staleSides] })),
          })),
          missing: [...snapshot.missing],
          freshness: freshnessOut({ asOf: snapshot.asOf, newestTs, ageMs: newestTs === null ? null : Math.max(0, snapshot.asOf - newestTs) }),
        });
      }),
  );
}
