import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { RetentionError, dropExpiredPartitions, type PartitionedTable } from '../../layers/shared/src/adapters/stores/clickhouse-retention.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { describeWithService } from '../support/services.js';
import { trade } from '../fixtures/events.js';
import { bucketStart } from '../../layers/shared/src/domain/index.js';

describeWithService('clickhouse', 'ClickHouse partition retention', (url) => {
  let database: TestClickHouse;
  let ch: ClickHouseExecutor;
  let store: ClickHouseMarketStore;

  beforeAll(async () => {
    database = await createClickHouseTestDatabase(url);
    ({ ch, store } = database);
  });
  afterAll(() => database?.dispose());

  it('drops whole months older than keepDays, keeps the rest, and is idempotent', async () => {
    const at = (y: number, m: number, d: number) => Date.UTC(y, m - 1, d, 12);
    await store.writeEvents([
      trade({ id: '1', ts: at(2025, 10, 31) }),
      trade({ id: '2', ts: at(2025, 11, 30) }),
      trade({ id: '3', ts: at(2025, 12, 1) }),
      trade({ id: '4', ts: at(2026, 1, 15) }),
    ]);
    const now = Date.UTC(2026, 1, 15); // keep 75 days: the cutoff is 2025-12-02
    const q = { exchange: 'binance', symbol: 'BTC/USDT', limit: 10 } as const;

    expect(await dropExpiredPartitions(ch, { table: 'trades', keepDays: 75, now })).toEqual(['202510', '202511']);
    expect((await store.trades(q)).map((t) => t.id)).toEqual(['3', '4']);
    // December holds a row inside the window (Dec 2..31), so the month stays whole
    expect(await dropExpiredPartitions(ch, { table: 'trades', keepDays: 75, now })).toEqual([]);

    // each table on its own schedule: candles still hold the dropped months until told
    const candles = await store.candles({ ...q, timeframe: '1m' });
    expect(candles).toHaveLength(4);
    expect(await store.candles({ ...q, timeframe: '1d' })).toHaveLength(4);
    expect(await dropExpiredPartitions(ch, { table: 'candles', keepDays: 75, now })).toEqual(['202510', '202511']);
    // the hourly and daily rollups of the dropped months go with their minutes
    for (const timeframe of ['1m', '1h', '1d', '1w'] as const) {
      expect((await store.candles({ ...q, timeframe })).map((c) => c.ts), timeframe).toEqual(
        [at(2025, 12, 1), at(2026, 1, 15)].map((ts) => bucketStart(ts, timeframe)),
      );
    }
    expect(await dropExpiredPartitions(ch, { table: 'candles', keepDays: 0, now })).toEqual(['202512', '202601']);
    expect(await store.candles({ ...q, timeframe: '1m' })).toEqual([]);
    expect(await store.candles({ ...q, timeframe: '1d' })).toEqual([]);
    expect(await store.candles({ ...q, timeframe: '4h', newestFirst: true })).toEqual([]);
  });

  it('refuses a bad keepDays or a table without monthly partitions', async () => {
    await expect(dropExpiredPartitions(ch, { table: 'trades', keepDays: -1 })).rejects.toBeInstanceOf(RetentionError);
    await expect(dropExpiredPartitions(ch, { table: 'trades', keepDays: Number.NaN })).rejects.toBeInstanceOf(RetentionError);
    await expect(dropExpiredPartitions(ch, { table: 'feeds' as PartitionedTable, keepDays: 1 })).rejects.toBeInstanceOf(RetentionError);
  });
});
