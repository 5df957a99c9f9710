import { PlatformError, ValidationError } from '../domain/errors.js';
import type { Candle, OrderBook, Ticker, Timeframe, Trade } from '../domain/index.js';
import { bucketStart, timeframeMs } from '../domain/index.js';
import type { Channel, Clock, FeedCoverage, MarketReader, StoredCandle, TradeStats } from '../ports/index.js';
import { decodeCursor, encodeCursor } from './cursor.js';

/** Exchange or symbol the store holds no data for; carries what it does hold. */
export class UnknownMarketError extends PlatformError {
  constructor(
    message: string,
    /** which part of the market is unknown */
    readonly kind: 'exchange' | 'symbol',
    /** what is known in its place: exchanges, or the symbols of the exchange */
    readonly known: readonly string[],
  ) {
    super(message);
  }
}

export interface QueryLimits {
  readonly defaultLimit: number;
  readonly maxLimit: number;
  /** a candle whose bucket ended this long ago is closed even if no later trade arrived */
  readonly closeAfterMs: number;
  /** most candles one server-side computation (indicators) may read */
  readonly maxHistoryBars: number;
}

export const DEFAULT_QUERY_LIMITS: QueryLimits = { defaultLimit: 100, maxLimit: 1000, closeAfterMs: 60_000, maxHistoryBars: 5_000 };

/** Age of the newest data behind an answer. */
export interface Freshness {
  /** server time of the answer (ms epoch) */
  readonly asOf: number;
  /** exchange time of the newest item held for this market/channel, null when none */
  readonly newestTs: number | null;
  /** asOf - newestTs, null when nothing is held */
  readonly ageMs: number | null;
}

export interface ChannelCoverage {
  readonly firstTs: number;
  readonly lastTs: number;
  readonly ageMs: number;
  readonly events: number;
}

export interface MarketSummary {
  readonly exchange: string;
  readonly symbol: string;
  readonly channels: Partial<Record<Channel, ChannelCoverage>>;
}

export interface MarketsPage {
  readonly markets: readonly MarketSummary[];
  readonly total: number;
  readonly nextCursor: string | null;
  readonly asOf: number;
}

export interface TradesPage {
  /** always oldest first */
  readonly trades: readonly Trade[];
  /** continues in the same direction: newer trades when `since` was given, older ones otherwise */
  readonly nextCursor: string | null;
  readonly freshness: Freshness;
}

export type CandleView = Omit<Candle, 'type' | 'source'> & Pick<StoredCandle, 'trades' | 'source'>;

export interface CandlesPage {
  /** always oldest first */
  readonly candles: readonly CandleView[];
  readonly nextCursor: string | null;
  readonly freshness: Freshness;
}

export interface TradeStatsView extends TradeStats {
  /** volume-weighted average price, null when the range holds no trade */
  readonly vwap: number | null;
  readonly freshness: Freshness;
}

export type SnapshotSource = 'trade' | 'ticker' | 'book';

/** One figure of a market snapshot with the exchange time it is from. */
export interface SnapshotFigure {
  readonly value: number;
  readonly ts: number;
  readonly ageMs: number;
  readonly source: SnapshotSource;
}

export interface MarketSnapshot {
  readonly exchange: string;
  readonly symbol: string;
  readonly price: SnapshotFigure | null;
  readonly change24hPct: SnapshotFigure | null;
  readonly baseVolume24h: SnapshotFigure | null;
  readonly quoteVolume24h: SnapshotFigure | null;
  readonly bid: SnapshotFigure | null;
  readonly ask: SnapshotFigure | null;
  readonly spread: SnapshotFigure | null;
  readonly spreadBps: SnapshotFigure | null;
}

export interface MarketSnapshotAnswer {
  readonly snapshots: readonly MarketSnapshot[];
  /** requested symbols no exchange (of those asked) holds */
  readonly missing: readonly string[];
  readonly asOf: number;
}

export interface TradesRequest {
  readonly exchange: string;
  readonly symbol: string;
  readonly since?: number;
  readonly until?: number;
  readonly limit?: number;
  readonly cursor?: string;
}

export interface CandlesRequest extends TradesRequest {
  readonly timeframe: Timeframe;
}

/** The one read API agents go through: bounded answers that state how fresh they are. */
export class MarketQueryService {
  private readonly limits: QueryLimits;

  constructor(
    private readonly reader: MarketReader,
    private readonly clock: Clock,
    limits: Partial<QueryLimits> = {},
  ) {
    this.limits = { ...DEFAULT_QUERY_LIMITS, ...limits };
  }

