/**
 * The stores a backfill writes to, opened with their schema applied: PostgreSQL/TimescaleDB (or
 * the embedded PGlite database `npm start` uses) for the recent window, ClickHouse for history
 * when configured.
 */
import { join } from 'node:path';
import { openClickHouse } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
import { PgCopyWriter } from '../../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { MarketStore } from '../../layers/shared/src/ports/index.js';

export interface StoreOptions {
  readonly databaseUrl?: string | undefined;
  readonly dataDir: string;
  readonly clickhouseUrl?: string | undefined;
  readonly clickhouseDatabase?: string | undefined;
}

export interface BackfillStores {
  readonly recent: MarketStore;
  readonly history: MarketStore | null;
  /** for people: `PostgreSQL at postgres://...`, `PGlite in ...` */
  readonly recentName: string;
  readonly historyName: string | undefined;
  close(): Promise<void>;
}

/** The URL without its password, for the console and checkpoints. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** Names of the stores `options` point at: the identity a checkpoint is kept for. */
export function storeNames(options: StoreOptions): { recent: string; history: string | undefined; target: string } {
  const recent = options.databaseUrl ? `PostgreSQL at ${redactUrl(options.databaseUrl)}` : `PGlite in ${join(options.dataDir, 'pgdata')}`;
  const history = options.clickhouseUrl
    ? `ClickHouse at ${redactUrl(options.clickhouseUrl)}${options.clickhouseDatabase ? ` (database ${options.clickhouseDatabase})` : ''}`
    : undefined;
  return { recent, history, target: history ? `${recent} + ${history}` : recent };
}

/** Opens the stores and applies their migrations (idempotent). */
export async function openBackfillStores(options: StoreOptions): Promise<BackfillStores> {
  const names = storeNames(options);
  const db = options.databaseUrl ? openPostgres(options.databaseUrl) : await openPglite(join(options.dataDir, 'pgdata'));
  const recent = new PostgresMarketStore(db, {
    // large trade pages go in by COPY on PostgreSQL
    ...(options.databaseUrl && { copyWriter: new PgCopyWriter(options.databaseUrl, { max: 1 }) }),
  });
  let history: ClickHouseMarketStore | null = null;
  try {
    await runMigrations(db);
    if (options.clickhouseUrl) {
      const ch = openClickHouse(options.clickhouseUrl, options.clickhouseDatabase ? { database: options.clickhouseDatabase } : {});
      history = new ClickHouseMarketStore(ch);
      await runClickHouseMigrations(ch);
    }
  } catch (error) {
    await Promise.allSettled([recent.close(), history?.close()]);
    throw error;
  }
  const h = history;
  return {
    recent,
    history: h,
    recentName: names.recent,
    historyName: names.history,
    close: async () => {
      await Promise.allSettled([recent.close(), h?.close()]);
    },
  };
}
