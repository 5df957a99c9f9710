/**
 * Lag from a trade printed by the simulator to its row being queryable, two ways:
 *
 * (a) embedded: startLocalPlatform (source sim, ephemeral PGlite): simulator -> ccxt.pro collector
 *     -> EventBatcher -> MemoryStream -> KinesisEventSource -> timescale-writer -> PGlite;
 * (b) service mode through kinesalite: startCollectorFromEnv (KinesisStreamBus) -> kinesalite ->
 *     KinesisSubscription (default idle delay) -> KinesisEventSource -> timescale-writer (COPY path)
 *     -> a fresh PostgreSQL database. Skipped unless KINESIS_ENDPOINT and DATABASE_URL are set.
 *
 * Method: a reader polls the store every POLL_MS (`store.trades({ since })` from the oldest trade
 * not seen yet). A trade is visible at the end of the first poll that returns its id; lag = that
 * time - the trade's print time (`printedTrades(symbol)[i].ts`, same process, same clock). So the
 * figure includes up to one poll period + one poll's duration of reader-side delay; both are
 * printed as the reference. The stored `localTs` (when the collector received the frame) splits
 * the lag into "to the collector" and "collector to queryable".
 *
 * Also measured in the same run: the in-process hop alone (MemoryStream.publish -> the event
 * source's poll loop sees the record), as the floor of mode (a)'s stream stage.
 *
 * The harness times synchronous ops only, so everything here runs at import time and is printed
 * to stderr; the harness entry is a placeholder (see bench/lib/latency.ts).
 *
 *   bash local/services/services.sh start && . /tmp/qicore-services/env && npm run bench -- --filter=pipeline-lag
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateStreamCommand, DeleteStreamCommand, DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { InMemoryCheckpointStore } from '../layers/shared/src/adapters/stream/checkpoint-store.js';
import { createKinesisClient } from '../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { MemoryStream } from '../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { PgCopyWriter } from '../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { openPostgres } from '../layers/shared/src/adapters/stores/pg-client.js';
import { PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import { startCollectorFromEnv } from '../layers/shared/src/collector/collector-runtime.js';
import type { StoreWriterCounter } from '../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../layers/shared/src/consumers/timescale-writer.js';
import type { Trade } from '../layers/shared/src/domain/index.js';
import { Counters } from '../layers/shared/src/observability/counters.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import { startLocalPlatform } from '../local/platform.js';
import { KinesisEventSource } from '../local/runner/kinesis-event-source.js';
import { startSimulatedExchange, type SimulatedExchange } from '../local/sim/server.js';
import { createTestDatabase } from '../tests/support/databases.js';
import { figuresOnly, formatMs, latencySummary, printTable, sleep, type LatencySummary } from './lib/latency.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const EXCHANGE = 'binance';
/** simulator orders per second per symbol; an order prints ~2.3 trades on average, so ~20 trades/s/symbol */
const TPS = 9;
const RUN_MS = Number(process.env.PIPELINE_LAG_RUN_MS ?? 10_000);
const POLL_MS = 15;
/** after the market stops: how long the reader keeps polling for the last trades */
const SETTLE_MS = 8_000;

interface ModeResult {
  readonly mode: string;
  readonly printed: number;
  readonly seen: number;
  readonly lag: LatencySummary;
  /** print -> collector's localTs */
  readonly toCollector: LatencySummary;
  /** localTs -> visible */
  readonly collectorToVisible: LatencySummary;
  readonly pollPeriod: LatencySummary;
  readonly pollDuration: LatencySummary;
}

interface Reader {
  trades(q: { exchange: string; symbol: string; since: number; limit: number }): Promise<readonly Trade[]>;
}

