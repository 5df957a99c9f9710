/**
 * The ingestion path of the collector tests, all real and in one process: simulated exchange(s) ->
 * ccxt.pro collector (startCollectorService) -> in-process stream -> Lambda-shaped timescale-writer
 * -> PGlite market store + completeness ledger.
 */
import type { EndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { startCollectorService, type CollectorService } from '../../layers/shared/src/collector/collector-service.js';
import type { CollectorChannel, CollectorTuning } from '../../layers/shared/src/collector/market-collector.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import type { StreamEvent, Trade } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { createLogger, silentLogger, type Logger } from '../../layers/shared/src/observability/logger.js';
import type { FeedHealth, StreamBus } from '../../layers/shared/src/ports/index.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { createTestDatabase, type TestDatabase } from './databases.js';
import { waitFor } from './pipeline.js';

export interface CollectorPipelineOptions {
  /** exchange id -> symbols */
  readonly markets: ReadonlyMap<string, readonly string[]>;
  /** exchange id -> simulator endpoint */
  readonly endpoints: Readonly<Record<string, EndpointOverride>>;
  readonly channels?: readonly CollectorChannel[];
  readonly tuning?: CollectorTuning;
  /** at most one stored book snapshot per market this often (default 250 ms) */
  readonly bookIntervalMs?: number;
  readonly logger?: Logger;
  /** a migrated database to use (emptied first, kept open on close); default: a fresh PGlite */
  readonly database?: TestDatabase;
}

/** Every table the ingestion path writes (emptied between tests sharing a database). */
const INGESTION_TABLES = ['trades', 'tickers', 'book_snapshots', 'quotes', 'candles', 'candle_rollups', 'feeds', 'funding_open_interest', 'feed_status', 'feed_gaps', 'dead_letters'];

/** Empties the ingestion tables of a shared test database. */
export async function emptyIngestionTables(database: TestDatabase): Promise<void> {
  const { rows } = await database.db.query<{ name: string }>(
    `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename = ANY($1::text[])`,
    [INGESTION_TABLES],
  );
  if (rows.length > 0) await database.db.exec(`TRUNCATE ${rows.map((r) => `"${r.name}"`).join(', ')}`);
}

export interface CollectorPipeline {
  readonly service: CollectorService;
  readonly store: PostgresMarketStore;
  readonly ledger: PostgresLedgerStore;
  readonly writerCounters: Counters<StoreWriterCounter>;
  /** every event the collector published, in order */
  readonly published: readonly StreamEvent[];
  /** Waits until the collector's fills are done and everything published is stored. */
  settle(): Promise<void>;
  /** Every stored trade of a market, oldest first. */
  trades(exchange: string, symbol: string): Promise<readonly Trade[]>;
  health(exchange: string, symbol: string, channel?: FeedHealth['channel']): Promise<FeedHealth | undefined>;
  /** Stops the collector (a last ledger snapshot is published) and stores what is left. */
  stopCollector(): Promise<void>;
  close(): Promise<void>;
}

/** Test logs: silent unless QICORE_TEST_LOG names a level. */
export function testLogger(): Logger {
  const level = process.env.QICORE_TEST_LOG as 'debug' | 'info' | 'warn' | 'error' | undefined;
  return level ? createLogger({ level }) : silentLogger;
}

export async function startCollectorPipeline(options: CollectorPipelineOptions): Promise<CollectorPipeline> {
  const logger = options.logger ?? testLogger();
  const shared = options.database;
  const database: TestDatabase = shared ?? (await createTestDatabase('pglite'));
  if (shared) await emptyIngestionTables(shared);
  const disposeDatabase = () => (shared ? Promise.resolve() : database.dispose());
  const store = new PostgresMarketStore(database.db);
  const ledger = new PostgresLedgerStore(database.db);
  const stream = new MemoryStream();
  const writerCounters = new Counters<StoreWriterCounter>();
  const published: StreamEvent[] = [];
  // the stream, with a tap on what goes in
  const bus: StreamBus = {
    publish: async (events) => {
      const receipt = await stream.publish(events);
      published.push(...events);
      return receipt;
    },
    close: () => stream.close(),
  };
  const source = new KinesisEventSource({
    subscription: stream.subscribe(),
    handler: createTimescaleWriterHandler({ writer: store, ledger, logger, counters: writerCounters, source: 'test' }),
    logger,
    onExhausted: async (records, reason) => {
      throw new Error(`records given up (${records.length}): ${reason}`);
    },
  });
  source.start();
  let service: CollectorService;
  try {
    service = await startCollectorService({
      markets: options.markets,
      bus,
      logger,
      clock: systemClock,
      bookIntervalMs: options.bookIntervalMs ?? 250,
      configure: (exchange) => {
        const endpoint = options.endpoints[exchange.id];
        if (!endpoint) throw new Error(`no simulator endpoint for ${exchange.id}`);
        return applyEndpointOverride(exchange, endpoint);
      },
      ...(options.channels && { channels: options.channels }),
      ...(options.tuning && { tuning: options.tuning }),
    });
  } catch (error) {
    await source.stop();
    await stream.close();
    await disposeDatabase();
    throw error;
  }
  let collectorStopped = false;
  const drainStream = () => waitFor('the stream to be written', () => stream.backlog, (n) => n === 0, { timeoutMs: 30_000 });
  const settle = async () => {
    if (!collectorStopped) await service.collector.fillsIdle();
    await service.batcher.flush();
    await drainStream();
  };
  return {
    service,
    store,
    ledger,
    writerCounters,
    published,
    settle,
    trades: (exchange, symbol) => store.trades({ exchange, symbol, limit: 1_000_000 }),
    health: async (exchange, symbol, channel = 'trades') => (await ledger.feedHealth({ exchange, symbol, channel }))[0],
    stopCollector: async () => {
      if (collectorStopped) return;
      collectorStopped = true;
      await service.stop();
      await drainStream();
    },
    close: async () => {
      if (!collectorStopped) await service.stop().catch(() => undefined);
      await source.stop();
      await source.drain();
      await stream.close();
      await disposeDatabase();
    },
  };
}

/** `BTC/USDT` -> `btcusdt@trade` (the sim's Binance stream names). */
export function binanceTradeStream(symbol: string): string {
  return `${symbol.replace('/', '').toLowerCase()}@trade`;
}
