import type {
  AgentStore,
  AuditEntry,
  AuditQuery,
  FillBooking,
  KillSwitchChange,
  KillSwitchState,
  NewAuditEntry,
  PaperAccount,
  PaperFillRecord,
} from '../../ports/agent-store.js';
import type { SqlClient, SqlExecutor } from './sql-client.js';

/** Most bytes of JSON one audit entry keeps in `inputs`, and in `output`: one call cannot fill the table. */
export const AUDIT_JSON_MAX_BYTES = 64 * 1024;
/** Characters of a cut value kept as its preview. */
const PREVIEW_CHARS = 512;
/** A tool call record with its result cut is small when it is at most this big (its arguments are cut otherwise). */
const SMALL_RECORD_BYTES = 4096;

const KILL_SWITCH = 'kill_switch';

interface ControlRow {
  engaged: boolean;
  reason: string | null;
  since: number | null;
  by_principal: string | null;
}

interface AuditRow {
  id: string;
  ts: number;
  principal: string;
  run_id: string;
  agent: string;
  kind: string;
  exchange: string | null;
  symbol: string | null;
  summary: string;
  inputs: unknown;
  output: unknown;
}

interface AccountRow {
  account: string;
  initial_cash: number;
  created_ts: number;
}

interface FillRow {
  account: string;
  client_order_id: string;
  ts: number;
  exchange: string;
  symbol: string;
  side: 'buy' | 'sell';
  quantity: number;
  vwap: number;
  notional: number;
  fee: number;
  slippage_bps: number;
  levels: number;
  partial: boolean;
  book_ts: number;
  book_age_ms: number;
  signal_id: string | null;
  principal: string;
}

const FILL_COLUMNS = `account, client_order_id, ts_to_ms(ts) AS ts, exchange, symbol, side, quantity, vwap, notional, fee,
  slippage_bps, levels, partial, ts_to_ms(book_ts) AS book_ts, book_age_ms, signal_id, principal`;

/**
 * The agents' kill switch, audit log and paper fills on PostgreSQL/TimescaleDB or PGlite (tables
 * of 0011_agents.sql). Fills of one account are booked under a row lock on the account, so two
 * orders at once cannot both spend the same cash; the client order id makes a retry a no-op.
 */
export class PostgresAgentStore implements AgentStore {
  constructor(private readonly db: SqlClient) {}

  async killSwitch(): Promise<KillSwitchState> {
    const { rows } = await this.db.query<ControlRow>(
      `SELECT engaged, reason, ts_to_ms(since) AS since, by_principal FROM agent_controls WHERE control = $1`,
      [KILL_SWITCH],
    );
    return controlOut(rows[0]);
  }

  async setKillSwitch(change: KillSwitchChange): Promise<KillSwitchState> {
    const { rows } = await this.db.query<ControlRow>(
      `INSERT INTO agent_controls (control, engaged, reason, since, by_principal)
       VALUES ($1, $2, $3, ms_to_ts($4::bigint), $5)
       ON CONFLICT (control) DO UPDATE SET
         engaged = EXCLUDED.engaged, reason = EXCLUDED.reason, since = EXCLUDED.since, by_principal = EXCLUDED.by_principal
       RETURNING engaged, reason, ts_to_ms(since) AS since, by_principal`,
      [KILL_SWITCH, change.engaged, cleanText(change.reason), Math.floor(change.ts), cleanText(change.by)],
    );
    return controlOut(rows[0]);
  }

