import type { MarketEvent } from '../domain/index.js';
import type { Clock } from '../ports/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import {
  NormalizationError,
  normalizeOrderBook,
  normalizeTicker,
  normalizeTrade,
  type CcxtOrderBookLike,
  type CcxtTickerLike,
  type CcxtTradeLike,
} from '../normalize/ccxt-normalizer.js';
import { Backoff } from './backoff.js';
import type { EventBatcher } from './event-batcher.js';

export type CollectorChannel = 'trades' | 'tickers' | 'books';
export const COLLECTOR_CHANNELS: readonly CollectorChannel[] = ['trades', 'tickers', 'books'];

/** What the collector needs of a ccxt.pro exchange. */
export interface WatchingExchange {
  readonly id: string;
  watchTrades(symbol: string): Promise<readonly CcxtTradeLike[]>;
  watchTicker(symbol: string, params?: Record<string, unknown>): Promise<CcxtTickerLike>;
  watchOrderBook(symbol: string): Promise<CcxtOrderBookLike>;
  close(): Promise<unknown>;
}

export interface CollectorTarget {
  readonly exchange: WatchingExchange;
  readonly symbols: readonly string[];
  /** exchange-specific params for watch calls */
  readonly watchParams?: { readonly ticker?: Readonly<Record<string, unknown>> };
}

export type CollectorCounter = 'messages' | 'events' | 'rejected' | 'watch_errors' | 'reconnects';

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
}

/** State of one subscription (exchange, symbol, channel). */
export interface FeedState {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: CollectorChannel;
  messages: number;
  errors: number;
  lastMessageAt: number | null;
  lastError: string | null;
}

/**
 * Runs one ccxt.pro watch loop per exchange, symbol and channel; normalizes what arrives and hands
 * it to the batcher. A failed watch is retried with exponential backoff and jitter (ccxt.pro
 * reconnects the socket on the next call); a malformed message is counted and skipped.
 */
export class MarketCollector {
  private running = false;
  private loops: Promise<void>[] = [];
  private wakeUp: (() => void)[] = [];
  readonly feeds: FeedState[] = [];

  constructor(private readonly options: MarketCollectorOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    const channels = this.options.channels ?? COLLECTOR_CHANNELS;
    for (const target of this.options.targets) {
      for (const symbol of target.symbols) {
        for (const channel of channels) {
          const feed: FeedState = { exchange: target.exchange.id, symbol, channel, messages: 0, errors: 0, lastMessageAt: null, lastError: null };
          this.feeds.push(feed);
          this.loops.push(this.run(target, feed));
        }
      }
    }
  }

  /** Stops every loop, closes the exchanges' sockets and flushes what is buffered. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const w of this.wakeUp.splice(0)) w();
    await Promise.allSettled(this.options.targets.map((t) => t.exchange.close()));
    await Promise.allSettled(this.loops);
    await this.options.batcher.flush();
    this.options.batcher.stop();
  }

  private async run(target: CollectorTarget, feed: FeedState): Promise<void> {
    const { logger, counters, clock } = this.options;
    const log = logger.child({ exchange: feed.exchange, symbol: feed.symbol, channel: feed.channel });
    const backoff = new Backoff();
    const next = this.watcher(target, feed);
    while (this.running) {
      try {
        const events = await next();
        feed.messages += 1;
        feed.lastMessageAt = clock.now();
        counters.add('messages');
        if (backoff.failures > 0) {
          counters.add('reconnects');
          log.info('feed recovered', { after: backoff.failures });
        }
        backoff.reset();
        if (events.length > 0) {
          counters.add('events', events.length);
          this.options.batcher.add(events);
        }
      } catch (error) {
        if (!this.running) break;
        feed.errors += 1;
        feed.lastError = `${(error as Error).name}: ${(error as Error).message}`;
        counters.add('watch_errors');
        const delay = backoff.next();
        log.warn('watch failed; retrying', { error, retryInMs: delay, attempt: backoff.failures });
        await this.sleep(delay);
      }
    }
  }

  /** One call of the channel's watch, normalized; bad items are counted and skipped, never thrown. */
  private watcher(target: CollectorTarget, feed: FeedState): () => Promise<MarketEvent[]> {
    const { clock } = this.options;
    const { exchange } = target;
    const tickerParams = { ...target.watchParams?.ticker };
    const depth = this.options.bookDepth ?? 20;
    const interval = this.options.bookIntervalMs ?? 1_000;
    let lastBookAt = 0;
    switch (feed.channel) {
      case 'trades':
        return async () => {
          const trades = await exchange.watchTrades(feed.symbol);
          const localTs = clock.now();
          return this.each(feed, trades, (t) => normalizeTrade(exchange.id, t, localTs));
        };
      case 'tickers':
        return async () => {
          const ticker = await exchange.watchTicker(feed.symbol, tickerParams);
          return this.each(feed, [ticker], (t) => normalizeTicker(exchange.id, t, clock.now()));
        };
      case 'books':
        return async () => {
          const book = await exchange.watchOrderBook(feed.symbol);
          const localTs = clock.now();
          if (localTs - lastBookAt < interval) return [];
          lastBookAt = localTs;
          return this.each(feed, [book], (b) => normalizeOrderBook(exchange.id, b, depth, localTs));
        };
    }
  }

  private each<T>(feed: FeedState, items: readonly T[], normalize: (item: T) => MarketEvent): MarketEvent[] {
    const out: MarketEvent[] = [];
    for (const item of items) {
      try {
        out.push(normalize(item));
      } catch (error) {
        if (!(error instanceof NormalizationError)) throw error;
        this.options.counters.add('rejected');
        this.options.logger.warn('exchange message rejected', {
          exchange: feed.exchange,
          symbol: feed.symbol,
          channel: feed.channel,
          errorName: error.name,
          reason: error.message,
        });
      }
    }
    return out;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp.push(done);
    });
  }
}
