import {
  connectExchanges,
  type ConnectedExchange,
  type ProExchange,
} from '../adapters/exchange/ccxt-pro-exchanges.js';
import type { Clock, StreamBus } from '../ports/index.js';
import { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { EventBatcher, type BatcherCounter } from './event-batcher.js';
import { MarketCollector, type CollectorChannel, type CollectorCounter, type CollectorTuning } from './market-collector.js';

export interface CollectorServiceOptions {
  /** exchange id -> ccxt unified symbols */
  readonly markets: ReadonlyMap<string, readonly string[]>;
  readonly bus: StreamBus;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly channels?: readonly CollectorChannel[];
  /** point each client at a compatible endpoint (the simulator, a proxy) before it loads markets */
  readonly configure?: (exchange: ProExchange) => Promise<void>;
  readonly bookIntervalMs?: number;
  readonly bookDepth?: number;
  /** completeness, watchdog and pacing settings (defaults suit live exchanges) */
  readonly tuning?: CollectorTuning;
}

export interface CollectorService {
  readonly exchanges: readonly ConnectedExchange[];
  readonly collector: MarketCollector;
  readonly batcher: EventBatcher;
  readonly counters: { readonly collector: Counters<CollectorCounter>; readonly batcher: Counters<BatcherCounter> };
  /** Stops the watch loops and publishes what is buffered. */
  stop(): Promise<void>;
}

/** Connects the exchanges and starts collecting into the bus; fails fast if none can be reached. */
export async function startCollectorService(options: CollectorServiceOptions): Promise<CollectorService> {
  const { logger } = options;
  const exchanges = await connectExchanges(options.markets, {
    logger,
    timeoutMs: 10_000,
    ...(options.configure && { configure: options.configure }),
  });
  const counters = { collector: new Counters<CollectorCounter>(), batcher: new Counters<BatcherCounter>() };
  const batcher = new EventBatcher({ bus: options.bus, logger, counters: counters.batcher });
  const collector = new MarketCollector({
    targets: exchanges.map((c) => ({ exchange: c.exchange, symbols: c.symbols, watchParams: c.watchParams })),
    batcher,
    logger,
    counters: counters.collector,
    clock: options.clock,
    ...(options.channels && { channels: options.channels }),
    ...(options.bookIntervalMs !== undefined && { bookIntervalMs: options.bookIntervalMs }),
    ...(options.bookDepth !== undefined && { bookDepth: options.bookDepth }),
    ...(options.tuning && { tuning: options.tuning }),
  });
  collector.start();
  for (const c of exchanges) logger.info('collecting', { exchange: c.exchange.id, symbols: c.symbols });
  return { exchanges, collector, batcher, counters, stop: () => collector.stop() };
}
