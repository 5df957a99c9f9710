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
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { describeWithService } from '../support/services.js';
import { createActiveStream } from '../support/pipeline.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';

/** The service-mode collector (functions/collector) -> kinesalite -> local event source -> timescale-writer. */
describeWithService('kinesis', 'collector in service mode through Kinesis (kinesalite)', (endpoint) => {
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streamName = `qicore-collector-${randomUUID().slice(0, 8)}`;
  let sim: SimulatedExchange;
  let runtime: CollectorRuntime | undefined;
  let database: TestDatabase;
  const saved = { ...process.env };

  beforeAll(async () => {
    // the SDK's default credential chain reads these; kinesalite accepts any
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', AWS_REGION: region });
    await createActiveStream(admin, streamName, 2);
    sim = await startSimulatedExchange({ seed: 11, symbols: SYMBOLS, tradesPerSecond: 20, autoRun: false });
    database = await createTestDatabase('pglite');
  }, 60_000);

  afterAll(async () => {
    await runtime?.stop();
    await sim?.close();
    await database?.dispose();
    await admin.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    admin.destroy();
    process.env = saved;
  });

  const KEYS_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:exchange-keys-AbCdEf';
  const KEYS_JSON = JSON.stringify({ binance: { apiKey: 'k-binance', secret: 's-binance' }, okx: { apiKey: 'k-okx', secret: 's-okx', password: 'p' } });

  it('collects every printed trade into the stream, and the writer stores each once', async () => {
    runtime = await startCollectorFromEnv(
      {
        MARKETS: `binance:${SYMBOLS.join(',')}`,
        STREAM_NAME: streamName,
        KINESIS_ENDPOINT: endpoint,
        EXCHANGE_REST_URL: sim.httpUrl,
        EXCHANGE_WS_URL: sim.wsUrl,
        BOOK_INTERVAL_MS: '250',
        EXCHANGE_KEYS_SECRET_ARN: KEYS_SECRET_ARN,
      },
      silentLogger,
      // Secrets Manager is AWS: a client answering GetSecretValue for the one secret stands in for it
      { secrets: { send: async (command) => ({ SecretString: command.input.SecretId === KEYS_SECRET_ARN ? KEYS_JSON : undefined }) } },
    );
    // the keys reached the binance client and nothing else (the simulator serves keyed and keyless clients alike)
    expect(runtime.service.exchanges.map((c) => [c.exchange.id, c.exchange.apiKey, c.exchange.secret])).toEqual([['binance', 'k-binance', 's-binance']]);
    await sim.waitForStreams(SYMBOLS.map((s) => `${s.replace('/', '').toLowerCase()}@trade`), { timeoutMs: 15_000 });
    sim.market.start();
    await new Promise((r) => setTimeout(r, 3_000));
    sim.market.stop();
    await new Promise((r) => setTimeout(r, 500));
    await runtime.stop();
    runtime = undefined;

    const store = new PostgresMarketStore(database.db);
    const counters = new Counters<StoreWriterCounter>();
    const source = new KinesisEventSource({
      subscription: new KinesisSubscription({ streamName, endpoint, region, credentials, checkpoints: new InMemoryCheckpointStore(), idleDelayMs: 20 }),
      handler: createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' }),
      logger: silentLogger,
      onExhausted: async () => {
        throw new Error('nothing should be given up');
      },
    });
    await source.drain();

    for (const symbol of SYMBOLS) {
      const printed = sim.printedTrades(symbol);
      expect(printed.length).toBeGreaterThan(20);
      const stored = await store.trades({ exchange: 'binance', symbol, limit: 100_000 });
      expect(stored.map((t) => t.id)).toEqual(printed.map((t) => String(t.id)));
    }
    expect(counters.get('dead_lettered')).toBe(0);
    expect(counters.get('books_written')).toBeGreaterThan(0);
  }, 60_000);
});
