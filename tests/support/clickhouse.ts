import { randomBytes } from 'node:crypto';
import { createClickHouseDatabase, dropClickHouseDatabase, openClickHouse, type ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql, trustedSql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';

export interface TestClickHouse {
  readonly name: string;
  readonly ch: ClickHouseExecutor;
  readonly store: ClickHouseMarketStore;
  /** rows physically in `table` (copies not merged yet included), optionally of one symbol */
  rawCount(table: 'trades' | 'candles', symbol?: string): Promise<number>;
  /** distinct trade keys physically held */
  distinctTrades(): Promise<number>;
  /** Stops background merges of these tables (of this database only): copies stay until read. */
  stopMerges(tables: readonly string[]): Promise<void>;
  /** closes the store and drops the database */
  dispose(): Promise<void>;
}

/** A fresh ClickHouse database with the repository's migrations applied, and a store on it. */
export async function createClickHouseTestDatabase(url: string): Promise<TestClickHouse> {
  const name = `qicore_t_${randomBytes(6).toString('hex')}`;
  await createClickHouseDatabase(url, name);
  const ch = openClickHouse(url, { database: name });
  try {
    await runClickHouseMigrations(ch);
  } catch (error) {
    await ch.close();
    await dropClickHouseDatabase(url, name);
    throw error;
  }
  const store = new ClickHouseMarketStore(ch);
  return {
    name,
    ch,
    store,
    async rawCount(table, symbol) {
      const where = symbol === undefined ? sql`1` : sql`symbol = ${symbol}`;
      const [row] = await ch.query<{ n: string }>(sql`SELECT count() AS n FROM ${trustedSql(table)} WHERE ${where}`);
      return Number(row?.n ?? 0);
    },
    async distinctTrades() {
      const [row] = await ch.query<{ n: string }>(sql`SELECT count() AS n FROM (SELECT DISTINCT exchange, symbol, ts, trade_id FROM trades)`);
      return Number(row?.n ?? 0);
    },
    async stopMerges(tables) {
      // names are this file's constants; the database is ours alone, other suites are not touched
      for (const t of tables) await ch.command(trustedSql(`SYSTEM STOP MERGES ${name}.${t}`));
    },
    async dispose() {
      await store.close();
      await dropClickHouseDatabase(url, name);
    },
  };
}
