import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlatformError } from '../../domain/errors.js';
import type { SqlClient } from './sql-client.js';

/** `sql/timescale` of this repository. */
export const TIMESCALE_MIGRATIONS_DIR = fileURLToPath(new URL('../../../../../sql/timescale', import.meta.url));

/** A migration file that changed after it was applied, or one that failed. */
export class MigrationError extends PlatformError {}

export interface MigrationReport {
  readonly applied: readonly string[];
  readonly alreadyApplied: number;
  /** `timescaledb` when the extension is installed (hypertables), else `postgres` (plain tables). */
  readonly path: 'timescaledb' | 'postgres';
}

const FILE_NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;
/** A first line with this marker runs the file outside a transaction (TimescaleDB needs it for some DDL). */
const NO_TRANSACTION = '-- migrate:no-transaction';

/** Applies the `NNNN_name.sql` files of `dir` not yet applied, in order, each recorded with its checksum. */
export async function runMigrations(db: SqlClient, dir: string = TIMESCALE_MIGRATIONS_DIR): Promise<MigrationReport> {
  await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const files = (await readdir(dir)).filter((f) => FILE_NAME.test(f)).sort();
  const done = new Map(
    (await db.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migrations')).rows.map(
      (r) => [r.version, r.checksum],
    ),
  );
  const applied: string[] = [];
  for (const file of files) {
    const version = file.slice(0, 4);
    const sql = await readFile(join(dir, file), 'utf8');
    const checksum = createHash('sha256').update(sql).digest('hex');
    const previous = done.get(version);
    if (previous !== undefined) {
      if (previous !== checksum) {
        throw new MigrationError(
          `migration ${file} was changed after it was applied; add a new migration file instead of editing it`,
        );
      }
      continue;
    }
    const record = (ex: Pick<SqlClient, 'query'>) =>
      ex.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [version, file, checksum]);
    try {
      if (sql.startsWith(NO_TRANSACTION)) {
        await db.exec(sql);
        await record(db);
      } else {
        await db.transaction(async (tx) => {
          await tx.exec(sql);
          await record(tx);
        });
      }
    } catch (error) {
      throw new MigrationError(`migration ${file} failed: ${(error as Error).message}`, { cause: error });
    }
    applied.push(file);
  }
  const ext = await db.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'");
  return { applied, alreadyApplied: files.length - applied.length, path: ext.rows.length > 0 ? 'timescaledb' : 'postgres' };
}
