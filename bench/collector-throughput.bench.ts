/**
 * Collector throughput with ccxt.pro in the loop, against the simulated exchange over a real WebSocket.
 *
 *   reference  ccxt.pro alone: a loop calling `watchTrades` that only counts the trades it gets
 *   case       MarketCollector (trades channel) -> EventBatcher -> MemoryStream.publish: the service's
 *              path minus the network stream, done when every trade is published (batcher flushed)
 *   noise      the reference again, in the same round: how far a ratio of 1 wanders on this machine
 *
 * Same frames: each consumer has its own simulator with the same seed, so round k prints the same
 * trades (ids, prices, amounts) to each. Same count: `printTrades(N)` on the consumer's simulator, done
 * synchronously before the clock starts, so the frames already wait in the socket and the consumer runs
 * at its own speed, not the printer's; what the simulator still does while the clock runs (writing
 * what did not fit in the socket buffer) is the same for every consumer. Each round connects fresh
 * clients (connectExchanges, as the service does; all three before any is timed, outside the clock),
 * then times them back to back in an order rotated every round, GC forced before each; ratio =
 * reference time / case time, round by round, median (min-max). Goal (the issue's): >= 0.75. Each run
 * is timed twice: wall clock (msgs/s, the figure) and this process's CPU time (msgs per
 * CPU-second), which other processes on a shared machine disturb far less.
 *
 * Every round is checked: each consumer got exactly the printed trades, in order (the collector's
 * from the stream's records). Figures are printed to stderr at import (see bench/lib/latency.ts).
 *
 *   npm run bench -- --filter=collector-throughput
 *   COLLECTOR_THROUGHPUT_TRADES=20000 COLLECTOR_THROUGHPUT_ROUNDS=9   (defaults; --quick: 5000 x 3)
 *   COLLECTOR_THROUGHPUT_PROFILE=/tmp/prof   a V8 CPU profile of each timed run (started after the burst is
 *                                            printed), <consumer>-<round>.cpuprofile: where the time goes
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { connectExchanges, type ConnectedExchange } from '../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride } from '../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { MemoryStream } from '../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { EventBatcher, type BatcherCounter, type EventBatcherOptions } from '../layers/shared/src/collector/event-batcher.js';
import { MarketCollector, type CollectorCounter } from '../layers/shared/src/collector/market-collector.js';
import type { MarketEvent } from '../layers/shared/src/domain/index.js';
import { Counters } from '../layers/shared/src/observability/counters.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import { systemClock } from '../layers/shared/src/ports/index.js';
import { decodeEvents } from '../layers/shared/src/stream/event-codec.js';
import { startSimulatedExchange, type SimulatedExchange } from '../local/sim/server.js';
import { figuresOnly, printTable } from './lib/latency.js';
import { formatRate } from './lib/report.js';
import { evaluateGoal, goalLabel, pairedRatios, relativeSpreadPct, spread } from './lib/stats.js';

const SYMBOL = 'BTC/USDT';
const STREAM = 'btcusdt@trade';
const SEED = 7;
const GOAL = { minRatio: 0.75 };
const quick = process.argv.includes('--quick');
const TRADES = Number(process.env.COLLECTOR_THROUGHPUT_TRADES ?? (quick ? 5_000 : 20_000));
const ROUNDS = Number(process.env.COLLECTOR_THROUGHPUT_ROUNDS ?? (quick ? 3 : 9));
const WARMUP_ROUNDS = 2;
const gc = (globalThis as { gc?: () => void }).gc;
const PROFILE_DIR = process.env.COLLECTOR_THROUGHPUT_PROFILE;

type ConsumerName = 'reference' | 'noise' | 'collector';
const CONSUMERS: readonly ConsumerName[] = ['reference', 'noise', 'collector'];

interface RoundRun {
  /** wall time of the run */
  readonly ms: number;
  /** CPU time of this process (all threads) during the run: what the consumer cost, whoever else used the machine */
  readonly cpuMs: number;
  readonly trades: number;
}

/** Wall and CPU clocks started together. */
function clocks(): () => { ms: number; cpuMs: number } {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const ms = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { ms, cpuMs: (c.user + c.system) / 1000 };
  };
}

/** An EventBatcher that also says when `target` events have been handed to it. */
class CountingBatcher extends EventBatcher {
  private seen = 0;
  private target = Number.POSITIVE_INFINITY;
  private reached: (() => void) | null = null;

  constructor(options: EventBatcherOptions) {
    super(options);
  }

  /** Resolves once `target` events in all have been added. */
  whenAdded(target: number): Promise<void> {
    this.target = target;
    return new Promise((resolve) => {
      this.reached = resolve;
      this.check();
    });
  }

  override add(events: readonly MarketEvent[]): void {
    super.add(events);
    this.seen += events.length;
    this.check();
  }

  private check(): void {
    if (this.seen >= this.target && this.reached) {
      const done = this.reached;
      this.reached = null;
      done();
    }
  }
}

