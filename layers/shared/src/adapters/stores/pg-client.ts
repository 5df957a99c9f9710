import pg from 'pg';
import type { SqlClient, SqlExecutor } from './sql-client.js';

/** Connects to PostgreSQL (TimescaleDB or plain) through a `pg` pool. */
export function openPostgres(
  connectionString: string,
  options: { max?: number; onConnectionError?: (error: Error) => void } = {},
): SqlClient {
  const pool = new pg.Pool({ connectionString, max: options.max ?? 4 });
  // A connection the server drops while idle (restart, failover, terminate) emits 'error' on the pool;
  // unhandled, it would crash the process. The pool discards it and the next query reconnects.
  pool.on('error', (error) => options.onConnectionError?.(error));
  const asExecutor = (q: pg.Pool | pg.PoolClient): SqlExecutor => ({
    async query<R extends object>(text: string, params: readonly unknown[] = []) {
      const result = await q.query(text, params as unknown[]);
      return { rows: result.rows as R[] };
    },
    async exec(script: string) {
      await q.query(script);
    },
  });
  const base = asExecutor(pool);
  return {
    driver: 'pg',
    query: base.query,
    exec: base.exec,
    async transaction(fn) {
      const client = await pool.connect();
      // a checked-out connection killed between statements emits 'error' too; the failing
      // statement rejects on its own, so the event only needs a listener
      const ignore = () => undefined;
      client.on('error', ignore);
      try {
        await client.query('BEGIN');
        const result = await fn(asExecutor(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.off('error', ignore);
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