  async appendAudit(entry: NewAuditEntry): Promise<{ id: string; ts: number }> {
    const ts = Math.floor(entry.ts);
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO agent_audit (ts, principal, run_id, agent, kind, exchange, symbol, summary, inputs, output)
       VALUES (ms_to_ts($1::bigint), $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb)
       RETURNING id::text AS id`,
      [
        ts,
        cleanText(entry.principal),
        cleanText(entry.runId),
        cleanText(entry.agent),
        cleanText(entry.kind),
        entry.market ? cleanText(entry.market.exchange) : null,
        entry.market ? cleanText(entry.market.symbol) : null,
        cleanText(entry.summary),
        boundedJson(entry.inputs),
        boundedJson(entry.output),
      ],
    );
    return { id: rows[0]!.id, ts };
  }

  async queryAudit(q: AuditQuery): Promise<readonly AuditEntry[]> {
    const params: unknown[] = [];
    const where: string[] = [];
    const bind = (value: unknown) => `$${params.push(value)}`;
    if (q.runId !== undefined) where.push(`run_id = ${bind(q.runId)}`);
    if (q.agent !== undefined) where.push(`agent = ${bind(q.agent)}`);
    if (q.kind !== undefined) where.push(`kind = ${bind(q.kind)}`);
    if (q.exchange !== undefined) where.push(`exchange = ${bind(q.exchange)}`);
    if (q.symbol !== undefined) where.push(`symbol = ${bind(q.symbol)}`);
    if (q.since !== undefined) where.push(`ts >= ms_to_ts(${bind(Math.floor(q.since))}::bigint)`);
    if (q.until !== undefined) where.push(`ts < ms_to_ts(${bind(Math.floor(q.until))}::bigint)`);
    if (q.before) where.push(`(ts, id) < (ms_to_ts(${bind(Math.floor(q.before.ts))}::bigint), ${bind(q.before.id)}::bigint)`);
    const { rows } = await this.db.query<AuditRow>(
      `SELECT id::text AS id, ts_to_ms(ts) AS ts, principal, run_id, agent, kind, exchange, symbol, summary, inputs, output
       FROM agent_audit ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY ts DESC, id DESC LIMIT ${bind(q.limit)}::int`,
      params,
    );
    return rows.map((r) => ({
      id: r.id,
      ts: Number(r.ts),
      principal: r.principal,
      runId: r.run_id,
      agent: r.agent,
      kind: r.kind,
      market: r.exchange !== null && r.symbol !== null ? { exchange: r.exchange, symbol: r.symbol } : null,
      summary: r.summary,
      inputs: r.inputs,
      output: r.output,
    }));
  }

  async account(account: string): Promise<PaperAccount | null> {
    return readAccount(this.db, account);
  }

  async fills(account: string): Promise<readonly PaperFillRecord[]> {
    return readFills(this.db, account);
  }

  async fill(account: string, clientOrderId: string): Promise<PaperFillRecord | null> {
    const { rows } = await this.db.query<FillRow>(
      `SELECT ${FILL_COLUMNS} FROM paper_fills WHERE account = $1 AND client_order_id = $2`,
      [account, clientOrderId],
    );
    return rows[0] ? fillOut(rows[0]) : null;
  }

  async bookFill(
    booking: FillBooking,
    decide: (account: PaperAccount, fills: readonly PaperFillRecord[]) => Omit<PaperFillRecord, 'account' | 'clientOrderId'>,
  ): Promise<{ fill: PaperFillRecord; account: PaperAccount; duplicate: boolean }> {
    return this.db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO paper_accounts (account, initial_cash, created_ts) VALUES ($1, $2, ms_to_ts($3::bigint))
         ON CONFLICT (account) DO NOTHING`,
        [booking.account, booking.initialCash, Math.floor(booking.ts)],
      );
      // the lock serializes orders of one account: the cash check below sees every earlier fill
      const account = await readAccount(tx, booking.account, true);
      if (!account) throw new Error(`paper account ${booking.account} vanished while booking`);
      const fills = await readFills(tx, booking.account);
      const existing = fills.find((f) => f.clientOrderId === booking.clientOrderId);
      if (existing) return { fill: existing, account, duplicate: true };
      const f = decide(account, fills);
      const { rows } = await tx.query<FillRow>(
        `INSERT INTO paper_fills (account, client_order_id, ts, exchange, symbol, side, quantity, vwap, notional, fee,
           slippage_bps, levels, partial, book_ts, book_age_ms, signal_id, principal)
         VALUES ($1, $2, ms_to_ts($3::bigint), $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, ms_to_ts($14::bigint), $15, $16, $17)
         RETURNING ${FILL_COLUMNS}`,
        [
          booking.account,
          booking.clientOrderId,
          Math.floor(f.ts),
          f.exchange,
          f.symbol,
          f.side,
          f.quantity,
          f.vwap,
          f.notional,
          f.fee,
          f.slippageBps,
          f.levels,
          f.partial,
          Math.floor(f.bookTs),
          f.bookAgeMs,
          f.signalId === null ? null : cleanText(f.signalId),
          cleanText(f.principal),
        ],
      );
      return { fill: fillOut(rows[0]!), account, duplicate: false };
    });
  }
}

async function readAccount(db: SqlExecutor, account: string, lock = false): Promise<PaperAccount | null> {
  const { rows } = await db.query<AccountRow>(
    `SELECT account, initial_cash, ts_to_ms(created_ts) AS created_ts FROM paper_accounts WHERE account = $1${lock ? ' FOR UPDATE' : ''}`,
    [account],
  );
  const r = rows[0];
  return r ? { account: r.account, initialCash: Number(r.initial_cash), createdTs: Number(r.created_ts) } : null;
}

async function readFills(db: SqlExecutor, account: string): Promise<PaperFillRecord[]> {
  const { rows } = await db.query<FillRow>(`SELECT ${FILL_COLUMNS} FROM paper_fills WHERE account = $1 ORDER BY seq`, [account]);
  return rows.map(fillOut);
}