async function connect(sim: SimulatedExchange): Promise<ConnectedExchange> {
  const endpoint = { rest: sim.httpUrl, ws: sim.wsUrl };
  const [connected] = await connectExchanges(new Map([['binance', [SYMBOL]]]), {
    logger: silentLogger,
    configure: (exchange) => applyEndpointOverride(exchange, endpoint),
  });
  return connected!;
}

function checkIds(who: string, got: readonly string[], sim: SimulatedExchange, printed: number): void {
  const want = sim.printedTrades(SYMBOL).slice(-printed).map((t) => String(t.id));
  if (got.length !== want.length || got.some((id, i) => id !== want[i])) {
    throw new Error(`${who}: got ${got.length} trades for ${want.length} printed, or not the printed ones in order (first ${got[0]} vs ${want[0]})`);
  }
}

/** One consumer of one round: connected and subscribed first, then timed on one burst, then checked and closed. */
interface Consumer {
  /** prints the burst and resolves with the time until the consumer is done with it; `started` runs just before the clocks start */
  timed(started: () => Promise<void>): Promise<RoundRun>;
  /** checks what the consumer got and closes it */
  finish(): Promise<void>;
}

/** ccxt.pro alone: watchTrades in a loop, counting. */
async function referenceConsumer(sim: SimulatedExchange, who: string): Promise<Consumer> {
  const { exchange } = await connect(sim);
  const ids: string[] = [];
  let target = Number.POSITIVE_INFINITY;
  let printed = 0;
  let pending = exchange.watchTrades(SYMBOL);
  await sim.waitForStreams([STREAM], { timeoutMs: 15_000 });
  return {
    async timed(started) {
      const loop = (async () => {
        for (;;) {
          const trades = await pending;
          for (const t of trades) ids.push(String(t.id));
          if (ids.length >= target) return;
          pending = exchange.watchTrades(SYMBOL);
        }
      })();
      gc?.();
      printed = sim.market.printTrades(TRADES, SYMBOL).length;
      target = printed;
      await started();
      const elapsed = clocks();
      await loop;
      return { ...elapsed(), trades: printed };
    },
    async finish() {
      await exchange.close();
      checkIds(who, ids, sim, printed);
    },
  };
}

/** MarketCollector -> EventBatcher -> MemoryStream, until every trade is published. */
async function collectorConsumer(sim: SimulatedExchange): Promise<Consumer> {
  const connected = await connect(sim);
  const bus = new MemoryStream();
  const batcher = new CountingBatcher({ bus, logger: silentLogger, counters: new Counters<BatcherCounter>() });
  const collector = new MarketCollector({
    targets: [{ exchange: connected.exchange, symbols: connected.symbols, watchParams: connected.watchParams }],
    channels: ['trades'],
    batcher,
    logger: silentLogger,
    counters: new Counters<CollectorCounter>(),
    clock: systemClock,
  });
  collector.start();
  await sim.waitForStreams([STREAM], { timeoutMs: 15_000 });
  let printed = 0;
  return {
    async timed(started) {
      gc?.();
      printed = sim.market.printTrades(TRADES, SYMBOL).length;
      await started();
      const elapsed = clocks();
      await batcher.whenAdded(printed);
      await batcher.flush();
      return { ...elapsed(), trades: printed };
    },
    async finish() {
      await collector.stop();
      // one shard per poll; the collector may also publish its own status events (other keys): trades only
      const reader = bus.subscribe();
      const ids: string[] = [];
      for (let records = await reader.poll(1_000_000, 0); records.length > 0; records = await reader.poll(1_000_000, 0)) {
        for (const r of records) for (const e of decodeEvents(r.data).events) if (e.type === 'trade') ids.push(e.id);
      }
      await bus.close();
      checkIds('collector', ids, sim, printed);
    },
  };
}

/** V8's sampling profiler over one timed run, when COLLECTOR_THROUGHPUT_PROFILE names a folder. */
class RunProfiler {
  private readonly session = new Session();

  constructor(private readonly dir: string) {
    this.session.connect();
  }

  // in-thread inspector messages are dispatched synchronously: no socket data is handled in between
  private post(method: string): Promise<unknown> {
    return new Promise((resolve, reject) => this.session.post(method, (error, result) => (error ? reject(error) : resolve(result))));
  }

  async start(): Promise<void> {
    await this.post('Profiler.enable');
    await this.post('Profiler.start');
  }

  async stop(file: string): Promise<void> {
    const { profile } = (await this.post('Profiler.stop')) as { profile: unknown };
    writeFileSync(join(this.dir, file), JSON.stringify(profile));
  }
}
const profiler = PROFILE_DIR ? new RunProfiler(PROFILE_DIR) : undefined;

const sims = new Map<ConsumerName, SimulatedExchange>();
for (const name of CONSUMERS) sims.set(name, await startSimulatedExchange({ seed: SEED, symbols: [SYMBOL], autoRun: false }));
const consumer = (name: ConsumerName): Promise<Consumer> =>
  name === 'collector' ? collectorConsumer(sims.get(name)!) : referenceConsumer(sims.get(name)!, name);

