/**
 * The collector's metrics on the real path: ccxt.pro clients against the simulated exchange. A stalled
 * market's feeds age (and go stale past their watchdog window) while the other market's stay fresh,
 * and their age starts again when the simulator resumes. Then the Fargate entry
 * (functions/collector/main.ts) as a child process: its /metrics, /healthz and staleness log line.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createKinesisClient } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { CollectorMetrics, COLLECTOR_STALENESS_MSG, serveCollectorMetrics, type CollectorMetricsServer } from '../../layers/shared/src/collector/collector-metrics.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { startCollectorProcess, type CollectorProcess } from '../support/collector-process.js';
import { createActiveStream, waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';
import { parseExposition, type Series } from '../support/prometheus.js';

const STALLED = 'BTC/USDT';
const LIVE = 'ETH/USDT';
const SYMBOLS = [STALLED, LIVE];
/** the trade watchdog window of the in-process test, in ms */
const TRADES_STALE_MS = 2_000;

async function scrape(url: string): Promise<Series[]> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseExposition(await res.text());
}

function value(series: Series[], name: string, labels: Record<string, string>): number | undefined {
  return series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const age = (series: Series[], symbol: string, channel = 'trades') => value(series, 'collector_feed_age_seconds', { symbol, channel }) ?? Number.NaN;

describe('collector metrics against the simulated exchange', () => {
  let sim: SimulatedExchange | undefined;
  let pipeline: CollectorPipeline | undefined;
  let server: CollectorMetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    await pipeline?.close();
    await sim?.close();
  });

  it('ages the feeds of a stalled market past their watchdog window, keeps the others fresh, and resets when it resumes', async () => {
    sim = await startSimulatedExchange({ seed: 71, symbols: SYMBOLS, tradesPerSecond: 20, autoRun: false });
    pipeline = await startCollectorPipeline({
      markets: new Map([['binance', SYMBOLS]]),
      endpoints: { binance: { rest: sim.httpUrl, ws: sim.wsUrl } },
      tuning: { staleAfterMs: { trades: TRADES_STALE_MS } },
    });
    const metrics = new CollectorMetrics(pipeline.service, { shard: '0/1', clock: systemClock, processMetrics: false, staleAfterMs: { trades: TRADES_STALE_MS } });
    server = await serveCollectorMetrics({ metrics, host: '127.0.0.1', port: 0, logger: silentLogger });
    const url = server.url;
    await sim.waitForStreams(SYMBOLS.map(binanceTradeStream), { timeoutMs: 15_000 });
    sim.market.start();

    // every feed is flowing: trades of both markets are under a second old
    await waitFor('both trade feeds fresh', () => scrape(url), (s) => age(s, STALLED) < 1 && age(s, LIVE) < 1, { timeoutMs: 20_000, intervalMs: 100 });

    sim.faults.stall(3 * TRADES_STALE_MS + 2_000, STALLED);
    const during = await waitFor(
      `${STALLED} trades quiet past the watchdog window`,
      () => scrape(url),
      (s) => age(s, STALLED) * 1000 > TRADES_STALE_MS + 500,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(value(during, 'collector_feed_stale', { symbol: STALLED, channel: 'trades' })).toBe(1);
    // the stall withholds every channel of the market
    expect(age(during, STALLED, 'tickers')).toBeGreaterThan(1);
    // the other market was not stalled
    expect(age(during, LIVE)).toBeLessThan(age(during, STALLED));
    expect(value(during, 'collector_feed_stale', { symbol: LIVE, channel: 'trades' })).toBe(0);
    expect(metrics.staleness()).toMatchObject({ shard: '0/1', feeds: 6, oldestFeed: expect.stringMatching(new RegExp(`^binance ${STALLED} `)) });

    // the simulator delivers again: the feed's age starts over
    const after = await waitFor(`${STALLED} trades fresh again`, () => scrape(url), (s) => age(s, STALLED) < 1, { timeoutMs: 30_000, intervalMs: 100 });
    expect(value(after, 'collector_feed_stale', { symbol: STALLED, channel: 'trades' })).toBe(0);
    // the watchdog resubscribed the quiet feed, and the counters say so
    expect(value(after, 'collector_events_total', { counter: 'resubscribes' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'collector_events_total', { counter: 'events' })).toBeGreaterThan(0);
  }, 90_000);
});

/** A port free now on 127.0.0.1 (the child binds it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describeWithService('kinesis', 'collector process: /metrics, /healthz and the staleness log line', (endpoint) => {
  const region = 'us-east-1';
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streamName = `qicore-metrics-${randomUUID().slice(0, 8)}`;
  const journalDir = mkdtempSync(join(tmpdir(), 'qicore-metrics-journal-'));
  let sim: SimulatedExchange | undefined;
  let child: CollectorProcess | undefined;

  afterAll(async () => {
    await child?.kill();
    await sim?.close();
    await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    admin.destroy();
    rmSync(journalDir, { recursive: true, force: true });
  });

  it('serves the metrics of its configured markets and shard, answers /healthz, logs staleness, and exits 0 on SIGTERM', async () => {
    await createActiveStream(admin, streamName, 1);
    sim = await startSimulatedExchange({ seed: 72, symbols: SYMBOLS, tradesPerSecond: 20, autoRun: false });
    const port = await freePort();
    child = startCollectorProcess({
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_REGION: region,
      MARKETS: `binance:${SYMBOLS.join(',')}`,
      SHARD: '0/1',
      STREAM_NAME: streamName,
      KINESIS_ENDPOINT: endpoint,
      EXCHANGE_REST_URL: sim.httpUrl,
      EXCHANGE_WS_URL: sim.wsUrl,
      COLLECTOR_JOURNAL_DIR: journalDir,
      COLLECTOR_METRICS_PORT: String(port),
      COLLECTOR_METRICS_HOST: '127.0.0.1',
      COLLECTOR_STALENESS_LOG_MS: '1000',
      COLLECTOR_DRAIN_TIMEOUT_MS: '3000',
      LOG_LEVEL: 'info',
    });
    const listening = await child.waitForLog('collector metrics listening');
    const url = `http://127.0.0.1:${port}`;
    expect(listening.url).toBe(url);
    await sim.waitForStreams(SYMBOLS.map(binanceTradeStream), { timeoutMs: 20_000 });
    sim.market.start();

    // feed_status snapshots are published from the start: wait for market data received, and published
    const counted = (s: Series[], name: string, counter: string) => value(s, name, { counter, shard: '0/1' }) ?? 0;
    const series = await waitFor(
      'messages received and events published',
      () => scrape(url),
      (s) => counted(s, 'collector_events_total', 'messages') > 0 && counted(s, 'collector_events_total', 'events') > 0 && counted(s, 'collector_stream_total', 'published_events') > 0,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    const feeds = series.filter((s) => s.name === 'collector_feed_age_seconds');
    expect(feeds.map((s) => `${s.labels.exchange} ${s.labels.symbol} ${s.labels.channel} ${s.labels.shard}`).sort()).toEqual(
      SYMBOLS.flatMap((sym) => ['books', 'tickers', 'trades'].map((c) => `binance ${sym} ${c} 0/1`)).sort(),
    );
    expect(value(series, 'collector_stream_down', { shard: '0/1' })).toBe(0);
    expect(series.some((s) => s.name === 'process_resident_memory_bytes')).toBe(true);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);

    const staleness = await child.waitForLog(COLLECTOR_STALENESS_MSG, 10_000);
    expect(staleness).toMatchObject({ level: 'info', fn: 'collector', shard: '0/1', feeds: 6 });
    expect(typeof staleness.maxFeedAgeSeconds).toBe('number');
    expect(typeof staleness.staleFeeds).toBe('number');

    sim.market.stop();
    expect(await child.terminate(20_000)).toEqual({ code: 0, signal: null });
  }, 120_000);
});
