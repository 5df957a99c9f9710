/**
 * The ClickHouse writer against a raw insert of the same rows into the same kind of table, and the
 * candle refresher against the inline rebuild it replaces.
 *
 * Three parts, because the harness (bench/lib/measure.ts) times synchronous functions only:
 *
 * 1. Writer I/O, measured here at import time when CLICKHOUSE_URL is set (skipped with a message
 *    otherwise), printed to stderr in the harness's table format: per op one batch of N trades
 *    (fresh ids and minutes every op; N = 1000, then 10000), as
 *    - reference: `@clickhouse/client` insert, JSONEachRow, plain rows straight into `trades`
 *      (no views: the writer's views read trades_ingest);
 *    - the writer's trades request alone: its RowBinary body (encodeTrades) into the same table,
 *      i.e. what the writer's encoding and transport cost against the reference's;
 *    - ClickHouseMarketStore.writeEvents with `candles: 'refresher'`, as the Lambda writer runs:
 *      one insert into trades_ingest, whose views store the rows and mark their minutes with their
 *      feed figures (2 parts, 1 request); goal >= 0.8 at 10000 rows per batch (GOAL_BATCH: a
 *      production batch), printed without goal at 1000;
 *    - the same with `candles: 'inline'` (the default, and the only mode before issue #4): that
 *      insert, then the exact rebuild of the touched 1m candles, then hours/days and feed figures.
 * 2. Refresher I/O, per refreshed minute: K batches (CLICKHOUSE_REFRESH_BATCHES, default 4) of
 *    fresh minutes are written (untimed), then rebuilt, as
 *    - reference: the inline rebuild, batch by batch (rebuildMinutes: 1m from the deduplicated
 *      trades, then hours and days), what every inline write pays after its insert;
 *    - refreshCandles once for all K batches (watermark and marks read, chunked rebuild,
 *      watermark saved, old marks dropped). Its overlap is set to 0 here: live, the marks it
 *      re-reads are the minutes still being traded, already in the next window; in this bench
 *      every op's minutes are new, so re-reading them would count the same minutes twice.
 *    Rounds run the cases in rotated order on fresh databases, so ratios are paired.
 * 3. CPU, through the harness: building the writer's trades body (RowBinary) against
 *    JSON.stringify of the raw rows (what the reference's client builds), the client-side share.
 *
 *   . /tmp/qicore-services/env && npm run bench -- clickhouse-writer
 *   CLICKHOUSE_WRITER_BATCH=10000 CLICKHOUSE_WRITER_ROUNDS=15 ...   # batch sizes (default 1000,10000), rounds (9)
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
  type ClickHouseExecutor,
} from '../layers/shared/src/adapters/stores/clickhouse-client.js';
import { marketMinutesOf, rebuildMinutes, refreshCandles } from '../layers/shared/src/adapters/stores/clickhouse-candle-refresh.js';
import { ClickHouseMarketStore, TRADE_COLUMNS, encodeTrades } from '../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql } from '../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { Trade } from '../layers/shared/src/domain/index.js';
import { defineBench, type BenchSamples, type CaseSamples } from './lib/measure.js';
import { formatBench, summarize } from './lib/report.js';

/** batch sizes measured: 1000, and 10000 as the deployed writer gets them under load (see GOAL_BATCH) */
const BATCHES = (process.env.CLICKHOUSE_WRITER_BATCH ?? '1000,10000').split(',').map(Number);
const N = BATCHES[0]!;
/**
 * The goal is judged at a production batch: the prod stage's event source hands the writer up to
 * 1000 Kinesis records a call, each holding tens of one market's events (bench kinesis-records),
 * and ClickHouse itself asks for inserts of 10k rows or more. At 1000 rows a part's fixed cost
 * (one more part per batch for the minute marks) weighs more: that figure is printed too.
 */
const GOAL_BATCH = 10_000;
const ROUNDS = Number(process.env.CLICKHOUSE_WRITER_ROUNDS ?? 9);
const REFRESH_BATCHES = Number(process.env.CLICKHOUSE_REFRESH_BATCHES ?? 4);
const OPS_PER_ROUND = 4;
const T0 = Date.UTC(2026, 0, 5);
/** every batch covers 2 minutes of 4 markets */
const MINUTES_PER_BATCH = 8;

let op = 0;
/** A batch of N trades of 4 markets over 2 minutes; every call gets new ids and new minutes. */
function tradeBatch(n = N): Trade[] {
  const base = T0 + op * 180_000;
  const batch: Trade[] = [];
  for (let i = 0; i < n; i++) {
    const ts = base + Math.floor((i * 120_000) / n);
    batch.push({
      type: 'trade',
      exchange: 'binance',
      symbol: ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT'][i % 4]!,
      id: String(op * n + i),
      ts,
      localTs: ts + 7,
      price: Number((60_000 + Math.sin(op + i) * 500).toFixed(2)),
      amount: Number((0.0001 + ((i * 7919) % 1000) / 997).toFixed(8)),
      side: i % 2 ? 'buy' : 'sell',
    });
  }
  op += 1;
  return batch;
}

