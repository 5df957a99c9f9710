import { z } from 'zod';
import { ExchangeIdSchema, SymbolSchema } from './symbols.js';
import { TimeframeSchema } from './timeframes.js';

/** ms since the Unix epoch; bounded to catch seconds/µs mix-ups (2009..2100). */
export const EpochMsSchema = z
  .number()
  .int()
  .min(1_230_768_000_000, 'a ms epoch timestamp after 2009')
  .max(4_102_444_800_000, 'a ms epoch timestamp before 2100');

const Price = z.number().finite().positive();
const Amount = z.number().finite().nonnegative();

/** Fields every market event carries: where it is from, exchange time and receipt time. */
const MarketFields = {
  exchange: ExchangeIdSchema,
  symbol: SymbolSchema,
  /** exchange time (ms epoch) */
  ts: EpochMsSchema,
  /** receipt time at the collector (ms epoch) */
  localTs: EpochMsSchema,
};

export const TradeSchema = z
  .object({
    type: z.literal('trade'),
    ...MarketFields,
    /** exchange trade id, as a string */
    id: z.string().min(1).max(128),
    price: Price,
    amount: Amount.refine((a) => a > 0, 'trade amount must be positive'),
    /** taker side */
    side: z.enum(['buy', 'sell']),
  })
  .readonly();

export const TickerSchema = z
  .object({
    type: z.literal('ticker'),
    ...MarketFields,
    bid: Price.nullable(),
    bidSize: Amount.nullable(),
    ask: Price.nullable(),
    askSize: Amount.nullable(),
    last: Price.nullable(),
    open24h: Price.nullable(),
    high24h: Price.nullable(),
    low24h: Price.nullable(),
    /** 24h volume in base currency */
    baseVolume24h: Amount.nullable(),
    /** 24h volume in quote currency */
    quoteVolume24h: Amount.nullable(),
    /** 24h change in percent */
    change24hPct: z.number().finite().nullable(),
  })
  .readonly();

export const BookLevelSchema = z.tuple([Price, Amount]).readonly();

/**
 * How far a book can be trusted when it was taken:
 * - `healthy`: verified: the exchange's checksum matched after every update since the last snapshot,
 *   or (exchanges that send none) its sequence was continuous and a REST snapshot agreed with it;
 * - `resyncing`: a break was found (checksum mismatch, sequence gap, REST disagreement); a fresh
 *   snapshot has been asked for and the book may be wrong until it is applied;
 * - `stale`: no update within the books stale window: it may be out of date;
 * - `unverified`: live and continuous as far as the client can tell, but nothing checked its content
 *   (no checksum sent, no REST cross-check since the last snapshot). Records from before health
 *   was kept read as `unverified`.
 */
export const BookHealthSchema = z.enum(['healthy', 'resyncing', 'stale', 'unverified']);

/** Top-N order book snapshot; `seq` is the exchange's sequence (update id) where it gives one. */
export const OrderBookSchema = z
  .object({
    type: z.literal('book'),
    ...MarketFields,
    seq: z.number().int().nonnegative().nullable(),
    depth: z.number().int().positive().max(1000),
    bids: z.array(BookLevelSchema).max(1000).readonly(),
    asks: z.array(BookLevelSchema).max(1000).readonly(),
    /** the book's health when this snapshot was taken (see BookHealthSchema) */
    health: BookHealthSchema.default('unverified'),
  })
  .readonly();

/**
 * Best bid and ask of a watched book: one per change of the top of book (price or size of either
 * side), published at every change, unlike the throttled snapshots. `ts` is the exchange time of
 * the book update that made it; `seq` and `health` are the book's at that update. A crossed or
 * one-sided top is not a quote.
 */
export const QuoteSchema = z
  .object({
    type: z.literal('quote'),
    ...MarketFields,
    bid: Price,
    bidSize: Amount,
    ask: Price,
    askSize: Amount,
    /** the exchange's sequence (update id) of the book update, where it gives one */
    seq: z.number().int().nonnegative().nullable(),
    /** the book's health at that update (see BookHealthSchema) */
    health: BookHealthSchema.default('unverified'),
  })
  .refine((q) => q.bid < q.ask, { message: 'a quote is not crossed: bid must be below ask', path: ['ask'] })
  .readonly();

export const CandleSourceSchema = z.enum(['trades', 'exchange']);

export const CandleSchema = z
  .object({
    type: z.literal('candle'),
    exchange: ExchangeIdSchema,
    symbol: SymbolSchema,
    timeframe: TimeframeSchema,
    /** open time (ms epoch) */
    ts: EpochMsSchema,
    open: Price,
    high: Price,
    low: Price,
    close: Price,
    volume: Amount,
    /** false while the bucket is still forming */
    closed: z.boolean(),
    /** built from collected trades, or taken from the exchange (backfill) */
    source: CandleSourceSchema,
  })
  .readonly();

/** Which way a signal points: `flat` means "no position" (exit, or stay out). */
export const SignalDirectionSchema = z.enum(['long', 'short', 'flat']);

/**
 * An agent's view of one market, published through MCP (publish_signal). It travels on the stream
 * like market data, partitioned by `signal:<symbol>` (its exchange is optional), and both stores
 * keep it, idempotent on `id`. `publisher` is the identity of the token that published it.
 */
export const SignalSchema = z
  .object({
    type: z.literal('signal'),
    id: z.string().uuid(),
    ts: EpochMsSchema,
    publisher: z.string().min(1).max(128),
    exchange: ExchangeIdSchema.nullable(),
    symbol: SymbolSchema,
    direction: SignalDirectionSchema,
    strength: z.number().min(0).max(1),
    confidence: z.number().min(0).max(1),
    horizon: TimeframeSchema,
    rationale: z.string().min(1).max(4000),
  })
  .readonly();

/** Events that travel on the stream from collectors to consumers. */
export const MarketEventSchema = z.discriminatedUnion('type', [
  TradeSchema,
  TickerSchema,
  OrderBookSchema,
  QuoteSchema,
  CandleSchema,
]);

export type Trade = z.infer<typeof TradeSchema>;
export type Ticker = z.infer<typeof TickerSchema>;
export type BookLevel = z.infer<typeof BookLevelSchema>;
export type BookHealth = z.infer<typeof BookHealthSchema>;
export type OrderBook = z.infer<typeof OrderBookSchema>;
export type Quote = z.infer<typeof QuoteSchema>;
export type Candle = z.infer<typeof CandleSchema>;
export type CandleSource = z.infer<typeof CandleSourceSchema>;
export type Signal = z.infer<typeof SignalSchema>;
export type SignalDirection = z.infer<typeof SignalDirectionSchema>;
export type MarketEvent = z.infer<typeof MarketEventSchema>;
export type MarketEventType = MarketEvent['type'];

/** True for a signal event (stream events are market data, funding, ledger or signals). */
export function isSignal(e: { readonly type: string }): e is Signal {
  return e.type === 'signal';
}
