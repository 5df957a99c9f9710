import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConnectedExchange } from '../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride } from '../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { runMigrations, type MigrationReport } from '../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../layers/shared/src/adapters/stores/pglite-client.js';
import { openPostgres } from '../layers/shared/src/adapters/stores/pg-client.js';
import { PgCopyWriter } from '../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { PostgresAgentStore } from '../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresLedgerStore } from '../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { InProcessMemory } from '../layers/shared/src/adapters/memory/in-process-memory.js';
import { MemoryStream } from '../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { AlertEngine, type AlertCounter } from '../layers/shared/src/alerts/alert-engine.js';
import type { AlertRule } from '../layers/shared/src/alerts/alert-rules.js';
import { createAlertsConsumerHandler, publishStale } from '../layers/shared/src/consumers/alerts-consumer.js';
import { InProcessUpdates } from '../layers/shared/src/adapters/updates/in-process-updates.js';
import { bucketStart } from '../layers/shared/src/domain/timeframes.js';
import { startCollectorService } from '../layers/shared/src/collector/collector-service.js';
import type { CollectorChannel, CollectorTuning } from '../layers/shared/src/collector/market-collector.js';
import type { StoreWriterCounter } from '../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../layers/shared/src/consumers/timescale-writer.js';
import { createUpdateNotifier } from '../layers/shared/src/consumers/update-notifier.js';
import {
  DEV_TOKEN_AUDIENCE,
  DEV_TOKEN_ISSUER,
  createJwtVerifier,
  issueDevToken,
  loadOrCreateDevSecret,
} from '../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer } from '../layers/shared/src/mcp/http.js';
import { ALL_SCOPES } from '../layers/shared/src/mcp/scopes.js';
import { buildServer, type McpDeps } from '../layers/shared/src/mcp/server.js';
import type { ToolsetName } from '../layers/shared/src/mcp/toolsets.js';
import { serveStdio } from '../layers/shared/src/mcp/stdio.js';
import { Counters } from '../layers/shared/src/observability/counters.js';
import type { Logger } from '../layers/shared/src/observability/logger.js';
import type { AgentStore } from '../layers/shared/src/ports/agent-store.js';
import { systemClock, type LedgerReader, type StreamBus } from '../layers/shared/src/ports/index.js';
import { cacheCandles, cacheFeeds } from '../layers/shared/src/query/read-cache.js';
import { MarketQueryService } from '../layers/shared/src/query/market-query.js';
import { SignalService } from '../layers/shared/src/query/signal-service.js';
import { runBackfill, type BackfillJob } from './backfill/backfill.js';
import { CheckpointStore } from './backfill/checkpoint.js';
import { connectBackfillExchange } from './backfill/exchange.js';
import { BackfillStoreRouter, DEFAULT_RETENTION_DAYS } from './backfill/store-router.js';
import { KinesisEventSource } from './runner/kinesis-event-source.js';
import { binanceProtocol } from './sim/protocols/binance.js';
import { okxProtocol } from './sim/protocols/okx.js';
import { startSimulatedExchange, type SimProtocolFactory, type SimulatedExchange } from './sim/server.js';

/** Exchanges the simulator speaks, by ccxt id. */
const SIM_PROTOCOLS: Readonly<Record<string, () => SimProtocolFactory>> = { binance: () => binanceProtocol(), okx: () => okxProtocol() };

/** The simulator's subscription names of a market's trades, per exchange protocol (swaps stream none). */
function simTradeStream(exchange: string, symbol: string): string | null {
  if (symbol.includes(':')) return null;
  if (exchange === 'okx') return `trades:${symbol.replace('/', '-')}`;
  return `${symbol.replace('/', '').toLowerCase()}@trade`;
}

export const PLATFORM_VERSION = '0.1.0';