const times: Record<ConsumerName, number[]> = { reference: [], noise: [], collector: [] };
const cpuTimes: Record<ConsumerName, number[]> = { reference: [], noise: [], collector: [] };
const counts: number[] = [];
try {
  process.stderr.write(`collector-throughput: ${WARMUP_ROUNDS} warm-up + ${ROUNDS} rounds x ${CONSUMERS.length} consumers x ${TRADES} trades\n`);
  for (let round = -WARMUP_ROUNDS; round < ROUNDS; round++) {
    const order = CONSUMERS.map((_, i) => CONSUMERS[(i + Math.max(0, round)) % CONSUMERS.length]!);
    // all three connected first (each to its own simulator: an idle one gets nothing), so the timed
    // bursts of a round run back to back
    const ready = new Map<ConsumerName, Consumer>();
    for (const name of CONSUMERS) ready.set(name, await consumer(name));
    const got = new Map<ConsumerName, RoundRun>();
    for (const name of order) {
      got.set(name, await ready.get(name)!.timed(async () => profiler?.start()));
      if (profiler && round >= 0) await profiler.stop(`${name}-${round + 1}.cpuprofile`);
      else if (profiler) await profiler.stop(`warmup-${name}-${round + WARMUP_ROUNDS + 1}.cpuprofile`);
    }
    for (const c of ready.values()) await c.finish();
    const n = new Set([...got.values()].map((r) => r.trades));
    if (n.size !== 1) throw new Error(`round ${round}: the simulators printed different counts ${[...n].join(', ')}: same seed, same frames expected`);
    if (round < 0) continue;
    for (const name of CONSUMERS) {
      times[name].push(got.get(name)!.ms);
      cpuTimes[name].push(got.get(name)!.cpuMs);
    }
    counts.push([...n][0]!);
    const rate = (name: ConsumerName) =>
      `${formatRate((counts.at(-1)! / got.get(name)!.ms) * 1000)} (${formatRate((counts.at(-1)! / got.get(name)!.cpuMs) * 1000)}/cpu-s)`;
    process.stderr.write(`  round ${round + 1} msgs/s: reference ${rate('reference')}, noise ${rate('noise')}, collector ${rate('collector')}\n`);
  }
} finally {
  for (const sim of sims.values()) await sim.close();
}

// the same seed printed the same trades to every consumer: compare the simulators' histories
const reference = sims.get('reference')!.printedTrades(SYMBOL);
for (const name of CONSUMERS) {
  const other = sims.get(name)!.printedTrades(SYMBOL);
  const same = other.length === reference.length && other.every((t, i) => t.id === reference[i]!.id && t.price === reference[i]!.price && t.amount === reference[i]!.amount);
  if (!same) throw new Error(`${name}'s simulator printed other trades than the reference's`);
}

const perSecond = (ms: readonly number[]) => ms.map((t, i) => (counts[i]! / t) * 1000);
const figures = (name: ConsumerName, clock: Record<ConsumerName, number[]>) => {
  const r = spread(perSecond(clock[name]));
  const ratio = spread(pairedRatios(clock.reference, clock[name]));
  return {
    rate: `${formatRate(r.median)} ±${relativeSpreadPct(r).toFixed(0)}%`,
    ratio: name === 'reference' ? '1 (reference)' : `${ratio.median.toFixed(2)} (${ratio.min.toFixed(2)}-${ratio.max.toFixed(2)})`,
    goal: name === 'collector' ? `>= ${GOAL.minRatio}: ${goalLabel(evaluateGoal(GOAL, ratio))}` : '',
  };
};
const row = (name: ConsumerName, label: string): string[] => {
  const wall = figures(name, times);
  const cpu = figures(name, cpuTimes);
  return [label, wall.rate, wall.ratio, wall.goal, cpu.rate, cpu.ratio, cpu.goal];
};
printTable(
  `collector-throughput - ${counts[0]} BTC/USDT trades per run from the simulator over WebSocket, ${ROUNDS} rounds`,
  ['consumer', 'msgs/s', 'ratio', 'goal', 'msgs/cpu-s', 'ratio (cpu)', 'goal (cpu)'],
  [
    row('reference', '[reference] ccxt.pro watchTrades loop, counting'),
    row('noise', '[noise] the reference again, same round'),
    row('collector', 'MarketCollector -> EventBatcher -> MemoryStream'),
  ],
  [
    'msgs/s: trades / wall time from the burst printed to the last trade counted (reference) or published and flushed (collector); median ± half range over rounds',
    'msgs/cpu-s: the same per CPU-second this process used (all threads): the figure other processes on a shared machine disturb least',
    'ratio: reference time / consumer time, round by round, median (min-max); the noise row shows how far 1 wanders here',
    'each consumer connects its own ccxt.pro binance (connectExchanges, rate limiter on) to its own simulator (same seed); trades channel only',
  ],
);

export default figuresOnly('collector-throughput', 'ccxt.pro + collector vs ccxt.pro alone over the simulator: figures on stderr above');
