import { z } from 'zod';
import { CandleSchema, EpochMsSchema, OrderBookSchema, QuoteSchema, SignalSchema, TickerSchema, TradeSchema, type MarketEvent } from './events.js';
import { ExchangeIdSchema, SymbolSchema } from './symbols.js';

/**
 * Events the collector publishes besides market data: funding/open-interest snapshots and its
 * completeness ledger (feed status snapshots and gap records). They travel on the same stream,
 * partitioned by `exchange:symbol` like market events, and only the operational store keeps them.
 */

const Count = z.number().int().nonnegative();
const NullableNumber = z.number().finite().nullable();

/** Funding rate and open interest of a derivatives market at one exchange time; null where the exchange omits it. */
export const FundingEventSchema = z
  .object({
    type: z.literal('funding'),
    exchange: ExchangeIdSchema,
    symbol: SymbolSchema,
    /** exchange time (ms epoch) */
    ts: EpochMsSchema,
    /** receipt time (ms epoch) */
    localTs: EpochMsSchema,
    /** rate of the current period, as a fraction (0.0001 = 0.01%) */
    fundingRate: NullableNumber,
    /** when the next funding happens (ms epoch) */
    nextFundingTs: EpochMsSchema.nullable(),
    markPrice: NullableNumber,
    indexPrice: NullableNumber,
    /** in contracts or base currency, as the exchange reports it */
    openInterest: NullableNumber,
    /** in quote currency */
    openInterestValue: NullableNumber,
  })
  .readonly();

/** Subscriptions the ledger keeps counts for; `all` (with symbol `*`) is the exchange's connection as a whole. */
export const FeedChannelSchema = z.enum(['trades', 'tickers', 'books', 'candles', 'funding', 'all']);

/** `*` stands for every symbol of an exchange (frames that name no market). */
export const FeedSymbolSchema = z.union([SymbolSchema, z.literal('*')]);

/**
 * Cumulative counters of one subscription since its collector run started. Snapshots of one run only
 * grow, so a store keeps the greatest of each (replays and reordering change nothing).
 */
export const FeedStatusSchema = z
  .object({
    type: z.literal('feed_status'),
    exchange: ExchangeIdSchema,
    symbol: FeedSymbolSchema,
    channel: FeedChannelSchema,
    /** the collector process that counted (a new one starts from zero) */
    runId: z.string().min(1).max(64),
    startedAt: EpochMsSchema,
    /** when the snapshot was taken (collector clock) */
    ts: EpochMsSchema,
    /** watch calls that returned, or polls that answered */
    messages: Count,
    /** domain events published */
    events: Count,
    /** items that did not map to a valid event (schema violations) */
    rejected: Count,
    /** frames the exchange client could not handle at all */
    malformed: Count,
    /** trades dropped because their id was already seen */
    duplicates: Count,
    /** trades that arrived after a later id and closed a hole before it was declared a gap */
    reordered: Count,
    gapsDetected: Count,
    gapsFilled: Count,
    gapsUnfilled: Count,
    /** trades taken from REST fills */
    tradesRecovered: Count,
    reconnects: Count,
    resubscribes: Count,
    watchErrors: Count,
    /** exchange time of the newest event */
    lastMessageTs: EpochMsSchema.nullable(),
    /** receipt time of the newest message */
    lastMessageLocalTs: EpochMsSchema.nullable(),
    lastError: z.string().max(500).nullable(),
    /** the first malformed or rejected input of this run, as received (truncated) */
    malformedSample: z.string().max(1000).nullable(),
  })
  .readonly();

export const GapStatusSchema = z.enum(['open', 'filled', 'unfilled']);
/** What revealed the hole: an id jump, a reconnect, a watchdog resubscribe, or the start of a feed. */
export const GapReasonSchema = z.enum(['sequence', 'reconnect', 'resubscribe', 'startup']);

/** One hole in a trade feed and what became of it; the latest state of a gap wins (open < filled | unfilled). */
export const GapEventSchema = z
  .object({
    type: z.literal('gap'),
    exchange: ExchangeIdSchema,
    symbol: SymbolSchema,
    channel: z.literal('trades'),
    /** unique per collector run; the same gap keeps its id through every state */
    gapId: z.string().min(1).max(200),
    runId: z.string().min(1).max(64),
    /** `id`: a range of sequential trade ids; `time`: a time range (exchanges without sequential ids) */
    kind: z.enum(['id', 'time']),
    reason: GapReasonSchema,
    status: GapStatusSchema,
    /** first and last missing trade id (inclusive), for `id` gaps */
    fromId: z.string().max(64).nullable(),
    toId: z.string().max(64).nullable(),
    /** exchange time of the last trade before and the first trade after the hole, where known */
    fromTs: EpochMsSchema.nullable(),
    toTs: EpochMsSchema.nullable(),
    /** ids missing when it was declared (null for time gaps) */
    missing: Count.nullable(),
    /** trades the fill recovered */
    recovered: Count,
    detectedAt: EpochMsSchema,
    resolvedAt: EpochMsSchema.nullable(),
    /** why a gap stayed unfilled, or how it was filled */
    detail: z.string().max(500).nullable(),
    /** when this state was reached (collector clock) */
    ts: EpochMsSchema,
  })
  .readonly();

/** Every event type the stream carries: market data plus funding, the completeness ledger and agents' signals. */
export const StreamEventSchema = z.discriminatedUnion('type', [
  TradeSchema,
  TickerSchema,
  OrderBookSchema,
  QuoteSchema,
  CandleSchema,
  FundingEventSchema,
  FeedStatusSchema,
  GapEventSchema,
  SignalSchema,
]);

export type FundingEvent = z.infer<typeof FundingEventSchema>;
export type FeedChannel = z.infer<typeof FeedChannelSchema>;
export type FeedStatus = z.infer<typeof FeedStatusSchema>;
export type GapStatus = z.infer<typeof GapStatusSchema>;
export type GapReason = z.infer<typeof GapReasonSchema>;
export type GapEvent = z.infer<typeof GapEventSchema>;
export type LedgerEvent = FeedStatus | GapEvent;
export type StreamEvent = z.infer<typeof StreamEventSchema>;

const MARKET_TYPES: ReadonlySet<string> = new Set<MarketEvent['type']>(['trade', 'ticker', 'book', 'quote', 'candle']);

/** True for trade, ticker, book, quote and candle events (what every market store writes). */
export function isMarketEvent(e: StreamEvent): e is MarketEvent {
  return MARKET_TYPES.has(e.type);
}

/** True for feed_status and gap events. */
export function isLedgerEvent(e: StreamEvent): e is LedgerEvent {
  return e.type === 'feed_status' || e.type === 'gap';
}
