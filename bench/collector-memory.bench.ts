/**
 * Collector memory at the highest rate this machine sustains: RSS and heap, sampled every 30 s after a
 * 60 s warm-up during a 5-minute run, reported as a least-squares slope (MB/min) with its noise.
 * Opt-in (it takes ~10 minutes): `npm run bench -- collector-memory`.
 *
 * Set-up, as the service runs it minus the network stream: ccxt.pro binance clients (connectExchanges,
 * rate limiter on) -> MarketCollector on every channel (trades, tickers, books: the service's default)
 * -> EventBatcher -> MemoryStream, drained by a reader that checkpoints what it gets (as the local
 * runner's event source does, without a store). The simulator runs in a child process
 * (bench/lib/sim-process.ts): it keeps every trade it prints, so in this process it would be the
 * growth measured.
 *
 * 1. The rate. Steps of simulator orders/s per symbol (50, 100, 200, ... doubling, then one bisection
 *    between the last sustained step and the first that was not), each on a fresh simulator and
 *    collector: 3 s to settle, then a window of STEP_S. A step is sustained when the collector got
 *    >= 97% of the trades printed in the window and the p99 of its trades' lag (localTs - exchange ts,
 *    one machine clock) is <= 1 s. The search stops at the first step that is not, or where the
 *    simulator itself stopped printing more (a doubled step printed < 1.3x the trades of the one before:
 *    then its ceiling is the machine's limit here, and the run uses that step).
 * 2. The run, in a fresh process (this file, forked: the search's garbage is not in its RSS). At the
 *    highest sustained step: WARMUP_S, then RUN_S with a sample every SAMPLE_S, each after a forced
 *    GC (heapUsed is then what is retained): rss, heapUsed, external.
 *    Slope by least squares over the samples, noise = the slope's standard error; "flat within noise"
 *    when |slope| <= 2 x noise. Printed with the rate achieved during the run (printed and collected
 *    trades/s, their ratio, the lag) and the CPU of both processes.
 *
 * Shorter for a quick check: `npm run bench -- collector-memory --quick` (steps 5 s, warm-up 10 s, run
 * 60 s, samples every 10 s), or any of COLLECTOR_MEMORY_STEP_S, _WARMUP_S, _RUN_S, _SAMPLE_S, and
 * COLLECTOR_MEMORY_RATE (orders/s per symbol) to skip the search.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connectExchanges } from '../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride } from '../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { MemoryStream } from '../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { EventBatcher, type BatcherCounter, type EventBatcherOptions } from '../layers/shared/src/collector/event-batcher.js';
import { MarketCollector, type CollectorCounter } from '../layers/shared/src/collector/market-collector.js';
import type { MarketEvent } from '../layers/shared/src/domain/index.js';
import { Counters } from '../layers/shared/src/observability/counters.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import { systemClock } from '../layers/shared/src/ports/index.js';
import { figuresOnly, formatMs, percentile, printTable, sleep } from './lib/latency.js';
import { formatRate } from './lib/report.js';
import { SimProcess } from './lib/sim-process.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const SEED = 7;
const quick = process.argv.includes('--quick');
const envNumber = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!(Number.isFinite(n) && n > 0)) throw new RangeError(`${name} must be a positive number, got '${raw}'`);
  return n;
};
const STEP_S = envNumber('COLLECTOR_MEMORY_STEP_S', quick ? 5 : 15);
const WARMUP_S = envNumber('COLLECTOR_MEMORY_WARMUP_S', quick ? 10 : 60);
const RUN_S = envNumber('COLLECTOR_MEMORY_RUN_S', quick ? 60 : 300);
const SAMPLE_S = envNumber('COLLECTOR_MEMORY_SAMPLE_S', quick ? 10 : 30);
const FIXED_RATE = process.env.COLLECTOR_MEMORY_RATE ? envNumber('COLLECTOR_MEMORY_RATE', 1) : undefined;
const SETTLE_S = 3;
const FIRST_RATE = 50;
const MAX_RATE = 12_800;
/** a step is sustained when the collector gets this share of the printed trades ... */
const MIN_COLLECTED = 0.97;
/** ... with at most this p99 lag */
const MAX_P99_LAG_MS = 1_000;
/** a doubled step that prints less than this many times the previous one's trades: the simulator is the limit */
const MIN_STEP_GROWTH = 1.3;
const gc = (globalThis as { gc?: () => void }).gc;
const MB = 1024 * 1024;

/** An EventBatcher that counts the trades handed to it and records their lag. */
class CountingBatcher extends EventBatcher {
  trades = 0;
  lags: number[] = [];

