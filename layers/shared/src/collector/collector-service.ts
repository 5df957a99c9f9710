import {
  connectExchanges,
  type ConnectedExchange,
  type ProExchange,
} from '../adapters/exchange/ccxt-pro-exchanges.js';
import type { Clock, StreamBus } from '../ports/index.js';
import { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { DiskJournal } from './disk-journal.js';
import { loadTradeIds, saveTradeIds, tradeIdFileFor } from './trade-id-checkpoint.js';
import { BATCHER_DEFAULTS, EventBatcher, type BatcherCloseSummary, type BatcherCounter, type EventBatcherOptions } from './event-batcher.js';
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
  /**
   * a disk journal for events the stream cannot take (outage, memory full, shutdown); one left by an
   * earlier run is published first. Without it, a long outage drops the oldest events (counted).
   */
  readonly journal?: {
    readonly dir: string;
    readonly maxBytes?: number;
    readonly segmentBytes?: number;
  };
  /** memory cap, spill threshold and shutdown drain of the batcher between sockets and stream */
  readonly batching?: Pick<EventBatcherOptions, 'maxBuffered' | 'spillAfterMs' | 'drainTimeoutMs' | 'maxEvents' | 'maxDelayMs'>;
}

export interface CollectorService {
  readonly exchanges: readonly ConnectedExchange[];
  readonly collector: MarketCollector;
  readonly batcher: EventBatcher;
  readonly counters: { readonly collector: Counters<CollectorCounter>; readonly batcher: Counters<BatcherCounter> };
  /** the journal, when one was configured */
  readonly journal: DiskJournal | null;
  /**
   * Stops the watch loops and publishes what is buffered; what the stream has not taken when the
   * drain ends (the stream down, or `deadlineMs` passed) goes to the journal, fsync'd.
   */
  stop(deadlineMs?: number): Promise<BatcherCloseSummary>;
}

/** Connects the exchanges and starts collecting into the bus; fails fast if none can be reached. */
export async function startCollectorService(options: CollectorServiceOptions): Promise<CollectorService> {
  const { logger } = options;
  const counters = { collector: new Counters<CollectorCounter>(), batcher: new Counters<BatcherCounter>() };
  // opened first: what an earlier run left goes out while the exchanges connect
  const journal = options.journal
    ? await DiskJournal.open({ ...options.journal, logger: logger.child({ component: 'journal' }), counters: counters.batcher })
    : null;
  // where the previous run's trades ended: its start-up fills reach back there (trades printed while none ran)
  const tradeIdFile = options.journal ? tradeIdFileFor(options.journal.dir) : null;
  const resumeTradeIds = tradeIdFile ? await loadTradeIds(tradeIdFile, logger) : new Map<string, number>();
  const batcher = new EventBatcher({
    bus: options.bus,
    logger,
    counters: counters.batcher,
    ...options.batching,
    ...(journal && { journal }),
  });
  let exchanges: readonly ConnectedExchange[];
  try {
    exchanges = await connectExchanges(options.markets, {
      logger,
      timeoutMs: 10_000,
      ...(options.configure && { configure: options.configure }),
    });
  } catch (error) {
    // the replay of an earlier journal may be under way: keep what is left of it on disk
    await batcher.close(0);
    throw error;
  }
  const collector = new MarketCollector({
    targets: exchanges.map((c) => ({ exchange: c.exchange, symbols: c.symbols, watchParams: c.watchParams })),
    batcher,
    logger,
    counters: counters.collector,
    clock: options.clock,
    ...(options.channels && { channels: options.channels }),
    ...(options.bookIntervalMs !== undefined && { bookIntervalMs: options.bookIntervalMs }),
    ...(options.bookDepth !== undefined && { bookDepth: options.bookDepth }),
    tuning: { ...options.tuning, ...(resumeTradeIds.size > 0 && { resumeTradeIds }) },
  });
  collector.start();
  for (const c of exchanges) logger.info('collecting', { exchange: c.exchange.id, symbols: c.symbols });
  let stopped: Promise<BatcherCloseSummary> | null = null;
  const stop = async (deadlineMs = options.batching?.drainTimeoutMs ?? BATCHER_DEFAULTS.drainTimeoutMs) => {
    const deadline = Date.now() + deadlineMs;
    // every flush of the collector's shutdown (its last ledger snapshot included) ends by the deadline
    batcher.drainBy(deadline);
    const collectorStopped = collector.stop().then(() => true);
    if (!(await within(collectorStopped, deadline))) {
      logger.error('watch loops still stopping at the drain deadline; journaling what is buffered', { deadlineMs });
    }
    const summary = await batcher.close(Math.max(0, deadline - Date.now()));
    // every trade taken is now published or journaled: the next run resumes after it. Not when some
    // were dropped (the journal was full): the older ids stay, and the next run fetches those again.
    if (tradeIdFile && summary.dropped === 0) {
      const ids = new Map([...resumeTradeIds, ...collector.lastTradeIds()]);
      await saveTradeIds(tradeIdFile, ids).catch((error) => logger.error('last trade ids could not be saved', { error }));
    }
    logger.info('collector stopped', { ...summary, counters: counters.batcher.snapshot() });
    return summary;
  };
  return {
    exchanges,
    collector,
    batcher,
    counters,
    journal,
    stop: (deadlineMs) => (stopped ??= stop(deadlineMs)),
  };
}

/** True when `promise` settles by `deadline` (ms epoch), false when the deadline comes first. */
async function within(promise: Promise<boolean>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise.catch(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
