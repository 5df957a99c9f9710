import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
import { PgCopyWriter } from '../../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';

export type Backend = 'pglite' | 'postgres';

export interface TestDatabase {
  readonly db: SqlClient;
  /** connection URL of the database (postgres only) */
  readonly url: string | null;
  /** closes the client and drops the database */
  dispose(): Promise<void>;
}

/** A fresh, migrated database of its own: in-memory PGlite, or a new database on the server at `serverUrl`. */
export async function createTestDatabase(backend: Backend, serverUrl?: string): Promise<TestDatabase> {
  if (backend === 'pglite') {
    const db = await openPglite();
    await runMigrations(db);
    return { db, url: null, dispose: () => db.close() };
  }
  if (!serverUrl) throw new Error('a postgres test database needs DATABASE_URL');
  const name = `qicore_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const db = openPostgres(url.toString());
  await runMigrations(db);
  return {
    db,
    url: url.toString(),
    dispose: async () => {
      await db.close();
      const cleanup = new pg.Client({ connectionString: serverUrl });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

export interface TestStore extends TestDatabase {
  readonly store: PostgresMarketStore;
}

/**
 * A fresh database with a PostgresMarketStore on it. On PostgreSQL, trade batches of at least
 * `copyMinRows` take the COPY path (1: all of them), so a suite holds COPY to what jsonb does on PGlite.
 */
export async function createTestStore(backend: Backend, serverUrl: string | undefined, copyMinRows = 1): Promise<TestStore> {
  const database = await createTestDatabase(backend, serverUrl);
  const copyWriter = database.url ? new PgCopyWriter(database.url) : undefined;
  const store = new PostgresMarketStore(database.db, copyWriter ? { copyWriter, copyMinRows } : {});
  return {
    ...database,
    store,
    dispose: async () => {
      await copyWriter?.close();
      await database.dispose();
    },
  };
}
