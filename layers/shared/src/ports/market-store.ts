import type {
  Candle,
  CandleSource,
  MarketEvent,
  OrderBook,
  Quote,
  Signal,
  Ticker,
  Timeframe,
  Trade,
} from '../domain/index.js';

/** What the store holds per market; `quotes` are the best bid/ask changes of a watched book. */
export type Channel = 'trades' | 'tickers' | 'books' | 'quotes' | 'candles';

export interface WriteSummary {
  readonly trades: number;
  readonly tickers: number;
  readonly books: number;
  readonly quotes: number;
  readonly candles: number;
}

/** A record the consumer could not use, kept with its payload and the reason. */
export interface DeadLetter {
  readonly source: string;
  readonly reason: string;
  readonly errorName: string;
  readonly payload: string;
  readonly partitionKey: string | null;
  readonly sequenceNumber: string | null;
}

/** Write side of the market store. Every write is idempotent on natural keys. */
export interface MarketWriter {
  writeEvents(events: readonly MarketEvent[]): Promise<WriteSummary>;
  writeSignals(signals: readonly Signal[]): Promise<number>;
  writeDeadLetter(letter: DeadLetter): Promise<void>;
}

/** What the store holds for one exchange/symbol/channel. */
export interface FeedCoverage {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: Channel;
  /** exchange time of the oldest and newest event held */
  readonly firstTs: number;
  readonly lastTs: number;
  /** receipt time of the newest event */
  readonly lastLocalTs: number;
  /** events received (at-least-once: replays count again) */
  readonly events: number;
}

export interface TradeQuery {
  readonly exchange: string;
  readonly symbol: string;
  /** inclusive, ms epoch */
  readonly since?: number;
  /** exclusive, ms epoch */
  readonly until?: number;
  /** keyset cursor: return trades strictly after (ts, id) */
  readonly after?: { readonly ts: number; readonly id: string };
  /** newest first instead of oldest first */
  readonly newestFirst?: boolean;
  readonly limit: number;
}

export interface QuoteQuery {
  readonly exchange: string;
  readonly symbol: string;
  /** inclusive, ms epoch (exchange time) */
  readonly since?: number;
  /** exclusive, ms epoch (exchange time) */
  readonly until?: number;
  /** newest first instead of oldest first */
  readonly newestFirst?: boolean;
  readonly limit: number;
}

export interface CandleQuery {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  /** open time, inclusive */
  readonly since?: number;
  /** open time, exclusive */
  readonly until?: number;
  readonly newestFirst?: boolean;
  readonly limit: number;
}

/** 1m candles held per bucket of `timeframe`, over the minutes in [since, until). */
export interface CandleMinutesQuery {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  /** minute open time, inclusive */
  readonly since: number;
  /** minute open time, exclusive */
  readonly until: number;
}

/** How many distinct minutes of a bucket hold a 1m candle (a minute with both sources counts once). */
export interface BucketMinutes {
  /** the bucket's open time */
  readonly ts: number;
  readonly minutes: number;
}

/** A time range of one market's trades, for volume and VWAP. */
export interface TradeStatsQuery {
  readonly exchange: string;
  readonly symbol: string;
  /** inclusive, ms epoch */
  readonly since: number;
  /** exclusive, ms epoch */
  readonly until: number;
}

/** Sums over the trades of a range; they add up across ranges, so stores can be combined. */
export interface TradeStats {
  readonly trades: number;
  /** base currency */
  readonly volume: number;
  readonly buyVolume: number;
  readonly sellVolume: number;
  /** sum of price x amount, quote currency */
  readonly quoteVolume: number;
  readonly firstTs: number | null;
  readonly lastTs: number | null;
}

/** A candle as stored: `closed` is decided by the query layer, which knows the clock. */
export type StoredCandle = Omit<Candle, 'closed' | 'type' | 'source'> & {
  /** trades in the candle (0 where the exchange does not say) */
  readonly trades: number;
  /** `mixed` when a rolled-up candle spans minutes of both sources */
  readonly source: CandleSource | 'mixed';
  /** 1m candles the bucket holds (1 at 1m); null or absent where the store did not count them */
  readonly minutes?: number | null;
};

/** Read side of the market store. */
export interface MarketReader {
  listFeeds(): Promise<readonly FeedCoverage[]>;
  latestTicker(exchange: string, symbol: string): Promise<Ticker | null>;
  latestBook(exchange: string, symbol: string): Promise<OrderBook | null>;
  /** The newest best bid/ask of a market (exchange time, then receipt time, then sequence). */
  latestQuote(exchange: string, symbol: string): Promise<Quote | null>;
  /** Best bid/ask changes of a market in that order; ascending unless newestFirst. */
  quotes(query: QuoteQuery): Promise<readonly Quote[]>;
  trades(query: TradeQuery): Promise<readonly Trade[]>;
  /** Trade count, volumes and quote volume of a range (VWAP = quoteVolume / volume). */
  tradeStats(query: TradeStatsQuery): Promise<TradeStats>;
  /** Candles of `timeframe`, rolled up from 1m where needed; ascending unless newestFirst. */
  candles(query: CandleQuery): Promise<readonly StoredCandle[]>;
  /** Minutes held per bucket, ascending, buckets without any left out (rolled-up candles' completeness). */
  candleMinutes?(query: CandleMinutesQuery): Promise<readonly BucketMinutes[]>;
}

export interface MarketStore extends MarketWriter, MarketReader {
  close(): Promise<void>;
}
