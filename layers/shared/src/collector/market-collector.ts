import ccxt from 'ccxt';
import type { Candle, FundingEvent, MarketEvent, StreamEvent } from '../domain/index.js';
import { CandleSchema, FundingEventSchema, formatIssues } from '../domain/index.js';
import type { Clock } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import {
  exchangeSample,
  NormalizationError,
  normalizeTicker,
  type CcxtOrderBookLike,
  type CcxtTickerLike,
  type CcxtTradeLike,
} from '../normalize/ccxt-normalizer.js';
import { Backoff } from './backoff.js';
import { Sleeper } from './sleeper.js';
import { BookFeed, readBookFrame } from './book-feed.js';
import type { EventBatcher } from './event-batcher.js';
import { FeedLedger, type FeedState } from './feed-ledger.js';
import { FillQueue } from './fill-queue.js';
import { guardMessages, guardSends, type CcxtWsClient, type ClientFactoryExchange, type GuardedExchange } from './message-guard.js';
import { SubscriptionPacer, subscriptionLimitsFor, type RateWindow } from './subscription-pacer.js';
import { TradeFeed, type TradeFillTuning } from './trade-feed.js';
import { tradeCompletenessFor, type HistoryExchange, type TradeCompleteness } from './trade-history.js';

export type { FeedState } from './feed-ledger.js';

export type CollectorChannel = 'trades' | 'tickers' | 'books' | 'candles' | 'funding';
/** Channels collected unless configured otherwise. */
export const COLLECTOR_CHANNELS: readonly CollectorChannel[] = ['trades', 'tickers', 'books'];
/** Every channel; `candles` (exchange 1m OHLCV) and `funding` (swap markets, polled) are opt-in. */
export const ALL_COLLECTOR_CHANNELS: readonly CollectorChannel[] = ['trades', 'tickers', 'books', 'candles', 'funding'];

type OhlcvRow = readonly (number | null | undefined)[];

/** ccxt FundingRate / OpenInterest, the fields used. */
interface CcxtFundingRateLike {
  readonly timestamp?: number | null;
  readonly fundingRate?: number | null;
  readonly fundingTimestamp?: number | null;
  readonly markPrice?: number | null;
  readonly indexPrice?: number | null;
}
interface CcxtOpenInterestLike {
  readonly timestamp?: number | null;
  readonly openInterestAmount?: number | null;
  readonly openInterestValue?: number | null;
}

/** What the collector needs of a ccxt.pro exchange. */
export interface WatchingExchange {
  readonly id: string;
  readonly has?: Readonly<Record<string, unknown>>;
  readonly markets?: Readonly<Record<string, { readonly swap?: boolean | undefined; readonly id?: string | undefined } | undefined>>;
  /** ccxt.pro's live order books by symbol */
  readonly orderbooks?: Readonly<Record<string, CcxtOrderBookLike | undefined>>;
  watchTrades(symbol: string): Promise<readonly CcxtTradeLike[]>;
  watchTicker(symbol: string, params?: Record<string, unknown>): Promise<CcxtTickerLike>;
  watchOrderBook(symbol: string): Promise<CcxtOrderBookLike>;
  watchOHLCV?(symbol: string, timeframe?: string): Promise<readonly OhlcvRow[]>;
  unWatchTrades?(symbol: string): Promise<unknown>;
  unWatchTicker?(symbol: string, params?: Record<string, unknown>): Promise<unknown>;
  unWatchOrderBook?(symbol: string): Promise<unknown>;
  unWatchOHLCV?(symbol: string, timeframe?: string): Promise<unknown>;
  fetchTrades?(symbol: string, since?: number, limit?: number, params?: Record<string, unknown>): Promise<readonly CcxtTradeLike[]>;
  fetchOrderBook?(symbol: string, limit?: number): Promise<CcxtOrderBookLike>;
  fetchFundingRate?(symbol: string): Promise<CcxtFundingRateLike>;
  fetchOpenInterest?(symbol: string): Promise<CcxtOpenInterestLike>;
  /** ccxt.pro's WebSocket clients by URL */
  readonly clients?: Record<string, CcxtWsClient | undefined>;
  close(): Promise<unknown>;
}

