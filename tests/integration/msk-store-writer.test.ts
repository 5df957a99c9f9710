import { randomBytes } from 'node:crypto';
import type { Context, MSKEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import { KafkaStreamBus } from '../../layers/shared/src/adapters/stream/kafka-stream-bus.js';
import { KafkaSubscription } from '../../layers/shared/src/adapters/stream/kafka-subscription.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { MskBatchRetryError, createMskWriterHandler } from '../../layers/shared/src/consumers/msk-store-writer.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import type { MarketWriter } from '../../layers/shared/src/ports/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { MskEventSource } from '../../local/runner/msk-event-source.js';
import { T0, ticker, trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { describeWithService } from '../support/services.js';

const ctx = {} as Context;
const TOPIC = 'market-events';

/** An MSK event as Lambda delivers it: messages grouped by `topic-partition`, key and value base64. */
function mskEvent(partition: number, datas: Uint8Array[], firstOffset = 0): MSKEvent {
  return {
    eventSource: 'aws:kafka',
    eventSourceArn: 'arn:aws:kafka:local:000000000000:cluster/test/1',
    bootstrapServers: 'b-1.test:9092',
    records: {
      [`${TOPIC}-${partition}`]: datas.map((data, i) => ({
        topic: TOPIC,
        partition,
        offset: firstOffset + i,
        timestamp: T0,
        timestampType: 'CREATE_TIME' as const,
        key: Buffer.from('binance:BTC/USDT').toString('base64'),
        value: Buffer.from(data).toString('base64'),
        headers: [],
      })),
    },
  };
}

/** A writer that refuses events matching `fails` (a store fault), else writes to `store`. */
function flakyWriter(store: PostgresMarketStore, fails: (events: readonly MarketEvent[]) => boolean): MarketWriter {
  return {
    writeEvents: async (events) => {
      if (fails(events)) throw new Error('connection reset');
      return store.writeEvents(events);
    },
    writeSignals: store.writeSignals.bind(store),
    writeDeadLetter: store.writeDeadLetter.bind(store),
  };
}

async function tradeIds(db: SqlClient): Promise<string[]> {
  const { rows } = await db.query<{ trade_id: string }>('SELECT trade_id FROM trades ORDER BY trade_id');
  return rows.map((r) => r.trade_id);
}

describe('msk-store-writer handler', () => {
  let test: TestDatabase;
  let store: PostgresMarketStore;
  let counters: Counters<StoreWriterCounter>;

  beforeAll(async () => {
    test = await createTestDatabase('pglite');
    store = new PostgresMarketStore(test.db);
  });
  afterAll(() => store.close());
  beforeEach(async () => {
    await test.db.exec('TRUNCATE trades, tickers, candles, feeds, dead_letters');
    counters = new Counters();
  });

  it('writes valid records, dead-letters garbage and invalid events with topic-partition@offset, and does not throw', async () => {
    const handler = createMskWriterHandler({ writer: store, logger: silentLogger, counters, source: 'msk-test' });
    const good = encodeEvents([trade({ id: '1' }), ticker()]);
    const garbage = new TextEncoder().encode('{not json');
    const mixed = new TextEncoder().encode(
      JSON.stringify({ v: 1, events: [trade({ id: '2', ts: T0 + 1 }), { ...trade({ id: '3' }), price: -5 }] }),
    );
    await expect(handler(mskEvent(2, [good, garbage, mixed], 40), ctx)).resolves.toBeUndefined();
    expect(await tradeIds(test.db)).toEqual(['1', '2']);
    const { rows } = await test.db.query<{ error_name: string; reason: string; sequence_number: string; partition_key: string }>(
      'SELECT error_name, reason, sequence_number, partition_key FROM dead_letters ORDER BY id',
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ error_name: 'RecordDecodeError', sequence_number: `${TOPIC}-2@41`, partition_key: 'binance:BTC/USDT' });
    expect(rows[1]).toMatchObject({ error_name: 'ValidationError', sequence_number: `${TOPIC}-2@42` });
    expect(rows[1]!.reason).toContain('price');
    expect(counters.get('dead_lettered')).toBe(2);
  });

  it('throws MskBatchRetryError naming the failed record when a write fails, after writing the rest', async () => {
    const writer = flakyWriter(store, (events) => events.some((e) => e.symbol === 'ETH/USDT'));
    const handler = createMskWriterHandler({ writer, logger: silentLogger, counters, source: 'msk-test' });
    const event = mskEvent(0, [
      encodeEvents([trade({ id: '1' })]),
      encodeEvents([trade({ id: '9', symbol: 'ETH/USDT' })]),
      encodeEvents([trade({ id: '2', ts: T0 + 1 })]),
    ]);
    const error = await handler(event, ctx).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MskBatchRetryError);
    expect((error as MskBatchRetryError).failedIds).toEqual([`${TOPIC}-0@1`]);
    expect(await tradeIds(test.db)).toEqual(['1', '2']);
    // the event source retries the whole batch: the store is idempotent, nothing is doubled
    const healed = createMskWriterHandler({ writer: store, logger: silentLogger, counters, source: 'msk-test' });
    await healed(event, ctx);
    expect(await tradeIds(test.db)).toEqual(['1', '2', '9']);
  });

  it('reads several partitions of one event and a message without a key', async () => {
    const handler = createMskWriterHandler({ writer: store, logger: silentLogger, counters, source: 'msk-test' });
    const event = mskEvent(0, [encodeEvents([trade({ id: 'a' })])]);
    const other = mskEvent(1, [encodeEvents([trade({ id: 'b', ts: T0 + 1 })])]);
    const keyless = { ...other.records[`${TOPIC}-1`]![0]!, offset: 1, key: undefined as unknown as string };
    event.records[`${TOPIC}-1`] = [...other.records[`${TOPIC}-1`]!, keyless];
    await handler(event, ctx);
    expect(await tradeIds(test.db)).toEqual(['a', 'b']);
  });
});

