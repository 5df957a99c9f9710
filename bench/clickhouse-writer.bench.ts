/**
 * The ClickHouse writer against a raw insert of the same rows into the same kind of table.
 *
 * Two parts, because the harness (bench/lib/measure.ts) times synchronous functions only:
 *
 * 1. I/O, measured here at import time when CLICKHOUSE_URL is set (skipped with a message
 *    otherwise), printed to stderr in the harness's table format: per op one batch of N trades
 *    (fresh ids and minutes every op), as
 *    - reference: `@clickhouse/client` insert, JSONEachRow, plain rows straight into `trades`;
 *    - the writer's trades request alone: its RowBinary body (encodeTrades) into the same table,
 *      i.e. what the writer's encoding and transport cost against the reference's;
 *    - ClickHouseMarketStore.writeEvents, end to end as the consumer calls it: that request, then
 *      the exact rebuild of the touched 1m candles from the deduplicated trades (INSERT ... SELECT)
 *      in parallel with the feed figures (a row into feed_updates); goal >= 0.8.
 *    The gap between the last two rows is what the derived data costs: two more requests, each
 *    writing one more part (candles, feeds). Rounds run the cases in rotated order on a fresh
 *    database, so ratios are paired.
 * 2. CPU, through the harness: building the writer's trades body (RowBinary) against
 *    JSON.stringify of the raw rows (what the reference's client builds), the client-side share.
 *
 *   . /tmp/qicore-services/env && npm run bench -- clickhouse-writer
 *   CLICKHOUSE_WRITER_BATCH=10000 CLICKHOUSE_WRITER_ROUNDS=15 ...   # batch size (default 1000), rounds (9)
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import {
  createClickHouseDatabase,
  dropClickHouseDatabase,
  openClickHouse,
} from '../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore, TRADE_COLUMNS, encodeTrades } from '../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { runClickHouseMigrations } from '../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import { sql } from '../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { Trade } from '../layers/shared/src/domain/index.js';
import { defineBench, type BenchSamples, type CaseSamples } from './lib/measure.js';
import { formatBench, summarize } from './lib/report.js';

const N = Number(process.env.CLICKHOUSE_WRITER_BATCH ?? 1000);
const ROUNDS = Number(process.env.CLICKHOUSE_WRITER_ROUNDS ?? 9);
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
      { name: "writer's trades request alone: RowBinary into trades", run: (b: Trade[]) => ch.insertRowBinary('trades', TRADE_COLUMNS, encodeTrades(b), b.length) },
      {
        name: 'ClickHouseMarketStore.writeEvents (+ 1m rebuild, feeds)',
        run: (b: Trade[]) => store.writeEvents(b),
        goal: { minRatio: 0.8 },
        note: 'exact 1m candles need the stored trades of every touched minute (a view over the insert counts a redelivered batch twice): 4 parts and 3 round trips per batch to the reference\'s 1 and 1',
      },
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
    // what the store holds after the run: every trade once per key, every writer minute rebuilt
    const [check] = await ch.query<{ trades: string; minutes: string }>(
      sql`SELECT (SELECT uniqExact(ts, trade_id) FROM trades) AS trades,
                 (SELECT uniqExact(symbol, ts) FROM candles WHERE source = 'trades') AS minutes`,
    );
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
          ...(c.goal ? { goal: c.goal } : {}),
          ...(c.note ? { note: c.note } : {}),
          opsPerRound: OPS_PER_ROUND,
          nsPerOp: samples[i]!,
          heapDelta: [],
        }),
      ),
    };
    process.stderr.write(`${formatBench(summarize(bench))}\n`);
    process.stderr.write(
      `  after the run: ${check?.trades} distinct trades stored, ${check?.minutes} 1m candles rebuilt by the writer (4 markets x 2 minutes per batch)\n\n`,
    );
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
