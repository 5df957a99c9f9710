/**
 * The Timescale writer's trade path on real PostgreSQL: PostgresMarketStore.writeEvents with the
 * COPY writer, end to end as the consumer calls it (one transaction: read of what the touched
 * minutes held, binary COPY straight into trades, 1m candles merged from the batch, 1h/1d
 * rollups, feeds), against a raw binary COPY of the same rows into the same table with the same
 * encoder (the reference: the floor of getting those rows there), a raw text COPY (the reference
 * before the writer went binary), the replay way (a batch half stored already) and the
 * jsonb_to_recordset path. Every op writes FRESH trades (new keys; minutes that continue the
 * previous op's, as a stream's batches do) into one database created for the run, so nothing is
 * a no-op replay. The check writes a fresh batch, its replay and a half-overlapping batch, and
 * compares the stored candles and rollups bit for bit with the jsonb path's for the same trades.
 *
 * The harness times synchronous functions; the database is asynchronous. So the database work runs
 * in a worker thread, and each op blocks on it (Atomics.wait; the answer is read with
 * receiveMessageOnPort): the time measured is the op's wall time, plus a few µs of messaging.
 *
 * Needs DATABASE_URL (bash local/services/services.sh start postgres && . /tmp/qicore-services/env).
 */
import { randomBytes } from 'node:crypto';
import {
  isMainThread,
  MessageChannel,
  parentPort,
  receiveMessageOnPort,
  Worker,
  workerData,
  type MessagePort,
} from 'node:worker_threads';
import pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runMigrations } from '../layers/shared/src/adapters/stores/migrations.js';
import { openPostgres } from '../layers/shared/src/adapters/stores/pg-client.js';
import { binaryCopyChunks, PgCopyWriter } from '../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { encodeTrade, PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { Trade } from '../layers/shared/src/domain/index.js';
import { defineBench, type BenchDefinition } from './lib/measure.js';

const ROLE = 'timescale-writer-bench-worker';
/** trades per op: one consumer batch of a busy stream */
const N = 20_000;
const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT'];
const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);

type Command = 'setup' | 'raw-copy' | 'raw-binary-copy' | 'store-copy' | 'store-replay' | 'store-jsonb' | 'check' | 'teardown';
type Reply = { ok: true; value: number } | { ok: false; error: string };

interface WorkerInput {
  readonly role: typeof ROLE;
  readonly url: string;
  readonly flag: SharedArrayBuffer;
  readonly port: MessagePort;
}

// ---- worker: owns the connections and does the database work ----------------------------------

