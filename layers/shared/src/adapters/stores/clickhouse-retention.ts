/**
 * Retention for ClickHouse 18.16, which has no TTL: whole monthly partitions are dropped once
 * every row they can hold is older than the retention period. Run it on a schedule (a daily
 * EventBridge rule, the local runner's timer). On current ClickHouse a table TTL clause
 * (`TTL toDateTime(intDiv(ts, 1000), 'UTC') + INTERVAL n DAY`) could replace it, at row rather
 * than month granularity; dropping partitions is cheaper and behaves the same on both versions.
 */
import { PlatformError } from '../../domain/errors.js';
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { sql, table, type ClickHouseTable } from './clickhouse-sql.js';

/** A retention request that cannot be honoured (bad keepDays, a table without time partitions). */
export class RetentionError extends PlatformError {}

/** Tables partitioned by month of a ms-epoch column (toYYYYMM in UTC). */
export const PARTITIONED_TABLES = ['trades', 'tickers', 'book_snapshots', 'quotes', 'candles', 'signals', 'dead_letters'] as const;
export type PartitionedTable = (typeof PARTITIONED_TABLES)[number];

export interface RetentionOptions {
  readonly table: PartitionedTable;
  /** rows newer than this many days are always kept */
  readonly keepDays: number;
  /** ms epoch; defaults to the current time */
  readonly now?: number;
}

/** First ms of the month after partition `yyyymm` (UTC). */
function monthEnd(yyyymm: number): number {
  const year = Math.floor(yyyymm / 100);
  const month = yyyymm % 100;
  return Date.UTC(year, month, 1);
}

/** Drops the monthly partitions of `table` whose every row is older than `keepDays`; returns their ids (YYYYMM). */
export async function dropExpiredPartitions(ch: ClickHouseExecutor, options: RetentionOptions): Promise<string[]> {
  const { keepDays } = options;
  if (!(PARTITIONED_TABLES as readonly string[]).includes(options.table)) {
    throw new RetentionError(`${String(options.table)} is not partitioned by month`);
  }
  if (!(Number.isFinite(keepDays) && keepDays >= 0)) throw new RetentionError(`keepDays must be >= 0, got ${keepDays}`);
  const cutoff = (options.now ?? Date.now()) - keepDays * 86_400_000;
  const rows = await ch.query<{ partition: string }>(
    sql`SELECT DISTINCT partition FROM system.parts
        WHERE database = currentDatabase() AND table = ${options.table as ClickHouseTable} AND active`,
  );
  const expired = rows
    .map((r) => r.partition)
    .filter((p) => /^\d{6}$/.test(p) && monthEnd(Number(p)) <= cutoff)
    .sort();
  for (const partition of expired) {
    // The partition value (toYYYYMM) is an integer: it is bound as an integer literal.
    await ch.command(sql`ALTER TABLE ${table(options.table)} DROP PARTITION ${Number(partition)}`);
    // the hours and days rolled up from those minutes go with them (same monthly partitions),
    // so a read of 1h..1w never shows candles whose minutes are gone
    if (options.table === 'candles') await ch.command(sql`ALTER TABLE ${table('candle_rollups')} DROP PARTITION ${Number(partition)}`);
  }
  return expired;
}
