/**
 * get_candles-style reads of the newest 1000 candles at 1m, 1h and 1d from a store holding a YEAR
 * of 1m candles for one symbol (525,600 rows), on PostgreSQL (DATABASE_URL; skipped when unset) and
 * on PGlite (embedded). Per op latency, p50/p95/max, goal p95 < 50 ms.
 *
 * Load: one fresh database per backend per run; the minutes are generated server-side
 * (INSERT ... SELECT FROM generate_series, 50k rows per statement) as source 'exchange' candles,
 * then one candle goes through PostgresMarketStore.writeEvents so the feeds table knows the
 * market (the query service refuses unknown markets), then ANALYZE. The load time is printed.
 *
 * Cases, interleaved round by round so a busy moment of the machine hits all of them:
 * - [reference] SELECT 1 (a round trip) and the newest 1000 1m rows by primary key (no rollup),
 * - PostgresMarketStore.candles({ newestFirst, limit 1000 }) per timeframe,
 * - MarketQueryService.getCandles({ limit 1000 }) per timeframe (what the MCP tool calls),
 * - "bounded": the store read with since = newest - 1000 x timeframe, the cheapest fix proposed
 *   (the query service knows the newest candle from the feeds table), to show what it would buy.
 * Then EXPLAIN (ANALYZE, BUFFERS) of the store's 1d read (the exact SQL, captured from the store).
 *
 * ClickHouse (CLICKHOUSE_URL; skipped when unset): a fresh database, the same year of 1m candles
 * loaded server-side (INSERT ... SELECT FROM numbers), the hourly/daily rollups built by the
 * writer's own statement, then the same cases (without the "bounded" ones: the store bounds
 * itself) against a primary-key range read of 1000 rows, and the rows each of the store's
 * statements read (system.query_log).
 *
 * The harness times synchronous ops only, so everything here runs at import time and is printed
 * to stderr; the harness entry is a placeholder (see bench/lib/latency.ts).
 *
 *   CANDLE_READS_PGLITE_DAYS=90   # a shorter history for PGlite (default: 365)
 *   CANDLE_READS_BACKENDS=clickhouse   # which parts run (default: postgres,clickhouse,pglite)
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
  type ClickHouseExecutor,
} from '../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql, type Sql } from '../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { openPglite } from '../layers/shared/src/adapters/stores/pglite-client.js';
import { runMigrations } from '../layers/shared/src/adapters/stores/migrations.js';
import { PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../layers/shared/src/adapters/stores/sql-client.js';
import { bucketStart, timeframeMs, type Timeframe } from '../layers/shared/src/domain/index.js';
import { MarketQueryService } from '../layers/shared/src/query/market-query.js';
import { systemClock } from '../layers/shared/src/ports/index.js';
import { createTestDatabase } from '../tests/support/databases.js';
import { figuresOnly, formatMs, latencySummary, printTable } from './lib/latency.js';
import { loadCandleHistory, loadClickHouseCandleHistory } from './support/candle-history.js';

const EXCHANGE = 'binance';
const SYMBOL = 'BTC/USDT';
const LIMIT = 1000;
const END = Date.UTC(2026, 0, 1);
const TIMEFRAMES: readonly Timeframe[] = ['1m', '1h', '1d'];
const ROUNDS = Number(process.env.CANDLE_READS_ROUNDS ?? 3);
/** per case per round: ops until this much time has passed (at least one op) */
const ROUND_MS = 250;
const GOAL_P95_MS = 50;

interface Captured {
  text: string;
  params: readonly unknown[];
}

/** The store's client, remembering the last statement (to EXPLAIN exactly what the store runs). */
function recording(db: SqlClient, last: { value: Captured | null }): SqlClient {
  return {
    driver: db.driver,
    query: (text, params = []) => {
      last.value = { text, params };
      return db.query(text, params);
    },
    exec: (script) => db.exec(script),
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  };
}

function load(db: SqlClient, minutes: number): Promise<number> {
  return loadCandleHistory(db, { exchange: EXCHANGE, symbol: SYMBOL, end: END, minutes });
}

interface Case {
  readonly name: string;
  readonly reference?: boolean;
  readonly timeframe?: Timeframe;
  readonly run: () => Promise<number>;
}

