import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { createClickHouseWriterHandler } from '../../layers/shared/src/consumers/clickhouse-writer.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { describeWithService } from '../support/services.js';
import { T0, ticker, trade, kinesisEvent } from '../fixtures/events.js';

const ctx = {} as Context;

describeWithService('clickhouse', 'clickhouse-writer handler', (url) => {
  let database: TestClickHouse;
  let ch: ClickHouseExecutor;
  let store: ClickHouseMarketStore;

  beforeAll(async () => {
    database = await createClickHouseTestDatabase(url);
    ({ ch, store } = database);
  });
  afterAll(() => database?.dispose());

  it('writes a batch delivered twice once, dead-letters poison, reports no failure', async () => {
    const counters = new Counters<StoreWriterCounter>();
    const handler = createClickHouseWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' });
    const good = encodeEvents([trade({ id: '1', amount: 0.1 }), trade({ id: '2', ts: T0 + 1, amount: 0.2 }), ticker()]);
    const garbage = new TextEncoder().encode('{not json');
    const mixed = new TextEncoder().encode(JSON.stringify({ v: 1, events: [trade({ id: '3', ts: T0 + 2 }), { ...trade({ id: '4' }), price: -5 }] }));
    const event = kinesisEvent([good, garbage, mixed]);
    expect((await handler(event, ctx)).batchItemFailures).toEqual([]);
    expect((await handler(event, ctx)).batchItemFailures).toEqual([]); // the event source retried the batch

    const trades = await store.trades({ exchange: 'binance', symbol: 'BTC/USDT', limit: 10 });
    expect(trades.map((t) => t.id)).toEqual(['1', '2', '3']);
    const [minute] = await store.candles({ exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 10 });
    expect(minute).toMatchObject({ ts: T0, volume: 1.3, trades: 3, source: 'trades' });
    const letters = await ch.query<{ error_name: string; sequence_number: string }>(
      sql`SELECT error_name, sequence_number FROM dead_letters ORDER BY sequence_number LIMIT 1 BY source, letter_id`,
    );
    expect(letters).toEqual([
      { error_name: 'RecordDecodeError', sequence_number: '2' },
      { error_name: 'ValidationError', sequence_number: '3' },
    ]);
    expect(counters.get('dead_lettered')).toBe(4);
  });

  it('reports the record whose write fails, and only that one', async () => {
    const counters = new Counters<StoreWriterCounter>();
    // the store refuses the whole batch (an amount beyond Decimal128(18)); record by record only that one fails
    const handler = createClickHouseWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' });
    const ok = encodeEvents([trade({ symbol: 'OK/USDT', id: '1' })]);
    const tooBig = encodeEvents([trade({ symbol: 'BIG/USDT', id: '1', amount: 1e21 })]);
    const response = await handler(kinesisEvent([ok, tooBig]), ctx);
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: '2' }]);
    expect(await store.trades({ exchange: 'binance', symbol: 'OK/USDT', limit: 5 })).toHaveLength(1);
    expect(counters.get('record_failures')).toBe(1);
  });
});
