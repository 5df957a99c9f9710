/**
 * The little of a ClickHouse driver the store needs, over the official `@clickhouse/client`.
 *
 * Measured against ClickHouse 18.16 (Debian's package): SELECT with JSONEachRow, DDL, ALTER, and
 * `INSERT ... FORMAT JSONEachRow` or `FORMAT RowBinary` (LowCardinality and Decimal128 columns
 * included) with rows in the body all work; only server-side query parameters fail (`Unknown
 * setting param_x`: 18.16 predates them), which is why statements are built by clickhouse-sql.ts.
 * The client's idle-socket TTL (2.5 s) is below 18.16's keep-alive timeout (3 s), so pooled
 * sockets are not reused after the server closed them.
 */
import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, drainStream, type ClickHouseClient } from '@clickhouse/client';
import { PlatformError } from '../../domain/errors.js';
import { columnList, databaseName, sql, table, type ClickHouseTable, type Sql } from './clickhouse-sql.js';

/** A ClickHouse statement or insert that failed; the server's message is kept, the cause attached. */
export class ClickHouseQueryError extends PlatformError {}

/** What the ClickHouse store, migrations and retention need of a connection. */
export interface ClickHouseExecutor {
  /** A SELECT; rows as JSONEachRow objects (64-bit integers arrive as strings). */
  query<R extends object = Record<string, unknown>>(statement: Sql): Promise<R[]>;
  /** DDL, ALTER, INSERT ... SELECT: anything that returns no rows. */
  command(statement: Sql): Promise<void>;
  /** `INSERT INTO table FORMAT JSONEachRow` with `rows` in the body. */
  insert(into: ClickHouseTable, rows: readonly object[]): Promise<void>;
  /** `INSERT INTO table (columns) FORMAT RowBinary` with `body` (a RowBinaryWriter's bytes) holding `rows` rows. */
  insertRowBinary(into: ClickHouseTable, columns: readonly string[], body: Uint8Array, rows: number): Promise<void>;
  close(): Promise<void>;
}

export interface ClickHouseOptions {
  /** database to use; else the one in the URL's path, else `default` */
  readonly database?: string;
  /** per-request timeout in ms (default 30 s) */
  readonly requestTimeoutMs?: number;
}

function describe(statement: string): string {
  const oneLine = statement.replace(/\s+/g, ' ').trim();
  return oneLine.length > 120 ? `${oneLine.slice(0, 117)}...` : oneLine;
}

function wrap(error: unknown, what: string): ClickHouseQueryError {
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return new ClickHouseQueryError(`ClickHouse ${what} failed: ${message}`, { cause: error });
}

/** A ClickHouse executor over `@clickhouse/client` (HTTP interface; user and password may be in the URL). */
export function openClickHouse(url: string, options: ClickHouseOptions = {}): ClickHouseExecutor {
  const client: ClickHouseClient = createClient({
    url,
    ...(options.database !== undefined ? { database: options.database } : {}),
    request_timeout: options.requestTimeoutMs ?? 30_000,
    // Failures are thrown as ClickHouseQueryError for the caller to log; the client's own
    // console logging would report each one a second time.
    log: { level: ClickHouseLogLevel.OFF },
  });
  return {
    async query<R extends object>(statement: Sql): Promise<R[]> {
      try {
        const result = await client.query({ query: statement.text, format: 'JSONEachRow' });
        return await result.json<R>();
      } catch (error) {
        throw wrap(error, `query (${describe(statement.text)})`);
      }
    },
    async command(statement: Sql): Promise<void> {
      try {
        await client.command({ query: statement.text });
      } catch (error) {
        throw wrap(error, `statement (${describe(statement.text)})`);
      }
    },
    async insert(into: ClickHouseTable, rows: readonly object[]): Promise<void> {
      if (rows.length === 0) return;
      try {
        await client.insert({ table: table(into).text, values: rows as object[], format: 'JSONEachRow' });
      } catch (error) {
        throw wrap(error, `insert into ${into} (${rows.length} rows)`);
      }
    },
    async insertRowBinary(into: ClickHouseTable, columns: readonly string[], body: Uint8Array, rows: number): Promise<void> {
      if (rows === 0) return;
      // The client's insert() takes row objects only; exec() sends the body as it is.
      const statement = sql`INSERT INTO ${table(into)} ${columnList(columns)} FORMAT RowBinary`;
      try {
        const result = await client.exec({ query: statement.text, values: Readable.from([body]) });
        await drainStream(result.stream);
      } catch (error) {
        throw wrap(error, `insert into ${into} (${rows} rows, RowBinary)`);
      }
    },
    close: () => client.close(),
  };
}

/** Creates database `name` on the server at `url` (tests and local set-up give each run its own). */
export async function createClickHouseDatabase(url: string, name: string): Promise<void> {
  const admin = openClickHouse(url);
  try {
    await admin.command(sql`CREATE DATABASE IF NOT EXISTS ${databaseName(name)}`);
  } finally {
    await admin.close();
  }
}

/** Drops database `name` and everything in it. */
export async function dropClickHouseDatabase(url: string, name: string): Promise<void> {
  const admin = openClickHouse(url);
  try {
    await admin.command(sql`DROP DATABASE IF EXISTS ${databaseName(name)}`);
  } finally {
    await admin.close();
  }
}
