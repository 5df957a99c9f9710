/**
 * How a benchmark is declared and timed. The timing loop is deliberately plain:
 *
 * - warm-up: every case runs for `warmupMs` (interleaved), which also estimates its time per op;
 * - then `rounds` rounds; in each, every case runs `opsPerRound` ops (sized to take ~`roundMs`),
 *   one case after the other in an order rotated each round, so the reference and the cases share
 *   the machine's slow and fast moments (ratios are taken round by round);
 * - a full GC (when node runs with --expose-gc) before each timed run, so one case's garbage is not
 *   collected on another's clock; heap used after that GC, minus before the run, is the case's
 *   retained heap growth for the round (what it keeps: caches, leaks; not what it allocates);
 * - every result is consumed (kept and folded into a checksum) so no work can be optimized away.
 *
 * tinybench (which vitest pulls in) times one task after another with no GC control, so it gives
 * neither paired per-round ratios nor a clean heap between cases; this small loop does.
 */
import type { Goal } from './stats.js';

/** One op of a case: returns what it computed (never nothing: that is how work gets optimized away). */
export type BenchFn = () => unknown;

export interface BenchCase {
  readonly name: string;
  readonly fn: BenchFn;
  readonly goal?: Goal;
  /** one line shown under the table */
  readonly note?: string;
}

export interface MeasureOptions {
  readonly rounds: number;
  /** target time of one case in one round */
  readonly roundMs: number;
  /** time each case runs before the rounds */
  readonly warmupMs: number;
}

export const DEFAULT_MEASURE_OPTIONS: MeasureOptions = { rounds: 9, roundMs: 30, warmupMs: 200 };

export interface BenchDefinition {
  readonly name: string;
  readonly title: string;
  /** what one op processes, e.g. 'msg' */
  readonly unit: string;
  /** units per op, e.g. 1000 frames per op */
  readonly unitsPerOp: number;
  /** the yardstick every case's ratio is taken against, timed in the same rounds on the same input */
  readonly reference: BenchCase;
  readonly cases: readonly BenchCase[];
  /** runs once before timing; throws when a case computes something other than it should */
  readonly check?: () => void;
  readonly options?: Partial<MeasureOptions>;
}

export function defineBench(def: BenchDefinition): BenchDefinition {
  if (!(Number.isInteger(def.unitsPerOp) && def.unitsPerOp > 0)) throw new RangeError(`${def.name}: unitsPerOp must be a positive integer`);
  const names = [def.reference.name, ...def.cases.map((c) => c.name)];
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new RangeError(`${def.name}: case name '${dup}' is used twice`);
  if (def.reference.goal) throw new RangeError(`${def.name}: the reference cannot have a goal`);
  return def;
}

/** Clock, GC and heap, injectable so the loop's bookkeeping can be tested without timing anything. */
export interface MeasureHooks {
  /** monotonic time in ns */
  now(): number;
  /** full GC, or undefined when node was not started with --expose-gc */
  readonly gc: (() => void) | undefined;
  heapUsed(): number;
  /** progress lines (stderr) */
  log?(line: string): void;
}

