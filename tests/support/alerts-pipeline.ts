/**
 * The alerts path, all real and in one process (embedded mode): simulated exchange -> ccxt.pro
 * collector -> stream -> two consumers run by KinesisEventSource, as two Lambda functions on one
 * Kinesis stream would be: the timescale writer (PGlite) and the alerts consumer, which publishes
 * through SignalService (stored at once, and streamed to the writer, which stores it idempotently).
 * The in-process stream has one consumer group, so each consumer reads its own copy (a tee).
 */
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { AlertEngine, type AlertCounter } from '../../layers/shared/src/alerts/alert-engine.js';
import { parseAlertRules, type AlertRuleInput } from '../../layers/shared/src/alerts/alert-rules.js';
import { startCollectorService, type CollectorService } from '../../layers/shared/src/collector/collector-service.js';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { createAlertsConsumerHandler } from '../../layers/shared/src/consumers/alerts-consumer.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import type { MarketEvent, Signal } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import type { Logger } from '../../layers/shared/src/observability/logger.js';
import { systemClock, type StreamBus } from '../../layers/shared/src/ports/index.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import type { SimulatedExchange } from '../../local/sim/server.js';
import { createTestDatabase, type TestDatabase } from './databases.js';
import { binanceTradeStream } from './collector-pipeline.js';

export interface AlertsPipeline {
  readonly database: TestDatabase;
  readonly store: PostgresMarketStore;
  readonly signals: SignalService;
  readonly alertCounters: Counters<AlertCounter>;
  readonly writerCounters: Counters<StoreWriterCounter>;
  readonly collector: CollectorService;
  /** Called by the writer with what each batch stored (benchmarks time it). */
  onStored?: (events: readonly MarketEvent[]) => void;
  /** Called when SignalService has stored a signal (benchmarks time it). */
  onSignalStored?: (signals: readonly Signal[]) => void;
  /** Waits until the collector published everything and both consumers read it all. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Starts the pipeline on `sim` (binance protocol) for `symbols`, trades only, with `rules`. */
export async function startAlertsPipeline(options: {
  readonly sim: SimulatedExchange;
  readonly symbols: readonly string[];
  readonly rules: readonly AlertRuleInput[];
  readonly logger: Logger;
}): Promise<AlertsPipeline> {
  const { sim, symbols, logger } = options;
  const database = await createTestDatabase('pglite');
  const store = new PostgresMarketStore(database.db);
  const toWriter = new MemoryStream();
  const toAlerts = new MemoryStream();
  // one stream, two consumer groups
  const bus: StreamBus = {
    publish: async (events) => {
      const [receipt] = await Promise.all([toWriter.publish(events), toAlerts.publish(events)]);
      return receipt;
    },
    close: async () => {
      await toWriter.close();
      await toAlerts.close();
    },
  };
  const pipeline: AlertsPipeline = {} as AlertsPipeline;
  const signalWriter = {
    writeSignals: async (rows: readonly Signal[]) => {
      const n = await store.writeSignals(rows);
      pipeline.onSignalStored?.(rows);
      return n;
    },
  };
  const signals = new SignalService({ writer: signalWriter, reader: new PostgresSignalReader(database.db), clock: systemClock, bus, logger });
  const alertCounters = new Counters<AlertCounter>();
  const writerCounters = new Counters<StoreWriterCounter>();
  const engine = new AlertEngine({ rules: parseAlertRules(options.rules), signals, clock: systemClock, counters: alertCounters, logger });
  const giveUp = async (records: readonly unknown[], reason: string) => {
    throw new Error(`records given up (${records.length}): ${reason}`);
  };
  const writer = new KinesisEventSource({
    subscription: toWriter.subscribe(),
    handler: createTimescaleWriterHandler({
      writer: store,
      logger,
      counters: writerCounters,
      source: 'timescale-writer',
      onWritten: (events) => pipeline.onStored?.(events),
    }),
    logger,
    onExhausted: giveUp,
  });
  const alerts = new KinesisEventSource({ subscription: toAlerts.subscribe(), handler: createAlertsConsumerHandler({ engine, counters: alertCounters, logger }), logger, onExhausted: giveUp });
  writer.start();
  alerts.start();
  const collector = await startCollectorService({
    markets: new Map([['binance', symbols]]),
    bus,
    logger,
    clock: systemClock,
    channels: ['trades'],
    configure: (exchange) => applyEndpointOverride(exchange, { rest: sim.httpUrl, ws: sim.wsUrl }),
  });
  await sim.waitForStreams(symbols.map(binanceTradeStream), { timeoutMs: 15_000 });
  const drained = async () => {
    const deadline = Date.now() + 30_000;
    while (toWriter.backlog + toAlerts.backlog > 0) {
      if (Date.now() > deadline) throw new Error(`streams not drained: ${toWriter.backlog} + ${toAlerts.backlog} records left`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return Object.assign(pipeline, {
    database,
    store,
    signals,
    alertCounters,
    writerCounters,
    collector,
    settle: async () => {
      await collector.collector.fillsIdle();
      await collector.batcher.flush();
      await drained();
    },
    close: async () => {
      await collector.stop().catch(() => undefined);
      for (const source of [writer, alerts]) {
        await source.stop();
        await source.drain();
      }
      await bus.close();
      await database.dispose();
    },
  });
}
