/**
 * The simulated exchange in a child process, for benchmarks that measure the collector's own process:
 * the simulator keeps every trade it printed (its history grows without bound) and takes CPU of its
 * own, so in-process it would show up in the collector's RSS and event loop.
 *
 *   const sim = await SimProcess.start({ seed: 7, symbols: ['BTC/USDT'], tradesPerSecond: 200 });
 *   ... point ccxt at sim.httpUrl / sim.wsUrl ...
 *   await sim.waitForStreams(['btcusdt@trade']); sim.startMarket(); const { printed } = await sim.stats();
 *   await sim.close();
 *
 * The same file is the child's entry (forked with `--import tsx`): it answers the parent over IPC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';

export interface SimProcessOptions {
  readonly seed: number;
  readonly symbols: readonly string[];
  /** taker orders per second per symbol while the market runs (an order prints ~2.3 trades) */
  readonly tradesPerSecond: number;
}

export interface SimStats {
  /** raw trades printed so far, all symbols */
  readonly printed: number;
  /** Date.now() in the child when counted */
  readonly at: number;
  /** the child's CPU time (user + system) so far, ms */
  readonly cpuMs: number;
  readonly rss: number;
}

type Request =
  | { id: number; op: 'waitForStreams'; streams: string[] }
  | { id: number; op: 'start' }
  | { id: number; op: 'stop' }
  | { id: number; op: 'stats' }
  | { id: number; op: 'close' };
type Reply = { id: number; ok: true; value?: unknown } | { id: number; ok: false; error: string };
/** Omit distributed over a union's members. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type Hello = { ready: true; httpUrl: string; wsUrl: string } | { ready: false; error: string };

const SELF = fileURLToPath(import.meta.url);

export class SimProcess {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly child: ChildProcess,
    readonly httpUrl: string,
    readonly wsUrl: string,
  ) {
    child.on('message', (m) => {
      const reply = m as Reply;
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (reply.ok) w.resolve(reply.value);
      else w.reject(new Error(`simulator process: ${reply.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiting.values()) w.reject(new Error(`simulator process exited (${signal ?? code})`));
      this.waiting.clear();
    });
  }

  /** Forks the simulator and resolves once it listens. */
  static async start(options: SimProcessOptions): Promise<SimProcess> {
    const child = fork(SELF, [JSON.stringify(options)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const hello = await new Promise<Hello>((resolve, reject) => {
      child.once('message', (m) => resolve(m as Hello));
      child.once('exit', (code) => reject(new Error(`simulator process exited (${code}) before it listened`)));
    });
    if (!hello.ready) {
      child.kill();
      throw new Error(`simulator process: ${hello.error}`);
    }
    return new SimProcess(child, hello.httpUrl, hello.wsUrl);
  }

  waitForStreams(streams: readonly string[]): Promise<void> {
    return this.call({ op: 'waitForStreams', streams: [...streams] }) as Promise<void>;
  }

  /** Starts printing on the market's timer. */
  startMarket(): Promise<void> {
    return this.call({ op: 'start' }) as Promise<void>;
  }

  stopMarket(): Promise<void> {
    return this.call({ op: 'stop' }) as Promise<void>;
  }

  stats(): Promise<SimStats> {
    return this.call({ op: 'stats' }) as Promise<SimStats>;
  }

  /** Closes the simulator and waits for the process to exit. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    await this.call({ op: 'close' }).catch(() => undefined);
    await exited;
  }

  private call(request: WithoutId<Request>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ ...request, id });
    });
  }
}

/** The child's side: one simulator, answering requests until `close`. */
async function serve(options: SimProcessOptions): Promise<void> {
  let sim: SimulatedExchange;
  try {
    sim = await startSimulatedExchange({ seed: options.seed, symbols: options.symbols, tradesPerSecond: options.tradesPerSecond, autoRun: false });
  } catch (error) {
    process.send?.({ ready: false, error: (error as Error).message } satisfies Hello);
    process.exit(1);
  }
  process.send?.({ ready: true, httpUrl: sim.httpUrl, wsUrl: sim.wsUrl } satisfies Hello);
  // the parent is gone (it crashed or was killed): nobody will ask for `close`
  process.once('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    const request = m as Request;
    const reply = (r: WithoutId<Reply>) => process.send?.({ ...r, id: request.id } as Reply);
    const run = async (): Promise<unknown> => {
      switch (request.op) {
        case 'waitForStreams':
          return sim.waitForStreams(request.streams, { timeoutMs: 30_000 });
        case 'start':
          return sim.market.start();
        case 'stop':
          return sim.market.stop();
        case 'stats': {
          const cpu = process.cpuUsage();
          const printed = options.symbols.reduce((n, s) => n + sim.printedTrades(s).length, 0);
          return { printed, at: Date.now(), cpuMs: (cpu.user + cpu.system) / 1000, rss: process.memoryUsage().rss } satisfies SimStats;
        }
        case 'close':
          await sim.close();
          reply({ ok: true });
          process.exit(0);
      }
    };
    run().then(
      (value) => reply({ ok: true, value }),
      (error: unknown) => reply({ ok: false, error: (error as Error).message }),
    );
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.send) {
  await serve(JSON.parse(process.argv[2]!) as SimProcessOptions);
}
