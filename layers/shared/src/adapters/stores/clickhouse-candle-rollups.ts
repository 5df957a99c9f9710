/**
 * Hourly and daily candles of ClickHouse's `candle_rollups` (sql/clickhouse/0002): which ones a
 * batch touched, and the INSERT ... SELECT that rebuilds them from the deduplicated 1m candles.
 */
import type { Candle, Trade } from '../../domain/index.js';
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { joinSql, sql, type Sql } from './clickhouse-sql.js';

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The hours (and so the days) of one market whose 1m candles a batch touched. */
export interface TouchedMarket {
  readonly exchange: string;
  readonly symbol: string;
  readonly hours: readonly number[];
}

/** The hours whose 1m candles the batch touched: minutes of its trades, its exchange 1m candles. */
export function touchedDays(trades: readonly Trade[], candles: readonly Candle[]): TouchedMarket[] {
  const markets = new Map<string, { exchange: string; symbol: string; hours: Set<number> }>();
  const touch = (exchange: string, symbol: string, ts: number) => {
    const key = `${exchange}|${symbol}`;
    let m = markets.get(key);
    if (!m) markets.set(key, (m = { exchange, symbol, hours: new Set() }));
    m.hours.add(Math.floor(ts / HOUR) * HOUR);
  };
  for (const t of trades) touch(t.exchange, t.symbol, t.ts);
  for (const c of candles) if (c.timeframe === '1m') touch(c.exchange, c.symbol, c.ts);
  return [...markets.values()].map((m) => ({ exchange: m.exchange, symbol: m.symbol, hours: [...m.hours] }));
}

/**
 * Which rows of candle_rollups a timeframe rolls up from, exactly as PostgresMarketStore picks:
 * '1d' when its buckets are whole aligned days (1d, 3d, 1w with its Monday offset), '1h' when
 * whole aligned hours (1h..12h), else none (1m..30m roll up minutes).
 */
export function rollupSource(size: number, offset: number): '1h' | '1d' | null {
  if (size % DAY === 0 && offset % DAY === 0) return '1d';
  if (size % HOUR === 0 && offset % HOUR === 0) return '1h';
  return null;
}

/**
 * The statement rebuilding the touched hours, and every day holding one, from the 1m candles as
 * the read path sees them (newest version per minute and source, then collected trades before the
 * exchange's candle): a day reads its 1440 minutes, which ClickHouse reads as a granule or two.
 * Replays rebuild the same values, so nothing is counted twice.
 */
export function rollupRebuild(touched: readonly TouchedMarket[], version: number): Sql {
  const minutes: Sql[] = [];
  const keep: Sql[] = [];
  for (const m of touched) {
    const days = [...new Set(m.hours.map((h) => Math.floor(h / DAY) * DAY))];
    const lo = Math.min(...days);
    const hi = Math.max(...days) + DAY;
    minutes.push(sql`(exchange = ${m.exchange} AND symbol = ${m.symbol} AND ts >= ${lo} AND ts < ${hi}
                      AND intDiv(ts, ${DAY}) * ${DAY} IN (${days}))`);
    keep.push(sql`(exchange = ${m.exchange} AND symbol = ${m.symbol} AND (tf = '1d' OR bucket IN (${m.hours})))`);
  }
  return rollupInsert(joinSql(minutes, ' OR '), joinSql(keep, ' OR '), version);
}

/**
 * Rebuilds every hour and day of one market (or of all) from its 1m candles: for rows loaded
 * behind the store's back (bench, repair). Same statement as the write path.
 */
export async function rebuildCandleRollups(
  ch: ClickHouseExecutor,
  market?: { readonly exchange: string; readonly symbol: string },
  version = Date.now() * 1000,
): Promise<void> {
  const where = market ? sql`exchange = ${market.exchange} AND symbol = ${market.symbol}` : sql`1`;
  await ch.command(rollupInsert(where, sql`1`, version));
}

function rollupInsert(minuteWhere: Sql, keep: Sql, version: number): Sql {
  // minutes: rows per bucket are distinct minutes (one per t after the GROUP BY t below)
  return sql`INSERT INTO candle_rollups (exchange, symbol, timeframe, ts, open, high, low, close, volume, trades, source, minutes, version)
    SELECT exchange, symbol, tf, bucket, argMin(open, t), max(high), min(low), argMax(close, t), sum(volume), sum(trades),
           if(uniqExact(source) > 1, 'mixed', toString(any(source))), toUInt32(count()), toUInt64(${version})
    FROM (
      SELECT exchange, symbol, t, source, open, high, low, close, volume, trades,
             tupleElement(b, 1) AS tf, tupleElement(b, 2) AS bucket
      FROM (
        SELECT exchange, symbol, t, source, open, high, low, close, volume, trades,
               arrayJoin([('1h', intDiv(t, ${HOUR}) * ${HOUR}), ('1d', intDiv(t, ${DAY}) * ${DAY})]) AS b
        FROM (
          SELECT exchange, symbol, t,
                 argMax(source, pick) AS source, argMax(open, pick) AS open, argMax(high, pick) AS high,
                 argMax(low, pick) AS low, argMax(close, pick) AS close, argMax(volume, pick) AS volume,
                 argMax(trades, pick) AS trades
          FROM (
            SELECT exchange, symbol, ts AS t, source, source = 'trades' AS pick,
                   argMax(open, version) AS open, argMax(high, version) AS high, argMax(low, version) AS low,
                   argMax(close, version) AS close, argMax(volume, version) AS volume, argMax(trades, version) AS trades
            FROM candles WHERE timeframe = '1m' AND (${minuteWhere})
            GROUP BY exchange, symbol, ts, source
          )
          GROUP BY exchange, symbol, t
        )
      )
    )
    WHERE ${keep}
    GROUP BY exchange, symbol, tf, bucket`;
}
