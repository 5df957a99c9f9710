import { DeleteStreamCommand } from '@aws-sdk/client-kinesis';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { InMemoryCheckpointStore, JsonFileCheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import type { CheckpointStore } from '../../layers/shared/src/adapters/stream/checkpoint-store.js';
import {
  KINESIS_LIMITS,
  KinesisStreamBus,
  RecordTooLargeError,
  StreamPublishError,
  createKinesisClient,
} from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import type { KinesisStreamBusOptions } from '../../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { KinesisSubscription } from '../../layers/shared/src/adapters/stream/kinesis-subscription.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { StreamSubscription } from '../../layers/shared/src/ports/index.js';
import { decodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, book, trade } from '../fixtures/events.js';
import { startKinesisFaultProxy } from '../support/kinesis-fault-proxy.js';
import type { KinesisFaultProxy } from '../support/kinesis-fault-proxy.js';
import { describeWithService } from '../support/services.js';
import { defineStreamBusContract } from '../support/stream-bus-contract.js';
import { createActiveStream } from '../support/pipeline.js';

// kinesalite accepts any credentials
const credentials = { accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'local-test-secret' };
const region = 'us-east-1';

describe('JsonFileCheckpointStore', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qicore-checkpoints-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('keeps checkpoints per scope across instances and leaves no temporary files', async () => {
    const store = new JsonFileCheckpointStore(dir);
    await Promise.all([
      store.save('s/a', 'shardId-000000000000', '10'),
      store.save('s/a', 'shardId-000000000001', '20'),
      store.save('s/b', 'shardId-000000000000', '5'),
      store.save('s/a', 'shardId-000000000000', '11'),
    ]);
    const again = new JsonFileCheckpointStore(dir);
    expect(Object.fromEntries(await again.load('s/a'))).toEqual({ 'shardId-000000000000': '11', 'shardId-000000000001': '20' });
    expect(Object.fromEntries(await again.load('s/b'))).toEqual({ 'shardId-000000000000': '5' });
    expect(await again.load('none')).toEqual(new Map());
    expect(await readdir(dir)).toEqual(['stream-checkpoints.json']);
  });
});

describe('KinesisStreamBus without a stream', () => {
  it('rejects an event too large for any record before sending anything, and a record target over the limit', async () => {
    // nothing listens there: a request would fail with a connection error, not RecordTooLargeError
    const bus = new KinesisStreamBus({ streamName: 's', endpoint: 'http://127.0.0.1:9', region, credentials, maxRetries: 0 });
    const huge = trade({ id: 'x'.repeat(KINESIS_LIMITS.bytesPerRecord) });
    await expect(bus.publish([trade(), huge])).rejects.toBeInstanceOf(RecordTooLargeError);
    await bus.close();
    await expect(bus.publish([trade()])).rejects.toThrow(/closed/);
    expect(() => new KinesisStreamBus({ streamName: 's', region, recordTargetBytes: KINESIS_LIMITS.bytesPerRecord })).toThrow(ConfigError);
  });
});

type Seen = { key: string; id: string };

/** Reads until `count` events arrived (or the time is up), checkpointing every batch. */
async function readEvents(sub: StreamSubscription, count: number, timeoutMs = 15_000): Promise<Seen[]> {
  const seen: Seen[] = [];
  const deadline = Date.now() + timeoutMs;
  while (seen.length < count && Date.now() < deadline) {
    const batch = await sub.poll(1_000, 200);
    for (const r of batch) {
      for (const e of decodeEvents(r.data).events) seen.push({ key: r.partitionKey, id: e.type === 'trade' ? e.id : e.type });
    }
    const last = batch.at(-1);
    if (last) await sub.checkpoint(last.shardId, last.sequenceNumber);
  }
  // anything beyond `count` would be a duplicate: give it a moment to show up
  for (const r of await sub.poll(1_000, 300)) seen.push(...decodeEvents(r.data).events.map((e) => ({ key: r.partitionKey, id: e.type === 'trade' ? e.id : e.type })));
  return seen;
}

function idsByKey(items: readonly Seen[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const s of items) {
    const list = out.get(s.key);
    if (list) list.push(s.id);
    else out.set(s.key, [s.id]);
  }
  return out;
}