/** What the reference sends: the table's own columns, floats as JSON numbers. */
const rawRows = (batch: readonly Trade[]) =>
  batch.map((t) => ({
    exchange: t.exchange,
    symbol: t.symbol,
    ts: t.ts,
    trade_id: t.id,
    price: t.price,
    amount: t.amount,
    side: t.side,
    local_ts: t.localTs,
    amount_dec: t.amount,
  }));

interface IoCase {
  readonly name: string;
  /** one op; resolves to the ns it took (a case may do untimed set-up first) */
  readonly run: () => Promise<number>;
  readonly goal?: { minRatio: number };
  readonly note?: string;
}

const timed = async (work: () => Promise<unknown>): Promise<number> => {
  const t0 = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - t0);
};

/** Runs the cases round by round in rotated order; per case the mean ns per op of each round. */
async function measureRounds(cases: readonly IoCase[]): Promise<number[][]> {
  const samples: number[][] = cases.map(() => []);
  for (let w = 0; w < 2; w++) for (const c of cases) await c.run();
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < cases.length; k++) {
      const index = (k + round) % cases.length;
      let ns = 0;
      for (let i = 0; i < OPS_PER_ROUND; i++) ns += await cases[index]!.run();
      samples[index]!.push(ns / OPS_PER_ROUND);
    }
  }
  return samples;
}

function printBench(name: string, title: string, unit: string, unitsPerOp: number, cases: readonly IoCase[], samples: number[][]): void {
  const bench: BenchSamples = {
    name,
    title,
    unit,
    unitsPerOp,
    options: { rounds: ROUNDS, roundMs: 0, warmupMs: 0 },
    gcExposed: false,
    cases: cases.map(
      (c, i): CaseSamples => ({
        name: c.name,
        isReference: i === 0,
        ...(c.goal ? { goal: c.goal } : {}),
        ...(c.note ? { note: c.note } : {}),
        opsPerRound: OPS_PER_ROUND,
        nsPerOp: samples[i]!,
        heapDelta: [],
      }),
    ),
  };
  process.stderr.write(`${formatBench(summarize(bench))}\n`);
}

/** Trades counted in the 1m candles (newest version per minute) against distinct trades stored in those minutes: equal when every minute is exact. */
async function candleCheck(ch: ClickHouseExecutor): Promise<string> {
  const [row] = await ch.query<{ trades: string; counted: string; minutes: string }>(
    sql`SELECT (SELECT uniqExact(exchange, symbol, ts, trade_id) FROM trades
                WHERE (toString(exchange), toString(symbol), intDiv(ts, 60000) * 60000) IN
                      (SELECT toString(exchange), toString(symbol), ts FROM candles WHERE timeframe = '1m' AND source = 'trades')) AS trades,
               (SELECT sum(n) FROM (SELECT argMax(trades, version) AS n FROM candles
                                    WHERE timeframe = '1m' AND source = 'trades' GROUP BY exchange, symbol, ts)) AS counted,
               (SELECT uniqExact(exchange, symbol, ts) FROM candles WHERE timeframe = '1m' AND source = 'trades') AS minutes`,
  );
  return `${row?.trades} distinct trades stored in the minutes of ${row?.minutes} 1m candles, ${row?.counted} counted by them${row?.trades === row?.counted ? ' (exact)' : ' (NOT EXACT)'}`;
}

async function withDatabase<T>(url: string, fn: (ch: ClickHouseExecutor, database: string) => Promise<T>): Promise<T> {
  const database = `qicore_bench_${randomBytes(4).toString('hex')}`;
  await createClickHouseDatabase(url, database);
  const ch = openClickHouse(url, { database });
  try {
    await runClickHouseMigrations(ch);
    return await fn(ch, database);
  } finally {
    await ch.close();
    await dropClickHouseDatabase(url, database);
  }
}