export interface LocalPlatformOptions {
  readonly source: 'live' | 'sim';
  readonly markets: ReadonlyMap<string, readonly string[]>;
  readonly dataDir: string;
  readonly host: string;
  readonly port: number;
  /** serve MCP on stdio instead of HTTP */
  readonly stdio: boolean;
  /** alert rules (--alert-rules / ALERT_RULES); no alerts consumer without any */
  readonly alertRules?: readonly AlertRule[];
  /** MCP tool groups served; all when omitted */
  readonly toolsets?: readonly ToolsetName[];
  readonly simSeed: number;
  readonly simTps: number;
  /** source sim: hours of the simulator's synthetic history stored as 1m candles before the market opens; none by default */
  readonly simHistoryHours?: number;
  readonly logger: Logger;
  /** in-memory database instead of one persisted under dataDir (tests) */
  readonly ephemeral?: boolean;
  /** PostgreSQL/TimescaleDB instead of the embedded database */
  readonly databaseUrl?: string | undefined;
  /** stored book snapshots at most this often per market */
  readonly bookIntervalMs?: number;
  /** channels to collect (default trades, tickers, books; candles and funding are opt-in) */
  readonly channels?: readonly CollectorChannel[];
  /** collector completeness, watchdog and pacing settings */
  readonly collectorTuning?: CollectorTuning;
}

export interface StatusFigures {
  readonly feedsLive: number;
  readonly feedsTotal: number;
  readonly messages: number;
  readonly rowsStored: number;
  readonly backlog: number;
  readonly pendingPublish: number;
  readonly lagMs: number | null;
  readonly deadLettered: number;
  readonly rejected: number;
}