/** Runs the cases interleaved round by round and prints p50/p95/max with the ratio to the PK reference (case 1). */
async function measureCases(label: string, cases: readonly Case[], minutes: number, loadMs: number, notes: readonly string[]): Promise<void> {
  const counts = new Map(await Promise.all(cases.map(async (c) => [c.name, await c.run()] as const)));

  const samples = cases.map(() => [] as number[]);
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < cases.length; k++) {
      const i = (k + round) % cases.length;
      const end = performance.now() + ROUND_MS;
      do {
        const t0 = performance.now();
        await cases[i]!.run();
        samples[i]!.push(performance.now() - t0);
      } while (performance.now() < end);
    }
  }

  const refPk = latencySummary(samples[1]!);
  const rows = cases.map((c, i) => {
    const s = latencySummary(samples[i]!);
    const goal = c.reference ? '' : s.p95 < GOAL_P95_MS ? 'met' : 'NOT met';
    return [
      c.reference ? `${c.name} [reference]` : c.name,
      String(counts.get(c.name)),
      String(s.count),
      formatMs(s.p50),
      formatMs(s.p95),
      formatMs(s.max),
      c.reference ? '' : `${(s.p50 / refPk.p50).toFixed(1)}x`,
      goal,
    ];
  });
  printTable(
    `candle-reads - ${label}: newest ${LIMIT} candles, ${minutes.toLocaleString('en')} 1m rows of one symbol (loaded in ${(loadMs / 1000).toFixed(1)} s), latency per op (ms)`,
    ['case', 'rows', 'ops', 'p50', 'p95', 'max', 'p50 / PK read', `p95 < ${GOAL_P95_MS} ms`],
    rows,
    [
      `${ROUNDS} rounds, cases interleaved in rotated order, ~${ROUND_MS} ms (at least one op) per case per round`,
      `1d returns ${counts.get('store.candles 1d')} candles: the history holds ${Math.ceil(minutes / 1440)} days`,
      ...notes,
    ],
  );
}