  /** Markets held, with each channel's range and age; optionally one exchange only. */
  async listMarkets(req: { exchange?: string; limit?: number; cursor?: string } = {}): Promise<MarketsPage> {
    const feeds = await this.reader.listFeeds();
    const now = this.clock.now();
    if (req.exchange !== undefined && !feeds.some((f) => f.exchange === req.exchange)) {
      throw this.unknownExchange(req.exchange, feeds);
    }
    const byMarket = new Map<string, { exchange: string; symbol: string; channels: Partial<Record<Channel, ChannelCoverage>> }>();
    for (const f of feeds) {
      if (req.exchange !== undefined && f.exchange !== req.exchange) continue;
      const key = `${f.exchange}|${f.symbol}`;
      const market = byMarket.get(key) ?? { exchange: f.exchange, symbol: f.symbol, channels: {} };
      market.channels[f.channel] = { firstTs: f.firstTs, lastTs: f.lastTs, ageMs: Math.max(0, now - f.lastTs), events: f.events };
      byMarket.set(key, market);
    }
    const all = [...byMarket.values()];
    const scope = req.exchange ?? '*';
    const offset = req.cursor ? decodeCursor(req.cursor, 'markets', scope).offset : 0;
    const limit = this.limit(req.limit);
    const markets = all.slice(offset, offset + limit);
    const next = offset + markets.length;
    return {
      markets,
      total: all.length,
      nextCursor: next < all.length ? encodeCursor('markets', scope, { offset: next }) : null,
      asOf: now,
    };
  }

  /**
   * Price, 24h change and volume, best bid/ask and spread of `symbols` on every exchange holding them
   * (or only `exchanges`), each figure with its exchange time. Best bid/ask come from whichever of the
   * latest ticker and book snapshot is newer; the price from the newer of the last trade and ticker.
   */
  async getMarketSnapshot(req: { symbols: readonly string[]; exchanges?: readonly string[] }): Promise<MarketSnapshotAnswer> {
    const feeds = await this.reader.listFeeds();
    const wantedExchanges = req.exchanges?.length ? new Set(req.exchanges) : undefined;
    if (wantedExchanges) {
      for (const e of wantedExchanges) if (!feeds.some((f) => f.exchange === e)) throw this.unknownExchange(e, feeds);
    }
    const markets = new Map<string, { exchange: string; symbol: string; channels: Set<Channel> }>();
    for (const f of feeds) {
      if (!req.symbols.includes(f.symbol) || (wantedExchanges && !wantedExchanges.has(f.exchange))) continue;
      const key = `${f.exchange}|${f.symbol}`;
      const m = markets.get(key) ?? { exchange: f.exchange, symbol: f.symbol, channels: new Set<Channel>() };
      m.channels.add(f.channel);
      markets.set(key, m);
    }
    const missing = req.symbols.filter((s) => ![...markets.values()].some((m) => m.symbol === s));
    if (markets.size === 0) {
      throw new UnknownMarketError(`no data for ${req.symbols.join(', ')}`, 'symbol', [...new Set(feeds.map((f) => f.symbol))]);
    }
    const now = this.clock.now();
    const snapshots = await Promise.all(
      [...markets.values()].map(async ({ exchange, symbol, channels }): Promise<MarketSnapshot> => {
        const [ticker, book, lastTrade] = await Promise.all([
          channels.has('tickers') ? this.reader.latestTicker(exchange, symbol) : null,
          channels.has('books') ? this.reader.latestBook(exchange, symbol) : null,
          channels.has('trades') ? this.reader.trades({ exchange, symbol, newestFirst: true, limit: 1 }).then((t) => t[0] ?? null) : null,
        ]);
        const figure = (value: number | null | undefined, ts: number | undefined, source: SnapshotSource): SnapshotFigure | null =>
          value === null || value === undefined || ts === undefined ? null : { value, ts, ageMs: Math.max(0, now - ts), source };
        const tradePrice = figure(lastTrade?.price, lastTrade?.ts, 'trade');
        const tickerPrice = figure(ticker?.last, ticker?.ts, 'ticker');
        const price = tradePrice && (!tickerPrice || tradePrice.ts >= tickerPrice.ts) ? tradePrice : tickerPrice;
        const bookTop = book && book.bids[0] && book.asks[0] ? { bid: book.bids[0][0], ask: book.asks[0][0], ts: book.ts } : null;
        const tickerTop = ticker && ticker.bid !== null && ticker.ask !== null ? { bid: ticker.bid, ask: ticker.ask, ts: ticker.ts } : null;
        const top = bookTop && (!tickerTop || bookTop.ts >= tickerTop.ts) ? { ...bookTop, source: 'book' as const } : tickerTop && { ...tickerTop, source: 'ticker' as const };
        const mid = top ? (top.bid + top.ask) / 2 : null;
        return {
          exchange,
          symbol,
          price,
          change24hPct: figure(ticker?.change24hPct, ticker?.ts, 'ticker'),
          baseVolume24h: figure(ticker?.baseVolume24h, ticker?.ts, 'ticker'),
          quoteVolume24h: figure(ticker?.quoteVolume24h, ticker?.ts, 'ticker'),
          bid: top ? figure(top.bid, top.ts, top.source) : null,
          ask: top ? figure(top.ask, top.ts, top.source) : null,
          spread: top ? figure(top.ask - top.bid, top.ts, top.source) : null,
          spreadBps: top && mid ? figure(((top.ask - top.bid) / mid) * 10_000, top.ts, top.source) : null,
        };
      }),
    );
    snapshots.sort((a, b) => a.symbol.localeCompare(b.symbol) || a.exchange.localeCompare(b.exchange));
    return { snapshots, missing, asOf: now };
  }