  constructor(options: EventBatcherOptions) {
    super(options);
  }

  override add(events: readonly MarketEvent[]): void {
    super.add(events);
    for (const e of events) {
      if (e.type !== 'trade') continue;
      this.trades++;
      this.lags.push(e.localTs - e.ts);
    }
  }
}

/** Simulator (child process) + collector + in-process stream with a draining reader. */
class Rig {
  private constructor(
    readonly sim: SimProcess,
    readonly collector: MarketCollector,
    readonly batcher: CountingBatcher,
    readonly bus: MemoryStream,
    private readonly drained: Promise<void>,
    private readonly stopDrain: () => void,
  ) {}

  static async start(ordersPerSecond: number): Promise<Rig> {
    const sim = await SimProcess.start({ seed: SEED, symbols: SYMBOLS, tradesPerSecond: ordersPerSecond });
    const endpoint = { rest: sim.httpUrl, ws: sim.wsUrl };
    const exchanges = await connectExchanges(new Map([['binance', SYMBOLS]]), {
      logger: silentLogger,
      configure: (exchange) => applyEndpointOverride(exchange, endpoint),
    });
    const bus = new MemoryStream();
    const batcher = new CountingBatcher({ bus, logger: silentLogger, counters: new Counters<BatcherCounter>() });
    const collector = new MarketCollector({
      targets: exchanges.map((c) => ({ exchange: c.exchange, symbols: c.symbols, watchParams: c.watchParams })),
      batcher,
      logger: silentLogger,
      counters: new Counters<CollectorCounter>(),
      clock: systemClock,
    });
    collector.start();
    const reader = bus.subscribe();
    let draining = true;
    const drained = (async () => {
      while (draining) {
        const records = await reader.poll(500, 100);
        const last = new Map<string, string>();
        for (const r of records) last.set(r.shardId, r.sequenceNumber);
        for (const [shard, seq] of last) await reader.checkpoint(shard, seq);
      }
    })();
    await sim.waitForStreams(SYMBOLS.map((s) => `${s.replace('/', '').toLowerCase()}@trade`));
    // the ticker and book subscriptions go out with the trades one; let them land
    await sleep(1_000);
    await sim.startMarket();
    return new Rig(sim, collector, batcher, bus, drained, () => (draining = false));
  }

  /** What happens over the next `ms`: trades printed and collected per second, lag of the trades collected. */
  async window(ms: number): Promise<Window> {
    const s0 = await this.sim.stats();
    const c0 = this.batcher.trades;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    this.batcher.lags = [];
    await sleep(ms);
    const s1 = await this.sim.stats();
    const c1 = this.batcher.trades;
    const cpu = process.cpuUsage(cpu0);
    const seconds = (performance.now() - t0) / 1000;
    const lags = this.batcher.lags;
    this.batcher.lags = [];
    return {
      printed: (s1.printed - s0.printed) / ((s1.at - s0.at) / 1000),
      collected: (c1 - c0) / seconds,
      lagP50: lags.length > 0 ? percentile(lags, 50) : Number.NaN,
      lagP99: lags.length > 0 ? percentile(lags, 99) : Number.NaN,
      cpuPct: ((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100,
      simCpuPct: ((s1.cpuMs - s0.cpuMs) / (s1.at - s0.at)) * 100,
    };
  }

  async stop(): Promise<void> {
    await this.sim.stopMarket().catch(() => undefined);
    await this.collector.stop();
    this.stopDrain();
    await this.bus.close();
    await this.drained;
    await this.sim.close();
  }
}

interface Window {
  /** trades/s printed by the simulator */
  readonly printed: number;
  /** trades/s the collector normalized and handed to the batcher */
  readonly collected: number;
  readonly lagP50: number;
  readonly lagP99: number;
  /** CPU of this process and of the simulator's, % of one core */
  readonly cpuPct: number;
  readonly simCpuPct: number;
}

interface Step extends Window {
  readonly rate: number;
  readonly verdict: 'sustained' | 'collector behind' | 'simulator-bound';
}

async function step(rate: number, previous: Step | undefined): Promise<Step> {
  const rig = await Rig.start(rate);
  try {
    await sleep(SETTLE_S * 1000);
    const w = await rig.window(STEP_S * 1000);
    let verdict: Step['verdict'] = w.collected >= MIN_COLLECTED * w.printed && w.lagP99 <= MAX_P99_LAG_MS ? 'sustained' : 'collector behind';
    // trades per order vary with the book, so the simulator's ceiling shows as a step that no longer prints more
    if (verdict === 'sustained' && previous && rate >= 2 * previous.rate && w.printed < MIN_STEP_GROWTH * previous.printed) verdict = 'simulator-bound';
    process.stderr.write(
      `  ${rate} orders/s/symbol: printed ${formatRate(w.printed)} trades/s, collected ${formatRate(w.collected)}, lag p99 ${formatMs(w.lagP99)} ms -> ${verdict}\n`,
    );
    return { rate, verdict, ...w };
  } finally {
    await rig.stop();
  }
}

/** Doubling steps from FIRST_RATE, then one bisection; returns every step and the highest sustained one. */
async function findRate(): Promise<{ steps: Step[]; best: Step | undefined }> {
  const steps: Step[] = [];
  let best: Step | undefined;
  let failed: number | undefined;
  for (let rate = FIRST_RATE; rate <= MAX_RATE; rate *= 2) {
    const s = await step(rate, steps.at(-1));
    steps.push(s);
    if (s.verdict === 'sustained') best = s;
    else {
      if (s.verdict === 'simulator-bound') best = s;
      failed = s.verdict === 'collector behind' ? rate : undefined;
      break;
    }
  }
  if (best && failed !== undefined && failed > best.rate * 1.2) {
    const mid = Math.round((best.rate + failed) / 2);
    const s = await step(mid, undefined);
    steps.push(s);
    if (s.verdict !== 'collector behind') best = s;
  }
  return { steps, best };
}

/** Least-squares slope of y over x with its standard error. */
function slope(xs: readonly number[], ys: readonly number[]): { slope: number; se: number } {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i]! - mx) ** 2;
    sxy += (xs[i]! - mx) * (ys[i]! - my);
  }
  const b = sxy / sxx;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (ys[i]! - (my + b * (xs[i]! - mx))) ** 2;
  return { slope: b, se: n > 2 ? Math.sqrt(ss / (n - 2) / sxx) : Number.NaN };
}

