import type { Signal, SignalDirection, Timeframe } from '../../domain/index.js';
import type { SignalQuery, SignalReader } from '../../ports/signal-reader.js';
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { joinSql, sql, trustedSql, type Sql } from './clickhouse-sql.js';

interface SignalRow {
  /** the id in lowercase */
  readonly sid: string;
  /** UInt64 arrives as a JSON string */
  readonly ts: string | number;
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
 * Signals from ClickHouse (`signals`, a ReplacingMergeTree ordered by (ts, id)). Copies of a
 * redelivered signal stay until parts merge, so every read keeps one row per id (LIMIT 1 BY),
 * without FINAL or OPTIMIZE. Ids are compared and ordered in lowercase, the form PostgreSQL's uuid
 * type gives back, so both stores page a set of signals identically. Values are bound only through
 * clickhouse-sql.ts.
 */
export class ClickHouseSignalReader implements SignalReader {
  constructor(private readonly ch: ClickHouseExecutor) {}

  async readSignals(q: SignalQuery): Promise<readonly Signal[]> {
    const where: Sql[] = [trustedSql('1')];
    if (q.exchange !== undefined) where.push(sql`exchange = ${q.exchange}`);
    if (q.symbol !== undefined) where.push(sql`symbol = ${q.symbol}`);
    if (q.publisher !== undefined) where.push(sql`publisher = ${q.publisher}`);
    if (q.direction !== undefined) where.push(sql`direction = ${q.direction}`);
    if (q.since !== undefined) where.push(sql`ts >= ${q.since}`);
    if (q.until !== undefined) where.push(sql`ts < ${q.until}`);
    if (q.after) {
      const { ts, id } = q.after;
      // the plain ts bound lets the primary key skip granules; the tuple decides inside a millisecond
      where.push(sql`ts <= ${ts} AND (ts, lower(id)) < (${ts}, ${id.toLowerCase()})`);
    }
    const rows = await this.ch.query<SignalRow>(
      sql`SELECT lower(id) AS sid, ts, publisher, exchange, toString(symbol) AS symbol, toString(direction) AS direction,
                 strength, confidence, toString(horizon) AS horizon, rationale
          FROM signals WHERE ${joinSql(where, ' AND ')}
          ORDER BY ts DESC, sid DESC LIMIT 1 BY sid LIMIT ${q.limit}`,
    );
    return rows.map((r) => ({
      type: 'signal',
      id: r.sid,
      ts: Number(r.ts),
      publisher: r.publisher,
      exchange: r.exchange,
      symbol: r.symbol,
      direction: r.direction,
      strength: r.strength,
      confidence: r.confidence,
      horizon: r.horizon,
      rationale: r.rationale,
    }));
  }
}
