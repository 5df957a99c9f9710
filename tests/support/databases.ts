import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
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