async function serve(input: WorkerInput): Promise<void> {
  const flag = new Int32Array(input.flag);
  const name = `qicore_bench_${randomBytes(5).toString('hex')}`;
  const dbUrl = new URL(input.url);
  dbUrl.pathname = `/${name}`;
  let seq = 0;
  let raw: pg.Client | undefined;
  let copyStore: PostgresMarketStore | undefined;
  let jsonbStore: PostgresMarketStore | undefined;
  let replayTail: Trade[] | undefined;

  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: input.url });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };

  /** `n` trades never written before: new ids, new minutes. */
  const fresh = (exchange = 'binance', n = N): Trade[] => {
    const out: Trade[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const n = seq++;
      out[i] = {
        type: 'trade',
        exchange,
        symbol: SYMBOLS[n % SYMBOLS.length]!,
        ts: T0 + n * 5,
        localTs: T0 + n * 5 + 3,
        id: String(n),
        price: 100 + (n % 1000) / 10,
        amount: 0.001 * (1 + (n % 50)),
        side: n % 3 === 0 ? 'sell' : 'buy',
      };
    }
    return out;
  };

  // ISO text per second, cached: the reference should not pay for Date formatting we do not pay for
  let isoSecond = -1;
  let isoPrefix = '';
  const isoOf = (ms: number) => {
    const second = Math.floor(ms / 1000);
    if (second !== isoSecond) {
      isoSecond = second;
      isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
    }
    return `${isoPrefix}${String(ms - second * 1000).padStart(3, '0')}Z`;
  };

  const rawCopy = async (trades: readonly Trade[]) => {
    let text = '';
    for (const t of trades) {
      text += `${t.exchange}\t${t.symbol}\t${isoOf(t.ts)}\t${t.id}\t${t.price}\t${t.amount}\t${t.side}\t${isoOf(t.localTs)}\n`;
    }
    const stream = raw!.query(
      copyFromStdin('COPY trades (exchange, symbol, ts, trade_id, price, amount, side, local_ts) FROM STDIN'),
    );
    await pipeline(Readable.from([text]), stream);
    return stream.rowCount;
  };

  // the writer's own encoder, so this is the floor of what its COPY can cost
  const rawBinaryCopy = async (trades: readonly Trade[]) => {
    const stream = raw!.query(
      copyFromStdin('COPY trades (exchange, symbol, ts, trade_id, price, amount, side, local_ts) FROM STDIN (FORMAT binary)'),
    );
    // the writer's row encoding, so the two differ only in what the writer does around the COPY
    const chunks = binaryCopyChunks(trades, 8, encodeTrade);
    await pipeline(Readable.from(chunks, { objectMode: false }), stream);
    return stream.rowCount;
  };

  const handlers: Record<Command, () => Promise<number>> = {
    async setup() {
      await admin(`CREATE DATABASE ${name}`);
      const db = openPostgres(dbUrl.toString(), { max: 1 });
      const report = await runMigrations(db);
      if (report.path !== 'postgres' && report.path !== 'timescaledb') throw new Error('unexpected migration path');
      copyStore = new PostgresMarketStore(db, { copyWriter: new PgCopyWriter(dbUrl.toString(), { max: 1 }), copyMinRows: 1 });
      jsonbStore = new PostgresMarketStore(openPostgres(dbUrl.toString(), { max: 1 }));
      raw = new pg.Client({ connectionString: dbUrl.toString() });
      await raw.connect();
      return 0;
    },
    'raw-copy': () => rawCopy(fresh()),
    'raw-binary-copy': () => rawBinaryCopy(fresh()),
    'store-copy': async () => (await copyStore!.writeEvents(fresh())).trades,
    // half of each batch is the previous one's second half (stored already): the replay way every time
    'store-replay': async () => {
      const next = fresh('binance', N / 2);
      const batch = [...(replayTail ?? fresh('binance', N / 2)), ...next];
      replayTail = next;
      return (await copyStore!.writeEvents(batch)).trades;
    },
    'store-jsonb': async () => (await jsonbStore!.writeEvents(fresh())).trades,
    async check() {
      // the COPY path stores each fresh trade once, a replay adds nothing, a batch half stored
      // already adds the other half, and its candles equal the jsonb path's for the same trades
      const batch = fresh('benchcopy');
      const next = fresh('benchcopy');
      const paths = copyStore!.copyPathStats();
      if ((await copyStore!.writeEvents(batch)).trades !== N) throw new Error('COPY path: not every fresh trade was stored');
      if ((await copyStore!.writeEvents(batch)).trades !== 0) throw new Error('COPY path: a replay stored trades again');
      const overlap = [...batch.slice(N / 2), ...next];
      if ((await copyStore!.writeEvents(overlap)).trades !== N) throw new Error('COPY path: an overlapping batch stored the wrong trades');
      const after = copyStore!.copyPathStats();
      if (after.merged - paths.merged !== 1 || after.replayed - paths.replayed !== 2) {
        throw new Error(`COPY path: the batches did not take the expected ways (${JSON.stringify({ paths, after })})`);
      }
      const same = [...batch, ...next].map((t) => ({ ...t, exchange: 'benchjsonb' }));
      if ((await jsonbStore!.writeEvents(same)).trades !== 2 * N) throw new Error('jsonb path: not every fresh trade was stored');
      // the stored rows bit for bit (readers round volumes to 15 digits), and what readers see
      for (const table of ['candles', 'candle_rollups']) {
        const rows = async (exchange: string) =>
          JSON.stringify(
            (
              await raw!.query(
                `SELECT symbol, timeframe, ts_to_ms(ts) AS ts, open, high, low, close, volume::text AS volume, trades::int AS trades
                 FROM ${table} WHERE exchange = $1 ORDER BY symbol, timeframe, ts`,
                [exchange],
              )
            ).rows,
          );
        const a = await rows('benchcopy');
        if (a === '[]' || a !== (await rows('benchjsonb'))) throw new Error(`${table} differ between the COPY and jsonb paths`);
      }
      for (const [symbol, timeframe] of SYMBOLS.flatMap((s) => [[s, '1m'], [s, '1h']] as const)) {
        const q = { symbol, timeframe, limit: 1000 } as const;
        const a = await copyStore!.candles({ ...q, exchange: 'benchcopy' });
        const b = await jsonbStore!.candles({ ...q, exchange: 'benchjsonb' });
        const strip = (cs: typeof a) => JSON.stringify(cs.map(({ exchange: _e, ...c }) => c));
        if (a.length === 0 || strip(a) !== strip(b)) throw new Error(`${timeframe} candles differ between COPY and jsonb paths (${symbol})`);
      }
      return N;
    },
    async teardown() {
      await raw?.end();
      await copyStore?.close();
      await jsonbStore?.close();
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      return 0;
    },
  };

  parentPort!.on('message', ({ command, sync }: { command: Command; sync: boolean }) => {
    void handlers[command]().then(
      (value): Reply => ({ ok: true, value }),
      (error: unknown): Reply => ({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    ).then((reply) => {
      if (!sync) return parentPort!.postMessage(reply);
      input.port.postMessage(reply);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
    });
  });
}

// ---- main thread: the harness's synchronous view of the worker ------------------------------

interface WorkerLink {
  /** runs a command and blocks until the worker answers */
  call(command: Command): number;
  /** the same, without blocking: for set-up, while the worker thread is still starting */
  callAsync(command: Command): Promise<number>;
}

function connect(url: string): WorkerLink {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const input: WorkerInput = { role: ROLE, url, flag: flag.buffer as SharedArrayBuffer, port: port2 };
  // The worker loads this .ts file itself. Node 20 does not apply `--import tsx` to a worker's
  // entry module, so a small script registers tsx first and then imports this file.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: input, transferList: [port2] });
  worker.unref();
  const unwrap = (command: Command, reply: Reply | undefined) => {
    if (!reply) throw new Error(`${command}: the worker answered nothing`);
    if (!reply.ok) throw new Error(`${command} failed in the worker:\n${reply.error}`);
    return reply.value;
  };
  return {
    call(command) {
      Atomics.store(flag, 0, 0);
      worker.postMessage({ command, sync: true });
      if (Atomics.wait(flag, 0, 0, 120_000) === 'timed-out') throw new Error(`${command}: no answer from the worker in 120 s`);
      return unwrap(command, receiveMessageOnPort(port1)?.message as Reply | undefined);
    },
    async callAsync(command) {
      // answered on the worker's own channel: port1 is never given a listener, since a started
      // port hands its messages to the event loop, where the blocking call would miss them
      const answered = new Promise<Reply>((resolve) => worker.once('message', resolve));
      worker.postMessage({ command, sync: false });
      return unwrap(command, await answered);
    },
  };
}

async function definition(): Promise<BenchDefinition> {
  const url = process.env.DATABASE_URL?.trim();
  if (!url) {
    const reason = 'skipped: DATABASE_URL not set (bash local/services/services.sh start postgres && . /tmp/qicore-services/env)';
    process.stderr.write(`timescale-writer: ${reason}\n`);
    const nothing = () => 0;
    return defineBench({
      name: 'timescale-writer',
      title: reason,
      unit: 'trade',
      unitsPerOp: 1,
      reference: { name: 'nothing (skipped)', fn: nothing },
      cases: [],
      options: { rounds: 1, roundMs: 1, warmupMs: 1 },
    });
  }
  const link = connect(url);
  await link.callAsync('setup');
  const call = link.call;
  // drop the run's database when the bench process ends (the worker still runs in 'exit' handlers)
  process.once('exit', () => {
    try {
      call('teardown');
    } catch (error) {
      process.stderr.write(`timescale-writer: teardown failed: ${(error as Error).message}\n`);
    }
  });
  return defineBench({
    name: 'timescale-writer',
    title: `trades written per op: ${N} fresh trades over ${SYMBOLS.length} symbols into PostgreSQL (one database per run)`,
    unit: 'trade',
    unitsPerOp: N,
    reference: {
      name: 'raw binary COPY into trades',
      fn: () => call('raw-binary-copy'),
      note: "the same rows, binary, with the writer's encoder: the floor of getting them into the table",
    },
    cases: [
      {
        name: 'raw text COPY into trades',
        fn: () => call('raw-copy'),
        note: 'the same rows as COPY text (ISO timestamps): the reference before the writer went binary',
      },
      {
        name: 'writeEvents, COPY path',
        fn: () => call('store-copy'),
        goal: { minRatio: 0.7 },
        note: 'read of the touched minutes + binary COPY into trades + 1m candles merged + 1h/1d rollups + feeds, one transaction',
      },
      {
        name: 'writeEvents, replay way',
        fn: () => call('store-replay'),
        note: 'half the batch stored already: the fresh COPY fails, then COPY to staging + INSERT ON CONFLICT + candle rebuild',
      },
      {
        name: 'writeEvents, jsonb path',
        fn: () => call('store-jsonb'),
        note: 'jsonb_to_recordset insert (what PGlite and small batches use) + candle rebuild, rollups, feeds',
      },
    ],
    check() {
      call('check');
    },
    options: { rounds: 7, roundMs: 300, warmupMs: 600 },
  });
}

const input = workerData as Partial<WorkerInput> | null;
if (!isMainThread && input?.role === ROLE) await serve(input as WorkerInput);

/** The benchmark on the main thread; nothing in the worker, which runs serve() instead. */
export default isMainThread ? await definition() : undefined;
