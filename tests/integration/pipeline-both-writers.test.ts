/**
 * The whole write path at production grade, on real services: the simulated exchange prints trades,
 * the collector publishes them to a broker (Kinesis on kinesalite, or Kafka on librdkafka's mock),
 * two consumers with checkpoints of their own drive the TimescaleDB/PostgreSQL writer and the
 * ClickHouse writer, and the query API - over each store and over the routed reader that stitches
 * them at the retention handover - must answer exactly what was printed:
 *
 *   1. a clean run;
 *   2. a run during which PostgreSQL is cut off (a TCP proxy drops every connection) for a couple of
 *      seconds: writes fail, the event source retries, nothing is lost, given up or doubled;
 *   3. every record delivered a second time (both subscriptions rewound to the start): the answers
 *      do not change; ClickHouse keeps the copies unmerged (merges stopped, never OPTIMIZE) and its
 *      read path removes them.
 *
 * The shared PostgreSQL server is never stopped (other suites use it): the outage is the proxy's.
 */
import { randomUUID } from 'node:crypto';
import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent, MSKEvent } from 'aws-lambda';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
import { PgCopyWriter } from '../../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { InMemoryCheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import { KafkaStreamBus } from '../../layers/shared/src/adapters/stream/kafka-stream-bus.js';
import { KafkaSubscription } from '../../layers/shared/src/adapters/stream/kafka-subscription.js';
import { createKinesisClient } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { startCollectorFromEnv } from '../../layers/shared/src/collector/collector-runtime.js';
import { startCollectorService } from '../../layers/shared/src/collector/collector-service.js';
import { parseMarkets } from '../../layers/shared/src/config/markets.js';
import { createClickHouseWriterHandler } from '../../layers/shared/src/consumers/clickhouse-writer.js';
import { createMskWriterHandler } from '../../layers/shared/src/consumers/msk-store-writer.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { MarketWriter } from '../../layers/shared/src/ports/index.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { RoutedMarketReader } from '../../layers/shared/src/query/routed-market-reader.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { MskEventSource } from '../../local/runner/msk-event-source.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import {
  createActiveStream,
  EXCHANGE,
  OffsetClock,
  RecordingLogger,
  allMinuteCandles,
  allPrinted,
  candleTuple,
  countingReader,
  createClickHouseTestDatabase,
  expectedMinuteCandles,
  fixedClock,
  pageAllTrades,
  postgresTradeCounts,
  printedCounts,
  printedTuples,
  storedTuples,
  waitFor,
  waitForPrinted,
  type TestClickHouse,
} from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const TRADES_PER_SECOND = 20;
/** page size of get-trades: odd, so page edges fall inside runs of trades of one millisecond too */
const PAGE = 23;
/** the outage lasts at least this long */
const OUTAGE_MS = 2_000;
/** high enough that no record is ever given up during the outage (backoff caps at 1-2 s) */
const MAX_ATTEMPTS = 1_000;
const region = 'us-east-1';
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
// The mock cluster keeps a member that left until its session times out; 3 s keeps joins fast.
const KAFKA_SESSION_TIMEOUT_MS = 3_000;

/** One store writer fed by its own subscription: a Lambda event source mapping, run locally. */
interface WriterConsumer {
  readonly counters: Counters<StoreWriterCounter>;
  readonly logger: RecordingLogger;
  /** records given up after maxAttempts (must stay empty) */
  readonly exhausted: string[];
  start(): void;
  /** Stops the loop, then handles whatever is still in the stream. */
  stopAndDrain(): Promise<void>;
  /** Rewinds the subscription to the first record it ever delivered and handles everything again. */
  redeliverAll(): Promise<void>;
  close(): Promise<void>;
}

