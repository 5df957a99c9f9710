import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { PlatformError, ValidationError } from '../../domain/errors.js';
import type { SqlExecutor } from './sql-client.js';

/** A write through PgCopyWriter that failed (the transaction was rolled back); the driver's error is `cause`. */
export class CopyWriteError extends PlatformError {}

/** An executor of one open transaction that can also stream rows with `COPY ... FROM STDIN`. */
export interface CopyExecutor extends SqlExecutor {
  /**
   * Streams `chunks` into `copySql` (a `COPY ... FROM STDIN` statement) in the format it names
   * (`FORMAT binary`: bytes from binaryCopyChunks; text: strings); resolves to rows copied.
   */
  copyFrom(copySql: string, chunks: Iterable<string | Uint8Array>): Promise<number>;
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
    async copyFrom(copySql: string, chunks: Iterable<string | Uint8Array>) {
      const stream = client.query(copyFromStdin(copySql));
      await pipeline(Readable.from(chunks, { objectMode: false }), stream);
      return stream.rowCount;
    },
  };
}

/** One row's fields, in column order, for binaryCopyChunks. */
export interface BinaryCopyRow {
  text(value: string): void;
  /** null writes SQL NULL */
  float8(value: number | null): void;
  /** a `timestamptz` column from a ms epoch (whole µs) */
  timestamptzMs(ms: number): void;
}

/** ms from the Unix epoch to PostgreSQL's (2000-01-01 UTC), where binary timestamps count µs from. */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;
/** "PGCOPY\n\377\r\n\0", flags (int32 0), header extension length (int32 0) */
const BINARY_HEADER = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);

/** strings up to this long are written by a JS loop while they are ASCII (cheaper than Buffer.write's native call) */
const ASCII_LOOP_MAX = 64;

/** Appends binary COPY fields to a growing buffer (DataView: big-endian, inlined by V8). */
class BinaryCopyBuffer implements BinaryCopyRow {
  buf: Buffer;
  private view: DataView;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  int16(value: number): void {
    this.room(2);
    this.view.setInt16(this.pos, value);
    this.pos += 2;
  }

  text(value: string): void {
    const length = value.length;
    // at most 3 UTF-8 bytes per UTF-16 unit; the length prefix is written once the size is known
    this.room(4 + length * 3);
    if (length <= ASCII_LOOP_MAX) {
      const buf = this.buf;
      let p = this.pos + 4;
      let i = 0;
      for (; i < length; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === length) {
        this.view.setInt32(this.pos, length);
        this.pos = p;
        return;
      }
    }
    const n = this.buf.write(value, this.pos + 4, 'utf8');
    this.view.setInt32(this.pos, n);
    this.pos += 4 + n;
  }

  float8(value: number | null): void {
    this.room(12);
    if (value === null) {
      this.view.setInt32(this.pos, -1);
      this.pos += 4;
      return;
    }
    this.view.setInt32(this.pos, 8);
    this.view.setFloat64(this.pos + 4, value);
    this.pos += 12;
  }

  timestamptzMs(ms: number): void {
    const us = (ms - PG_EPOCH_MS) * 1000;
    if (!Number.isSafeInteger(us)) throw new ValidationError(`a timestamp must be a ms epoch to the µs, got ${ms}`);
    // int64 µs as two int32 halves: exact, as |us| < 2^53
    const hi = Math.floor(us / TWO_32);
    this.room(12);
    this.view.setInt32(this.pos, 8);
    this.view.setInt32(this.pos + 4, hi);
    this.view.setUint32(this.pos + 8, us - hi * TWO_32);
    this.pos += 12;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
    this.view = new DataView(grown.buffer, grown.byteOffset, grown.byteLength);
  }
}

/**
 * `rows` in PostgreSQL's binary COPY format (for `COPY ... FROM STDIN (FORMAT binary)`), in chunks
 * of about `chunkBytes`, encoded as COPY asks for them so the server parses one while the next is
 * made. `write` gives each row's `fields` values in column order. Binary saves the server parsing
 * timestamps and floats from text, and us formatting them.
 */
export function* binaryCopyChunks<T>(
  rows: readonly T[],
  fields: number,
  write: (row: T, out: BinaryCopyRow) => void,
  chunkBytes = 256 * 1024,
): Generator<Uint8Array> {
  // a fresh buffer per chunk: the one handed out may still be queued on the socket
  let out = new BinaryCopyBuffer(chunkBytes + 1024);
  out.raw(BINARY_HEADER);
  for (const row of rows) {
    out.int16(fields);
    write(row, out);
    if (out.pos >= chunkBytes) {
      yield out.buf.subarray(0, out.pos);
      out = new BinaryCopyBuffer(chunkBytes + 1024);
    }
  }
  out.int16(-1); // trailer
  yield out.buf.subarray(0, out.pos);
}