describe('MskEventSource retries and gives up', () => {
  it('retries a failing batch with backoff, then hands it to onExhausted and moves on', async () => {
    const test = await createTestDatabase('pglite');
    const store = new PostgresMarketStore(test.db);
    const stream = new MemoryStream({ shards: 1 });
    const writer = flakyWriter(store, (events) => events.some((e) => e.symbol === 'ETH/USDT'));
    const handler = createMskWriterHandler({ writer, logger: silentLogger, counters: new Counters(), source: 'msk-test' });
    const exhausted: { seqs: string[]; reason: string }[] = [];
    const source = new MskEventSource({
      subscription: stream.subscribe(),
      handler,
      logger: silentLogger,
      maxAttempts: 3,
      retryBaseMs: 1,
      onExhausted: async (records, reason) => void exhausted.push({ seqs: records.map((r) => r.sequenceNumber), reason }),
    });
    await stream.publish([trade({ id: 'bad', symbol: 'ETH/USDT' })]);
    await stream.publish([trade({ id: 'ok' })]);
    await source.drain();
    expect(source.invocations).toBe(3);
    expect(exhausted).toEqual([{ seqs: ['1', '2'], reason: expect.stringContaining('MskBatchRetryError') }]);
    expect(stream.backlog).toBe(0);
    // the good record of the given-up batch was written anyway (idempotently, each attempt)
    expect(await tradeIds(test.db)).toEqual(['ok']);
    await store.close();
  });
});

describeWithService('kafka', 'KafkaStreamBus -> MskEventSource -> MSK handler -> PGlite', (url) => {
  const brokers = url.split(',');

  it('stores exactly what was published, in spite of transient store failures', async () => {
    const topic = `qicore-test-msk-${randomBytes(4).toString('hex')}`;
    const test = await createTestDatabase('pglite');
    const store = new PostgresMarketStore(test.db);
    const bus = new KafkaStreamBus({ brokers, topic });
    const subscription = await KafkaSubscription.open({ brokers, topic, groupId: `${topic}-writer`, sessionTimeoutMs: 3_000 });
    let failuresLeft = 3;
    const writer = flakyWriter(store, () => failuresLeft-- > 0);
    const counters = new Counters<StoreWriterCounter>();
    const exhausted: string[] = [];
    const source = new MskEventSource({
      subscription,
      handler: createMskWriterHandler({ writer, logger: silentLogger, counters, source: 'msk-e2e' }),
      logger: silentLogger,
      bootstrapServers: url,
      batchSize: 7,
      pollWaitMs: 100,
      maxAttempts: 10,
      retryBaseMs: 10,
      onExhausted: async (records) => void exhausted.push(...records.map((r) => `${r.shardId}@${r.sequenceNumber}`)),
    });
    try {
      const symbols = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'];
      const events = Array.from({ length: 90 }, (_, i) => trade({ id: String(i), symbol: symbols[i % 3]!, ts: T0 + i * 1000 }));
      // small publishes: many records, so batches span several records and partitions
      for (let i = 0; i < events.length; i += 3) await bus.publish(events.slice(i, i + 3));
      source.start();
      await expect.poll(async () => (await tradeIds(test.db)).length, { timeout: 20_000, interval: 100 }).toBe(90);
      await source.stop();

      const { rows } = await test.db.query<{ exchange: string; symbol: string; trade_id: string; price: number; ts: Date }>(
        'SELECT exchange, symbol, trade_id, price, ts FROM trades ORDER BY ts',
      );
      expect(rows.map((r) => [r.exchange, r.symbol, r.trade_id, r.price, new Date(r.ts).getTime()])).toEqual(
        events.map((e) => [e.exchange, e.symbol, e.type === 'trade' ? e.id : '', e.type === 'trade' ? e.price : 0, e.ts]),
      );
      expect(exhausted).toEqual([]);
      expect(counters.get('record_failures')).toBeGreaterThan(0);
      expect(counters.get('dead_lettered')).toBe(0);
    } finally {
      await source.stop();
      await subscription.close();
      await bus.close();
      await store.close();
    }
  }, 40_000);
});