  /** Latest ticker of one market. */
  async getTicker(exchange: string, symbol: string): Promise<{ ticker: Ticker | null; freshness: Freshness }> {
    const feed = await this.requireMarket(exchange, symbol);
    const ticker = await this.reader.latestTicker(exchange, symbol);
    return { ticker, freshness: this.freshness(feed('tickers')?.lastTs ?? ticker?.ts ?? null) };
  }

  /** Latest stored order book snapshot of one market. */
  async getOrderBook(exchange: string, symbol: string): Promise<{ book: OrderBook | null; freshness: Freshness }> {
    const feed = await this.requireMarket(exchange, symbol);
    const book = await this.reader.latestBook(exchange, symbol);
    return { book, freshness: this.freshness(feed('books')?.lastTs ?? book?.ts ?? null) };
  }

  /** Trades of one market: from `since` forward, or else the most recent ones, paged by cursor. */
  async getTrades(req: TradesRequest): Promise<TradesPage> {
    const feed = await this.requireMarket(req.exchange, req.symbol);
    const limit = this.limit(req.limit);
    const scope = `${req.exchange}|${req.symbol}`;
    const cursor = req.cursor ? decodeCursor(req.cursor, 'trades', scope) : undefined;
    const newestFirst = cursor ? cursor.newestFirst : req.since === undefined;
    const rows = await this.reader.trades({
      exchange: req.exchange,
      symbol: req.symbol,
      ...(req.since !== undefined && { since: req.since }),
      ...(req.until !== undefined && { until: req.until }),
      ...(cursor && { after: { ts: cursor.ts, id: cursor.id } }),
      newestFirst,
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    const edge = page.at(-1);
    const nextCursor =
      rows.length > limit && edge ? encodeCursor('trades', scope, { ts: edge.ts, id: edge.id, newestFirst }) : null;
    return {
      trades: newestFirst ? [...page].reverse() : page,
      nextCursor,
      freshness: this.freshness(feed('trades')?.lastTs ?? null),
    };
  }

  /** Volume, buy/sell split and VWAP of a market's trades in [since, until); an empty range has no VWAP. */
  async getTradeStats(req: { exchange: string; symbol: string; since: number; until: number }): Promise<TradeStatsView> {
    const feed = await this.requireMarket(req.exchange, req.symbol);
    if (!(req.since < req.until)) throw new ValidationError('since must be before until');
    const stats = await this.reader.tradeStats(req);
    return {
      ...stats,
      vwap: stats.volume > 0 ? stats.quoteVolume / stats.volume : null,
      freshness: this.freshness(feed('trades')?.lastTs ?? null),
    };
  }

  /** Candles of any supported timeframe (rolled up from 1m), each marked closed or forming. */
  async getCandles(req: CandlesRequest): Promise<CandlesPage> {
    const feed = await this.requireMarket(req.exchange, req.symbol);
    const limit = this.limit(req.limit);
    const size = timeframeMs(req.timeframe);
    const scope = `${req.exchange}|${req.symbol}|${req.timeframe}`;
    const cursor = req.cursor ? decodeCursor(req.cursor, 'candles', scope) : undefined;
    const newestFirst = cursor ? cursor.newestFirst : req.since === undefined;
    let since = req.since;
    let until = req.until;
    if (cursor) {
      if (newestFirst) until = cursor.ts;
      else since = cursor.ts + size;
    }
    const read = (from: number | undefined) =>
      this.reader.candles({
        exchange: req.exchange,
        symbol: req.symbol,
        timeframe: req.timeframe,
        ...(from !== undefined && { since: from }),
        ...(until !== undefined && { until }),
        newestFirst,
        limit: limit + 1,
      });
    const rows =
      newestFirst && since === undefined ? await this.readNewest(feed, req.timeframe, until, limit + 1, read) : await read(since);
    const page = rows.slice(0, limit);
    const edge = page.at(-1);
    const candles = this.markClosed(feed, req.timeframe, page);
    return {
      candles: newestFirst ? candles.reverse() : candles,
      nextCursor: rows.length > limit && edge ? encodeCursor('candles', scope, { ts: edge.ts, newestFirst }) : null,
      freshness: this.freshness(newestOf(feed('trades')?.lastTs, feed('candles')?.lastTs)),
    };
  }

  /**
   * The newest `count` candles before `until` (all of them when `until` is omitted), oldest first, for
   * computations on the server (indicators); `count` is capped at `maxHistoryBars`.
   */
  async getCandleHistory(req: {
    readonly exchange: string;
    readonly symbol: string;
    readonly timeframe: Timeframe;
    readonly until?: number;
    readonly count: number;
  }): Promise<{ candles: readonly CandleView[]; freshness: Freshness }> {
    const feed = await this.requireMarket(req.exchange, req.symbol);
    const count = Math.min(Math.max(1, Math.floor(req.count)), this.limits.maxHistoryBars);
    const rows = await this.readNewest(feed, req.timeframe, req.until, count, (from) =>
      this.reader.candles({
        exchange: req.exchange,
        symbol: req.symbol,
        timeframe: req.timeframe,
        ...(from !== undefined && { since: from }),
        ...(req.until !== undefined && { until: req.until }),
        newestFirst: true,
        limit: count,
      }),
    );
    return {
      candles: this.markClosed(feed, req.timeframe, rows.slice(0, count)).reverse(),
      freshness: this.freshness(newestOf(feed('trades')?.lastTs, feed('candles')?.lastTs)),
    };
  }

  /**
   * The last `want` candles, newest first: the scan is bounded to a window ending at the newest data and
   * widened only when gaps leave it short, instead of rolling up the market's whole history.
   */
  private async readNewest(
    feed: (channel: Channel) => FeedCoverage | undefined,
    timeframe: Timeframe,
    until: number | undefined,
    want: number,
    read: (from: number | undefined) => Promise<readonly StoredCandle[]>,
  ): Promise<readonly StoredCandle[]> {
    const size = timeframeMs(timeframe);
    const oldest = Math.min(feed('trades')?.firstTs ?? Infinity, feed('candles')?.firstTs ?? Infinity);
    const newest = Math.min(until ?? Infinity, newestOf(feed('trades')?.lastTs, feed('candles')?.lastTs) ?? 0);
    let span = want * size;
    for (;;) {
      const from = bucketStart(newest, timeframe) + size - span;
      const rows = await read(from);
      if (rows.length >= want || from <= oldest) return rows;
      span *= 4;
    }
  }

  private markClosed(feed: (channel: Channel) => FeedCoverage | undefined, timeframe: Timeframe, rows: readonly StoredCandle[]): CandleView[] {
    const size = timeframeMs(timeframe);
    const now = this.clock.now();
    const lastTradeTs = feed('trades')?.lastTs ?? -Infinity;
    return rows.map((c) => {
      const end = bucketStart(c.ts, timeframe) + size;
      // closed once trades past its end have arrived (per-market order holds), or long after its end
      const closed = end <= lastTradeTs || end <= now - this.limits.closeAfterMs;
      return { ...c, closed };
    });
  }

  private limit(requested: number | undefined): number {
    const n = requested === undefined || !Number.isFinite(requested) ? this.limits.defaultLimit : Math.floor(requested);
    return Math.min(Math.max(1, n), this.limits.maxLimit);
  }

  private freshness(newestTs: number | null): Freshness {
    const asOf = this.clock.now();
    return { asOf, newestTs, ageMs: newestTs === null ? null : Math.max(0, asOf - newestTs) };
  }

  /** Throws UnknownMarketError unless the store holds the market; returns its feeds by channel. */
  private async requireMarket(exchange: string, symbol: string): Promise<(channel: Channel) => FeedCoverage | undefined> {
    const feeds = await this.reader.listFeeds();
    const ofExchange = feeds.filter((f) => f.exchange === exchange);
    if (ofExchange.length === 0) throw this.unknownExchange(exchange, feeds);
    const ofMarket = ofExchange.filter((f) => f.symbol === symbol);
    if (ofMarket.length === 0) {
      const symbols = [...new Set(ofExchange.map((f) => f.symbol))];
      throw new UnknownMarketError(`no data for symbol '${symbol}' on ${exchange}`, 'symbol', symbols);
    }
    return (channel) => ofMarket.find((f) => f.channel === channel);
  }

  private unknownExchange(exchange: string, feeds: readonly FeedCoverage[]): UnknownMarketError {
    return new UnknownMarketError(`no data for exchange '${exchange}'`, 'exchange', [
      ...new Set(feeds.map((f) => f.exchange)),
    ]);
  }
}

function newestOf(...values: (number | undefined)[]): number | null {
  const present = values.filter((v): v is number => v !== undefined);
  return present.length ? Math.max(...present) : null;
}