export interface LocalPlatform {
  /** http://host:port/mcp, null in stdio mode */
  readonly mcpUrl: string | null;
  /** development bearer token for the MCP endpoint (never logged) */
  readonly devToken: string;
  readonly migrations: MigrationReport;
  readonly sim: SimulatedExchange | null;
  readonly store: PostgresMarketStore;
  /** the collectors' completeness ledger: feed health and gaps */
  readonly ledger: LedgerReader;
  /** agents' kill switch, audit log and paper fills (the agent toolset's store) */
  readonly agentStore: AgentStore;
  readonly exchanges: readonly ConnectedExchange[];
  status(): StatusFigures;
  /** Waits until the stream has been written to the store (tests, shutdown). */
  drain(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the whole platform in one process: collector, in-process stream, writer, PGlite, MCP. */
export async function startLocalPlatform(options: LocalPlatformOptions): Promise<LocalPlatform> {
  const { logger } = options;
  const cleanup: (() => Promise<unknown>)[] = [];
  const stopAll = async () => {
    for (const fn of cleanup.reverse()) await fn().catch((error: unknown) => logger.error('shutdown step failed', { error }));
    cleanup.length = 0;
  };
  try {
    await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    const db = options.databaseUrl
      ? openPostgres(options.databaseUrl, { onConnectionError: (error) => logger.warn('database connection lost', { error }) })
      : await openPglite(options.ephemeral ? undefined : join(options.dataDir, 'pgdata'));
    const store = new PostgresMarketStore(db, {
      ...(options.databaseUrl && { copyWriter: new PgCopyWriter(options.databaseUrl, { max: 1 }) }),
    });
    cleanup.push(() => store.close());
    const migrations = await runMigrations(db);
    const ledger = new PostgresLedgerStore(db);
    const agentStore = new PostgresAgentStore(db);

    const stream = new MemoryStream();
    cleanup.push(() => stream.close());
    // an in-process stream has one consumer group: the alerts consumer reads its own copy
    const alertStream = options.alertRules?.length ? new MemoryStream() : null;
    if (alertStream) cleanup.push(() => alertStream.close());
    const bus: StreamBus = alertStream
      ? { publish: async (events) => (await Promise.all([stream.publish(events), alertStream.publish(events)]))[0], close: async () => undefined }
      : stream;
    const writerCounters = new Counters<StoreWriterCounter>();
    let lagMs: number | null = null;
    // new data lands -> subscribed MCP sessions are notified (writer and server share this process)
    const updates = new InProcessUpdates({ logger });
    cleanup.push(() => updates.close());
    const announce = createUpdateNotifier({ updates, logger });
    const handler = createTimescaleWriterHandler({
      writer: store,
      ledger,
      logger: logger.child({ fn: 'timescale-writer' }),
      counters: writerCounters,
      source: 'timescale-writer',
      onWritten: (events, summary) => {
        announce(events, summary);
        let newest = 0;
        for (const e of events) if (e.type !== 'candle' && e.localTs > newest) newest = e.localTs;
        if (newest > 0) lagMs = Math.max(0, Date.now() - newest);
      },
    });
    const eventSource = new KinesisEventSource({
      subscription: stream.subscribe(),
      handler,
      logger,
      onExhausted: async (records, reason) => {
        for (const r of records) {
          await store.writeDeadLetter({
            source: 'local-event-source',
            errorName: 'RetriesExhaustedError',
            reason,
            payload: Buffer.from(r.data).toString('base64'),
            partitionKey: r.partitionKey,
            sequenceNumber: r.sequenceNumber,
          });
        }
      },
    });
    eventSource.start();
    cleanup.push(async () => {
      await eventSource.stop();
      await eventSource.drain();
    });

    let sim: SimulatedExchange | null = null;
    if (options.source === 'sim') {
      // one simulated market per spot symbol; an exchange's swap (BTC/USDT:USDT) mirrors its spot market
      const symbols = [...new Set([...options.markets.values()].flat().map((s) => s.split(':')[0]!))];
      const protocols = [...options.markets.keys()].filter((id) => Object.hasOwn(SIM_PROTOCOLS, id)).map((id) => SIM_PROTOCOLS[id]!());
      // the market opens once the collector listens, so every trade it prints is collected
      const historyHours = options.simHistoryHours ?? 0;
      sim = await startSimulatedExchange({
        seed: options.simSeed,
        tradesPerSecond: options.simTps,
        symbols,
        autoRun: false,
        ...(protocols.length > 0 && { protocols }),
        ...(historyHours > 0 && { history: { tradeIntervalMs: 10_000 } }),
      });
      const simRef = sim;
      cleanup.push(() => simRef.close());
      if (historyHours > 0) await backfillSimHistory(sim, options.markets, store, options.dataDir, historyHours, logger);
    }
    const collection = await startCollectorService({
      markets: options.markets,
      bus,
      logger,
      clock: systemClock,
      ...(sim && {
        configure: (exchange) =>
          applyEndpointOverride(exchange, {
            ...(sim.endpoints[exchange.id] ?? { rest: sim.httpUrl, ws: sim.wsUrl }),
            ...(exchange.id === 'okx' && { marketTypes: ['spot', 'swap'] as const }),
          }),
      }),
      ...(options.bookIntervalMs !== undefined && { bookIntervalMs: options.bookIntervalMs }),
      ...(options.channels && { channels: options.channels }),
      ...(options.collectorTuning && { tuning: options.collectorTuning }),
    });
    cleanup.push(() => collection.stop());
    if (sim) {
      for (const c of collection.exchanges) {
        const streams = c.symbols.map((s) => simTradeStream(c.exchange.id, s)).filter((s): s is string => s !== null);
        await sim.waitForStreams(streams, { protocolId: c.exchange.id, timeoutMs: 15_000 });
      }
      sim.market.start();
    }
    const { collector, batcher } = collection;
    const collectorCounters = collection.counters.collector;

    const query = new MarketQueryService(cacheCandles(cacheFeeds(store, systemClock), systemClock), systemClock);
    const secret = await loadOrCreateDevSecret(options.dataDir);
    const devToken = await issueDevToken(secret, {
      subject: 'local-dev',
      // the laptop's owner may use every tool
      scopes: [...ALL_SCOPES],
      ttlSeconds: 7 * 24 * 3600,
      issuer: DEV_TOKEN_ISSUER,
      audience: DEV_TOKEN_AUDIENCE,
    });
    // stored at once (get_signals sees it) and streamed (the writer's idempotent copy changes nothing)
    const signals = new SignalService({ writer: store, reader: new PostgresSignalReader(db), clock: systemClock, bus, logger });
    if (alertStream) {
      // alert rules evaluated as events arrive; a firing is published as a signal by `alerts`
      const alertLogger = logger.child({ fn: 'alerts' });
      const alertCounters = new Counters<AlertCounter>();
      const alertSignals = new SignalService({ writer: store, reader: new PostgresSignalReader(db), clock: systemClock, bus, logger: alertLogger, limits: { perPublisher: 600 } });
      const engine = new AlertEngine({ rules: options.alertRules!, signals: alertSignals, clock: systemClock, counters: alertCounters, logger: alertLogger });
      const alertSource = new KinesisEventSource({
        subscription: alertStream.subscribe(),
        handler: createAlertsConsumerHandler({ engine, counters: alertCounters, logger: alertLogger }),
        logger: alertLogger,
        onExhausted: async (records, reason) => alertLogger.error('alert records given up', { records: records.length, reason }),
      });
      alertSource.start();
      // stale_feed rules fire on silence, which no event brings
      const staleTimer = setInterval(() => void publishStale({ engine, logger: alertLogger }), 1_000);
      cleanup.push(async () => {
        clearInterval(staleTimer);
        await alertSource.stop();
        await alertSource.drain();
      });
    }
    const memory = new InProcessMemory();
    cleanup.push(() => memory.close());
    const mcpDeps: McpDeps = {
      query,
      ledger,
      signals,
      memory,
      // the kill switch, audit log and paper trading of the agents, in the same database
      agents: { store: agentStore, clock: systemClock },
      version: PLATFORM_VERSION,
      logger,
      updates,
      ...(options.toolsets && { toolsets: options.toolsets }),
    };
    let mcpUrl: string | null = null;
    if (options.stdio) {
      const session = await serveStdio(buildServer(mcpDeps));
      cleanup.push(() => session.close());
    } else {
      const http = await startMcpHttpServer({
        host: options.host,
        port: options.port,
        buildServer: (caller) => buildServer(mcpDeps, caller),
        verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE }),
        logger,
      });
      mcpUrl = http.url;
      // the HTTP server goes first so no request reaches a closed store
      cleanup.push(() => http.close());
    }

    return {
      mcpUrl,
      devToken,
      migrations,
      sim,
      store,
      ledger,
      agentStore,
      exchanges: collection.exchanges,
      status: () => {
        const now = Date.now();
        const w = writerCounters;
        return {
          feedsLive: collector.feeds.filter((f) => f.lastMessageAt !== null && now - f.lastMessageAt < 30_000).length,
          feedsTotal: collector.feeds.length,
          messages: collectorCounters.get('messages'),
          rowsStored: w.get('trades_written') + w.get('tickers_written') + w.get('books_written') + w.get('quotes_written') + w.get('candles_written'),
          backlog: stream.backlog,
          pendingPublish: batcher.pending,
          lagMs,
          deadLettered: w.get('dead_lettered'),
          rejected: collectorCounters.get('rejected'),
        };
      },
      drain: async () => {
        await batcher.flush();
        const deadline = Date.now() + 10_000;
        while ((stream.backlog > 0 || (alertStream?.backlog ?? 0) > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * Stores the last `hours` of the simulator's synthetic history as 1m candles, through the same
 * backfill as `npm run backfill`: the agents' indicators and backtests have data from the first run
 * instead of after hours of live trading. Checkpoints under the data directory make a restart
 * fetch only what is new.
 */
async function backfillSimHistory(
  sim: SimulatedExchange,
  markets: ReadonlyMap<string, readonly string[]>,
  store: PostgresMarketStore,
  dataDir: string,
  hours: number,
  logger: Logger,
): Promise<void> {
  const until = bucketStart(sim.market.now(), '1m');
  const since = until - hours * 3_600_000;
  const checkpoints = new CheckpointStore(join(dataDir, 'backfill'));
  for (const [id, all] of markets) {
    const symbols = all.filter((s) => !s.includes(':'));
    const endpoint = sim.endpoints[id];
    if (symbols.length === 0 || !endpoint) continue;
    const exchange = await connectBackfillExchange(id, symbols, { endpoint });
    try {
      const jobs: BackfillJob[] = symbols.map((symbol) => ({ exchange: id, symbol, kind: 'candles', timeframe: '1m', since, until }));
      const report = await runBackfill(jobs, {
        exchange,
        writer: new BackfillStoreRouter(store, null, DEFAULT_RETENTION_DAYS, systemClock),
        checkpoints,
        target: 'sim-history',
        retry: { attempts: 5, baseMs: 50, maxMs: 1_000 },
      });
      const failed = report.jobs.filter((j) => j.status !== 'complete');
      if (failed.length > 0) logger.warn('simulated history not fully stored', { exchange: id, jobs: failed.map((j) => `${j.label} ${j.status}`) });
    } finally {
      await exchange.close().catch(() => undefined);
    }
  }
}
