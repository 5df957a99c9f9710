import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import type { SqlClient, SqlExecutor } from './sql-client.js';

/** Opens embedded Postgres (PGlite): persisted under `dataDir`, or in memory when it is omitted. */
export async function openPglite(dataDir?: string): Promise<SqlClient> {
  if (dataDir) await mkdir(dataDir, { recursive: true });
  const db = await PGlite.create(dataDir);
  const asExecutor = (q: Pick<PGlite, 'query' | 'exec'>): SqlExecutor => ({
    async query<R extends object>(text: string, params: readonly unknown[] = []) {
      const result = await q.query<R>(text, params as unknown[]);
      return { rows: result.rows };
    },
    async exec(script: string) {
      await q.exec(script);
    },
  });
  const base = asExecutor(db);
  return {
    driver: 'pglite',
    query: base.query,
    exec: base.exec,
    transaction: (fn) => db.transaction((tx) => fn(asExecutor(tx))),
    close: () => db.close(),
  };
}