function fillOut(r: FillRow): PaperFillRecord {
  return {
    account: r.account,
    clientOrderId: r.client_order_id,
    ts: Number(r.ts),
    exchange: r.exchange,
    symbol: r.symbol,
    side: r.side,
    quantity: Number(r.quantity),
    vwap: Number(r.vwap),
    notional: Number(r.notional),
    fee: Number(r.fee),
    slippageBps: Number(r.slippage_bps),
    levels: Number(r.levels),
    partial: r.partial,
    bookTs: Number(r.book_ts),
    bookAgeMs: Number(r.book_age_ms),
    signalId: r.signal_id,
    principal: r.principal,
  };
}

function controlOut(r: ControlRow | undefined): KillSwitchState {
  if (!r) return { engaged: false, reason: null, since: null, by: null };
  return { engaged: r.engaged, reason: r.reason, since: r.since === null ? null : Number(r.since), by: r.by_principal };
}

/** Lone UTF-16 surrogates: PostgreSQL text and jsonb refuse them, as they refuse U+0000. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Text as PostgreSQL can store it: U+0000 and lone surrogates become U+FFFD. Everything else,
 * quotes and SQL included, is kept verbatim (every value is a bound parameter).
 */
export function cleanText(text: string): string {
  return text.replaceAll('\u0000', '\uFFFD').replace(LONE_SURROGATE, '\uFFFD');
}

/** A JSON value with every string and key cleaned; undefined, functions and the like dropped as JSON drops them. */
function cleanJson(value: unknown): unknown {
  if (typeof value === 'string') return cleanText(value);
  if (Array.isArray(value)) return value.map((v) => (v === undefined || typeof v === 'function' ? null : cleanJson(v)));
  if (value !== null && typeof value === 'object') {
    const source = typeof (value as { toJSON?: unknown }).toJSON === 'function' ? (value as { toJSON: () => unknown }).toJSON() : value;
    if (source !== value) return cleanJson(source);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined && typeof v !== 'function') out[cleanText(k)] = cleanJson(v);
    return out;
  }
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'bigint') return value.toString();
  return value === undefined ? null : value;
}

const bytes = (json: string) => Buffer.byteLength(json, 'utf8');

/** What a cut value is replaced with: that it was cut, how big it was, and its start. */
function cutMarker(json: string): { truncated: true; originalBytes: number; preview: string } {
  return { truncated: true, originalBytes: bytes(json), preview: cleanText(json.slice(0, PREVIEW_CHARS)) };
}

/** A tool call record (or any element) made small: its result cut first, then its arguments, else the whole element. */
function shrink(element: unknown): unknown {
  if (element === null || typeof element !== 'object' || Array.isArray(element)) return cutMarker(JSON.stringify(element));
  const record = { ...(element as Record<string, unknown>) };
  for (const key of ['result', 'args']) {
    if (key in record) record[key] = cutMarker(JSON.stringify(record[key]) ?? 'null');
    if (bytes(JSON.stringify(record)) <= SMALL_RECORD_BYTES) return record;
  }
  return cutMarker(JSON.stringify(element));
}

/**
 * `value` as JSON text of at most `max` bytes. An array (the tool calls of a decision) loses the
 * largest elements' results first, then whole elements from its end, with a last element saying
 * how many were left out; any other value too large becomes a marker with its size and start.
 */
export function boundedJson(value: unknown, max: number = AUDIT_JSON_MAX_BYTES): string {
  const clean = cleanJson(value);
  const json = JSON.stringify(clean) ?? 'null';
  if (bytes(json) <= max) return json;
  if (Array.isArray(clean)) {
    const items = [...clean];
    const sizes = items.map((x) => bytes(JSON.stringify(x)));
    let total = bytes(json);
    const largestFirst = sizes.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0]);
    for (const [size, i] of largestFirst) {
      if (total <= max) break;
      items[i] = shrink(items[i]);
      const smaller = bytes(JSON.stringify(items[i]));
      total -= size - smaller;
    }
    if (total <= max) return JSON.stringify(items);
    // still too many: keep the first elements that fit, and say how many were left out
    const kept: unknown[] = [];
    let used = 2;
    const room = max - 200;
    for (const item of items) {
      const size = bytes(JSON.stringify(item)) + 1;
      if (used + size > room) break;
      kept.push(item);
      used += size;
    }
    kept.push({ truncated: true, omittedElements: items.length - kept.length, originalBytes: bytes(json) });
    return JSON.stringify(kept);
  }
  return JSON.stringify(cutMarker(json));
}
