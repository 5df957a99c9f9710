/**
 * SIGTERM mid-run loses nothing: the collector's Fargate entry (functions/collector/main.ts) runs as
 * a child process against the simulator, publishing to kinesalite through a TCP proxy. The proxy is
 * cut (the stream is down, everything collected waits in memory) and the collector gets SIGTERM: it
 * must journal what it holds, fsync and exit 0 within its drain deadline. Started again with the
 * stream reachable, it publishes that journal first, then collects on; the store writer then holds
 * every printed trade exactly once, those printed while no collector ran included: the first run
 * leaves its last trade ids next to the journal, and the second run's start-up fill reaches back to them.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { InMemoryCheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import { createKinesisClient } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream } from '../support/collector-pipeline.js';
import { expectPrintedTradesStoredOnce, startCollectorProcess, type CollectorProcess } from '../support/collector-process.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { createActiveStream, printedCounts, waitFor, waitForPrinted } from '../support/pipeline.js';
import { describeWithService, serviceUrl } from '../support/services.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';
const DRAIN_TIMEOUT_MS = 4_000;
/** what main.ts allows itself past the drain deadline for the journal before it gives up */
const JOURNAL_GRACE_MS = 5_000;

describeWithService('kinesis', 'collector process: SIGTERM while the stream is down, then a restart', (endpoint) => {
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streamName = `qicore-sigterm-${randomUUID().slice(0, 8)}`;
  const journalDir = mkdtempSync(join(tmpdir(), 'qicore-sigterm-journal-'));
  let sim: SimulatedExchange;
  let proxy: TcpProxy;
  let database: TestDatabase;
  let store: PostgresMarketStore;
  let source: KinesisEventSource;
  const writerCounters = new Counters<StoreWriterCounter>();
  const children: CollectorProcess[] = [];

  beforeAll(async () => {
    await createActiveStream(admin, streamName, 2);
    sim = await startSimulatedExchange({ seed: 37, symbols: SYMBOLS, tradesPerSecond: 20, autoRun: false });
    proxy = await startTcpProxy(endpoint);
    const postgres = serviceUrl('postgres').url;
    database = postgres ? await createTestDatabase('postgres', postgres) : await createTestDatabase('pglite');
    store = new PostgresMarketStore(database.db);
    // the store writer reads kinesalite directly, the whole time: only the collector's side is cut
    source = new KinesisEventSource({
      subscription: new KinesisSubscription({ streamName, endpoint, region, credentials, checkpoints: new InMemoryCheckpointStore(), idleDelayMs: 50 }),
      handler: createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters: writerCounters, source: 'test' }),
      logger: silentLogger,
      onExhausted: async () => {
        throw new Error('nothing should be given up');
      },
    });
    source.start();
  }, 60_000);

  afterAll(async () => {
    for (const c of children) await c.kill();
    await source?.stop();
    await sim?.close();
    await proxy?.close();
    await database?.dispose();
    await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    admin.destroy();
    rmSync(journalDir, { recursive: true, force: true });
  });

  const collector = () => {
    const child = startCollectorProcess({
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_REGION: region,
      MARKETS: `binance:${SYMBOLS.join(',')}`,
      STREAM_NAME: streamName,
      KINESIS_ENDPOINT: `http://${proxy.address}`,
      EXCHANGE_REST_URL: sim.httpUrl,
      EXCHANGE_WS_URL: sim.wsUrl,
      BOOK_INTERVAL_MS: '250',
      COLLECTOR_JOURNAL_DIR: journalDir,
      // the outage is shorter than this: what was collected during it is still in memory at SIGTERM
      COLLECTOR_SPILL_AFTER_MS: '600000',
      COLLECTOR_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
      LOG_LEVEL: 'info',
    });
    children.push(child);
    return child;
  };
  // the journal of this stream, under COLLECTOR_JOURNAL_DIR
  const segments = () => {
    try {
      return readdirSync(join(journalDir, `kinesis-${streamName}`)).filter((f) => f.endsWith('.journal'));
    } catch {
      return [];
    }
  };
  const tradeStreams = SYMBOLS.map(binanceTradeStream);

  it('journals on SIGTERM, exits 0 within the deadline, and the next run publishes it: every printed trade stored once', async () => {
    // run 1: collecting, then the stream goes away
    const first = collector();
    await first.waitForLog('collector started');
    await sim.waitForStreams(tradeStreams, { timeoutMs: 20_000 });
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 20);
    proxy.cut();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 80);
    sim.market.stop();
    // the last frames reach the collector over loopback
    await new Promise((r) => setTimeout(r, 1_000));
    expect(segments()).toEqual([]); // nothing journaled yet: it is all in memory

    const signalledAt = Date.now();
    const exit = await first.terminate(DRAIN_TIMEOUT_MS + JOURNAL_GRACE_MS + 10_000);
    const exitMs = Date.now() - signalledAt;
    expect(exit).toEqual({ code: 0, signal: null });
    const shutDown = first.logs.find((l) => l.msg === 'collector shut down');
    expect(shutDown, first.otherOutput).toBeDefined();
    expect(shutDown!.journaled).toBeGreaterThan(0);
    expect(shutDown!.dropped).toBe(0);
    expect(segments().length).toBeGreaterThan(0);
    // the trades printed before the cut reached the store; those after it wait in the journal
    const storedBefore = (await Promise.all(SYMBOLS.map((symbol) => store.trades({ exchange: 'binance', symbol, limit: 100_000 })))).flat().length;
    const printedBefore = SYMBOLS.reduce((n, s) => n + sim.printedTrades(s).length, 0);
    expect(storedBefore).toBeLessThan(printedBefore);

    // no collector runs: the market goes on printing
    const printedAtExit = SYMBOLS.reduce((n, s) => n + sim.printedTrades(s).length, 0);
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 25);
    sim.market.stop();
    expect(SYMBOLS.reduce((n, s) => n + sim.printedTrades(s).length, 0)).toBeGreaterThan(printedAtExit);

    // run 2: the stream is back; the journal goes out first, then it collects on, after fetching
    // what was printed meanwhile
    proxy.restore();
    await waitFor('the first run\'s subscriptions to go', () => sim.activeStreams().filter((s) => tradeStreams.includes(s)).length, (n) => n === 0);
    const second = collector();
    await second.waitForLog('collector started');
    await second.waitForLog('journal replayed: publishing from memory again');
    await sim.waitForStreams(tradeStreams, { timeoutMs: 20_000 });
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 30);
    sim.market.stop();
    await waitFor(
      'the store to hold every printed trade',
      async () => {
        const diffs: number[] = [];
        for (const symbol of SYMBOLS) diffs.push(sim.printedTrades(symbol).length - (await store.trades({ exchange: 'binance', symbol, limit: 100_000 })).length);
        return diffs;
      },
      (d) => d.every((n) => n === 0),
      { timeoutMs: 30_000, intervalMs: 200 },
    ).catch(() => undefined); // the assertions below say what is missing
    expect(await second.terminate()).toEqual({ code: 0, signal: null });
    await source.drain();

    await expectPrintedTradesStoredOnce(sim, store, database.db, SYMBOLS, writerCounters.get('dead_lettered'));
    // the second run's stop found the stream up: nothing left for a third
    const secondDown = second.logs.find((l) => l.msg === 'collector shut down');
    expect(secondDown).toMatchObject({ journaled: 0, dropped: 0, journalBytes: 0 });
    expect(segments()).toEqual([]);
    if (process.env.QICORE_TEST_LOG) {
      const replayed = second.logs.find((l) => l.msg === 'collector stopped');
      console.info('collector-sigterm', JSON.stringify({ exitMs, drainTimeoutMs: DRAIN_TIMEOUT_MS, firstRun: shutDown, secondRunCounters: replayed?.counters }));
    }
  }, 120_000);
});
