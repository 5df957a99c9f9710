/**
 * Never lose, never bloat: the service-mode collector (ccxt.pro against the simulator) publishes to
 * kinesalite through a TCP proxy; the proxy is cut for a while (the stream is down) and restored.
 * The collector journals to disk during the outage with its memory under the cap, replays the
 * journal in order when the stream is back, and the store writer then holds every printed trade
 * exactly once.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { InMemoryCheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import { createKinesisClient } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { startCollectorFromEnv, type CollectorRuntime } from '../../layers/shared/src/collector/collector-runtime.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, testLogger } from '../support/collector-pipeline.js';
import { expectPrintedTradesStoredOnce } from '../support/collector-process.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { createActiveStream, printedCounts, waitFor, waitForPrinted } from '../support/pipeline.js';
import { describeWithService, serviceUrl } from '../support/services.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';
const MAX_BUFFERED = 1_000;

describeWithService('kinesis', 'collector journal: the stream down for a while, then back (kinesalite behind a TCP proxy)', (endpoint) => {
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streamName = `qicore-journal-${randomUUID().slice(0, 8)}`;
  const journalDir = mkdtempSync(join(tmpdir(), 'qicore-collector-journal-'));
  let sim: SimulatedExchange;
  let proxy: TcpProxy;
  let runtime: CollectorRuntime | undefined;
  let database: TestDatabase;
  const saved = { ...process.env };

  beforeAll(async () => {
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: region });
    await createActiveStream(admin, streamName, 2);
    sim = await startSimulatedExchange({ seed: 23, symbols: SYMBOLS, tradesPerSecond: 20, autoRun: false });
    proxy = await startTcpProxy(endpoint);
    // PostgreSQL when it runs here, else the same engine embedded (PGlite)
    const postgres = serviceUrl('postgres').url;
    database = postgres ? await createTestDatabase('postgres', postgres) : await createTestDatabase('pglite');
  }, 60_000);

  afterAll(async () => {
    await runtime?.stop(1_000);
    await sim?.close();
    await proxy?.close();
    await database?.dispose();
    await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    admin.destroy();
    rmSync(journalDir, { recursive: true, force: true });
    process.env = saved;
  });

  it('journals through the outage with memory under its cap, replays in order, and every printed trade is stored once', async () => {
    runtime = await startCollectorFromEnv(
      {
        MARKETS: `binance:${SYMBOLS.join(',')}`,
        STREAM_NAME: streamName,
        KINESIS_ENDPOINT: `http://${proxy.address}`,
        EXCHANGE_REST_URL: sim.httpUrl,
        EXCHANGE_WS_URL: sim.wsUrl,
        BOOK_INTERVAL_MS: '250',
        COLLECTOR_JOURNAL_DIR: journalDir,
        COLLECTOR_MAX_BUFFERED_EVENTS: String(MAX_BUFFERED),
        COLLECTOR_SPILL_AFTER_MS: '500',
      },
      testLogger(),
    );
    const { batcher, counters } = runtime.service;
    const journalOf = runtime.service.journal!.dir;
    await sim.waitForStreams(SYMBOLS.map(binanceTradeStream), { timeoutMs: 15_000 });
    sim.market.start();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 20);
    await waitFor('events on the stream', () => counters.batcher.get('published_events'), (n) => n > 0);

    // the stream goes away: the collector keeps collecting, into the journal
    proxy.cut();
    const cutAt = printedCounts(sim, SYMBOLS);
    await waitFor('events journaled', () => counters.batcher.get('journaled_events'), (n) => n > 0, { timeoutMs: 20_000 });
    await waitForPrinted(sim, SYMBOLS, cutAt, 150);
    const journaledDuringOutage = counters.batcher.get('journaled_events');
    expect(batcher.journalBytes, 'journal bytes on disk during the outage').toBeGreaterThan(0);

    // back: the journal goes out first, then the live events
    proxy.restore();
    await waitForPrinted(sim, SYMBOLS, printedCounts(sim, SYMBOLS), 20);
    sim.market.stop();
    await waitFor(
      'the journal replayed and memory empty',
      () => ({ unread: runtime!.service.journal!.unreadBytes, pending: batcher.pending }),
      (s) => s.unread === 0 && s.pending === 0,
      { timeoutMs: 30_000 },
    );
    const summary = await runtime.shutdown(10_000);
    runtime = undefined;

    const store = new PostgresMarketStore(database.db);
    const writerCounters = new Counters<StoreWriterCounter>();
    const source = new KinesisEventSource({
      subscription: new KinesisSubscription({ streamName, endpoint, region, credentials, checkpoints: new InMemoryCheckpointStore(), idleDelayMs: 20 }),
      handler: createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters: writerCounters, source: 'test' }),
      logger: silentLogger,
      onExhausted: async () => {
        throw new Error('nothing should be given up');
      },
    });
    await source.drain();

    await expectPrintedTradesStoredOnce(sim, store, database.db, SYMBOLS, writerCounters.get('dead_lettered'));

    // the journal was used, and emptied; memory stayed under its cap; nothing dropped
    const c = counters.batcher;
    expect(journaledDuringOutage).toBeGreaterThan(0);
    // (a batch in flight when the spill began is journaled too; if its publish then succeeded, its copy is skipped)
    expect(c.get('replayed_events'), 'replayed_events').toBeGreaterThan(0);
    expect(c.get('journal_bytes'), 'journal_bytes').toBeGreaterThan(0);
    expect(c.get('dropped_events')).toBe(0);
    // the collector's publishes met the cut (the bus's own retries may outlast it, so a publish need not have failed)
    expect(proxy.refused, 'connections refused by the cut proxy').toBeGreaterThan(0);
    expect(batcher.peakPending).toBeLessThanOrEqual(MAX_BUFFERED);
    expect(summary).toMatchObject({ dropped: 0, journalBytes: 0 });
    // the journal of this stream, under the configured directory
    expect(journalOf).toBe(join(journalDir, `kinesis-${streamName}`));
    // every segment published and deleted, and the emptied directory with them
    expect(existsSync(journalOf)).toBe(false);
    if (process.env.QICORE_TEST_LOG) {
      console.info('collector-journal', JSON.stringify({ ...c.snapshot(), peakPending: batcher.peakPending, proxyRefused: proxy.refused }));
    }
  }, 90_000);
});