const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT', 'DOGE/USDT', 'BNB/USDT', 'TRX/USDT'];

/** `perKey` trades for each of `symbols`, interleaved across keys, ids unique within the run. */
function interleavedTrades(symbols: readonly string[], perKey: number, prefix: string): MarketEvent[] {
  const events: MarketEvent[] = [];
  for (let i = 0; i < perKey; i++) {
    for (const symbol of symbols) events.push(trade({ id: `${prefix}-${symbol}-${i}`, symbol, ts: T0 + i }));
  }
  return events;
}

function expectedByKey(events: readonly MarketEvent[]): Map<string, string[]> {
  return idsByKey(events.map((e) => ({ key: `${e.exchange}:${e.symbol}`, id: e.type === 'trade' ? e.id : e.type })));
}

describeWithService('kinesis', 'Kinesis stream bus on kinesalite', (endpoint) => {
  const admin = createKinesisClient({ endpoint, region, credentials });
  const streams: string[] = [];

  async function createStream(shards: number): Promise<string> {
    const name = `qicore-test-${randomUUID().slice(0, 12)}`;
    streams.push(name);
    await createActiveStream(admin, name, shards);
    return name;
  }

  async function deleteStream(name: string): Promise<void> {
    const i = streams.indexOf(name);
    if (i >= 0) streams.splice(i, 1);
    await admin.send(new DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true })).catch(() => undefined);
  }

  afterAll(async () => {
    for (const name of [...streams]) await deleteStream(name);
    admin.destroy();
  });

  function subscribe(streamName: string, checkpoints: CheckpointStore = new InMemoryCheckpointStore(), consumerName?: string) {
    return new KinesisSubscription({ streamName, endpoint, region, credentials, checkpoints, consumerName, idleDelayMs: 50 });
  }

  defineStreamBusContract('kinesis (kinesalite)', async () => {
    const streamName = await createStream(3);
    const bus = new KinesisStreamBus({ streamName, endpoint, region, credentials });
    // one consumer: a new subscription resumes after the checkpoints of the previous one
    const checkpoints = new InMemoryCheckpointStore();
    return {
      bus,
      subscribe: async () => subscribe(streamName, checkpoints),
      dispose: async () => {
        await bus.close();
        await deleteStream(streamName);
      },
    };
  });

  describe('through the fault proxy', () => {
    let proxy: KinesisFaultProxy;
    const buses: KinesisStreamBus[] = [];
    beforeAll(async () => {
      proxy = await startKinesisFaultProxy(endpoint);
    });
    afterEach(async () => {
      for (const bus of buses.splice(0)) await bus.close();
      proxy.failEntries(null);
      proxy.failCalls(0);
      proxy.calls.length = 0;
    });
    afterAll(() => proxy.close());

    const busVia = (streamName: string, options: Partial<KinesisStreamBusOptions> = {}) => {
      const bus = new KinesisStreamBus({ streamName, endpoint: proxy.url, region, credentials, backoffBaseMs: 5, backoffMaxMs: 50, ...options });
      buses.push(bus);
      return bus;
    };

    it('delivers every event once, in order per key, when some records of a call fail', async () => {
      const streamName = await createStream(4);
      // small records: every key has several records per publish, queued behind each other
      const bus = busVia(streamName, { recordTargetBytes: 2_048, maxRetries: 20 });
      proxy.failEntries((call, entry) => call < 12 && entry % 3 === 2);
      const batches = [0, 1, 2, 3, 4].map((b) => interleavedTrades(SYMBOLS, 40, `p${b}`));
      // concurrent publishes: the bus must serialize them
      const receipts = await Promise.all(batches.map((events) => bus.publish(events)));
      const all = batches.flat();
      expect(receipts.reduce((n, r) => n + r.events, 0)).toBe(all.length);

      const rejected = proxy.calls.flatMap((c) => c.entries.filter((e) => e.failed));
      expect(rejected.length).toBeGreaterThan(10);
      for (const call of proxy.calls) {
        const keys = call.entries.map((e) => e.partitionKey);
        expect(new Set(keys).size, `call ${call.index} carries one record per key`).toBe(keys.length);
      }

      const sub = subscribe(streamName);
      const seen = await readEvents(sub, all.length);
      await sub.close();
      expect(seen).toHaveLength(all.length);
      expect(idsByKey(seen)).toEqual(expectedByKey(all));
    }, 60_000);

    it('retries whole-call failures (500 and throttling)', async () => {
      const streamName = await createStream(2);
      const bus = busVia(streamName);
      const events = interleavedTrades(SYMBOLS.slice(0, 3), 30, 'w');
      proxy.failCalls(2, 'internal');
      const first = await bus.publish(events.slice(0, 45));
      proxy.failCalls(2, 'throttle');
      const second = await bus.publish(events.slice(45));
      expect(first.events + second.events).toBe(90);
      expect(proxy.calls.map((c) => c.callFault ?? 'ok')).toEqual(['internal', 'internal', 'ok', 'throttle', 'throttle', 'ok']);

      const sub = subscribe(streamName);
      const seen = await readEvents(sub, 90);
      await sub.close();
      expect(idsByKey(seen)).toEqual(expectedByKey(events));
    }, 60_000);

    it('rejects with StreamPublishError naming the events not accepted once the retry budget is spent', async () => {
      const streamName = await createStream(2);
      const bus = busVia(streamName, { maxRetries: 2, recordTargetBytes: 2_048 });
      proxy.failEntries((_call, _entry, key) => key === 'binance:BTC/USDT');
      const events = interleavedTrades(['BTC/USDT', 'ETH/USDT'], 50, 'x');
      const error = await bus.publish(events).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StreamPublishError);
      const publishError = error as StreamPublishError;
      expect(publishError.name).toBe('StreamPublishError');
      expect(publishError.failedEvents).toBe(50);
      expect(publishError.message).toContain('50 events');
      expect(publishError.cause).toBeInstanceOf(Error);
      expect(String((publishError.cause as Error).message)).toContain('ProvisionedThroughputExceededException');
      // 1 try + 2 retries of the first BTC record, nothing of BTC after it
      expect(proxy.calls.flatMap((c) => c.entries).filter((e) => e.partitionKey === 'binance:BTC/USDT')).toHaveLength(3);

      // whole calls failing past the budget: every event is reported, the SDK error kept as cause
      proxy.failEntries(null);
      proxy.failCalls(10, 'internal');
      const callError = await bus.publish(events.slice(0, 10)).then(
        () => null,
        (e: unknown) => e as StreamPublishError,
      );
      expect(callError).toBeInstanceOf(StreamPublishError);
      expect(callError!.failedEvents).toBe(10);
      expect((callError!.cause as Error).name).toBe('InternalFailure');
      // the bus stays usable after a failed publish
      proxy.failCalls(0);
      await expect(bus.publish(events.slice(0, 2))).resolves.toMatchObject({ events: 2 });
    }, 60_000);

    it('keeps records and calls within the Kinesis limits', async () => {
      const streamName = await createStream(4);
      const bus = busVia(streamName);
      const trades = interleavedTrades(['BTC/USDT', 'ETH/USDT', 'SOL/USDT'], 1_667, 't').slice(0, 5_000);
      const receipt = await bus.publish(trades);
      expect(receipt.events).toBe(5_000);
      const tradeEntries = proxy.calls.flatMap((c) => c.entries);
      expect(tradeEntries).toHaveLength(receipt.records);
      // aggregated: hundreds of events per record
      expect(5_000 / receipt.records).toBeGreaterThan(200);
      proxy.calls.length = 0;

      // 1,200 keys: more records than one call may carry
      const manyKeys = Array.from({ length: 1_200 }, (_, i) => trade({ id: `k${i}`, symbol: `C${i}/USDT`, ts: T0 + i }));
      await bus.publish(manyKeys);
      expect(proxy.calls.length).toBeGreaterThanOrEqual(3);

      // ~25 KB books filled to ~900 KiB records: more bytes than one call may carry
      const big = new KinesisStreamBus({ streamName, endpoint: proxy.url, region, credentials, recordTargetBytes: 900 * 1024 });
      buses.push(big);
      const levels = Array.from({ length: 1_000 }, (_, i): [number, number] => [100 + i * 0.01, 1.5 + i]);
      const books = Array.from({ length: 8 * 40 }, (_, i) =>
        book({ symbol: SYMBOLS[i % 8]!, ts: T0 + i, depth: 1_000, bids: levels, asks: levels }),
      );
      const bookReceipt = await big.publish(books);
      expect(bookReceipt.bytes).toBeGreaterThan(KINESIS_LIMITS.bytesPerCall);

      for (const call of [...proxy.calls]) {
        expect(call.entries.length).toBeLessThanOrEqual(KINESIS_LIMITS.recordsPerCall);
        let callBytes = 0;
        for (const e of call.entries) {
          const size = e.data.byteLength + Buffer.byteLength(e.partitionKey);
          expect(size).toBeLessThan(KINESIS_LIMITS.bytesPerRecord);
          callBytes += size;
        }
        expect(callBytes).toBeLessThanOrEqual(KINESIS_LIMITS.bytesPerCall);
      }
      for (const e of tradeEntries) expect(e.data.byteLength).toBeLessThanOrEqual(96 * 1024);
    }, 120_000);
  });

  it('persists checkpoints in a file and a new subscription resumes after them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qicore-kinesis-'));
    try {
      const streamName = await createStream(3);
      const bus = new KinesisStreamBus({ streamName, endpoint, region, credentials });
      const first = interleavedTrades(SYMBOLS.slice(0, 4), 10, 'c1');
      await bus.publish(first);
      const sub = subscribe(streamName, new JsonFileCheckpointStore(dir), 'writer');
      expect(await readEvents(sub, first.length)).toHaveLength(first.length);
      await sub.close();

      const file = JSON.parse(await readFile(join(dir, 'stream-checkpoints.json'), 'utf8')) as Record<string, Record<string, string>>;
      expect(Object.keys(file)).toEqual([`${streamName}/writer`]);
      expect(Object.keys(file[`${streamName}/writer`]!).length).toBeGreaterThan(0);

      const second = interleavedTrades(SYMBOLS.slice(0, 4), 3, 'c2');
      await bus.publish(second);
      const resumed = subscribe(streamName, new JsonFileCheckpointStore(dir), 'writer');
      const seen = await readEvents(resumed, second.length);
      await resumed.close();
      expect(idsByKey(seen)).toEqual(expectedByKey(second));

      // another consumer of the same stream has positions of its own
      const other = subscribe(streamName, new JsonFileCheckpointStore(dir), 'alerts');
      expect(await readEvents(other, first.length + second.length)).toHaveLength(first.length + second.length);
      await other.close();
      await bus.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('drives a Lambda-shaped handler through the local runner, retrying reported failures', async () => {
    const streamName = await createStream(2);
    const bus = new KinesisStreamBus({ streamName, endpoint, region, credentials, recordTargetBytes: 2_048 });
    const events = interleavedTrades(SYMBOLS.slice(0, 3), 60, 'l');
    await bus.publish(events);
    await bus.close();

    const handled: Seen[] = [];
    let failedOnce = false;
    const handler = async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
      for (const [i, r] of event.Records.entries()) {
        // the third record of the first invocation fails once: it and the ones after it come again
        if (!failedOnce && i === 2) {
          failedOnce = true;
          return { batchItemFailures: [{ itemIdentifier: r.kinesis.sequenceNumber }] };
        }
        for (const e of decodeEvents(Buffer.from(r.kinesis.data, 'base64')).events) {
          handled.push({ key: r.kinesis.partitionKey, id: e.type === 'trade' ? e.id : e.type });
        }
      }
      return { batchItemFailures: [] };
    };
    const exhausted: unknown[] = [];
    const checkpoints = new InMemoryCheckpointStore();
    const subscription = subscribe(streamName, checkpoints, 'runner');
    const source = new KinesisEventSource({
      subscription,
      handler,
      logger: silentLogger,
      batchSize: 5,
      onExhausted: async (records) => {
        exhausted.push(...records);
      },
    });
    await source.drain();
    await subscription.close();
    expect(failedOnce).toBe(true);
    expect(exhausted).toEqual([]);
    expect(idsByKey(handled)).toEqual(expectedByKey(events));

    // everything was checkpointed: a new subscription of the same consumer finds nothing
    const after = subscribe(streamName, checkpoints, 'runner');
    expect(await after.poll(100, 300)).toEqual([]);
    await after.close();
  }, 60_000);
});