export interface CollectorTarget {
  readonly exchange: WatchingExchange;
  readonly symbols: readonly string[];
  /** exchange-specific params for watch calls */
  readonly watchParams?: { readonly ticker?: Readonly<Record<string, unknown>> };
}

export type CollectorCounter =
  | 'messages'
  | 'events'
  | 'rejected'
  | 'malformed'
  | 'duplicates'
  | 'watch_errors'
  | 'reconnects'
  | 'resubscribes'
  | 'book_breaks'
  | 'book_resyncs';

/** Completeness, watchdog and pacing settings; every field has a default. */
export interface CollectorTuning extends Partial<TradeFillTuning> {
  /** no message for this long -> resubscribe; per channel (funding is polled, not watched) */
  readonly staleAfterMs?: Partial<Record<Exclude<CollectorChannel, 'funding'>, number>>;
  /** how often feed_status snapshots are published */
  readonly statusIntervalMs?: number;
  /** how often funding rate and open interest are polled */
  readonly fundingIntervalMs?: number;
  /** subscription starts allowed per exchange (default: the exchange's documented limits) */
  readonly subscriptionLimits?: (exchangeId: string) => readonly RateWindow[];
  /** how each exchange's trade feed is kept complete (default: its same-id-space REST source) */
  readonly tradeCompleteness?: (exchangeId: string) => TradeCompleteness;
  /** how long an unWatch may take before the feed's socket is closed instead */
  readonly unwatchTimeoutMs?: number;
  /** a previous run's last trade id per market (key `exchange|symbol`, see lastTradeIds): its start-up fill reaches back to it */
  readonly resumeTradeIds?: ReadonlyMap<string, number>;
  /** how often each order book is compared with a REST snapshot (0: never, not even after a resync) */
  readonly bookCrossCheckMs?: number;
  /** levels per side the REST cross-check asks for and compares */
  readonly bookCrossCheckLevels?: number;
  /** how long the live book may take to catch up with a REST snapshot before they are compared */
  readonly bookCrossCheckGraceMs?: number;
}

/**
 * Watchdog windows. A live BTC/USDT trade stream is never a minute quiet; tickers and klines are
 * pushed every 1-2 s on Binance and OKX whether or not anything traded; a quiet book can stay
 * still longer. Illiquid markets need longer trade windows (configure them).
 */
export const DEFAULT_STALE_AFTER_MS: Readonly<Record<Exclude<CollectorChannel, 'funding'>, number>> = {
  trades: 60_000,
  tickers: 30_000,
  books: 30_000,
  candles: 30_000,
};

const DEFAULT_TUNING = {
  reorderGraceMs: 750,
  maxFillTrades: 50_000,
  maxFillAttempts: 5,
  startupLookback: 200,
  statusIntervalMs: 5_000,
  fundingIntervalMs: 60_000,
  unwatchTimeoutMs: 5_000,
  // one REST book per market every 5 minutes (Binance: weight 5 of 6000 a minute at 20 levels)
  bookCrossCheckMs: 300_000,
  bookCrossCheckLevels: 20,
  // OKX pushes `books` every 100 ms and its REST books carry no update id: compare over 2 s of states
  bookCrossCheckGraceMs: 2_000,
} as const;

export interface MarketCollectorOptions {
  readonly targets: readonly CollectorTarget[];
  readonly channels?: readonly CollectorChannel[];
  readonly batcher: EventBatcher;
  readonly logger: Logger;
  readonly counters: Counters<CollectorCounter>;
  readonly clock: Clock;
  /** levels kept per side in stored book snapshots */
  readonly bookDepth?: number;
  /** at most one stored book snapshot per market this often */
  readonly bookIntervalMs?: number;
  readonly tuning?: CollectorTuning;
  /** the ledger's run id (default: a random UUID) */
  readonly runId?: string;
}

/** One subscription being watched or polled. */
interface Feed {
  readonly target: CollectorTarget;
  readonly symbol: string;
  readonly channel: CollectorChannel;
  readonly state: FeedState;
  readonly trades: TradeFeed | null;
  readonly books: BookFeed | null;
  /** when the current subscription started (collector clock) */
  subscribedAt: number;
  /** the watchdog asked ccxt.pro to unsubscribe: the UnsubscribeError that follows is expected */
  unsubscribing: boolean;
  resubscribing: boolean;
}

