import { rebuildCandleRollups } from '../../layers/shared/src/adapters/stores/clickhouse-candle-rollups.js';
import type { ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';

const CHUNK = 50_000;

/**
 * Fills `candles` with `minutes` 1m 'exchange' candles of one market ending at `end`, generated
 * server-side (INSERT ... SELECT FROM generate_series, 50k rows per statement), then builds the
 * hourly/daily rollups the store keeps on write and ANALYZEs. The feeds table is not touched:
 * write one event through the store so the query service knows the market. Returns the load ms.
 */
export async function loadCandleHistory(
  db: SqlClient,
  market: { readonly exchange: string; readonly symbol: string; readonly end: number; readonly minutes: number },
): Promise<number> {
  const t0 = performance.now();
  const start = market.end - market.minutes * 60_000;
  for (let from = 0; from < market.minutes; from += CHUNK) {
    const n = Math.min(CHUNK, market.minutes - from);
    await db.query(
      `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
       SELECT $1, $2, '1m', ms_to_ts($3::bigint + i::bigint * 60000), 'exchange', p, p + 7, p - 7, p + 1, 1 + (i % 17), 0
       FROM (SELECT i, round((30000 + 5000 * sin(i / 5000.0))::numeric, 2)::float8 AS p
             FROM generate_series($4::int, $5::int) AS i) s`,
      [market.exchange, market.symbol, start, from, from + n - 1],
    );
  }
  // rows inserted behind the store's back: build the hourly and daily rollups the store keeps on write
  await db.query('SELECT rebuild_candle_rollups()');
  await db.exec('ANALYZE candles');
  await db.exec('ANALYZE candle_rollups');
  return performance.now() - t0;
}

/**
 * The same history in ClickHouse's `candles` (prices and volumes as the PostgreSQL loader makes them), generated
 * server-side in one INSERT ... SELECT FROM numbers(...), then the hourly/daily rollups built by
 * the statement the store's writer runs (rebuildCandleRollups). Feeds are not touched, as above.
 * Returns the load ms.
 */
export async function loadClickHouseCandleHistory(
  ch: ClickHouseExecutor,
  market: { readonly exchange: string; readonly symbol: string; readonly end: number; readonly minutes: number },
): Promise<number> {
  const t0 = performance.now();
  const start = market.end - market.minutes * 60_000;
  await ch.command(
    sql`INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades, version)
        SELECT ${market.exchange}, ${market.symbol}, '1m', ${start} + number * 60000, 'exchange', p, p + 7, p - 7, p + 1,
               toDecimal128(1 + number % 17, 18), 0, 1
        FROM (SELECT number, round(30000 + 5000 * sin(number / 5000.0), 2) AS p
              FROM numbers(${market.minutes}))`,
  );
  await rebuildCandleRollups(ch, market);
  return performance.now() - t0;
}