export function nodeHooks(): MeasureHooks {
  const gc = (globalThis as { gc?: () => void }).gc;
  return {
    now: () => Number(process.hrtime.bigint()),
    gc: typeof gc === 'function' ? () => gc() : undefined,
    heapUsed: () => process.memoryUsage().heapUsed,
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

export interface CaseSamples {
  readonly name: string;
  readonly isReference: boolean;
  readonly goal?: Goal;
  readonly note?: string;
  readonly opsPerRound: number;
  /** ns per op, one per round (paired by index with the reference's) */
  readonly nsPerOp: number[];
  /** retained heap growth per round in bytes; empty without --expose-gc */
  readonly heapDelta: number[];
}

export interface BenchSamples {
  readonly name: string;
  readonly title: string;
  readonly unit: string;
  readonly unitsPerOp: number;
  readonly options: MeasureOptions;
  readonly gcExposed: boolean;
  /** reference first */
  readonly cases: readonly CaseSamples[];
}

// ---- dead-code-elimination guard ----------------------------------------------------------------

let sink: unknown;
let checksum = 0;

/** Keeps the result reachable and folds something of it into a checksum the report prints. */
export function consume(result: unknown): void {
  sink = result;
  checksum = (checksum + weigh(result)) | 0;
}

function weigh(x: unknown): number {
  if (typeof x === 'number') return x | 0;
  if (typeof x === 'string') return x.length;
  if (typeof x === 'object' && x !== null) {
    const size = (x as { length?: unknown }).length ?? (x as { byteLength?: unknown }).byteLength;
    return typeof size === 'number' ? size : 1;
  }
  return 1;
}

export function consumedChecksum(): number {
  return checksum;
}

/** Drops the last kept result (outside the timed region), so it does not count as retained heap. */
function release(): void {
  if (sink === null) checksum ^= 1;
  sink = undefined;
}

// ---- the loop -------------------------------------------------------------------------------------

/** Runs a case until `ms` have passed (at least 3 ops); returns the median ns/op of the second half. */
function warmUp(fn: BenchFn, ms: number, hooks: MeasureHooks): number {
  const times: number[] = [];
  const end = hooks.now() + ms * 1e6;
  while (times.length < 3 || hooks.now() < end) {
    const t0 = hooks.now();
    consume(fn());
    times.push(hooks.now() - t0);
  }
  release();
  const late = times.slice(times.length >> 1).sort((a, b) => a - b);
  return Math.max(1, late[late.length >> 1]!);
}

export function opsPerRound(roundMs: number, estimatedNsPerOp: number): number {
  return Math.max(1, Math.round((roundMs * 1e6) / Math.max(1, estimatedNsPerOp)));
}

/** Order of the cases in round `round`: rotated by one each round. */
export function roundOrder(count: number, round: number): number[] {
  return Array.from({ length: count }, (_, i) => (i + round) % count);
}

export function measureBench(def: BenchDefinition, overrides: Partial<MeasureOptions> = {}, hooks: MeasureHooks = nodeHooks()): BenchSamples {
  const options: MeasureOptions = { ...DEFAULT_MEASURE_OPTIONS, ...def.options, ...overrides };
  if (!(Number.isInteger(options.rounds) && options.rounds >= 1)) throw new RangeError('rounds must be a positive integer');
  const all = [def.reference, ...def.cases];
  for (const c of all) {
    if (c.fn() === undefined) throw new TypeError(`${def.name} / ${c.name}: the function returned nothing; return the result so it can be consumed`);
  }
  def.check?.();

  hooks.log?.(`${def.name}: warming up ${all.length} cases`);
  const estimates = all.map((c) => warmUp(c.fn, options.warmupMs, hooks));
  const ops = estimates.map((ns) => opsPerRound(options.roundMs, ns));
  const nsPerOp: number[][] = all.map(() => []);
  const heapDelta: number[][] = all.map(() => []);

  hooks.log?.(`${def.name}: ${options.rounds} rounds x ${all.length} cases x ~${options.roundMs} ms`);
  for (let round = 0; round < options.rounds; round++) {
    hooks.gc?.();
    let heapBefore = hooks.heapUsed();
    for (const i of roundOrder(all.length, round)) {
      const fn = all[i]!.fn;
      const n = ops[i]!;
      const t0 = hooks.now();
      for (let k = 0; k < n; k++) consume(fn());
      const t1 = hooks.now();
      release();
      nsPerOp[i]!.push((t1 - t0) / n);
      if (hooks.gc) {
        hooks.gc();
        const heapAfter = hooks.heapUsed();
        heapDelta[i]!.push(heapAfter - heapBefore);
        heapBefore = heapAfter;
      }
    }
  }

  return {
    name: def.name,
    title: def.title,
    unit: def.unit,
    unitsPerOp: def.unitsPerOp,
    options,
    gcExposed: hooks.gc !== undefined,
    cases: all.map((c, i) => ({
      name: c.name,
      isReference: i === 0,
      ...(c.goal ? { goal: c.goal } : {}),
      ...(c.note ? { note: c.note } : {}),
      opsPerRound: ops[i]!,
      nsPerOp: nsPerOp[i]!,
      heapDelta: heapDelta[i]!,
    })),
  };
}