interface Sample {
  readonly minute: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
}

async function memoryRun(rate: number): Promise<{ samples: Sample[]; during: Window; backlog: number }> {
  const rig = await Rig.start(rate);
  try {
    process.stderr.write(`collector-memory: run at ${rate} orders/s/symbol: ${WARMUP_S} s warm-up, then ${RUN_S} s sampled every ${SAMPLE_S} s\n`);
    await sleep(WARMUP_S * 1000);
    const samples: Sample[] = [];
    const t0 = performance.now();
    const take = () => {
      gc?.();
      const m = process.memoryUsage();
      const s = { minute: (performance.now() - t0) / 60_000, rss: m.rss / MB, heapUsed: m.heapUsed / MB, external: m.external / MB };
      samples.push(s);
      process.stderr.write(`  t=${(s.minute * 60).toFixed(0)} s: rss ${s.rss.toFixed(1)} MB, heapUsed ${s.heapUsed.toFixed(1)} MB, external ${s.external.toFixed(1)} MB\n`);
    };
    take();
    // the run's rate figures come from windows between samples, so sampling and measuring share the run
    const windows: Window[] = [];
    for (let k = 1; k <= Math.floor(RUN_S / SAMPLE_S); k++) {
      const due = t0 + k * SAMPLE_S * 1000;
      windows.push(await rig.window(Math.max(0, due - performance.now())));
      take();
    }
    const mean = (f: (w: Window) => number) => windows.reduce((a, w) => a + f(w), 0) / windows.length;
    const during: Window = {
      printed: mean((w) => w.printed),
      collected: mean((w) => w.collected),
      lagP50: mean((w) => w.lagP50),
      lagP99: Math.max(...windows.map((w) => w.lagP99)),
      cpuPct: mean((w) => w.cpuPct),
      simCpuPct: mean((w) => w.simCpuPct),
    };
    return { samples, during, backlog: rig.batcher.pending + rig.bus.backlog };
  } finally {
    await rig.stop();
  }
}

// ---- run ------------------------------------------------------------------------------------------

type RunResult = Awaited<ReturnType<typeof memoryRun>>;

/** The memory run in a fresh process (this file, as its child): the search's clients and garbage are not in its RSS. */
function memoryRunInChild(rate: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), process.argv.includes('--quick') ? ['--quick'] : [], {
      execArgv: ['--expose-gc', '--import', 'tsx'],
      env: { ...process.env, [CHILD_ENV]: String(rate) },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    let result: RunResult | undefined;
    child.on('message', (m) => (result = m as RunResult));
    child.on('error', reject);
    child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`the memory run's process exited (${code}) without a result`))));
  });
}