interface ExchangeRuntime {
  readonly pacer: SubscriptionPacer;
  readonly fills: FillQueue;
  readonly connection: FeedState;
}

/**
 * Runs one ccxt.pro watch loop per exchange, symbol and channel (funding: a poll loop), normalizes
 * what arrives and hands it to the batcher. Watches start through a per-exchange pacer; a failed
 * watch is retried with exponential backoff and jitter (ccxt.pro reconnects on the next call); a
 * watchdog resubscribes feeds that go quiet; trade feeds are kept complete (TradeFeed); malformed
 * frames and invalid items are counted per feed and skipped. A ledger of it all goes on the stream.
 */
export class MarketCollector {
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly sleeper = new Sleeper();
  private readonly all: Feed[] = [];
  private readonly runtimes = new Map<string, ExchangeRuntime>();
  private watchdog: NodeJS.Timeout | null = null;
  readonly ledger: FeedLedger;
  private readonly tuning: CollectorTuning & typeof DEFAULT_TUNING;
  private readonly staleAfter: Readonly<Record<Exclude<CollectorChannel, 'funding'>, number>>;
  /** book feeds by exchange and market id, for the frames ccxt has just applied */
  private readonly bookFeeds = new Map<WatchingExchange, Map<string, BookFeed[]>>();

  constructor(private readonly options: MarketCollectorOptions) {
    this.tuning = { ...DEFAULT_TUNING, ...stripUndefined(options.tuning ?? {}) } as CollectorTuning & typeof DEFAULT_TUNING;
    this.staleAfter = { ...DEFAULT_STALE_AFTER_MS, ...stripUndefined(options.tuning?.staleAfterMs ?? {}) };
    this.ledger = new FeedLedger(options.clock, (events) => this.publish(events), options.runId);
  }

  /** State of every subscription (exchange, symbol, channel). */
  get feeds(): readonly FeedState[] {
    return this.all.map((f) => f.state);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    const channels = this.options.channels ?? COLLECTOR_CHANNELS;
    for (const target of this.options.targets) {
      const { exchange } = target;
      const runtime: ExchangeRuntime = {
        pacer: new SubscriptionPacer((this.tuning.subscriptionLimits ?? subscriptionLimitsFor)(exchange.id)),
        fills: new FillQueue(),
        connection: this.ledger.feed(exchange.id, '*', 'all'),
      };
      this.runtimes.set(exchange.id, runtime);
      this.guard(exchange, runtime);
      for (const symbol of target.symbols) {
        for (const channel of channels) {
          const skip = this.unsupported(exchange, symbol, channel);
          if (skip) {
            this.options.logger.info('channel not collected', { exchange: exchange.id, symbol, channel, reason: skip });
            continue;
          }
          const state = this.ledger.feed(exchange.id, symbol, channel);
          const feed: Feed = {
            target,
            symbol,
            channel,
            state,
            trades: channel === 'trades' ? this.tradeFeed(target, symbol, state, runtime) : null,
            books: null,
            subscribedAt: this.options.clock.now(),
            unsubscribing: false,
            resubscribing: false,
          };
          if (channel === 'books') (feed as { books: BookFeed | null }).books = this.bookFeed(feed);
          this.all.push(feed);
          this.loops.push(channel === 'funding' ? this.poll(feed) : this.run(feed, runtime));
        }
      }
    }
    this.ledger.start(this.tuning.statusIntervalMs);
    const tick = Math.max(50, Math.min(1_000, Math.min(...Object.values(this.staleAfter)) / 4));
    this.watchdog = setInterval(() => this.checkStale(), tick);
    this.watchdog.unref();
  }

  /** Stops every loop, closes the exchanges' sockets and flushes what is buffered (with a last ledger snapshot). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.watchdog) clearInterval(this.watchdog);
    this.sleeper.wakeAll();
    for (const f of this.all) {
      f.trades?.stop();
      f.books?.stop();
    }
    for (const r of this.runtimes.values()) r.fills.stop();
    await Promise.allSettled(this.options.targets.map((t) => t.exchange.close()));
    await Promise.allSettled(this.loops);
    await Promise.allSettled([...this.runtimes.values()].map((r) => r.fills.idle()));
    this.ledger.stop();
    await this.options.batcher.flush();
    this.options.batcher.stop();
  }

  /** The newest trade id taken per market (key `exchange|symbol`), for the next run's resumeTradeIds. */
  lastTradeIds(): Map<string, number> {
    const ids = new Map<string, number>();
    for (const f of this.all) {
      const id = f.trades?.lastId;
      if (id !== null && id !== undefined) ids.set(`${f.state.exchange}|${f.symbol}`, id);
    }
    return ids;
  }

