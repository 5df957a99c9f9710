import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { PlatformError } from '../../domain/errors.js';
import type { SqlExecutor } from './sql-client.js';

/** A write through PgCopyWriter that failed (the transaction was rolled back); the driver's error is `cause`. */
export class CopyWriteError extends PlatformError {}

/** An executor of one open transaction that can also stream rows with `COPY ... FROM STDIN`. */
export interface CopyExecutor extends SqlExecutor {
  /** Streams `chunks` (COPY text format) into `copySql` (a `COPY ... FROM STDIN` statement); resolves to rows copied. */
  copyFrom(copySql: string, chunks: Iterable<string>): Promise<number>;
}

/** Transactions with COPY on a `pg` pool: what PostgresMarketStore needs for fast batch writes on PostgreSQL. */
export interface CopyTransactions {
  transaction<T>(fn: (tx: CopyExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * COPY-capable transactions on PostgreSQL, beside the `SqlClient` port rather than in it: PGlite
 * has no COPY FROM STDIN over the wire, so the port stays what both drivers can do, and only the
 * `pg` path is given this. It owns its pool when built from a connection string.
 */
export class PgCopyWriter implements CopyTransactions {
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;

  constructor(poolOrUrl: pg.Pool | string, options: { max?: number } = {}) {
    if (typeof poolOrUrl === 'string') {
      this.pool = new pg.Pool({ connectionString: poolOrUrl, max: options.max ?? 2 });
      this.ownsPool = true;
      // an idle client whose server went away must not crash the process; the pool drops it
      this.pool.on('error', () => undefined);
    } else {
      this.pool = poolOrUrl;
      this.ownsPool = false;
    }
  }

  /** Runs `fn` in one transaction on one connection; rolls back (or drops a broken connection) if it throws. */
  async transaction<T>(fn: (tx: CopyExecutor) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new CopyWriteError(`cannot connect to PostgreSQL: ${(error as Error).message}`, { cause: error });
    }
    // A checked-out pg client has no 'error' listener, and one that loses its server emits 'error':
    // unheard, that would crash the process. The failed query rejects as well, which is what we act on.
    let broken: Error | undefined;
    const onError = (error: Error) => {
      broken = error;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await fn(executorOf(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (!broken) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => {
          broken = rollbackError;
        });
      }
      throw new CopyWriteError(`write transaction failed: ${(error as Error).message}`, { cause: error });
    } finally {
      client.off('error', onError);
      // a connection that failed is destroyed, not handed to the next batch
      client.release(broken ?? undefined);
    }
  }

  /** Ends the pool if this writer created it. */
  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}

function executorOf(client: pg.PoolClient): CopyExecutor {
  return {
    async query<R extends object>(text: string, params: readonly unknown[] = []) {
      const result = await client.query(text, params as unknown[]);
      return { rows: result.rows as R[] };
    },
    async exec(script: string) {
      await client.query(script);
    },
    async copyFrom(copySql: string, chunks: Iterable<string>) {
      const stream = client.query(copyFromStdin(copySql));
      await pipeline(Readable.from(chunks, { objectMode: false }), stream);
      return stream.rowCount;
    },
  };
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** A text value as a field of COPY's text format (tab-separated; backslash escapes). */
export function copyText(value: string): string {
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c]!) : value;
}

/** A nullable number as a field of COPY's text format (`\N` for null). */
export function copyNumber(value: number | null): string {
  return value === null ? '\\N' : String(value);
}

/** Lines of `rows` joined into chunks of about `chunkChars` characters, so COPY gets few, large writes. */
export function* copyChunks<T>(rows: readonly T[], line: (row: T) => string, chunkChars = 256 * 1024): Generator<string> {
  let chunk = '';
  for (const row of rows) {
    chunk += line(row);
    if (chunk.length >= chunkChars) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk.length > 0) yield chunk;
}