/** Runs the market for RUN_MS while polling `reader`; returns the lag of every printed trade. */
async function measureLag(mode: string, sim: SimulatedExchange, reader: Reader): Promise<ModeResult> {
  // trades printed before the window (startLocalPlatform starts the market itself) are not counted
  const skip = new Map(SYMBOLS.map((s) => [s, sim.printedTrades(s).length]));
  const windowOf = (symbol: string) => sim.printedTrades(symbol).slice(skip.get(symbol));
  const seenAt = new Map<string, { at: number; localTs: number }>();
  const pollStarts: number[] = [];
  const pollDurations: number[] = [];
  let stop = false;

  const pollOnce = async () => {
    const t0 = performance.now();
    pollStarts.push(t0);
    const results = await Promise.all(
      SYMBOLS.map(async (symbol) => {
        const printed = windowOf(symbol);
        // from the oldest printed trade not seen yet (or the newest print): a short, indexed range
        let since = printed.at(-1)?.ts ?? Date.now();
        for (let i = printed.length - 1; i >= 0 && i >= printed.length - 5_000; i--) {
          if (!seenAt.has(`${symbol}|${printed[i]!.id}`)) since = Math.min(since, printed[i]!.ts);
        }
        return { symbol, rows: await reader.trades({ exchange: EXCHANGE, symbol, since, limit: 5_000 }) };
      }),
    );
    const at = Date.now();
    pollDurations.push(performance.now() - t0);
    for (const { symbol, rows } of results) {
      for (const t of rows) {
        const key = `${symbol}|${t.id}`;
        if (!seenAt.has(key)) seenAt.set(key, { at, localTs: t.localTs });
      }
    }
  };
  const loop = (async () => {
    while (!stop) {
      const next = performance.now() + POLL_MS;
      await pollOnce();
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
    }
  })();

  sim.market.start();
  await sleep(RUN_MS);
  sim.market.stop();
  const printedAll = () => SYMBOLS.flatMap((s) => windowOf(s).map((p) => ({ key: `${s}|${p.id}`, ts: p.ts })));
  const deadline = Date.now() + SETTLE_MS;
  while (Date.now() < deadline && printedAll().some((p) => !seenAt.has(p.key))) await sleep(50);
  stop = true;
  await loop;

  const printed = printedAll();
  const lag: number[] = [];
  const toCollector: number[] = [];
  const collectorToVisible: number[] = [];
  for (const p of printed) {
    const s = seenAt.get(p.key);
    if (!s) continue;
    lag.push(s.at - p.ts);
    toCollector.push(s.localTs - p.ts);
    collectorToVisible.push(s.at - s.localTs);
  }
  if (lag.length === 0) throw new Error(`${mode}: no printed trade became visible`);
  const periods = pollStarts.slice(1).map((t, i) => t - pollStarts[i]!);
  return {
    mode,
    printed: printed.length,
    seen: lag.length,
    lag: latencySummary(lag),
    toCollector: latencySummary(toCollector),
    collectorToVisible: latencySummary(collectorToVisible),
    pollPeriod: latencySummary(periods),
    pollDuration: latencySummary(pollDurations),
  };
}

async function embedded(): Promise<ModeResult> {
  const dataDir = await mkdtemp(join(tmpdir(), 'qicore-lag-'));
  const platform = await startLocalPlatform({
    source: 'sim',
    markets: new Map([[EXCHANGE, SYMBOLS]]),
    dataDir,
    host: '127.0.0.1',
    port: 0,
    stdio: false,
    simSeed: 7,
    simTps: TPS,
    logger: silentLogger,
    ephemeral: true,
  });
  try {
    // startLocalPlatform starts the market once the collector listens: restart it for a clean window
    const sim = platform.sim!;
    sim.market.stop();
    await platform.drain();
    await sleep(300);
    return await measureLag('(a) embedded: MemoryStream -> PGlite', sim, platform.store);
  } finally {
    await platform.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function throughKinesis(endpoint: string, databaseUrl: string): Promise<ModeResult> {
  const region = 'us-east-1';
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: region });
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streamName = `qicore-lag-${randomUUID().slice(0, 8)}`;
  await admin.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: 2 }));
  for (let i = 0; i < 200; i++) {
    const s = await admin.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    if (s.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await sleep(50);
  }
  const database = await createTestDatabase('postgres', databaseUrl);
  const sim = await startSimulatedExchange({ seed: 7, symbols: SYMBOLS, tradesPerSecond: TPS, autoRun: false });
  const writer = new PostgresMarketStore(openPostgres(database.url!), { copyWriter: new PgCopyWriter(database.url!, { max: 1 }) });
  const reader = new PostgresMarketStore(openPostgres(database.url!, { max: 1 }));
  const source = new KinesisEventSource({
    subscription: new KinesisSubscription({ streamName, endpoint, region, credentials, checkpoints: new InMemoryCheckpointStore() }),
    handler: createTimescaleWriterHandler({ writer, logger: silentLogger, counters: new Counters<StoreWriterCounter>(), source: 'bench' }),
    logger: silentLogger,
    onExhausted: async () => {
      throw new Error('nothing should be given up');
    },
  });
  const runtime = await startCollectorFromEnv(
    {
      MARKETS: `${EXCHANGE}:${SYMBOLS.join(',')}`,
      STREAM_NAME: streamName,
      KINESIS_ENDPOINT: endpoint,
      EXCHANGE_REST_URL: sim.httpUrl,
      EXCHANGE_WS_URL: sim.wsUrl,
      BOOK_INTERVAL_MS: '1000',
    },
    silentLogger,
  );
  try {
    await sim.waitForStreams(SYMBOLS.map((s) => `${s.replace('/', '').toLowerCase()}@trade`), { timeoutMs: 15_000 });
    source.start();
    return await measureLag('(b) service mode: kinesalite -> PostgreSQL', sim, reader);
  } finally {
    await runtime.stop();
    await source.stop();
    await sim.close();
    await writer.close();
    await reader.close();
    await database.dispose();
    await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    admin.destroy();
  }
}

