import type { FeedStatus, GapEvent, LedgerEvent } from '../../domain/index.js';
import type {
  FeedHealth,
  FeedHealthQuery,
  GapQuery,
  GapRecord,
  LedgerReader,
  LedgerWriteSummary,
  LedgerWriter,
} from '../../ports/index.js';
import type { SqlClient } from './sql-client.js';

/** Counters of feed_status, as event field -> column. */
const COUNTERS = [
  ['messages', 'messages'],
  ['events', 'events'],
  ['rejected', 'rejected'],
  ['malformed', 'malformed'],
  ['duplicates', 'duplicates'],
  ['reordered', 'reordered'],
  ['gapsDetected', 'gaps_detected'],
  ['gapsFilled', 'gaps_filled'],
  ['gapsUnfilled', 'gaps_unfilled'],
  ['tradesRecovered', 'trades_recovered'],
  ['reconnects', 'reconnects'],
  ['resubscribes', 'resubscribes'],
  ['watchErrors', 'watch_errors'],
] as const satisfies readonly (readonly [keyof FeedStatus, string])[];

const GAP_RANK = { open: 0, filled: 1, unfilled: 1 } as const;

/**
 * The completeness ledger on PostgreSQL/TimescaleDB or PGlite (tables of 0006_feed_ledger.sql).
 * Feed snapshots keep the greatest counters per feed and collector run; a gap keeps its latest
 * state, and a final one (filled, unfilled) is never overwritten by a replayed open one.
 */
export class PostgresLedgerStore implements LedgerWriter, LedgerReader {
  constructor(
    private readonly db: SqlClient,
    private readonly now: () => number = Date.now,
  ) {}

  async writeLedger(events: readonly LedgerEvent[]): Promise<LedgerWriteSummary> {
    const statuses = new Map<string, FeedStatus>();
    const gaps = new Map<string, GapEvent>();
    for (const e of events) {
      if (e.type === 'feed_status') {
        const key = `${e.exchange}\u0000${e.symbol}\u0000${e.channel}\u0000${e.runId}`;
        const prev = statuses.get(key);
        statuses.set(key, prev ? mergeStatus(prev, e) : e);
      } else {
        const prev = gaps.get(e.gapId);
        gaps.set(e.gapId, prev ? laterGap(prev, e) : e);
      }
    }
    if (statuses.size === 0 && gaps.size === 0) return { statuses: 0, gaps: 0 };
    // one statement per table: ON CONFLICT DO UPDATE may not touch a row twice, hence the merge above
    return this.db.transaction(async (tx) => {
      let s = 0;
      let g = 0;
      if (statuses.size > 0) {
        const set = COUNTERS.map(([, c]) => `${c} = GREATEST(f.${c}, EXCLUDED.${c})`).join(', ');
        const { rows } = await tx.query<{ n: number }>(
          `WITH w AS (
             INSERT INTO feed_status AS f (exchange, symbol, channel, run_id, started_at, reported_at,
               ${COUNTERS.map(([, c]) => c).join(', ')}, last_message_ts, last_message_local_ts, last_error, malformed_sample)
             SELECT exchange, symbol, channel, "runId", ms_to_ts("startedAt"), ms_to_ts("ts"),
               ${COUNTERS.map(([k]) => `"${k}"`).join(', ')}, ms_to_ts("lastMessageTs"), ms_to_ts("lastMessageLocalTs"),
               "lastError", "malformedSample"
             FROM jsonb_to_recordset($1::jsonb) AS r(exchange text, symbol text, channel text, "runId" text,
               "startedAt" bigint, "ts" bigint, ${COUNTERS.map(([k]) => `"${k}" bigint`).join(', ')},
               "lastMessageTs" bigint, "lastMessageLocalTs" bigint, "lastError" text, "malformedSample" text)
             ON CONFLICT (exchange, symbol, channel, run_id) DO UPDATE SET
               ${set},
               reported_at = GREATEST(f.reported_at, EXCLUDED.reported_at),
               last_message_ts = GREATEST(f.last_message_ts, EXCLUDED.last_message_ts),
               last_message_local_ts = GREATEST(f.last_message_local_ts, EXCLUDED.last_message_local_ts),
               last_error = CASE WHEN EXCLUDED.reported_at >= f.reported_at
                                 THEN COALESCE(EXCLUDED.last_error, f.last_error) ELSE f.last_error END,
               malformed_sample = COALESCE(f.malformed_sample, EXCLUDED.malformed_sample)
             RETURNING 1
           ) SELECT count(*)::int AS n FROM w`,
          [JSON.stringify([...statuses.values()])],
        );
        s = rows[0]?.n ?? 0;
      }
      if (gaps.size > 0) {
        const { rows } = await tx.query<{ n: number }>(
          `WITH w AS (
             INSERT INTO feed_gaps AS g (gap_id, run_id, exchange, symbol, channel, kind, reason, status, from_id, to_id,
               from_ts, to_ts, missing, recovered, detected_at, resolved_at, detail, updated_at)
             SELECT "gapId", "runId", exchange, symbol, channel, kind, reason, status, "fromId", "toId",
               ms_to_ts("fromTs"), ms_to_ts("toTs"), missing, recovered, ms_to_ts("detectedAt"), ms_to_ts("resolvedAt"),
               detail, ms_to_ts("ts")
             FROM jsonb_to_recordset($1::jsonb) AS r("gapId" text, "runId" text, exchange text, symbol text, channel text,
               kind text, reason text, status text, "fromId" text, "toId" text, "fromTs" bigint, "toTs" bigint,
               missing bigint, recovered bigint, "detectedAt" bigint, "resolvedAt" bigint, detail text, "ts" bigint)
             ON CONFLICT (gap_id) DO UPDATE SET
               status = EXCLUDED.status,
               from_id = EXCLUDED.from_id,
               to_id = EXCLUDED.to_id,
               from_ts = EXCLUDED.from_ts,
               to_ts = EXCLUDED.to_ts,
               missing = EXCLUDED.missing,
               recovered = GREATEST(g.recovered, EXCLUDED.recovered),
               resolved_at = EXCLUDED.resolved_at,
               detail = COALESCE(EXCLUDED.detail, g.detail),
               updated_at = GREATEST(g.updated_at, EXCLUDED.updated_at)
             WHERE g.status = 'open'
             RETURNING 1
           ) SELECT count(*)::int AS n FROM w`,
          [JSON.stringify([...gaps.values()])],
        );
        g = rows[0]?.n ?? 0;
      }
      return { statuses: s, gaps: g };
    });
  }

