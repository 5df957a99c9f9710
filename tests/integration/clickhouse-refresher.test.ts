/**
 * The candle refresher (clickhouse-candle-refresh.ts, sql/clickhouse/0006): writes in 'refresher'
 * mode leave candles to it, and what it stores must equal, row for row, what the inline writer
 * stores for the same deliveries: replays, late trades into refreshed minutes, exchange candles,
 * refreshes run twice or cut short and run again. The stored rows are compared (newest version
 * per key), not reads, since reads rebuild pending minutes themselves (tested apart).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { refreshCandles } from '../../layers/shared/src/adapters/stores/clickhouse-candle-refresh.js';
import { ClickHouseMarketStore, TRADE_COLUMNS, encodeTrades } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { MarketEvent, Trade } from '../../layers/shared/src/domain/index.js';
import { createClickHouseRefresherHandler } from '../../layers/shared/src/consumers/clickhouse-refresher.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { describeWithService } from '../support/services.js';
import { candle, trade } from '../fixtures/events.js';

const H = Date.UTC(2026, 0, 5, 10); // an hour start
const M = 60_000;

/** Trades of two markets over minutes 0..4 of H and one in the next day; ids unique per call. */
let seq = 0;
function trades(minutes: readonly number[], perMinute = 5): Trade[] {
  const out: Trade[] = [];
  for (const m of minutes) {
    for (let i = 0; i < perMinute; i++) {
      for (const symbol of ['BTC/USDT', 'ETH/USDT']) {
        const ts = H + m * M + i * 7_001;
        out.push(trade({ symbol, id: `t${seq++}`, ts, localTs: ts + 3, price: 100 + ((seq * 37) % 50) / 10, amount: 0.1 + (seq % 7) / 10 }));
      }
    }
  }
  return out;
}

/** The newest version of every stored 1m candle and rollup (what a read would see), versions left out. */
async function stored(ch: ClickHouseExecutor): Promise<unknown[]> {
  const minutes = await ch.query(
    sql`SELECT exchange, symbol, ts, toString(source) AS source, argMax(open, version) AS open, argMax(high, version) AS high,
               argMax(low, version) AS low, argMax(close, version) AS close, toString(argMax(volume, version)) AS volume,
               argMax(trades, version) AS trades
        FROM candles WHERE timeframe = '1m' GROUP BY exchange, symbol, ts, source ORDER BY exchange, symbol, ts, source`,
  );
  const rollups = await ch.query(
    sql`SELECT exchange, symbol, timeframe, ts, argMax(open, version) AS open, argMax(high, version) AS high,
               argMax(low, version) AS low, argMax(close, version) AS close, toString(argMax(volume, version)) AS volume,
               argMax(trades, version) AS trades, toString(argMax(source, version)) AS source, argMax(minutes, version) AS minutes
        FROM candle_rollups GROUP BY exchange, symbol, timeframe, ts ORDER BY exchange, symbol, timeframe, ts`,
  );
  return [...minutes, ...rollups];
}