/** The in-process hop alone: publish one event, the event source's loop (poll(100, 250)) gets it. */
async function memoryHop(): Promise<LatencySummary> {
  const stream = new MemoryStream();
  const sub = stream.subscribe();
  const sentAt = new Map<string, number>();
  const hops: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const records = await sub.poll(100, 250);
      const now = performance.now();
      for (const r of records) {
        const t = sentAt.get(r.partitionKey);
        if (t !== undefined) hops.push(now - t);
        await sub.checkpoint(r.shardId, r.sequenceNumber);
      }
    }
  })();
  for (let i = 0; i < 300; i++) {
    const symbol = `H${i}/USDT`;
    sentAt.set(`${EXCHANGE}:${symbol}`, performance.now());
    await stream.publish([
      { type: 'trade', exchange: EXCHANGE, symbol, ts: Date.now(), localTs: Date.now(), id: String(i), price: 1, amount: 1, side: 'buy' },
    ]);
    await sleep(10);
  }
  running = false;
  await stream.close();
  await loop;
  return latencySummary(hops);
}

function report(results: readonly ModeResult[], hop: LatencySummary, skipped: string | null): void {
  const row = (name: string, s: LatencySummary, extra = '') => [name, String(s.count), formatMs(s.p50), formatMs(s.p99), formatMs(s.max), extra];
  const rows: string[][] = [];
  for (const r of results) {
    const ratio = r.lag.p50 / r.pollPeriod.p50;
    const rate = r.printed / (RUN_MS / 1000) / SYMBOLS.length;
    rows.push(row(`${r.mode}: print -> queryable`, r.lag, `${r.seen}/${r.printed} seen (${rate.toFixed(1)} trades/s/symbol); p50 = ${ratio.toFixed(1)} poll periods`));
    rows.push(row('  print -> collector (localTs)', r.toCollector));
    rows.push(row('  collector -> queryable', r.collectorToVisible));
    rows.push(row('  [reference] poll period', r.pollPeriod, `target ${POLL_MS} ms`));
    rows.push(row('  [reference] poll duration', r.pollDuration));
  }
  rows.push(row('[reference] MemoryStream publish -> consumer loop', hop, 'one event per publish, 10 ms apart'));
  const notes = [
    `${SYMBOLS.length} symbols x ${TPS} orders/s for ${RUN_MS / 1000} s per mode; lag = end of the first poll returning the trade - its print ts (Date.now, one process)`,
    'the EventBatcher publishes at most every 100 ms (maxDelayMs) and on 500 events: at this rate the timer decides, so ~0-100 ms of every lag is the batcher',
    '(b) reads kinesalite with KinesisSubscription defaults (idle delay 200 ms between rounds over empty shards) and the event source default (pollWaitMs 250)',
    ...(skipped ? [skipped] : []),
  ];
  printTable('pipeline-lag - printed trade -> row queryable (ms)', ['path', 'count', 'p50', 'p99', 'max', ''], rows, notes);
}

const results: ModeResult[] = [];
process.stderr.write(`pipeline-lag: (a) embedded, ${RUN_MS / 1000} s...\n`);
results.push(await embedded());
const kinesisEndpoint = process.env.KINESIS_ENDPOINT?.trim();
const databaseUrl = process.env.DATABASE_URL?.trim();
let skipped: string | null = null;
if (kinesisEndpoint && databaseUrl) {
  process.stderr.write(`pipeline-lag: (b) kinesalite -> PostgreSQL, ${RUN_MS / 1000} s...\n`);
  results.push(await throughKinesis(kinesisEndpoint, databaseUrl));
} else {
  skipped = `(b) skipped: ${kinesisEndpoint ? '' : 'KINESIS_ENDPOINT '}${databaseUrl ? '' : 'DATABASE_URL '}not set (bash local/services/services.sh start && . /tmp/qicore-services/env)`;
  process.stderr.write(`pipeline-lag: ${skipped}\n`);
}
const hop = await memoryHop();
report(results, hop, skipped);

export default figuresOnly('pipeline-lag', 'printed trade -> queryable row: figures on stderr above');
