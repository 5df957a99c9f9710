import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import type { MarketEvent, Trade } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { KinesisEventSource } from '../../local/runner/kinesis-event-source.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';
import { T0, ticker, trade, kinesisEvent } from '../fixtures/events.js';

const ctx = {} as Context;

describe('timescale-writer handler', () => {
  let db: SqlClient;
  let store: PostgresMarketStore;
  let counters: Counters<StoreWriterCounter>;

  beforeAll(async () => {
    db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
  });
  afterAll(() => store.close());
  beforeEach(async () => {
    await db.exec('TRUNCATE trades, tickers, candles, feeds, dead_letters');
    counters = new Counters();
  });

  const tradeCount = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM trades')).rows[0]!.n;

  it('dead-letters an unreadable record and an invalid event, writes the rest, reports no failure', async () => {
    const handler = createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' });
    const good = encodeEvents([trade({ id: '1' }), ticker()]);
    const garbage = new TextEncoder().encode('{not json');
    const mixed = new TextEncoder().encode(
      JSON.stringify({ v: 1, events: [trade({ id: '2' }), { ...trade({ id: '3' }), price: -5 }] }),
    );
    const response = await handler(kinesisEvent([good, garbage, mixed]), ctx);
    expect(response.batchItemFailures).toEqual([]);
    expect(await tradeCount()).toBe(2);
    const { rows } = await db.query<{ error_name: string; reason: string; sequence_number: string }>(
      'SELECT error_name, reason, sequence_number FROM dead_letters ORDER BY id',
    );
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ error_name: 'RecordDecodeError', sequence_number: '2' });
    expect(rows[1]).toMatchObject({ error_name: 'ValidationError', sequence_number: '3' });
    expect(rows[1]!.reason).toContain('price');
    expect(counters.get('dead_lettered')).toBe(2);
  });

  it('reports the record whose write fails, and only that one', async () => {
    // A store that refuses one symbol stands in for a store fault on one record.
    const flaky = {
      writeEvents: async (events: readonly MarketEvent[]) => {
        if (events.some((e) => e.symbol === 'ETH/USDT')) throw new Error('connection reset');
        return store.writeEvents(events);
      },
      writeSignals: store.writeSignals.bind(store),
      writeDeadLetter: store.writeDeadLetter.bind(store),
    };
    const handler = createTimescaleWriterHandler({ writer: flaky, logger: silentLogger, counters, source: 'test' });
    const response = await handler(
      kinesisEvent([
        encodeEvents([trade({ id: '1' })]),
        encodeEvents([trade({ id: '9', symbol: 'ETH/USDT' })]),
        encodeEvents([trade({ id: '2' })]),
      ]),
      ctx,
    );
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: '2' }]);
    expect(await tradeCount()).toBe(2);
  });
});

describe('in-process stream -> Kinesis event source -> handler', () => {
  it('delivers every event once in spite of failures, retrying from the failed record', async () => {
    const db = await openPglite();
    await runMigrations(db);
    const store = new PostgresMarketStore(db);
    const stream = new MemoryStream({ shards: 2 });
    let failuresLeft = 3;
    const flaky = {
      writeEvents: async (events: readonly MarketEvent[]) => {
        if (failuresLeft-- > 0) throw new Error('transient');
        return store.writeEvents(events);
      },
      writeSignals: store.writeSignals.bind(store),
      writeDeadLetter: store.writeDeadLetter.bind(store),
    };
    const counters = new Counters<StoreWriterCounter>();
    const handler = createTimescaleWriterHandler({ writer: flaky, logger: silentLogger, counters, source: 'test' });
    const exhausted: string[] = [];
    const source = new KinesisEventSource({
      subscription: stream.subscribe(),
      handler,
      logger: silentLogger,
      batchSize: 7,
      maxAttempts: 10,
      onExhausted: async (records) => void exhausted.push(...records.map((r) => r.sequenceNumber)),
    });
    const events = Array.from({ length: 60 }, (_, i) =>
      trade({ id: String(i), ts: T0 + i * 1000, symbol: i % 2 ? 'BTC/USDT' : 'ETH/USDT' }),
    );
    for (let i = 0; i < events.length; i += 5) await stream.publish(events.slice(i, i + 5));
    expect(stream.backlog).toBeGreaterThan(0);
    source.start();
    await expect.poll(() => stream.backlog, { timeout: 10_000 }).toBe(0);
    await source.stop();
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM trades');
    expect(rows[0]!.n).toBe(60);
    expect(exhausted).toEqual([]);
    expect(counters.get('record_failures')).toBeGreaterThan(0);
    await store.close();
  });
});

forEachStoreBackend('timescale-writer handler, redelivered batches', (backend, serverUrl) => {
  let testDb: TestStore;

  beforeAll(async () => {
    // on PostgreSQL every batch takes the COPY path: fresh ones straight into trades, the rest the replay way
    testDb = await createTestStore(backend, serverUrl);
  });
  afterAll(() => testDb.dispose());

  const series = (symbol: string): Trade[] =>
    Array.from({ length: 600 }, (_, i) =>
      trade({ symbol, id: String(i), ts: T0 + i * 250, price: 100 + ((i * 7) % 13), amount: [0.1, 0.2, 0.35][i % 3]!, side: i % 2 ? 'buy' : 'sell' }),
    );
  /** Kinesis records of 50 trades each, as a collector publishes them. */
  const event = (trades: readonly Trade[]) => {
    const records: Uint8Array[] = [];
    for (let i = 0; i < trades.length; i += 50) records.push(encodeEvents(trades.slice(i, i + 50)));
    return kinesisEvent(records);
  };

  it('a redelivered or half-redelivered batch stores each trade once, with the candles of one clean delivery', async () => {
    const { db, store } = testDb;
    const counters = new Counters<StoreWriterCounter>();
    const handler = createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' });
    const replayed = series('RPL/USDT');
    const first = event(replayed.slice(0, 400));
    for (const e of [first, first, event(replayed.slice(200))]) {
      expect((await handler(e, ctx)).batchItemFailures).toEqual([]);
    }
    expect((await handler(event(series('CLN/USDT')), ctx)).batchItemFailures).toEqual([]);
    // 400 new, then none, then 200 new; the clean market's 600
    expect(counters.get('trades_written')).toBe(1_200);

    const view = async (symbol: string) => {
      const q = { exchange: 'binance', symbol } as const;
      const strip = <T extends { symbol: string }>(rows: readonly T[]) => rows.map(({ symbol: _s, ...rest }) => rest);
      const stored = await db.query(
        `SELECT ts_to_ms(ts) AS ts, open, high, low, close, volume, trades FROM candles WHERE symbol = $1 ORDER BY ts`,
        [symbol],
      );
      return {
        trades: strip(await store.trades({ ...q, limit: 1_000 })),
        stored: stored.rows,
        hourly: strip(await store.candles({ ...q, timeframe: '1h', limit: 10 })),
      };
    };
    const clean = await view('CLN/USDT');
    expect(clean.trades).toHaveLength(600);
    expect(clean.stored).toHaveLength(3);
    expect(await view('RPL/USDT')).toEqual(clean);
  });
});
