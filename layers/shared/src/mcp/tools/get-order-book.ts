import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { OrderBook, Quote } from '../../domain/index.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso, marketInput, normalizeMarket } from './schemas.js';

const MAX_DEPTH = 1000;

const Levels = z
  .array(z.tuple([z.number(), z.number()]))
  .describe('Price levels as [price, amount in base currency], best first.');

const HealthOutput = z.enum(['healthy', 'resyncing', 'stale', 'unverified']);

const BookOutput = z
  .object({
    ts: z.number().describe('Exchange time of the snapshot, ms epoch.'),
    tsIso: z.string().describe('ts as ISO-8601 UTC.'),
    localTs: z.number().describe('When the collector received it, ms epoch.'),
    seq: z.number().nullable().describe("Exchange sequence / update id; null when the exchange gives none."),
    storedDepth: z.number().int().describe('Levels per side the stored snapshot was taken with.'),
    bids: Levels,
    asks: Levels,
    bestBid: z.number().nullable().describe('Highest bid price; null when there are no bids.'),
    bestAsk: z.number().nullable().describe('Lowest ask price; null when there are no asks.'),
    mid: z.number().nullable().describe('(bestBid + bestAsk) / 2; null when a side is empty.'),
    spread: z.number().nullable().describe('bestAsk - bestBid; null when a side is empty.'),
    health: HealthOutput.describe(
        'How far the book could be trusted when this snapshot was taken. ' +
          'healthy: verified (the exchange checksum matched every update, or the update sequence was continuous and a REST snapshot agreed); ' +
          'resyncing: a break was found (checksum mismatch, sequence gap or REST disagreement) and a fresh snapshot was being fetched, so levels may be wrong; ' +
          'stale: no update arrived within the stale window, so it may be out of date; ' +
          'unverified: live and continuous as far as the collector could tell, but nothing checked its content (the exchange sends no checksum and no REST check has run since the last snapshot), also every snapshot stored before health was kept.',
      ),
  })
  .nullable()
  .describe('Latest snapshot held; null when this market has no order book channel (see list_markets).');

const QuoteOutput = z
  .object({
    ts: z.number().describe('Exchange time of the book update that set this top of book, ms epoch.'),
    tsIso: z.string().describe('ts as ISO-8601 UTC.'),
    localTs: z.number().describe('When the collector received that update, ms epoch.'),
    seq: z.number().nullable().describe('Exchange sequence / update id of that update; null when the exchange gives none.'),
    bid: z.number().describe('Best bid price.'),
    bidSize: z.number().describe('Amount at the best bid, base currency.'),
    ask: z.number().describe('Best ask price.'),
    askSize: z.number().describe('Amount at the best ask, base currency.'),
    mid: z.number().describe('(bid + ask) / 2.'),
    spread: z.number().describe('ask - bid.'),
    health: HealthOutput.describe("The book's health at that update (same states as book.health)."),
  })
  .nullable()
  .describe(
    'Latest best bid/ask. Stored at every change of the top of book, not at the snapshot cadence, so it is usually newer than book (compare ts); ' +
      'prefer it over book.bestBid/bestAsk for the current touch. null when none is held.',
  );

const Output = {
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  book: BookOutput,
  quote: QuoteOutput,
  freshness: FreshnessOutput,
};

/** Registers `get_order_book`: the latest stored top-N order book snapshot of one market. */
export function registerGetOrderBookTool(server: McpServer, deps: McpDeps): void {
  server.registerTool(
    'get_order_book',
    {
      title: 'Latest order book snapshot',
      description:
        'Returns the latest stored top-N order book snapshot of one market: bids and asks as [price, amount] levels, best first, ' +
        'plus best bid/ask, mid and spread, with exchange time (ms epoch) and freshness (ageMs). ' +
        'It is a periodic snapshot, not a live book: check freshness.ageMs, and book.health (healthy, resyncing, stale or unverified) before relying on its levels. ' +
        'quote is the latest best bid/ask with sizes, stored at every change of the top of book, so it can be newer than the snapshot: use it for the current touch. ' +
        'Use depth to return fewer levels. ' +
        'Get valid exchange/symbol values from list_markets.',
      inputSchema: {
        ...marketInput,
        depth: z
          .number()
          .int()
          .min(1)
          .max(MAX_DEPTH)
          .optional()
          .describe(`Levels per side to return (1-${MAX_DEPTH}); omit for every level of the stored snapshot.`),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Latest order book snapshot'),
    },
    (args) =>
      runTool('get_order_book', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { book, quote, freshness } = await deps.query.getOrderBook(exchange, symbol);
        return toolSuccess({
          exchange,
          symbol,
          book: book && bookOut(book, args.depth ?? MAX_DEPTH),
          quote: quote && quoteOut(quote),
          freshness: freshnessOut(freshness),
        });
      }),
  );
}

function bookOut(b: OrderBook, depth: number): NonNullable<z.infer<typeof BookOutput>> {
  const bids = b.bids.slice(0, depth).map(([p, a]): [number, number] => [p, a]);
  const asks = b.asks.slice(0, depth).map(([p, a]): [number, number] => [p, a]);
  const bestBid = bids[0]?.[0] ?? null;
  const bestAsk = asks[0]?.[0] ?? null;
  const both = bestBid !== null && bestAsk !== null;
  return {
    ts: b.ts,
    tsIso: iso(b.ts),
    localTs: b.localTs,
    seq: b.seq,
    storedDepth: b.depth,
    bids,
    asks,
    bestBid,
    bestAsk,
    mid: both ? (bestBid + bestAsk) / 2 : null,
    spread: both ? bestAsk - bestBid : null,
    health: b.health,
  };
}

function quoteOut(q: Quote): NonNullable<z.infer<typeof QuoteOutput>> {
  return {
    ts: q.ts,
    tsIso: iso(q.ts),
    localTs: q.localTs,
    seq: q.seq,
    bid: q.bid,
    bidSize: q.bidSize,
    ask: q.ask,
    askSize: q.askSize,
    mid: (q.bid + q.ask) / 2,
    spread: q.ask - q.bid,
    health: q.health,
  };
}