/** What each transport provides to the shared scenario. */
interface Transport {
  /** starts a collector that publishes the simulator's markets to the broker */
  startCollector(sim: SimulatedExchange): Promise<{ stop(): Promise<void> }>;
  /** a consumer named `name` writing with `writer` (which handler: timescale or clickhouse) */
  consumer(name: 'timescale' | 'clickhouse', writer: MarketWriter): Promise<WriterConsumer>;
  /** checks after both consumers drained (e.g. their separate checkpoints) */
  afterDrain?(): Promise<void>;
}

/**
 * The scenario of this file, for one transport: set-up, the three tests, clean-up. `makeTransport`
 * runs in beforeAll; `pgUrl` and `chUrl` are the servers' URLs.
 */
function definePipelineScenario(label: string, pgUrl: string, chUrl: string, makeTransport: () => Promise<Transport>): void {
  const simClock = new OffsetClock();
  let sim: SimulatedExchange;
  let transport: Transport;
  let collector: { stop(): Promise<void> } | undefined;
  let database: TestDatabase;
  let clickhouse: TestClickHouse;
  let proxy: TcpProxy;
  let writerStore: PostgresMarketStore;
  let pgReader: PostgresMarketStore;
  let timescale: WriterConsumer;
  let ch: WriterConsumer;
  let answersAfterOutage: Awaited<ReturnType<typeof expectExactAnswers>> | undefined;

  beforeAll(async () => {
    // all settled before going on: if one part fails, afterAll still finds (and removes) the others
    const parts = await Promise.allSettled([
      createTestDatabase('postgres', pgUrl).then((d) => void (database = d)),
      createClickHouseTestDatabase(chUrl).then((c) => void (clickhouse = c)),
      startSimulatedExchange({ seed: 29, symbols: SYMBOLS, tradesPerSecond: TRADES_PER_SECOND, autoRun: false, clock: simClock }).then(
        (s) => void (sim = s),
      ),
      makeTransport().then((t) => void (transport = t)),
    ]);
    const failed = parts.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (failed) throw failed.reason;
    // the timescale writer reaches PostgreSQL only through the proxy; reads go direct
    proxy = await startTcpProxy(pgUrl);
    const proxied = viaProxy(database.url!, proxy);
    // COPY for every trade batch (copyMinRows 1): the production fast path carries the trades through the outage
    writerStore = new PostgresMarketStore(openPostgres(proxied), { copyWriter: new PgCopyWriter(proxied), copyMinRows: 1 });
    pgReader = new PostgresMarketStore(database.db);
    const consumers = await Promise.allSettled([
      transport.consumer('timescale', writerStore).then((c) => void (timescale = c)),
      transport.consumer('clickhouse', clickhouse.store).then((c) => void (ch = c)),
    ]);
    const noConsumer = consumers.find((p): p is PromiseRejectedResult => p.status === 'rejected');
    if (noConsumer) throw noConsumer.reason;
    collector = await transport.startCollector(sim);
    await sim.waitForStreams(
      SYMBOLS.map((s) => `${s.replace('/', '').toLowerCase()}@trade`),
      { timeoutMs: 15_000 },
    );
    timescale.start();
    ch.start();
  }, 60_000);

  afterAll(async () => {
    // every step runs even if one before it fails; the first failure is reported
    const errors: unknown[] = [];
    const steps = [
      () => sim?.market.stop(),
      () => collector?.stop(),
      () => timescale?.close(),
      () => ch?.close(),
      () => sim?.close(),
      () => writerStore?.close(),
      () => proxy?.close(),
      // database.db is pgReader's client: dispose closes it and drops the database
      () => database?.dispose(),
      () => clickhouse?.dispose(),
    ];
    for (const step of steps) await Promise.resolve().then(step).catch((error: unknown) => errors.push(error));
    if (errors.length > 0) throw errors[0];
  }, 30_000);

  const printedTotal = () => allPrinted(sim, SYMBOLS).length;

  /** Both stores hold exactly the printed trades (PostgreSQL rows; ClickHouse through its read path). */
  async function waitForBothStores(timeoutMs: number): Promise<void> {
    const want = printedTotal();
    await waitFor(
      `${want} trades in PostgreSQL and in ClickHouse`,
      async () => {
        const pg = await postgresTradeCounts(database.db);
        let chTrades = 0;
        for (const symbol of SYMBOLS) chTrades += (await clickhouse.store.trades({ exchange: EXCHANGE, symbol, limit: 100_000 })).length;
        return { pg: pg.rows, ch: chTrades, want };
      },
      (c) => c.pg === want && c.ch === want,
      { timeoutMs, intervalMs: 100 },
    ).catch((error: Error) => {
      const recent = [...timescale.logger.lines, ...ch.logger.lines].slice(-5).map((l) => `${l.level} ${l.msg}`);
      throw new Error(`${error.message}; last consumer log lines: ${JSON.stringify(recent)}`);
    });
  }

  /**
   * Get-trades paging (both directions) over PostgreSQL, ClickHouse and the routed reader returns
   * exactly the printed trades, once each; 1m candles are equal in both stores and to what the
   * printed trades imply. Returns the answers, to compare later ones with.
   */
  async function expectExactAnswers() {
    const printed = allPrinted(sim, SYMBOLS);
    const now = Date.now();
    // trades: the handover at the median trade, so the routed reader reads about half from each store
    const times = printed.map((t) => t.ts).sort((a, b) => a - b);
    const mid = times[Math.floor(times.length / 2)]!;
    const minutes = [...new Set(expectedMinuteCandles(printed).map((c) => c.ts))].sort((a, b) => a - b);
    // candles: the handover at the second minute when there are two (the run is timed to cross one)
    const candlesMs = minutes.length > 1 ? now - minutes[0]! - 30_000 : now - mid;
    const recent = countingReader(pgReader);
    const history = countingReader(clickhouse.store);
    const routed = new RoutedMarketReader(recent.reader, history.reader, fixedClock(now), { ticksMs: now - mid, candlesMs });
    const services: Record<string, MarketQueryService> = {
      postgres: new MarketQueryService(pgReader, fixedClock(now)),
      clickhouse: new MarketQueryService(clickhouse.store, fixedClock(now)),
      routed: new MarketQueryService(routed, fixedClock(now)),
    };
    const answers: Record<string, unknown> = {};
    for (const symbol of SYMBOLS) {
      const want = printedTuples(sim.printedTrades(symbol));
      expect(want.length).toBeGreaterThan(20);
      expect(new Set(want.map((t) => t[0])).size).toBe(want.length);
      for (const [name, service] of Object.entries(services)) {
        for (const direction of ['forward', 'backward'] as const) {
          const { trades, pages } = await pageAllTrades(service, symbol, direction, PAGE);
          expect(storedTuples(trades), `${name} ${direction} ${symbol}`).toEqual(want);
          expect(pages).toBe(Math.ceil(want.length / PAGE));
        }
      }
      const candles = {
        postgres: (await allMinuteCandles(services.postgres!, symbol)).map(candleTuple),
        clickhouse: (await allMinuteCandles(services.clickhouse!, symbol)).map(candleTuple),
        routed: (await allMinuteCandles(services.routed!, symbol)).map(candleTuple),
      };
      expect(candles.clickhouse, `clickhouse candles ${symbol}`).toEqual(candles.postgres);
      expect(candles.routed, `routed candles ${symbol}`).toEqual(candles.postgres);
      const expected = expectedMinuteCandles(sim.printedTrades(symbol));
      expect(candles.postgres.map(({ volume: _, ...c }) => c)).toEqual(expected.map(({ volume: _, ...c }) => c));
      candles.postgres.forEach((c, i) => expect(c.volume).toBeCloseTo(expected[i]!.volume, 9));
      answers[symbol] = { trades: want, candles: candles.postgres };
    }
    // the routed reader really read from both stores
    expect(recent.answered.trades).toBeGreaterThan(0);
    expect(history.answered.trades).toBeGreaterThan(0);
    if (minutes.length > 1) {
      expect(recent.answered.candles).toBeGreaterThan(0);
      expect(history.answered.candles).toBeGreaterThan(0);
    }
    return { answers, minutes: minutes.length };
  }

  function expectNothingGivenUp(): void {
    for (const c of [timescale, ch]) {
      expect(c.exhausted).toEqual([]);
      expect(c.counters.get('dead_lettered')).toBe(0);
    }
  }

  it(`${label}: every printed trade reaches both stores, and the query API answers exactly`, async () => {
    const from = printedCounts(sim, SYMBOLS);
    // a minute boundary shortly after the start: the run prints into two minutes
    const boundary = simClock.leadMinuteBoundaryBy(700);
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, from, 30);
    await waitFor('the simulator clock 300 ms past the minute boundary', () => simClock.now(), (t) => t >= boundary + 300);
    sim.market.stop();

    await waitForBothStores(20_000);
    const { minutes } = await expectExactAnswers();
    expect(minutes).toBeGreaterThanOrEqual(2);
    expectNothingGivenUp();
    expect(timescale.counters.get('record_failures')).toBe(0);
    expect(timescale.counters.get('books_written')).toBeGreaterThan(0);
    expect(ch.counters.get('books_written')).toBeGreaterThan(0);
  }, 40_000);

  it(`${label}: PostgreSQL cut off mid-stream - retried until it is back, nothing lost, doubled or given up`, async () => {
    const failuresBefore = timescale.counters.get('record_failures');
    const refusedBefore = proxy.refused;
    let from = printedCounts(sim, SYMBOLS);
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, from, 15);

    proxy.cut();
    const cutAt = Date.now();
    from = printedCounts(sim, SYMBOLS);
    // the outage: trades keep being printed and published, and the timescale writer's writes fail
    await waitFor(
      'failed PostgreSQL writes during the outage',
      () => timescale.counters.get('record_failures'),
      (n) => n > failuresBefore,
      { timeoutMs: 10_000 },
    );
    await waitForPrinted(sim, SYMBOLS, from, 20);
    const left = OUTAGE_MS - (Date.now() - cutAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left)); // the fault's duration, not a wait for a result
    const inOutage = allPrinted(sim, SYMBOLS).length;
    proxy.restore();

    from = printedCounts(sim, SYMBOLS);
    await waitForPrinted(sim, SYMBOLS, from, 15);
    sim.market.stop();

    await waitForBothStores(30_000);
    expect(proxy.refused).toBeGreaterThan(refusedBefore);
    expect(timescale.counters.get('record_failures')).toBeGreaterThan(failuresBefore);
    expect(timescale.logger.count('record write failed; reported for retry')).toBeGreaterThan(0);
    expect(ch.counters.get('record_failures')).toBe(0);
    expectNothingGivenUp();
    const pg = await postgresTradeCounts(database.db);
    expect(pg).toEqual({ rows: printedTotal(), distinct: printedTotal() });
    expect(printedTotal()).toBeGreaterThan(inOutage);
    answersAfterOutage = await expectExactAnswers();
  }, 60_000);

  it(`${label}: every record delivered twice - same answers; ClickHouse dedups on read, without OPTIMIZE`, async () => {
    expect(answersAfterOutage, 'needs the previous test').toBeDefined();
    // the market is stopped; with the collector stopped too (it still forwards the exchange's periodic
    // tickers) nothing more enters the stream, so both consumers drain to the same end
    await collector?.stop();
    collector = undefined;
    await Promise.all([timescale.stopAndDrain(), ch.stopAndDrain()]);
    await transport.afterDrain?.();
    // copies must stay in the parts until the assertion: no background merge, and never OPTIMIZE
    await clickhouse.stopMerges(['trades', 'candles']);
    const rawBefore = await clickhouse.rawCount('trades');
    const pgWrittenBefore = timescale.counters.get('trades_written');
    const chWrittenBefore = ch.counters.get('trades_written');
    const total = printedTotal();

    await Promise.all([timescale.redeliverAll(), ch.redeliverAll()]);

    // PostgreSQL inserted nothing new; ClickHouse was sent every trade again and holds the copies
    expect(timescale.counters.get('trades_written')).toBe(pgWrittenBefore);
    expect(ch.counters.get('trades_written') - chWrittenBefore).toBeGreaterThanOrEqual(total);
    const rawAfter = await clickhouse.rawCount('trades');
    expect(rawAfter - rawBefore).toBeGreaterThanOrEqual(total);
    expect(await clickhouse.distinctTrades()).toBe(total);
    expect(await postgresTradeCounts(database.db)).toEqual({ rows: total, distinct: total });
    expectNothingGivenUp();
    const again = await expectExactAnswers();
    expect(again.answers).toEqual(answersAfterOutage!.answers);
  }, 40_000);
}

