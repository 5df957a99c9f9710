import type { Signal, SignalDirection, Timeframe } from '../../domain/index.js';
import type { SignalQuery, SignalReader } from '../../ports/signal-reader.js';
import type { SqlExecutor } from './sql-client.js';

interface SignalRow {
  readonly id: string;
  readonly ts: number;
  readonly publisher: string;
  readonly exchange: string | null;
  readonly symbol: string;
  readonly direction: SignalDirection;
  readonly strength: number;
  readonly confidence: number;
  readonly horizon: Timeframe;
  readonly rationale: string;
}

/**
 * Signals from PostgreSQL/TimescaleDB or PGlite (the `signals` table the market store writes).
 * The primary key (ts, id) makes a redelivered signal one row, and orders the keyset pages; the
 * symbol and publisher filters have indexes of their own (0010_signal_reads.sql).
 */
export class PostgresSignalReader implements SignalReader {
  constructor(private readonly db: SqlExecutor) {}

  async readSignals(q: SignalQuery): Promise<readonly Signal[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    const bind = (value: unknown) => `$${params.push(value)}`;
    if (q.exchange !== undefined) where.push(`exchange = ${bind(q.exchange)}`);
    if (q.symbol !== undefined) where.push(`symbol = ${bind(q.symbol)}`);
    if (q.publisher !== undefined) where.push(`publisher = ${bind(q.publisher)}`);
    if (q.direction !== undefined) where.push(`direction = ${bind(q.direction)}`);
    if (q.since !== undefined) where.push(`ts >= ms_to_ts(${bind(q.since)}::bigint)`);
    if (q.until !== undefined) where.push(`ts < ms_to_ts(${bind(q.until)}::bigint)`);
    if (q.after) {
      // uuid compares byte-wise, which is the order of its lowercase text: the same pages as ClickHouse
      where.push(`(ts, id) < (ms_to_ts(${bind(q.after.ts)}::bigint), ${bind(q.after.id)}::uuid)`);
    }
    const { rows } = await this.db.query<SignalRow>(
      `SELECT id::text AS id, ts_to_ms(ts) AS ts, publisher, exchange, symbol, direction, strength, confidence,
              horizon, rationale
       FROM signals ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY ts DESC, id DESC LIMIT ${bind(q.limit)}::int`,
      params,
    );
    return rows.map((r) => ({ type: 'signal', ...r, ts: Number(r.ts) }));
  }
}