  /** Resolves when no REST fill is queued or running (tests, shutdown). */
  async fillsIdle(): Promise<void> {
    await Promise.all([...this.runtimes.values()].map((r) => r.fills.idle()));
  }

  private publish(events: readonly StreamEvent[]): void {
    if (events.length > 0) this.options.batcher.add(events);
  }

  /** Why a channel is not collected for a market, or null. */
  private unsupported(exchange: WatchingExchange, symbol: string, channel: CollectorChannel): string | null {
    const has = exchange.has ?? {};
    if (channel === 'candles' && (!has['watchOHLCV'] || !exchange.watchOHLCV)) return `${exchange.id} has no watchOHLCV`;
    if (channel === 'funding') {
      if (exchange.markets?.[symbol]?.swap !== true) return 'funding and open interest exist for swap markets only';
      if (!(has['fetchFundingRate'] && exchange.fetchFundingRate) && !(has['fetchOpenInterest'] && exchange.fetchOpenInterest)) {
        return `${exchange.id} has neither fetchFundingRate nor fetchOpenInterest`;
      }
    }
    return null;
  }

  private tradeFeed(target: CollectorTarget, symbol: string, state: FeedState, runtime: ExchangeRuntime): TradeFeed {
    const { exchange } = target;
    const history: HistoryExchange = {
      id: exchange.id,
      fetchTrades: (s, since, limit, params) => {
        if (!exchange.fetchTrades) return Promise.reject(new ccxt.NotSupported(`${exchange.id} has no fetchTrades`));
        return exchange.fetchTrades(s, since, limit, params);
      },
    };
    return new TradeFeed({
      exchange: history,
      symbol,
      state,
      completeness: (this.tuning.tradeCompleteness ?? tradeCompletenessFor)(exchange.id),
      ledger: this.ledger,
      fills: runtime.fills,
      clock: this.options.clock,
      logger: this.options.logger.child({ exchange: exchange.id, symbol, channel: 'trades' }),
      tuning: {
        reorderGraceMs: this.tuning.reorderGraceMs,
        maxFillTrades: this.tuning.maxFillTrades,
        maxFillAttempts: this.tuning.maxFillAttempts,
        startupLookback: this.tuning.startupLookback,
      },
      ...(this.tuning.resumeTradeIds?.has(`${exchange.id}|${symbol}`) && { resumeAfterId: this.tuning.resumeTradeIds.get(`${exchange.id}|${symbol}`)! }),
      emit: (trades) => {
        state.events += trades.length;
        for (const t of trades) if (state.lastEventTs === null || t.ts > state.lastEventTs) state.lastEventTs = t.ts;
        this.options.counters.add('events', trades.length);
        this.publish(trades);
      },
      reject: (sample, reason) => this.rejected(state, sample, reason),
    });
  }

  /** A market's order book: checked, cross-checked, resynced on a break, published with its health (BookFeed). */
  private bookFeed(feed: Feed): BookFeed {
    const { exchange } = feed.target;
    const { symbol, state } = feed;
    const has = exchange.has ?? {};
    const levels = this.tuning.bookCrossCheckLevels;
    const books = new BookFeed({
      exchange: exchange.id,
      symbol,
      state,
      clock: this.options.clock,
      logger: this.options.logger.child({ exchange: exchange.id, symbol, channel: 'books' }),
      depth: this.options.bookDepth ?? 20,
      intervalMs: this.options.bookIntervalMs ?? 1_000,
      crossCheck:
        this.tuning.bookCrossCheckMs > 0 && has['fetchOrderBook'] && exchange.fetchOrderBook
          ? {
              intervalMs: this.tuning.bookCrossCheckMs,
              levels,
              graceMs: this.tuning.bookCrossCheckGraceMs,
              fetch: (s, limit) => exchange.fetchOrderBook!(s, limit),
            }
          : null,
      current: () => exchange.orderbooks?.[symbol],
      resync: (reason) => void this.resubscribe(feed, { resync: reason }),
      emit: (events) => {
        state.events += events.length;
        for (const e of events) if (state.lastEventTs === null || e.ts > state.lastEventTs) state.lastEventTs = e.ts;
        this.options.counters.add('events', events.length);
        this.publish(events);
      },
      reject: (sample, reason) => this.rejected(state, sample, reason),
      setError: (message) => this.ledger.setError(state, message),
      count: (name) => this.options.counters.add(name),
    });
    const marketId = exchange.markets?.[symbol]?.id ?? symbol;
    let byId = this.bookFeeds.get(exchange);
    if (!byId) {
      byId = new Map();
      this.bookFeeds.set(exchange, byId);
    }
    byId.set(marketId, [...(byId.get(marketId) ?? []), books]);
    books.start();
    return books;
  }