// --- Kinesis --------------------------------------------------------------------------------

describeWithService('postgres', 'pipeline to both writers', (pgUrl) => {
  describeWithService('clickhouse', 'with ClickHouse', (chUrl) => {
    describeWithService('kinesis', 'through Kinesis (kinesalite)', (endpoint) => {
      const streamName = `qicore-pipeline-${randomUUID().slice(0, 8)}`;
      const admin = createKinesisClient({ endpoint, region, credentials });
      const checkpoints = new InMemoryCheckpointStore();
      const saved = { ...process.env };

      afterAll(async () => {
        await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
        admin.destroy();
        process.env = saved;
      });

      definePipelineScenario('kinesis', pgUrl, chUrl, async () => {
        // the collector's client uses the SDK's default credential chain; kinesalite accepts any
        Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: region });
        await createActiveStream(admin, streamName, 2);
        return {
          async startCollector(sim) {
            return startCollectorFromEnv(
              {
                MARKETS: `${EXCHANGE}:${SYMBOLS.join(',')}`,
                STREAM_NAME: streamName,
                KINESIS_ENDPOINT: endpoint,
                EXCHANGE_REST_URL: sim.httpUrl,
                EXCHANGE_WS_URL: sim.wsUrl,
                BOOK_INTERVAL_MS: '250',
              },
              silentLogger,
            );
          },
          async consumer(name, writer) {
            const subscription = new KinesisSubscription({
              streamName,
              endpoint,
              region,
              credentials,
              checkpoints,
              consumerName: name,
              idleDelayMs: 20,
            });
            const counters = new Counters<StoreWriterCounter>();
            const logger = new RecordingLogger();
            const deps = { writer, logger, counters, source: name };
            const inner = name === 'timescale' ? createTimescaleWriterHandler(deps) : createClickHouseWriterHandler(deps);
            // the first sequence number delivered per shard: where "delivered twice" rewinds to
            const first = new Map<string, string>();
            const handler = (event: KinesisStreamEvent, context: Parameters<typeof inner>[1]) => {
              for (const r of event.Records) {
                const shard = r.eventID.slice(0, r.eventID.indexOf(':'));
                const seen = first.get(shard);
                if (seen === undefined || BigInt(r.kinesis.sequenceNumber) < BigInt(seen)) first.set(shard, r.kinesis.sequenceNumber);
              }
              return inner(event, context);
            };
            const exhausted: string[] = [];
            const source = new KinesisEventSource({
              subscription,
              handler,
              logger,
              pollWaitMs: 100,
              maxAttempts: MAX_ATTEMPTS,
              onExhausted: async (records) => void exhausted.push(...records.map((r) => `${r.shardId}:${r.sequenceNumber}`)),
            });
            return {
              counters,
              logger,
              exhausted,
              start: () => source.start(),
              async stopAndDrain() {
                await source.stop();
                await source.drain();
              },
              async redeliverAll() {
                expect(first.size).toBeGreaterThan(0);
                for (const [shard, seq] of first) subscription.rewind(shard, seq);
                await source.drain();
              },
              async close() {
                await source.stop();
                await subscription.close();
              },
            };
          },
          async afterDrain() {
            // two consumers, two sets of checkpoints, both at the end of every shard that has records
            const a = await checkpoints.load(`${streamName}/timescale`);
            const b = await checkpoints.load(`${streamName}/clickhouse`);
            expect(a.size).toBeGreaterThan(0);
            expect(Object.fromEntries(b)).toEqual(Object.fromEntries(a));
          },
        };
      });
    });

    // --- Kafka ----------------------------------------------------------------------------------

    describeWithService('kafka', 'through Kafka (librdkafka mock)', (brokersUrl) => {
      const brokers = brokersUrl.split(',');
      const topic = `qicore-pipeline-${randomUUID().slice(0, 8)}`;

      definePipelineScenario('kafka', pgUrl, chUrl, async () => {
        return {
          async startCollector(sim) {
            const bus = new KafkaStreamBus({ brokers, topic });
            try {
              const service = await startCollectorService({
                markets: parseMarkets(`${EXCHANGE}:${SYMBOLS.join(',')}`),
                bus,
                logger: silentLogger,
                clock: systemClock,
                bookIntervalMs: 250,
                configure: (exchange) => applyEndpointOverride(exchange, { rest: sim.httpUrl, ws: sim.wsUrl }),
              });
              return {
                async stop() {
                  await service.stop();
                  await bus.close();
                },
              };
            } catch (error) {
              await bus.close();
              throw error;
            }
          },
          async consumer(name, writer) {
            const subscription = await KafkaSubscription.open({
              brokers,
              topic,
              groupId: `${topic}-${name}`,
              sessionTimeoutMs: KAFKA_SESSION_TIMEOUT_MS,
            });
            const counters = new Counters<StoreWriterCounter>();
            const logger = new RecordingLogger();
            // the MSK handler is the same for both stores: the writer decides which one it fills
            const inner = createMskWriterHandler({ writer, logger, counters, source: name });
            // offsets handled per partition: the first (where to rewind to) and the last
            const first = new Map<string, number>();
            const last = new Map<string, number>();
            const handler = async (event: MSKEvent, context: Parameters<typeof inner>[1]) => {
              await inner(event, context);
              for (const [shard, records] of Object.entries(event.records)) {
                for (const r of records) {
                  first.set(shard, Math.min(first.get(shard) ?? Infinity, r.offset));
                  last.set(shard, Math.max(last.get(shard) ?? -1, r.offset));
                }
              }
            };
            const exhausted: string[] = [];
            const source = new MskEventSource({
              subscription,
              handler,
              logger,
              bootstrapServers: brokersUrl,
              pollWaitMs: 100,
              maxAttempts: MAX_ATTEMPTS,
              retryBaseMs: 100,
              retryMaxMs: 1_000,
              onExhausted: async (records) => void exhausted.push(...records.map((r) => `${r.shardId}@${r.sequenceNumber}`)),
            });
            return {
              counters,
              logger,
              exhausted,
              start: () => source.start(),
              async stopAndDrain() {
                await source.stop();
                await source.drain(500);
              },
              async redeliverAll() {
                const ends = new Map(last);
                expect(ends.size).toBeGreaterThan(0);
                for (const [shard, offset] of first) subscription.rewind(shard, String(offset));
                last.clear();
                source.start();
                await waitFor(
                  `${name}: every partition handled again up to ${JSON.stringify(Object.fromEntries(ends))}`,
                  () => Object.fromEntries(last),
                  (seen) => [...ends].every(([shard, end]) => (seen[shard] ?? -1) >= end),
                  { timeoutMs: 20_000 },
                );
                await source.stop();
              },
              async close() {
                await source.stop();
                await subscription.close();
              },
            };
          },
        };
      });
    });
  });
});