async function measureWriter(url: string, n: number): Promise<void> {
  await withDatabase(url, async (ch, database) => {
    {
      const raw = createClient({ url, database });
      try {
        const deferred = new ClickHouseMarketStore(ch, { candles: 'refresher' });
        const inline = new ClickHouseMarketStore(ch, { candles: 'inline' });
        const cases: IoCase[] = [
          {
            name: 'raw insert: @clickhouse/client JSONEachRow into trades',
            run: () => {
              const b = tradeBatch(n);
              return timed(() => raw.insert({ table: 'trades', values: rawRows(b), format: 'JSONEachRow' }));
            },
          },
          {
            name: "writer's trades request alone: RowBinary into trades",
            run: () => {
              const b = tradeBatch(n);
              return timed(() => ch.insertRowBinary('trades', TRADE_COLUMNS, encodeTrades(b), b.length));
            },
          },
          {
            name: "writeEvents, candles: 'refresher' (1 insert: trades + minute marks)",
            run: () => {
              const b = tradeBatch(n);
              return timed(() => deferred.writeEvents(b));
            },
            ...(n >= GOAL_BATCH && { goal: { minRatio: 0.8 } }),
            note:
              'trades and their minute marks (with feed figures) in one request, 2 parts; candles follow within one refresh interval (reads of marked minutes rebuild them first)' +
              (n < GOAL_BATCH ? `; goal judged at ${GOAL_BATCH} rows per batch (a production batch), not here` : ''),
          },
          {
            name: "writeEvents, candles: 'inline' (+ 1m rebuild, rollups, feeds)",
            run: () => {
              const b = tradeBatch(n);
              return timed(() => inline.writeEvents(b));
            },
            note: 'the writer before issue #4 (still the default): exact candles on return, 3 round trips and 4 parts per batch',
          },
        ];
        const samples = await measureRounds(cases);
        const [version] = await ch.query<{ v: string }>(sql`SELECT version() AS v`);
        printBench('clickhouse-writer-io', `${n} trades per batch into ClickHouse ${version?.v ?? '?'} (fresh ids and minutes each op)`, 'row', N, cases, samples);
        await refreshCandles(ch);
        process.stderr.write(`  after the run and one refresh: ${await candleCheck(ch)}\n\n`);
      } finally {
        await raw.close();
      }
    }
  });
}

async function measureRefresher(url: string): Promise<void> {
  await withDatabase(url, async (ch) => {
    const deferred = new ClickHouseMarketStore(ch, { candles: 'refresher' });
    let refreshed = 0;
    const cases: IoCase[] = [
      {
        name: 'inline rebuild, batch by batch (rebuildMinutes after each insert)',
        run: async () => {
          // written without marks, as the inline writer's insert
          const batches = Array.from({ length: REFRESH_BATCHES }, () => tradeBatch());
          for (const b of batches) await ch.insertRowBinary('trades', TRADE_COLUMNS, encodeTrades(b), b.length);
          return timed(async () => {
            for (const b of batches) await rebuildMinutes(ch, marketMinutesOf(b));
          });
        },
      },
      {
        name: `refreshCandles, once for ${REFRESH_BATCHES} batches`,
        run: async () => {
          for (let i = 0; i < REFRESH_BATCHES; i++) await deferred.writeEvents(tradeBatch());
          return timed(async () => {
            refreshed += (await refreshCandles(ch, { overlapSeconds: 0 })).minutes;
          });
        },
        note: 'overlap 0 (see the header); a live run also re-reads the marks of its last 30 s',
      },
    ];
    const samples = await measureRounds(cases);
    const minutesPerOp = REFRESH_BATCHES * MINUTES_PER_BATCH;
    printBench(
      'clickhouse-refresher-io',
      `rebuilding 1m candles, hours and days of ${REFRESH_BATCHES} batches x ${MINUTES_PER_BATCH} minutes (${N} trades a batch)`,
      'minute',
      minutesPerOp,
      cases,
      samples,
    );
    process.stderr.write(`  the refresher rebuilt ${refreshed} (market, minute) marks in all; after the run: ${await candleCheck(ch)}\n\n`);
  });
}

const url = process.env.CLICKHOUSE_URL;
if (url) {
  for (const n of BATCHES) await measureWriter(url, n);
  await measureRefresher(url);
} else {
  process.stderr.write('clickhouse-writer: I/O part skipped: CLICKHOUSE_URL is not set (bash local/services/services.sh start clickhouse && . /tmp/qicore-services/env)\n');
}

const cpuBatch = tradeBatch();

export default defineBench({
  name: 'clickhouse-writer-rows',
  title: `building the insert body of ${N} trades (client-side CPU of one insert)`,
  unit: 'row',
  unitsPerOp: N,
  reference: { name: 'JSON of the raw rows (floats as numbers)', fn: () => rawRows(cpuBatch).map((r) => JSON.stringify(r)).join('\n') },
  cases: [
    {
      name: "the writer's RowBinary body (IEEE 754 bytes, Decimal128)",
      fn: () => encodeTrades(cpuBatch),
      goal: { minRatio: 0.5 },
      note: 'binary doubles are exact on every version, where 18.16 parses text floats inexactly (see sql/clickhouse/0001_core.sql)',
    },
  ],
  check() {
    // first row: exchange, symbol (1-byte lengths), ts, trade_id, then the price's 8 bytes
    const body = Buffer.from(encodeTrades(cpuBatch.slice(0, 1)));
    const t = cpuBatch[0]!;
    const priceAt = 1 + t.exchange.length + 1 + t.symbol.length + 8 + 1 + t.id.length;
    if (body.readDoubleLE(priceAt) !== t.price) throw new Error('the RowBinary price does not read back');
  },
});