  /** Book frames, right after ccxt applied them, go to their market's BookFeed (checksums, cross-check states). */
  private bookFrame(exchange: WatchingExchange, message: unknown): void {
    const byId = this.bookFeeds.get(exchange);
    if (!byId) return;
    const frame = readBookFrame(message);
    if (!frame) return;
    for (const books of byId.get(frame.marketId) ?? []) books.onFrame(frame);
  }

  /** Malformed frames are counted on the feed they name (else exchange-wide), logged once per feed, and skipped. */
  private guard(exchange: WatchingExchange, runtime: ExchangeRuntime): void {
    if (typeof (exchange as unknown as Partial<ClientFactoryExchange>).client === 'function') guardSends(exchange as unknown as ClientFactoryExchange);
    const guarded = exchange as unknown as Partial<GuardedExchange>;
    if (typeof guarded.handleMessage !== 'function') return;
    const log = this.options.logger.child({ exchange: exchange.id });
    guardMessages(
      guarded as GuardedExchange,
      (frame) => {
        const feed =
          (frame.symbol && this.all.find((f) => f.target.exchange === exchange && f.symbol === frame.symbol && (frame.channel === null || f.channel === frame.channel))?.state) ||
          runtime.connection;
        feed.malformed += 1;
        this.options.counters.add('malformed');
        if (this.ledger.sample(feed, frame.sample)) {
          log.warn('malformed exchange message skipped (first of this feed; later ones are counted)', {
            symbol: feed.symbol,
            channel: feed.channel,
            error: frame.error,
            sample: feed.malformedSample,
          });
        }
      },
      (line) => log.debug('ccxt', { line }),
      (message) => this.bookFrame(exchange, message),
    );
  }

  private rejected(feed: FeedState, sample: string, reason: string): void {
    feed.rejected += 1;
    this.options.counters.add('rejected');
    const first = this.ledger.sample(feed, sample);
    const fields = { exchange: feed.exchange, symbol: feed.symbol, channel: feed.channel, reason };
    if (first) this.options.logger.warn('exchange message rejected (first of this feed; later ones are counted)', { ...fields, sample });
    else this.options.logger.debug('exchange message rejected', fields);
  }

  // ---- watch loops --------------------------------------------------------------------------------

  private async run(feed: Feed, runtime: ExchangeRuntime): Promise<void> {
    const { logger, counters, clock } = this.options;
    const { state } = feed;
    const log = logger.child({ exchange: state.exchange, symbol: state.symbol, channel: state.channel });
    const backoff = new Backoff();
    const next = this.watcher(feed);
    let fresh = true;
    let interruption: 'reconnect' | 'resubscribe' | null = null;
    while (this.running) {
      if (fresh) {
        // a (re)subscription: paced, and after an interruption the trades missed meanwhile are fetched
        await runtime.pacer.take();
        if (!this.running) break;
        feed.subscribedAt = clock.now();
        feed.trades?.subscribed();
        if (interruption) feed.trades?.interrupted(interruption);
        interruption = null;
        fresh = false;
      }
      try {
        const events = await next();
        state.messages += 1;
        state.lastMessageAt = clock.now();
        counters.add('messages');
        if (backoff.failures > 0) {
          state.reconnects += 1;
          counters.add('reconnects');
          log.info('feed recovered', { after: backoff.failures });
        }
        backoff.reset();
        if (events.length > 0) {
          state.events += events.length;
          for (const e of events) if ('ts' in e && (state.lastEventTs === null || e.ts > state.lastEventTs)) state.lastEventTs = e.ts;
          counters.add('events', events.length);
          this.publish(events);
        }
      } catch (error) {
        if (!this.running) break;
        fresh = true;
        if (error instanceof ccxt.UnsubscribeError && feed.unsubscribing) {
          // the watchdog's own unsubscribe: subscribe again at once
          feed.unsubscribing = false;
          interruption = 'resubscribe';
          continue;
        }
        state.errors += 1;
        this.ledger.setError(state, `${(error as Error).name}: ${(error as Error).message}`);
        counters.add('watch_errors');
        feed.books?.watchFailed(error);
        // a dropped connection loses what was sent meanwhile; other failures (bad frames) do not
        if (error instanceof ccxt.NetworkError || error instanceof ccxt.ExchangeClosedByUser) {
          interruption ??= feed.resubscribing ? 'resubscribe' : 'reconnect';
          this.purgeDeadClients(feed.target.exchange);
        }
        const delay = backoff.next();
        log.warn('watch failed; retrying', { error, retryInMs: delay, attempt: backoff.failures });
        await this.sleep(delay);
      }
    }
  }