const CHILD_ENV = 'COLLECTOR_MEMORY_RUN_RATE';
const childRate = process.env[CHILD_ENV];
if (childRate !== undefined) {
  // the child: the run only, its figures to the parent (and no run left behind if the parent is gone)
  process.once('disconnect', () => process.exit(1));
  const result = await memoryRun(Number(childRate));
  await new Promise<void>((resolve) => process.send!(result, () => resolve()));
  process.exit(0);
}

if (!gc) process.stderr.write('collector-memory: node runs without --expose-gc: the search has no forced GC (the run always has)\n');
let steps: Step[] = [];
let rate: number;
let how: string;
if (FIXED_RATE !== undefined) {
  rate = FIXED_RATE;
  how = `given (COLLECTOR_MEMORY_RATE=${FIXED_RATE})`;
} else {
  process.stderr.write(`collector-memory: finding the highest sustained rate (${STEP_S} s per step)\n`);
  const found = await findRate();
  steps = found.steps;
  if (!found.best) throw new Error(`the collector did not keep up even at ${FIRST_RATE} orders/s/symbol on this machine`);
  rate = found.best.rate;
  how =
    found.best.verdict === 'simulator-bound'
      ? 'the simulator could not print faster here (a doubled step printed < 1.3x the trades): the run uses its ceiling'
      : 'highest step sustained (>= 97% of printed trades collected, lag p99 <= 1 s)';
}
const { samples, during, backlog } = await memoryRunInChild(rate);

if (steps.length > 0) {
  printTable(
    'collector-memory - finding the rate (orders/s per symbol, 2 symbols; a fresh simulator and collector per step)',
    ['orders/s/sym', 'printed/s', 'collected/s', 'ratio', 'lag p50', 'lag p99', 'cpu', 'sim cpu', ''],
    steps.map((s) => [
      String(s.rate),
      formatRate(s.printed),
      formatRate(s.collected),
      (s.collected / s.printed).toFixed(3),
      formatMs(s.lagP50),
      formatMs(s.lagP99),
      `${s.cpuPct.toFixed(0)}%`,
      `${s.simCpuPct.toFixed(0)}%`,
      s.verdict,
    ]),
    [`steps: ${STEP_S} s after ${SETTLE_S} s settling; ratio = collected / printed trades (the reference: what the simulator printed in the same window)`],
  );
}

const minutes = samples.map((s) => s.minute);
const line = (name: string, values: readonly number[]): string[] => {
  const fit = slope(minutes, values);
  const flat = Math.abs(fit.slope) <= 2 * fit.se;
  const growth = values.at(-1)! - values[0]!;
  return [
    name,
    values[0]!.toFixed(1),
    values.at(-1)!.toFixed(1),
    `${fit.slope >= 0 ? '+' : ''}${fit.slope.toFixed(3)}`,
    `±${fit.se.toFixed(3)}`,
    (fit.slope / fit.se).toFixed(1),
    `${growth >= 0 ? '+' : ''}${growth.toFixed(1)}`,
    flat ? 'flat within noise' : fit.slope > 0 ? 'GROWING' : 'shrinking',
  ];
};
printTable(
  `collector-memory - ${samples.length} samples every ${SAMPLE_S} s over ${RUN_S} s after ${WARMUP_S} s warm-up, at ${rate} orders/s/symbol (${formatRate(during.printed)} trades/s)`,
  ['memory', 'first MB', 'last MB', 'slope MB/min', 'noise', 'slope/noise', 'growth MB', 'verdict'],
  [line('rss', samples.map((s) => s.rss)), line('heapUsed', samples.map((s) => s.heapUsed)), line('external', samples.map((s) => s.external))],
  [
    `rate: ${how}`,
    `during the run: printed ${formatRate(during.printed)} trades/s, collected ${formatRate(during.collected)} (ratio ${(during.collected / during.printed).toFixed(3)}), lag p50 ${formatMs(during.lagP50)} ms, worst window p99 ${formatMs(during.lagP99)} ms, backlog at the end ${backlog} events+records`,
    `cpu: collector process ${during.cpuPct.toFixed(0)}% of a core, simulator process ${during.simCpuPct.toFixed(0)}%`,
    'the run is a fresh process (this file forked), so the search before it is not in its memory; each sample after a forced GC',
    'slope: least squares over the samples; noise: its standard error; flat within noise when |slope| <= 2 x noise',
  ],
);

export default figuresOnly('collector-memory', 'collector RSS and heap slope at the highest sustained rate: figures on stderr above');
