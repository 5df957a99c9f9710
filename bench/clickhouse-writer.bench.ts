/**
 * The ClickHouse writer against a raw insert of the same rows into the same table.
 *
 * Two parts, because the harness (bench/lib/measure.ts) times synchronous functions only:
 *
 * 1. I/O, measured here at import time when CLICKHOUSE_URL is set (skipped with a message
 *    otherwise), printed to stderr in the harness's table format: per op one batch of N trades
 *    (fresh ids and minutes every op), as
 *    - reference: `@clickhouse/client` insert, JSONEachRow, plain rows straight into `trades`;
 *    - case: ClickHouseMarketStore.writeEvents (rows into trades_in + view, 1m candles rebuilt from
 *      the deduplicated trades of the touched minutes, feed figures), goal >= 0.8.
 *    Rounds alternate the two in rotated order on a fresh database, so ratios are paired.
 * 2. CPU, through the harness: building the writer's rows (hex floats, decimal text) against
 *    JSON.stringify of the raw rows, i.e. the client-side share of the cost.
 *
 *   CLICKHOUSE_URL=http://127.0.0.1:58123 npm run bench -- --filter=clickhouse
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
} from '../layers/shared/src/adapters/stores/clickhouse-client.js';
import { decimalText, float64Hex } from '../layers/shared/src/adapters/stores/clickhouse-encoding.js';
import { ClickHouseMarketStore } from '../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql } from '../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { Trade } from '../layers/shared/src/domain/index.js';
import { defineBench, type BenchSamples, type CaseSamples } from './lib/measure.js';
import { formatBench, summarize } from './lib/report.js';

const N = 1000;
const ROUNDS = 9;
const OPS_PER_ROUND = 4;
const T0 = Date.UTC(2026, 0, 5);

let op = 0;
/** A batch of N trades of 4 markets over ~2 minutes; every call gets new ids and new minutes. */
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

/** What the writer sends for the same trades (as ClickHouseMarketStore builds them). */
const writerRows = (batch: readonly Trade[]) =>
  batch.map((t) => ({
    exchange: t.exchange,
    symbol: t.symbol,
    ts: t.ts,
    trade_id: t.id,
    price: float64Hex(t.price),
    amount: float64Hex(t.amount),
    side: t.side,
    local_ts: t.localTs,
    amount_dec: decimalText(t.amount),
  }));

async function measureIo(url: string): Promise<void> {
  const database = `qicore_bench_${randomBytes(4).toString('hex')}`;
  await createClickHouseDatabase(url, database);
  const ch = openClickHouse(url, { database });
  const raw = createClient({ url, database });
  try {
    await runClickHouseMigrations(ch);
    const store = new ClickHouseMarketStore(ch);
    const cases = [
      { name: 'raw insert: @clickhouse/client JSONEachRow into trades', run: (b: Trade[]) => raw.insert({ table: 'trades', values: rawRows(b), format: 'JSONEachRow' }) },
      { name: 'ClickHouseMarketStore.writeEvents (+ 1m rebuild, feeds)', run: (b: Trade[]) => store.writeEvents(b) },
    ];
    const samples: number[][] = cases.map(() => []);
    for (let w = 0; w < 3; w++) for (const c of cases) await c.run(tradeBatch());
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < cases.length; k++) {
        const index = (k + round) % cases.length;
        const batches = Array.from({ length: OPS_PER_ROUND }, () => tradeBatch());
        const t0 = process.hrtime.bigint();
        for (const b of batches) await cases[index]!.run(b);
        samples[index]!.push(Number(process.hrtime.bigint() - t0) / OPS_PER_ROUND);
      }
    }
    const [version] = await ch.query<{ v: string }>(sql`SELECT version() AS v`);
    const bench: BenchSamples = {
      name: 'clickhouse-writer-io',
      title: `${N} trades per batch into ClickHouse ${version?.v ?? '?'} (fresh ids and minutes each op)`,
      unit: 'row',
      unitsPerOp: N,
      options: { rounds: ROUNDS, roundMs: 0, warmupMs: 0 },
      gcExposed: false,
      cases: cases.map(
        (c, i): CaseSamples => ({
          name: c.name,
          isReference: i === 0,
          ...(i === 1 ? { goal: { minRatio: 0.8 } } : {}),
          opsPerRound: OPS_PER_ROUND,
          nsPerOp: samples[i]!,
          heapDelta: [],
        }),
      ),
    };
    process.stderr.write(`${formatBench(summarize(bench))}\n`);
  } finally {
    await raw.close();
    await ch.close();
    await dropClickHouseDatabase(url, database);
  }
}

const url = process.env.CLICKHOUSE_URL;
if (url) {
  await measureIo(url);
} else {
  process.stderr.write('clickhouse-writer: I/O part skipped: CLICKHOUSE_URL is not set (bash local/services/services.sh start clickhouse && . /tmp/qicore-services/env)\n');
}

const cpuBatch = tradeBatch();

export default defineBench({
  name: 'clickhouse-writer-rows',
  title: `building the JSONEachRow body of ${N} trades (client-side CPU of one insert)`,
  unit: 'row',
  unitsPerOp: N,
  reference: { name: 'JSON of the raw rows (floats as numbers)', fn: () => rawRows(cpuBatch).map((r) => JSON.stringify(r)).join('\n') },
  cases: [
    {
      name: "the writer's rows (hex floats, decimal text)",
      fn: () => writerRows(cpuBatch).map((r) => JSON.stringify(r)).join('\n'),
      goal: { minRatio: 0.5 },
      note: 'floats travel as IEEE 754 hex because 18.16 parses text floats inexactly (see sql/clickhouse/0001_core.sql)',
    },
  ],
  check() {
    const row = writerRows(cpuBatch)[0]!;
    if (Buffer.from(row.price, 'hex').readDoubleLE(0) !== cpuBatch[0]!.price) throw new Error('hex price does not read back');
  },
});
