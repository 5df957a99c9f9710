/** The little of a Postgres driver the stores need; PGlite and `pg` both fit behind it. */
export interface SqlClient {
  readonly driver: 'pglite' | 'pg';
  /** One parameterized statement. */
  query<R extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
  /** A script of several statements, without parameters (migrations). */
  exec(script: string): Promise<void>;
  /** Runs `fn` in one transaction; rolls back if it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type SqlExecutor = Pick<SqlClient, 'query' | 'exec'>;
