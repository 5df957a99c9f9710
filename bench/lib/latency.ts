/**
 * Latency figures for benchmarks of asynchronous work (a database round trip, a pipeline's lag),
 * which the harness's throughput loop (measure.ts: synchronous ops, medians over rounds) does not
 * express. Such a benchmark measures at import time, prints its tables to stderr (the child's
 * stdout is not shown) and exports `figuresOnly(...)` as its harness entry, so the run lists it.
 */
import { defineBench, type BenchDefinition } from './measure.js';
import { renderTable } from './report.js';

/** Nearest-rank percentile (p in 0..100) of a non-empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('percentile of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly min: number;
}

export function latencySummary(values: readonly number[]): LatencySummary {
  return {
    count: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: Math.max(...values),
    min: Math.min(...values),
  };
}

/** ms with 2 significant decimals below 10, 1 below 100, none above. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const abs = Math.abs(ms);
  return abs < 10 ? ms.toFixed(2) : abs < 100 ? ms.toFixed(1) : ms.toFixed(0);
}

/** A titled table, indented like the harness's, written to stderr. */
export function printTable(title: string, header: readonly string[], rows: readonly (readonly string[])[], notes: readonly string[] = []): void {
  const lines = [title, ...renderTable(header, rows).map((l) => `  ${l}`), ...notes.map((n) => `  - ${n}`)];
  process.stderr.write(`${lines.join('\n')}\n\n`);
}

/** ms since an arbitrary origin, sub-millisecond. */
export function nowMs(): number {
  return performance.now();
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The harness entry of a benchmark whose figures were printed above: one untimed placeholder row
 * (the skip pattern of the other I/O benchmarks), so `npm run bench` lists it and fails it if the
 * measurement threw at import.
 */
export function figuresOnly(name: string, title: string): BenchDefinition {
  return defineBench({
    name,
    title,
    unit: 'op',
    unitsPerOp: 1,
    reference: { name: 'nothing timed here (latency figures are on stderr above)', fn: () => 0 },
    cases: [],
    options: { rounds: 1, roundMs: 1, warmupMs: 1 },
  });
}