  /** One call of the channel's watch, normalized; bad items are counted and skipped, never thrown. */
  private watcher(feed: Feed): () => Promise<readonly MarketEvent[]> {
    const { clock } = this.options;
    const { exchange } = feed.target;
    const { symbol, state } = feed;
    const tickerParams = { ...feed.target.watchParams?.ticker };
    switch (feed.channel) {
      case 'trades':
        return async () => {
          const trades = await exchange.watchTrades(symbol);
          // TradeFeed publishes what it accepts itself: fills deliver trades outside any watch call
          feed.trades!.onLive(trades, clock.now());
          return [];
        };
      case 'tickers':
        return async () => {
          const ticker = await exchange.watchTicker(symbol, tickerParams);
          return this.each(state, [ticker], (t) => normalizeTicker(exchange.id, t, clock.now()));
        };
      case 'books':
        return async () => {
          const book = await exchange.watchOrderBook(symbol);
          // BookFeed publishes: snapshots at the throttled cadence, and at once when the book's health
          // changes; a quote at every change of the top of book, throttle or not
          feed.books!.onBook(book, clock.now());
          return [];
        };
      case 'candles':
        return this.candleWatcher(feed);
      case 'funding':
        throw new Error('funding is polled, not watched');
    }
  }

  /**
   * Exchange 1m candles. ccxt.pro's OHLCV rows carry no closed flag: a candle is closed once a
   * later one has started (the exchange sends the final state of a minute before the next one), so
   * when a newer minute shows up the previous one is published again, closed, with its last values.
   */
  private candleWatcher(feed: Feed): () => Promise<readonly MarketEvent[]> {
    const { exchange } = feed.target;
    const { symbol, state } = feed;
    let latest: OhlcvRow | null = null;
    const toCandle = (row: OhlcvRow, closed: boolean): Candle => {
      const parsed = CandleSchema.safeParse({
        type: 'candle',
        exchange: exchange.id,
        symbol,
        timeframe: '1m',
        ts: row[0],
        open: row[1],
        high: row[2],
        low: row[3],
        close: row[4],
        volume: row[5],
        closed,
        source: 'exchange',
      });
      if (!parsed.success) throw new NormalizationError(`${exchange.id} candle is not valid: ${formatIssues(parsed.error.issues)}`);
      return parsed.data;
    };
    return async () => {
      const rows = await exchange.watchOHLCV!(symbol, '1m');
      const out: MarketEvent[] = [];
      for (const row of [...rows].sort((a, b) => Number(a[0]) - Number(b[0]))) {
        const ts = Number(row[0]);
        if (latest !== null && ts < Number(latest[0])) {
          // a late update of an older minute: it is closed
          out.push(...this.each(state, [row], (r) => toCandle(r, true)));
          continue;
        }
        if (latest !== null && ts > Number(latest[0])) out.push(...this.each(state, [latest], (r) => toCandle(r, true)));
        latest = row;
        out.push(...this.each(state, [row], (r) => toCandle(r, false)));
      }
      return out;
    };
  }

