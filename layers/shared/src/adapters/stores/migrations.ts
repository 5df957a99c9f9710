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
  /** the installed TimescaleDB version, or null on plain PostgreSQL */
  readonly timescaledbVersion: string | null;
}

const FILE_NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;
/** A first line with this marker runs the file outside a transaction (TimescaleDB needs it for some DDL). */
const NO_TRANSACTION = '-- migrate:no-transaction';
/** `$$` or `$tag$` opening a dollar-quoted string. */
const DOLLAR_TAG = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/;

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
        // One statement at a time: a multi-statement script is one implicit transaction on the
        // server, which is what such a file must avoid. Its statements must be idempotent, since
        // a failure leaves the earlier ones applied and the file unrecorded.
        for (const statement of splitSqlStatements(sql)) await db.exec(statement);
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
  const ext = await db.query<{ extversion: string }>("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'");
  const version = ext.rows[0]?.extversion ?? null;
  return {
    applied,
    alreadyApplied: files.length - applied.length,
    path: version === null ? 'postgres' : 'timescaledb',
    timescaledbVersion: version,
  };
}

/**
 * Splits a script into its top-level statements, without comments. Knows quoted strings and
 * identifiers, dollar quotes, and line and block comments: enough for migration files, not a parser.
 */
export function splitSqlStatements(script: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  const n = script.length;
  while (i < n) {
    const c = script[i]!;
    const next = script[i + 1];
    if (c === '-' && next === '-') {
      const end = script.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (script[j] === '/' && script[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (script[j] === '*' && script[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      current += ' ';
      i = j;
    } else if (c === "'" || c === '"') {
      // a doubled quote inside is an escaped quote: the scan simply re-enters the literal
      const end = script.indexOf(c, i + 1);
      const stop = end === -1 ? n : end + 1;
      current += script.slice(i, stop);
      i = stop;
    } else if (c === '$' && DOLLAR_TAG.test(script.slice(i, i + 64)) && !/[A-Za-z0-9_]/.test(script[i - 1] ?? '')) {
      const tag = DOLLAR_TAG.exec(script.slice(i, i + 64))![0];
      const end = script.indexOf(tag, i + tag.length);
      const stop = end === -1 ? n : end + tag.length;
      current += script.slice(i, stop);
      i = stop;
    } else if (c === ';') {
      if (current.trim()) statements.push(current.trim());
      current = '';
      i++;
    } else {
      current += c;
      i++;
    }
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}