describeWithService('clickhouse', 'ClickHouse candle refresher', (url) => {
  let inline: TestClickHouse;
  let deferredDb: TestClickHouse;
  let deferred: ClickHouseMarketStore;

  beforeAll(async () => {
    [inline, deferredDb] = await Promise.all([createClickHouseTestDatabase(url), createClickHouseTestDatabase(url)]);
    deferred = new ClickHouseMarketStore(deferredDb.ch, { candles: 'refresher' });
  });
  afterAll(async () => {
    await inline?.dispose();
    await deferredDb?.dispose();
  });

  const writeBoth = async (batch: readonly MarketEvent[]) => {
    await inline.store.writeEvents(batch);
    await deferred.writeEvents(batch);
  };

  describe('writes, then refreshes', () => {
    const first = trades([0, 1, 2]);
    const exchangeMinute = candle({ ts: H + 30 * M, open: 5, high: 6, low: 4, close: 5.5, volume: 3 });

    it('leaves candles to the refresher, which then stores exactly what inline writes store, a batch delivered twice included', async () => {
      await writeBoth([...first, exchangeMinute]);
      await writeBoth(first); // redelivered
      const beforeRefresh = (await stored(deferredDb.ch)) as { source: string }[];
      expect(beforeRefresh.filter((r) => r.source === 'trades')).toEqual([]);

      const report = await refreshCandles(deferredDb.ch);
      expect(report.minutes).toBeGreaterThanOrEqual(2 * 3 + 1);
      const expected = await stored(inline.ch);
      expect(expected.length).toBeGreaterThan(6);
      expect(await stored(deferredDb.ch)).toEqual(expected);
      const [btc] = (await stored(deferredDb.ch)) as { trades: number | string; source: string }[];
      expect(Number(btc!.trades)).toBe(5); // 5 trades in minute 0, not 10
    });

    it('is idempotent: a second refresh changes nothing that reads see', async () => {
      const expected = await stored(inline.ch);
      await refreshCandles(deferredDb.ch);
      await refreshCandles(deferredDb.ch);
      expect(await stored(deferredDb.ch)).toEqual(expected);
    });

    it('counts late trades into an already refreshed minute, delivered twice, once', async () => {
      const late = trades([1, 4], 3);
      await writeBoth(late);
      await writeBoth(late);
      await refreshCandles(deferredDb.ch);
      expect(await stored(deferredDb.ch)).toEqual(await stored(inline.ch));
    });

    it('gives listFeeds the inline figures before and after the marks are folded, and never folds twice', async () => {
      const expected = await inline.store.listFeeds();
      expect(expected.find((f) => f.channel === 'trades' && f.symbol === 'ETH/USDT')?.events).toBe(2 * (15 + 6));
      expect(await deferred.listFeeds()).toEqual(expected);
      const report = await refreshCandles(deferredDb.ch, { overlapSeconds: 0 });
      expect(report.feedsWatermark).toBe(report.watermark);
      expect(await deferred.listFeeds()).toEqual(expected);
      await refreshCandles(deferredDb.ch, { overlapSeconds: 0 });
      expect(await deferred.listFeeds()).toEqual(expected);
    });

    it('runs as the scheduled handler', async () => {
      const handler = createClickHouseRefresherHandler({ ch: deferredDb.ch, logger: silentLogger });
      const report = await handler();
      expect(report.watermark).toBeGreaterThan(0);
      expect(await stored(deferredDb.ch)).toEqual(await stored(inline.ch));
    });
  });

  it('reads rebuild the minutes the refresher has not reached', async () => {
    const db = await createClickHouseTestDatabase(url);
    const reference = await createClickHouseTestDatabase(url);
    try {
      const writer = new ClickHouseMarketStore(db.ch, { candles: 'refresher' });
      const reader = new ClickHouseMarketStore(db.ch); // a reader's own mode does not matter
      const batch = trades([0, 1, 61], 2);
      await writer.writeEvents(batch);
      await writer.writeEvents(batch);
      await reference.store.writeEvents(batch);
      for (const timeframe of ['1m', '1h', '1d'] as const) {
        const q = { exchange: 'binance', symbol: 'ETH/USDT', timeframe, since: H, until: H + 2 * 3_600_000, limit: 100 };
        const expected = await reference.store.candles(q);
        expect(expected.length).toBeGreaterThan(0);
        expect(await reader.candles(q)).toEqual(expected);
      }
      const minutes = { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1h' as const, since: H, until: H + 2 * 3_600_000 };
      expect(await reader.candleMinutes(minutes)).toEqual([
        { ts: H, minutes: 2 },
        { ts: H + 3_600_000, minutes: 1 },
      ]);
      // the refresher's watermark has not moved: the reads did the rebuilding
      const { n } = (await db.ch.query<{ n: string }>(sql`SELECT count() AS n FROM candle_refresh_state`))[0]!;
      expect(Number(n)).toBe(0);
    } finally {
      await Promise.all([db.dispose(), reference.dispose()]);
    }
  });

  it('resumes a refresh cut short: the watermark stops at the last whole chunk, the rerun ends exact', async () => {
    const db = await createClickHouseTestDatabase(url);
    const reference = await createClickHouseTestDatabase(url);
    try {
      // trades stored without marks, then marks stamped in three distinct seconds: three chunks of one mark second each
      const { now } = (await db.ch.query<{ now: string }>(sql`SELECT toUInt32(now()) AS now`))[0]!;
      const seconds = [Number(now) - 5, Number(now) - 4, Number(now) - 3];
      const byChunk = [trades([10]), trades([11]), trades([12])];
      for (let i = 0; i < 3; i++) {
        const batch = byChunk[i]!;
        await db.ch.insertRowBinary('trades', TRADE_COLUMNS, encodeTrades(batch), batch.length);
        await reference.store.writeEvents(batch);
        await db.ch.command(
          sql`INSERT INTO candle_marks (exchange, symbol, minute, marked_at, first_ts, last_ts, last_local_ts, events)
              SELECT 'binance', s, ${H + (10 + i) * M}, toDateTime(${seconds[i]!}), 0, 0, 0, 0 FROM (SELECT arrayJoin(['BTC/USDT', 'ETH/USDT']) AS s)`,
        );
      }
      // the executor fails on the second chunk's 1m rebuild
      let rebuilds = 0;
      const failing: ClickHouseExecutor = {
        ...db.ch,
        async command(statement) {
          if (statement.text.includes('INSERT INTO candles') && ++rebuilds === 2) throw new Error('connection reset (test)');
          return db.ch.command(statement);
        },
      };
      await expect(refreshCandles(failing, { chunkMarks: 2 })).rejects.toThrow(/connection reset/);
      const { w } = (await db.ch.query<{ w: string }>(
        sql`SELECT toUInt32(max(watermark)) AS w FROM candle_refresh_state WHERE name = 'candles'`,
      ))[0]!;
      expect(Number(w)).toBe(seconds[0]);
      expect(await stored(db.ch)).not.toEqual(await stored(reference.ch));

      const report = await refreshCandles(db.ch, { chunkMarks: 2 });
      expect(report.chunks).toBe(3); // the overlap re-reads the finished chunk too
      expect(await stored(db.ch)).toEqual(await stored(reference.ch));
    } finally {
      await Promise.all([db.dispose(), reference.dispose()]);
    }
  });

  it('drops day partitions of marks once both watermarks are a day past them', async () => {
    const db = await createClickHouseTestDatabase(url);
    try {
      const { now } = (await db.ch.query<{ now: string }>(sql`SELECT toUInt32(now()) AS now`))[0]!;
      const old = Number(now) - 3 * 86_400;
      await db.ch.command(
        sql`INSERT INTO candle_marks (exchange, symbol, minute, marked_at, first_ts, last_ts, last_local_ts, events)
            VALUES ('binance', 'BTC/USDT', ${H}, toDateTime(${old}), 0, 0, 0, 0)`,
      );
      await new ClickHouseMarketStore(db.ch, { candles: 'refresher' }).writeEvents(trades([0], 1));
      const report = await refreshCandles(db.ch);
      expect(report.droppedPartitions).toHaveLength(1);
      const { n } = (await db.ch.query<{ n: string }>(sql`SELECT count() AS n FROM candle_marks`))[0]!;
      expect(Number(n)).toBe(2); // today's marks stay
    } finally {
      await db.dispose();
    }
  });
});
