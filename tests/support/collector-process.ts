/**
 * The collector's Fargate entry (functions/collector/main.ts) as a child process, as ECS runs it:
 * configuration from the environment, structured logs on stderr, SIGTERM to stop it.
 *
 *   const child = startCollectorProcess({ MARKETS: 'binance:BTC/USDT', STREAM_NAME: 's', ... });
 *   await child.waitForLog('collector started');
 *   const { code } = await child.terminate();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import type { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { SqlClient } from '../../layers/shared/src/adapters/stores/sql-client.js';
import type { SimulatedExchange } from '../../local/sim/server.js';
import { postgresTradeCounts, waitFor } from './pipeline.js';

/** One structured log line of the child. */
export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface CollectorProcess {
  readonly pid: number;
  /** every structured log line so far */
  readonly logs: readonly LogLine[];
  /** stderr that was not a structured log line (warnings, stack traces) */
  readonly otherOutput: string;
  readonly exitCode: number | null;
  /** Resolves with the first log line whose msg is `msg`; rejects if the child exits first or after timeoutMs. */
  waitForLog(msg: string, timeoutMs?: number): Promise<LogLine>;
  /** Sends SIGTERM and resolves with how the child exited (rejects after timeoutMs). */
  terminate(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if it still runs (clean-up). */
  kill(): Promise<void>;
}

/** Spawns `node --import tsx functions/collector/main.ts` with exactly `env` (plus PATH). */
export function startCollectorProcess(env: Record<string, string>): CollectorProcess {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'functions/collector/main.ts'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs: LogLine[] = [];
  let otherOutput = '';
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        otherOutput += `${line}\n`;
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  return {
    pid: child.pid!,
    logs,
    get otherOutput() {
      return otherOutput;
    },
    get exitCode() {
      return child.exitCode;
    },
    async waitForLog(msg, timeoutMs = 30_000) {
      const found = await waitFor(
        `the collector to log "${msg}"`,
        () => {
          const line = logs.find((l) => l.msg === msg);
          if (!line && child.exitCode !== null) {
            throw new Error(`collector exited (${child.exitCode}) without logging "${msg}": ${otherOutput}${JSON.stringify(logs.slice(-5))}`);
          }
          return line;
        },
        (line) => line !== undefined,
        { timeoutMs, intervalMs: 50 },
      );
      return found!;
    },
    async terminate(timeoutMs = 60_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`collector did not exit within ${timeoutMs} ms of SIGTERM`)), timeoutMs);
      });
      try {
        return await Promise.race([exited, late]);
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Every trade the simulator printed for `symbols` is stored, in order, exactly once, and nothing was dead-lettered. */
export async function expectPrintedTradesStoredOnce(
  sim: Pick<SimulatedExchange, 'printedTrades'>,
  store: Pick<PostgresMarketStore, 'trades'>,
  db: SqlClient,
  symbols: readonly string[],
  deadLettered: number,
): Promise<void> {
  for (const symbol of symbols) {
    const printed = sim.printedTrades(symbol);
    const stored = await store.trades({ exchange: 'binance', symbol, limit: 100_000 });
    expect(stored.map((t) => t.id), symbol).toEqual(printed.map((t) => String(t.id)));
  }
  const counts = await postgresTradeCounts(db);
  expect(counts.rows).toBe(counts.distinct);
  expect(deadLettered).toBe(0);
}
