import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaPublishError, KafkaRecordTooLargeError, KafkaStreamBus } from '../../layers/shared/src/adapters/stream/kafka-stream-bus.js';
import { KafkaSubscription } from '../../layers/shared/src/adapters/stream/kafka-subscription.js';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import type { StreamRecord, StreamSubscription } from '../../layers/shared/src/ports/index.js';
import { decodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, book, trade } from '../fixtures/events.js';
import { describeWithService } from '../support/services.js';
import { defineStreamBusContract } from '../support/stream-bus-contract.js';

const uniqueTopic = (label: string) => `qicore-test-${label}-${randomBytes(4).toString('hex')}`;
// The mock cluster keeps a member that left until its session times out, so a rejoin of the same group
// waits that long; 3 s keeps the suite fast (real brokers require >= 6 s: the production default is 10 s).
const SESSION_TIMEOUT_MS = 3_000;

/** Reads until `count` events arrived (or the deadline), checkpointing each batch when asked. */
async function readEvents(sub: StreamSubscription, count: number, timeoutMs: number, checkpoint = true) {
  const records: StreamRecord[] = [];
  const events: MarketEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (events.length < count && Date.now() < deadline) {
    const batch = await sub.poll(500, 200);
    for (const r of batch) {
      records.push(r);
      events.push(...decodeEvents(r.data).events);
    }
    if (checkpoint && batch.length > 0) await sub.checkpoint(batch.at(-1)!.shardId, batch.at(-1)!.sequenceNumber);
  }
  return { records, events };
}

describe('KafkaStreamBus without a broker', () => {
  it('rejects an event too large for one Kafka message before sending anything', async () => {
    // nothing listens on port 9: the publish must fail on size, before it connects
    const bus = new KafkaStreamBus({ brokers: ['127.0.0.1:9'], topic: 't', maxRecordBytes: 1_024, maxRequestBytes: 4_096 });
    const levels = Array.from({ length: 500 }, (_, i): [number, number] => [100 + i, 1]);
    await expect(bus.publish([trade(), book({ bids: levels, asks: levels, depth: 500 })])).rejects.toBeInstanceOf(KafkaRecordTooLargeError);
    await bus.close();
  });

  it('gives up after the retry budget with KafkaPublishError, keeping the cause', async () => {
    const bus = new KafkaStreamBus({ brokers: ['127.0.0.1:9'], topic: 't', retries: 1, initialRetryTimeMs: 10, maxRetryTimeMs: 20 });
    const error = await bus.publish([trade()]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(KafkaPublishError);
    expect((error as Error).cause).toBeInstanceOf(Error);
    await bus.close();
  });
});

describeWithService('kafka', 'KafkaStreamBus on the Kafka mock cluster', (url) => {
  const brokers = url.split(',');

  defineStreamBusContract('kafka (librdkafka mock)', async () => {
    const topic = uniqueTopic('contract');
    const groupId = `${topic}-group`;
    const bus = new KafkaStreamBus({ brokers, topic });
    return {
      bus,
      subscribe: () => KafkaSubscription.open({ brokers, topic, groupId, sessionTimeoutMs: SESSION_TIMEOUT_MS }),
      dispose: () => bus.close(),
    };
  });

  describe('records, order and groups', () => {
    const topic = uniqueTopic('bus');
    let bus: KafkaStreamBus;
    beforeAll(() => {
      bus = new KafkaStreamBus({ brokers, topic, maxRecordBytes: 16 * 1024, maxRequestBytes: 64 * 1024 });
    });
    afterAll(() => bus.close());

    it('caps records by bytes, keyed by market, and keeps order per key across many publishes', async () => {
      const symbols = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT', 'ADA/USDT'];
      const events: MarketEvent[] = [];
      let bytes = 0;
      let records = 0;
      // 40 publishes of 100 events: each publish's key is cut into several records
      for (let p = 0; p < 40; p++) {
        const batch: MarketEvent[] = [];
        for (let i = 0; i < 100; i++) {
          const n = p * 100 + i;
          batch.push(trade({ id: String(n), symbol: symbols[n % symbols.length]!, ts: T0 + n }));
        }
        const receipt = await bus.publish(batch);
        expect(receipt.events).toBe(100);
        bytes += receipt.bytes;
        records += receipt.records;
        events.push(...batch);
      }
      // a buffer of ~2 records per partition: fetching pauses and resumes all the time, and must lose nothing
      const sub = await KafkaSubscription.open({
        brokers,
        topic,
        groupId: `${topic}-order`,
        sessionTimeoutMs: SESSION_TIMEOUT_MS,
        maxBufferedBytesPerPartition: 32 * 1024,
      });
      const read = await readEvents(sub, events.length, 20_000);
      await sub.close();

      expect(read.records).toHaveLength(records);
      expect(read.records.reduce((n, r) => n + r.data.byteLength, 0)).toBe(bytes);
      for (const r of read.records) {
        expect(r.data.byteLength).toBeLessThanOrEqual(16 * 1024);
        expect(r.shardId).toMatch(new RegExp(`^${topic}-[0-3]$`));
        expect(r.sequenceNumber).toMatch(/^\d+$/);
        // every event of a record belongs to the record's key
        for (const e of decodeEvents(r.data).events) expect(`${e.exchange}:${e.symbol}`).toBe(r.partitionKey);
      }
      // one market never spans two partitions
      const shardOfKey = new Map<string, Set<string>>();
      for (const r of read.records) shardOfKey.set(r.partitionKey, (shardOfKey.get(r.partitionKey) ?? new Set()).add(r.shardId));
      for (const shards of shardOfKey.values()) expect(shards.size).toBe(1);
      for (const symbol of symbols) {
        const want = events.filter((e) => e.symbol === symbol).map((e) => (e.type === 'trade' ? e.id : ''));
        const got = read.events.filter((e) => e.symbol === symbol).map((e) => (e.type === 'trade' ? e.id : ''));
        expect(got).toEqual(want);
      }
    }, 40_000);

    it('lets a new member of the group resume after the committed offsets, and rereads uncommitted records', async () => {
      const groupId = `${topic}-resume`;
      const first = await KafkaSubscription.open({ brokers, topic, groupId, sessionTimeoutMs: SESSION_TIMEOUT_MS });
      // drain what the previous test published, committing it
      await readEvents(first, Number.MAX_SAFE_INTEGER, 1_500);
      await bus.publish([trade({ id: 'a1', symbol: 'DOT/USDT' }), trade({ id: 'a2', symbol: 'DOT/USDT' })]);
      const seen = await readEvents(first, 2, 10_000);
      expect(seen.events.map((e) => (e.type === 'trade' ? e.id : ''))).toEqual(['a1', 'a2']);
      // read but not committed: the next member must get it again
      await bus.publish([trade({ id: 'b1', symbol: 'DOT/USDT' })]);
      const uncommitted = await readEvents(first, 1, 10_000, false);
      expect(uncommitted.events).toHaveLength(1);
      await first.close();

      const second = await KafkaSubscription.open({ brokers, topic, groupId, sessionTimeoutMs: SESSION_TIMEOUT_MS });
      const resumed = await readEvents(second, 1, 10_000);
      await second.close();
      expect(resumed.events.map((e) => (e.type === 'trade' ? e.id : ''))).toEqual(['b1']);
    }, 40_000);
  });
});