  /** Funding rate and open interest of a swap market, polled (paced by ccxt's rate limiter). */
  private async poll(feed: Feed): Promise<void> {
    const { clock, logger, counters } = this.options;
    const { exchange } = feed.target;
    const { symbol, state } = feed;
    const has = exchange.has ?? {};
    const log = logger.child({ exchange: exchange.id, symbol, channel: 'funding' });
    while (this.running) {
      const calls: Promise<FundingEvent | null>[] = [];
      if (has['fetchFundingRate'] && exchange.fetchFundingRate) {
        calls.push(
          exchange.fetchFundingRate(symbol).then((fr) =>
            this.funding(state, fr, {
              ts: fr.timestamp ?? clock.now(),
              fundingRate: fr.fundingRate ?? null,
              nextFundingTs: fr.fundingTimestamp ?? null,
              markPrice: fr.markPrice ?? null,
              indexPrice: fr.indexPrice ?? null,
              openInterest: null,
              openInterestValue: null,
            }),
          ),
        );
      }
      if (has['fetchOpenInterest'] && exchange.fetchOpenInterest) {
        calls.push(
          exchange.fetchOpenInterest(symbol).then((oi) =>
            this.funding(state, oi, {
              ts: oi.timestamp ?? clock.now(),
              fundingRate: null,
              nextFundingTs: null,
              markPrice: null,
              indexPrice: null,
              openInterest: oi.openInterestAmount ?? null,
              openInterestValue: oi.openInterestValue ?? null,
            }),
          ),
        );
      }
      const results = await Promise.allSettled(calls);
      if (!this.running) break;
      const events: FundingEvent[] = [];
      for (const r of results) {
        if (r.status === 'fulfilled') {
          state.messages += 1;
          state.lastMessageAt = clock.now();
          counters.add('messages');
          if (r.value) events.push(r.value);
        } else {
          state.errors += 1;
          counters.add('watch_errors');
          this.ledger.setError(state, `${(r.reason as Error).name}: ${(r.reason as Error).message}`);
          log.warn('funding poll failed; next poll as scheduled', { error: r.reason });
        }
      }
      if (events.length > 0) {
        state.events += events.length;
        for (const e of events) if (state.lastEventTs === null || e.ts > state.lastEventTs) state.lastEventTs = e.ts;
        counters.add('events', events.length);
        this.publish(events);
      }
      await this.sleep(this.tuning.fundingIntervalMs);
    }
  }

  private funding(state: FeedState, raw: unknown, fields: Omit<FundingEvent, 'type' | 'exchange' | 'symbol' | 'localTs'>): FundingEvent | null {
    const parsed = FundingEventSchema.safeParse({ type: 'funding', exchange: state.exchange, symbol: state.symbol, localTs: this.options.clock.now(), ...fields });
    if (parsed.success) return parsed.data;
    this.rejected(state, exchangeSample(raw), `funding snapshot is not valid: ${formatIssues(parsed.error.issues)}`);
    return null;
  }

  private each<T>(feed: FeedState, items: readonly T[], normalize: (item: T) => MarketEvent): MarketEvent[] {
    const out: MarketEvent[] = [];
    for (const item of items) {
      try {
        out.push(normalize(item));
      } catch (error) {
        if (!(error instanceof NormalizationError)) throw error;
        this.rejected(feed, exchangeSample(item), error.message);
      }
    }
    return out;
  }

  // ---- watchdog -----------------------------------------------------------------------------------

  private checkStale(): void {
    const now = this.options.clock.now();
    for (const feed of this.all) {
      if (feed.channel === 'funding' || feed.resubscribing) continue;
      const limit = this.staleAfter[feed.channel];
      const last = Math.max(feed.state.lastMessageAt ?? 0, feed.subscribedAt);
      if (now - last > limit) {
        feed.books?.markStale(now - last);
        void this.resubscribe(feed, { quietMs: now - last });
      }
    }
  }