async function measureBackend(label: string, db: SqlClient, minutes: number): Promise<void> {
  process.stderr.write(`candle-reads: ${label}: loading ${minutes.toLocaleString('en')} 1m candles...\n`);
  const loadMs = await load(db, minutes);
  const last: { value: Captured | null } = { value: null };
  const store = new PostgresMarketStore(recording(db, last));
  // one candle through the writer: registers the market in feeds (same values as the loaded row)
  const lastTs = END - 60_000;
  const [row] = (
    await db.query<{ open: number; high: number; low: number; close: number; volume: number }>(
      `SELECT open, high, low, close, volume FROM candles WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m' AND ts = ms_to_ts($3::bigint)`,
      [EXCHANGE, SYMBOL, lastTs],
    )
  ).rows;
  await store.writeEvents([{ type: 'candle', exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1m', ts: lastTs, ...row!, closed: true, source: 'exchange' }]);
  const query = new MarketQueryService(store, systemClock);
  const sizeMs = { '1m': 60_000, '1h': 3_600_000, '1d': 86_400_000 } as Record<string, number>;

  const cases: Case[] = [
    { name: 'SELECT 1', reference: true, run: async () => (await db.query('SELECT 1 AS one')).rows.length },
    {
      name: 'newest 1000 1m rows by primary key (no rollup)',
      reference: true,
      run: async () =>
        (
          await db.query(
            `SELECT ts, open, high, low, close, volume FROM candles WHERE exchange = $1 AND symbol = $2 AND timeframe = '1m'
             ORDER BY ts DESC LIMIT ${LIMIT}`,
            [EXCHANGE, SYMBOL],
          )
        ).rows.length,
    },
    ...TIMEFRAMES.map((timeframe): Case => ({
      name: `store.candles ${timeframe}`,
      timeframe,
      run: async () => (await store.candles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe, newestFirst: true, limit: LIMIT })).length,
    })),
    ...TIMEFRAMES.map((timeframe): Case => ({
      name: `getCandles ${timeframe}`,
      timeframe,
      run: async () => (await query.getCandles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe, limit: LIMIT })).candles.length,
    })),
    ...TIMEFRAMES.map((timeframe): Case => ({
      name: `store.candles ${timeframe}, bounded (proposal)`,
      timeframe,
      run: async () =>
        (
          await store.candles({
            exchange: EXCHANGE,
            symbol: SYMBOL,
            timeframe,
            since: END - LIMIT * sizeMs[timeframe]!,
            newestFirst: true,
            limit: LIMIT,
          })
        ).length,
    })),
  ];

  // correctness: same rows with and without the bound, and the expected counts
  for (const timeframe of TIMEFRAMES) {
    const q = { exchange: EXCHANGE, symbol: SYMBOL, timeframe, newestFirst: true, limit: LIMIT } as const;
    const a = await store.candles(q);
    const b = await store.candles({ ...q, since: END - LIMIT * sizeMs[timeframe]! });
    const expected = Math.min(LIMIT, Math.ceil((minutes * 60_000) / sizeMs[timeframe]!));
    if (a.length !== expected && a.length !== expected + 1) throw new Error(`${label} ${timeframe}: ${a.length} candles, expected ~${expected}`);
    if (JSON.stringify(a.slice(0, b.length)) !== JSON.stringify(b)) throw new Error(`${label} ${timeframe}: the bounded read differs`);
  }
  await measureCases(label, cases, minutes, loadMs, [
    'getCandles asks the store for limit + 1 rows and lists the feeds first (one more query)',
    "bounded: since = newest - 1000 x timeframe; the store's minute CTE then reads only the needed range",
  ]);

  // EXPLAIN the store's own 1d statement
  await store.candles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1d', newestFirst: true, limit: LIMIT });
  const captured = last.value!;
  const plan = await db.query<Record<string, string>>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${captured.text}`, captured.params);
  const lines = plan.rows.map((r) => Object.values(r)[0]!);
  const keep = lines.filter((l) => /Limit|Sort|Aggregate|Unique|Scan|Execution Time|Planning Time|Buffers: shared|Memory|Disk/.test(l));
  process.stderr.write(`candle-reads - ${label}: EXPLAIN ANALYZE of store.candles 1d (highlights)\n${keep.map((l) => `  ${l}`).join('\n')}\n\n`);
}

/** The ClickHouse executor, remembering the last statement (to look its read_rows up in system.query_log). */
function recordingCh(ch: ClickHouseExecutor, last: { value: Sql | null }): ClickHouseExecutor {
  return {
    query: (statement) => {
      last.value = statement;
      return ch.query(statement);
    },
    command: (statement) => ch.command(statement),
    insert: (into, rows) => ch.insert(into, rows),
    insertRowBinary: (into, columns, body, rows) => ch.insertRowBinary(into, columns, body, rows),
    close: () => ch.close(),
  };
}

async function measureClickHouse(url: string, minutes: number): Promise<void> {
  const database = `qicore_bench_${randomBytes(4).toString('hex')}`;
  await createClickHouseDatabase(url, database);
  const ch = openClickHouse(url, { database });
  // for system.query_log only: the local profile does not log queries
  const raw = createClient({ url, database, clickhouse_settings: { log_queries: 1 } });
  try {
    await runClickHouseMigrations(ch);
    const [version] = await ch.query<{ v: string }>(sql`SELECT version() AS v`);
    const label = `ClickHouse ${version?.v ?? '?'}`;
    process.stderr.write(`candle-reads: ${label}: loading ${minutes.toLocaleString('en')} 1m candles...\n`);
    const loadMs = await loadClickHouseCandleHistory(ch, { exchange: EXCHANGE, symbol: SYMBOL, end: END, minutes });
    const last: { value: Sql | null } = { value: null };
    const store = new ClickHouseMarketStore(recordingCh(ch, last));
    // one candle through the writer (the loaded row's values): registers the market in feeds
    const lastTs = END - 60_000;
    const [row] = await ch.query<{ open: number; high: number; low: number; close: number; volume: string }>(
      sql`SELECT open, high, low, close, toString(volume) AS volume FROM candles
          WHERE exchange = ${EXCHANGE} AND symbol = ${SYMBOL} AND timeframe = '1m' AND ts = ${lastTs}`,
    );
    await store.writeEvents([
      { type: 'candle', exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1m', ts: lastTs, ...row!, volume: Number(row!.volume), closed: true, source: 'exchange' },
    ]);
    const query = new MarketQueryService(store, systemClock);
    const cases: Case[] = [
      { name: 'SELECT 1', reference: true, run: async () => (await ch.query(sql`SELECT 1 AS one`)).length },
      {
        name: 'newest 1000 1m rows by primary key range (no dedup, no rollup)',
        reference: true,
        run: async () =>
          (
            await ch.query(
              sql`SELECT ts, open, high, low, close, volume FROM candles
                  WHERE exchange = ${EXCHANGE} AND symbol = ${SYMBOL} AND timeframe = '1m' AND ts >= ${END - LIMIT * 60_000}
                  ORDER BY ts DESC LIMIT ${LIMIT}`,
            )
          ).length,
      },
      ...TIMEFRAMES.map((timeframe): Case => ({
        name: `store.candles ${timeframe}`,
        timeframe,
        run: async () => (await store.candles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe, newestFirst: true, limit: LIMIT })).length,
      })),
      ...TIMEFRAMES.map((timeframe): Case => ({
        name: `getCandles ${timeframe}`,
        timeframe,
        run: async () => (await query.getCandles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe, limit: LIMIT })).candles.length,
      })),
    ];
    // correctness: the newest 1000, the newest candle first, and the same rows as an explicit range
    for (const timeframe of TIMEFRAMES) {
      const size = timeframeMs(timeframe);
      const q = { exchange: EXCHANGE, symbol: SYMBOL, timeframe, newestFirst: true, limit: LIMIT } as const;
      const got = await store.candles(q);
      const expected = Math.min(LIMIT, Math.ceil((minutes * 60_000) / size));
      if (got.length !== expected) throw new Error(`${label} ${timeframe}: ${got.length} candles, expected ${expected}`);
      if (got[0]!.ts !== bucketStart(lastTs, timeframe)) throw new Error(`${label} ${timeframe}: the newest candle is missing`);
      const all = await store.candles({ ...q, since: 0 });
      if (JSON.stringify(all) !== JSON.stringify(got)) throw new Error(`${label} ${timeframe}: the windowed read differs from the full one`);
    }
    await measureCases(label, cases, minutes, loadMs, [
      'store.candles (no since) looks the newest day up in the daily rollups, then reads a window of 1000 x timeframe back from it (one query more)',
      'getCandles lists the feeds, then asks the store with since = newest - 1001 x timeframe',
      '1h and 1d read candle_rollups (kept on write); 1m rolls up deduplicated minutes of the window',
    ]);

    // rows each read touches (system.query_log), the store's own statements re-run with logging on
    const lines: string[] = [];
    for (const timeframe of TIMEFRAMES) {
      await store.candles({ exchange: EXCHANGE, symbol: SYMBOL, timeframe, newestFirst: true, limit: LIMIT });
      const queryId = `candle-reads-${timeframe}-${randomBytes(4).toString('hex')}`;
      await (await raw.query({ query: last.value!.text, format: 'JSONEachRow', query_id: queryId })).json();
      // the log is written asynchronously: flush and look again a few times
      let logged: { read_rows: string; read_bytes: string; query_duration_ms: string }[] = [];
      for (let attempt = 0; attempt < 10 && logged.length === 0; attempt++) {
        await raw.command({ query: 'SYSTEM FLUSH LOGS' });
        logged = await (
          await raw.query({
            query: sql`SELECT read_rows, read_bytes, query_duration_ms FROM system.query_log
                       WHERE query_id = ${queryId} AND type = 2`.text, // 18.16: UInt8, 2 = QueryFinish
            format: 'JSONEachRow',
          })
        ).json<{ read_rows: string; read_bytes: string; query_duration_ms: string }>();
        if (logged.length === 0) await new Promise((r) => setTimeout(r, 200));
      }
      const l = logged[0];
      lines.push(`  store.candles ${timeframe}: main statement read ${l?.read_rows ?? '?'} rows (${l?.read_bytes ?? '?'} bytes) in ${l?.query_duration_ms ?? '?'} ms`);
    }
    process.stderr.write(`candle-reads - ${label}: rows read per statement (system.query_log)\n${lines.join('\n')}\n\n`);
  } finally {
    await raw.close();
    await ch.close();
    await dropClickHouseDatabase(url, database);
  }
}

const BACKENDS = new Set((process.env.CANDLE_READS_BACKENDS ?? 'postgres,clickhouse,pglite').split(',').map((b) => b.trim()));
const url = process.env.DATABASE_URL?.trim();
if (!BACKENDS.has('postgres')) {
  process.stderr.write('candle-reads: PostgreSQL part skipped: not in CANDLE_READS_BACKENDS\n');
} else if (url) {
  const database = await createTestDatabase('postgres', url);
  try {
    const [version] = (await database.db.query<{ v: string }>(`SELECT split_part(version(), ' ', 2) AS v`)).rows;
    await measureBackend(`PostgreSQL ${version?.v ?? '?'}`, database.db, 365 * 1440);
  } finally {
    await database.dispose();
  }
} else {
  process.stderr.write('candle-reads: PostgreSQL part skipped: DATABASE_URL not set (bash local/services/services.sh start postgres && . /tmp/qicore-services/env)\n');
}

const clickhouseUrl = process.env.CLICKHOUSE_URL?.trim();
if (!BACKENDS.has('clickhouse')) {
  process.stderr.write('candle-reads: ClickHouse part skipped: not in CANDLE_READS_BACKENDS\n');
} else if (clickhouseUrl) {
  await measureClickHouse(clickhouseUrl, 365 * 1440);
} else {
  process.stderr.write('candle-reads: ClickHouse part skipped: CLICKHOUSE_URL not set (bash local/services/services.sh start clickhouse && . /tmp/qicore-services/env)\n');
}

const pgliteDays = Number(process.env.CANDLE_READS_PGLITE_DAYS ?? 365);
if (BACKENDS.has('pglite')) {
  const pglite = await openPglite();
  try {
    await runMigrations(pglite);
    await measureBackend(`PGlite (in-process)${pgliteDays === 365 ? '' : `, ${pgliteDays} days only`}`, pglite, pgliteDays * 1440);
  } finally {
    await pglite.close();
  }
} else {
  process.stderr.write('candle-reads: PGlite part skipped: not in CANDLE_READS_BACKENDS\n');
}

export default figuresOnly('candle-reads', 'newest 1000 candles at 1m/1h/1d from a year of 1m rows: figures on stderr above');