  /** Per exchange/symbol/channel: counters summed over collector runs, newest message times and age, open gaps. */
  async feedHealth(query: FeedHealthQuery = {}): Promise<readonly FeedHealth[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    if (query.exchange !== undefined) where.push(`exchange = $${params.push(query.exchange)}`);
    if (query.symbol !== undefined) where.push(`symbol = $${params.push(query.symbol)}`);
    if (query.channel !== undefined) where.push(`channel = $${params.push(query.channel)}`);
    const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
    type Row = Omit<FeedHealth, 'gapsOpen' | 'lastMessageAgeMs'>;
    const { rows } = await this.db.query<Row>(
      `SELECT exchange, symbol, channel,
              ${COUNTERS.map(([k, c]) => `sum(${c})::float8 AS "${k}"`).join(', ')},
              ts_to_ms(max(last_message_ts)) AS "lastMessageTs",
              ts_to_ms(max(last_message_local_ts)) AS "lastMessageLocalTs",
              (array_agg(last_error ORDER BY reported_at DESC) FILTER (WHERE last_error IS NOT NULL))[1] AS "lastError",
              (array_agg(malformed_sample ORDER BY reported_at) FILTER (WHERE malformed_sample IS NOT NULL))[1] AS "malformedSample",
              count(*)::int AS runs,
              ts_to_ms(max(reported_at)) AS "reportedAt"
       FROM feed_status ${filter}
       GROUP BY exchange, symbol, channel
       ORDER BY exchange, symbol, channel`,
      params,
    );
    const open = await this.db.query<{ exchange: string; symbol: string; n: number }>(
      `SELECT exchange, symbol, count(*)::int AS n FROM feed_gaps WHERE status = 'open' GROUP BY exchange, symbol`,
    );
    const openBy = new Map(open.rows.map((r) => [`${r.exchange}\u0000${r.symbol}`, r.n]));
    const asOf = query.asOf ?? this.now();
    return rows.map((r) => ({
      ...r,
      gapsOpen: r.channel === 'trades' ? (openBy.get(`${r.exchange}\u0000${r.symbol}`) ?? 0) : 0,
      lastMessageAgeMs: r.lastMessageLocalTs === null ? null : Math.max(0, asOf - r.lastMessageLocalTs),
    }));
  }

  /** Gaps, newest detected first. */
  async gaps(query: GapQuery = {}): Promise<readonly GapRecord[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    if (query.exchange !== undefined) where.push(`exchange = $${params.push(query.exchange)}`);
    if (query.symbol !== undefined) where.push(`symbol = $${params.push(query.symbol)}`);
    if (query.status !== undefined) where.push(`status = $${params.push(query.status)}`);
    if (query.since !== undefined) where.push(`detected_at >= ms_to_ts($${params.push(query.since)}::bigint)`);
    if (query.until !== undefined) where.push(`detected_at < ms_to_ts($${params.push(query.until)}::bigint)`);
    const limit = Math.min(Math.max(1, Math.trunc(query.limit ?? 100)), 10_000);
    const { rows } = await this.db.query<GapRecord>(
      `SELECT gap_id AS "gapId", run_id AS "runId", exchange, symbol, channel, kind, reason, status,
              from_id AS "fromId", to_id AS "toId", ts_to_ms(from_ts) AS "fromTs", ts_to_ms(to_ts) AS "toTs",
              missing::float8 AS missing, recovered::float8 AS recovered, ts_to_ms(detected_at) AS "detectedAt",
              ts_to_ms(resolved_at) AS "resolvedAt", detail
       FROM feed_gaps ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY detected_at DESC, gap_id LIMIT $${params.push(limit)}::int`,
      params,
    );
    return rows;
  }
}

function mergeStatus(a: FeedStatus, b: FeedStatus): FeedStatus {
  const newer = b.ts >= a.ts ? b : a;
  const out: Record<string, unknown> = { ...newer };
  for (const [k] of COUNTERS) out[k] = Math.max(a[k], b[k]);
  out['lastMessageTs'] = maxNullable(a.lastMessageTs, b.lastMessageTs);
  out['lastMessageLocalTs'] = maxNullable(a.lastMessageLocalTs, b.lastMessageLocalTs);
  out['malformedSample'] = (b.ts >= a.ts ? a : b).malformedSample ?? newer.malformedSample;
  return out as FeedStatus;
}

function laterGap(a: GapEvent, b: GapEvent): GapEvent {
  if (GAP_RANK[a.status] !== GAP_RANK[b.status]) return GAP_RANK[a.status] > GAP_RANK[b.status] ? a : b;
  return b.ts >= a.ts ? b : a;
}

function maxNullable(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}