  /**
   * A feed heard nothing for its stale window, or its book broke: unsubscribe (ccxt.pro unWatch*, which also ends the
   * pending watch) so the loop subscribes again, or, where there is no unWatch or it hangs, close the
   * sockets that carry the feed (the loop reconnects). Either way it is recorded, and the trades
   * missed meanwhile are fetched.
   */
  private async resubscribe(feed: Feed, why: { readonly quietMs: number } | { readonly resync: string }): Promise<void> {
    const { exchange } = feed.target;
    const { state } = feed;
    // one at a time: a book break during a stale resubscribe gets its fresh snapshot from that one
    if (feed.resubscribing) return;
    feed.resubscribing = true;
    feed.subscribedAt = this.options.clock.now();
    state.resubscribes += 1;
    this.options.counters.add('resubscribes');
    const fields = { exchange: exchange.id, symbol: feed.symbol, channel: feed.channel };
    if ('quietMs' in why) {
      this.ledger.setError(state, `stale: no message for ${why.quietMs} ms; resubscribed`);
      this.options.logger.warn('feed stale; resubscribing', { ...fields, quietMs: why.quietMs });
    } else {
      // BookFeed recorded and logged the break; this is the fresh snapshot it asked for
      this.options.logger.debug('book resync: resubscribing for a fresh snapshot', { ...fields, reason: why.resync });
    }
    try {
      const unwatch = this.unwatch(feed);
      if (!unwatch) {
        this.closeSockets(feed);
        return;
      }
      feed.unsubscribing = true;
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.tuning.unwatchTimeoutMs).unref());
      const outcome = await Promise.race([unwatch.then(() => 'done' as const, () => 'failed' as const), timeout]);
      if (outcome !== 'done' && this.running) {
        feed.unsubscribing = false;
        this.closeSockets(feed);
      }
    } finally {
      feed.resubscribing = false;
    }
  }

  private unwatch(feed: Feed): Promise<unknown> | null {
    const { exchange } = feed.target;
    const has = exchange.has ?? {};
    switch (feed.channel) {
      case 'trades':
        return has['unWatchTrades'] && exchange.unWatchTrades ? exchange.unWatchTrades(feed.symbol) : null;
      case 'tickers':
        return has['unWatchTicker'] && exchange.unWatchTicker ? exchange.unWatchTicker(feed.symbol, { ...feed.target.watchParams?.ticker }) : null;
      case 'books':
        return has['unWatchOrderBook'] && exchange.unWatchOrderBook ? exchange.unWatchOrderBook(feed.symbol) : null;
      case 'candles':
        return has['unWatchOHLCV'] && exchange.unWatchOHLCV ? exchange.unWatchOHLCV(feed.symbol, '1m') : null;
      case 'funding':
        return null;
    }
  }

  /**
   * Closes the ccxt.pro clients whose pending watches or subscriptions name the feed's market (all,
   * if none does): their pending watches fail, and the next watch opens a new socket and subscribes.
   */
  private closeSockets(feed: Feed): void {
    const clients = feed.target.exchange.clients ?? {};
    const names = (o: object | undefined) => Object.keys(o ?? {});
    const all = Object.entries(clients).filter((e): e is [string, CcxtWsClient] => e[1] !== undefined);
    const carrying = all.filter(([, c]) => [...names(c.futures), ...names(c.subscriptions)].some((k) => k.includes(feed.symbol)));
    for (const [url, client] of carrying.length > 0 ? carrying : all) {
      this.discard(clients, url, client, `${feed.channel} ${feed.symbol} went stale; socket replaced`);
    }
  }

  /**
   * Drops clients whose socket is closed. ccxt.pro keeps a client whose connection ended with an
   * error (Exchange.onClose deletes only cleanly closed ones); its subscriptions still look active,
   * so a new watch on it neither reconnects nor subscribes and waits forever.
   */
  private purgeDeadClients(exchange: WatchingExchange): void {
    const clients = exchange.clients ?? {};
    for (const [url, client] of Object.entries(clients)) {
      // 3 CLOSED (WebSocket readyState): its close event has run; connecting or closing clients are left alone
      if (client?.connection?.readyState === 3) this.discard(clients, url, client, 'socket closed');
    }
  }

  private discard(clients: Record<string, CcxtWsClient | undefined>, url: string, client: CcxtWsClient, why: string): void {
    const error = new ccxt.NetworkError(`${why} (${url})`);
    // with `error` set, ccxt.pro's onClose of this socket will not delete the client that replaces it
    client.error ??= error;
    try {
      client.reset?.(error);
      client.close();
    } catch (error) {
      this.options.logger.debug('closing a socket failed', { url, error });
    }
    if (clients[url] === client) delete clients[url];
  }

  private sleep(ms: number): Promise<void> {
    return this.sleeper.sleep(ms);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
