import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { sql, trustedSql } from './clickhouse-sql.js';
import { MigrationError } from './migrations.js';

/** `sql/clickhouse` of this repository. */
export const CLICKHOUSE_MIGRATIONS_DIR = fileURLToPath(new URL('../../../../../sql/clickhouse', import.meta.url));

export interface ClickHouseMigrationReport {
  readonly applied: readonly string[];
  readonly alreadyApplied: number;
}

const FILE_NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;

/**
 * Splits a migration file into statements: `;` ends a statement outside quotes and comments;
 * `--` comments are dropped. The HTTP interface takes one statement per request.
 */
export function splitStatements(script: string): string[] {
  const statements: string[] = [];
  let current = '';
  let quote: string | null = null;
  for (let i = 0; i < script.length; i++) {
    const c = script[i]!;
    if (quote) {
      current += c;
      if (c === '\\') {
        current += script[++i] ?? '';
      } else if (c === quote) {
        quote = null;
      }
    } else if (c === '-' && script[i + 1] === '-') {
      while (i < script.length && script[i] !== '\n') i++;
      current += '\n';
    } else if (c === ';') {
      if (current.trim()) statements.push(current.trim());
      current = '';
    } else {
      if (c === "'" || c === '"' || c === '`') quote = c;
      current += c;
    }
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}

/**
 * Applies the `NNNN_name.sql` files of `dir` not yet applied, in order, each recorded in
 * `schema_migrations` with its checksum. ClickHouse has no transactional DDL: a file that fails
 * half-way is not recorded, and re-running applies it again, which is why every statement in a
 * migration must be idempotent (IF NOT EXISTS). Runs are not locked against each other: run it
 * from one place (deploy step, test set-up), like the Postgres runner.
 */
export async function runClickHouseMigrations(
  ch: ClickHouseExecutor,
  dir: string = CLICKHOUSE_MIGRATIONS_DIR,
): Promise<ClickHouseMigrationReport> {
  await ch.command(sql`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    String,
    name       String,
    checksum   String,
    applied_at DateTime DEFAULT now()
  ) ENGINE = ReplacingMergeTree() ORDER BY version`);
  const files = (await readdir(dir)).filter((f) => FILE_NAME.test(f)).sort();
  const rows = await ch.query<{ version: string; checksum: string }>(
    sql`SELECT version, any(checksum) AS checksum FROM schema_migrations GROUP BY version`,
  );
  const done = new Map(rows.map((r) => [r.version, r.checksum]));
  const applied: string[] = [];
  for (const file of files) {
    const version = file.slice(0, 4);
    const text = await readFile(join(dir, file), 'utf8');
    const checksum = createHash('sha256').update(text).digest('hex');
    const previous = done.get(version);
    if (previous !== undefined) {
      if (previous !== checksum) {
        throw new MigrationError(
          `migration ${file} was changed after it was applied; add a new migration file instead of editing it`,
        );
      }
      continue;
    }
    try {
      // Statements come from the repository's own migration files, never from input.
      for (const statement of splitStatements(text)) await ch.command(trustedSql(statement));
      await ch.insert('schema_migrations', [{ version, name: file, checksum }]);
    } catch (error) {
      throw new MigrationError(`migration ${file} failed: ${(error as Error).message}`, { cause: error });
    }
    applied.push(file);
  }
  return { applied, alreadyApplied: files.length - applied.length };
}
