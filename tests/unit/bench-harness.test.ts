import { describe, expect, it } from 'vitest';
import { benchFiles, parseCli } from '../../bench/run.js';
import { defineBench, measureBench, opsPerRound, roundOrder, type BenchDefinition, type MeasureHooks } from '../../bench/lib/measure.js';
import {
  formatBench,
  formatBytes,
  formatNs,
  formatRate,
  formatReport,
  jsonReport,
  renderTable,
  summarize,
  type BenchSummary,
  type RunEnvironment,
} from '../../bench/lib/report.js';
import { evaluateGoal, goalLabel, median, pairedRatios, ratioSpread, relativeSpreadPct, spread } from '../../bench/lib/stats.js';

// No timing here: the harness's arithmetic, bookkeeping and output, on a fake clock.

describe('bench stats', () => {
  it('takes the median of odd and even counts, unsorted, without reordering the input', () => {
    const values = [5, 1, 3];
    expect(median(values)).toBe(3);
    expect(values).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(() => median([])).toThrow(RangeError);
  });

  it('gives median, min and max, and the spread as +- half the range in % of the median', () => {
    const s = spread([110, 90, 100]);
    expect(s).toEqual({ median: 100, min: 90, max: 110 });
    expect(relativeSpreadPct(s)).toBeCloseTo(10);
    expect(relativeSpreadPct({ median: 0, min: 0, max: 0 })).toBe(0);
  });

  it('takes ratios round by round: reference time / case time', () => {
    expect(pairedRatios([100, 200, 100], [400, 400, 50])).toEqual([0.25, 0.5, 2]);
    expect(ratioSpread([100, 200, 100], [400, 400, 50])).toEqual({ median: 0.5, min: 0.25, max: 2 });
    expect(() => pairedRatios([1, 2], [1])).toThrow(/differ in length/);
    expect(() => pairedRatios([1], [0])).toThrow(/> 0/);
  });

  it('judges a ratio goal on the median and flags rounds on the other side', () => {
    expect(evaluateGoal({ minRatio: 0.6 }, { median: 0.7, min: 0.65, max: 0.8 })).toEqual({ minRatio: 0.6, met: true, borderline: false });
    expect(evaluateGoal({ minRatio: 0.6 }, { median: 0.61, min: 0.55, max: 0.7 })).toEqual({ minRatio: 0.6, met: true, borderline: true });
    expect(evaluateGoal({ minRatio: 0.6 }, { median: 0.5, min: 0.4, max: 0.59 })).toEqual({ minRatio: 0.6, met: false, borderline: false });
    const straddling = evaluateGoal({ minRatio: 0.6 }, { median: 0.58, min: 0.5, max: 0.62 });
    expect(straddling).toEqual({ minRatio: 0.6, met: false, borderline: true });
    expect(goalLabel(straddling)).toBe('NOT met (borderline)');
    expect(goalLabel({ minRatio: 0.6, met: true, borderline: false })).toBe('met');
  });
});

/** A machine whose clock only moves when a benchmark function "works". */
function fakeMachine() {
  let t = 0;
  let heap = 1_000_000;
  const calls: string[] = [];
  let gcs = 0;
  const hooks: MeasureHooks = { now: () => t, gc: () => void gcs++, heapUsed: () => heap };
  const fn =
    (name: string, ns: number, retainedBytes = 0) =>
    () => {
      t += ns;
      heap += retainedBytes;
      calls.push(name);
      return [name];
    };
  return { hooks, fn, calls, gcs: () => gcs };
}

function bench(m: ReturnType<typeof fakeMachine>, extra: Partial<BenchDefinition> = {}): BenchDefinition {
  return defineBench({
    name: 'fake',
    title: 'fake work',
    unit: 'msg',
    unitsPerOp: 100,
    reference: { name: 'ref', fn: m.fn('ref', 1_000) },
    cases: [{ name: 'slow', fn: m.fn('slow', 4_000, 8), goal: { minRatio: 0.6 } }],
    ...extra,
  });
}

describe('bench measurement loop (fake clock)', () => {
  it('sizes rounds from the warm-up and records exact ns/op per round, reference first', () => {
    const m = fakeMachine();
    const samples = measureBench(bench(m), { rounds: 3, roundMs: 0.01, warmupMs: 0.05 }, m.hooks);
    expect(samples.cases.map((c) => c.name)).toEqual(['ref', 'slow']);
    expect(samples.cases[0]!.isReference).toBe(true);
    // 10 µs rounds: 10 ops of 1 µs, round(2.5) = 3 ops of 4 µs
    expect(samples.cases.map((c) => c.opsPerRound)).toEqual([10, 3]);
    expect(samples.cases[0]!.nsPerOp).toEqual([1_000, 1_000, 1_000]);
    expect(samples.cases[1]!.nsPerOp).toEqual([4_000, 4_000, 4_000]);
    expect(samples.options).toEqual({ rounds: 3, roundMs: 0.01, warmupMs: 0.05 });
    expect(samples.gcExposed).toBe(true);
  });

  it('forces a GC before every timed run and reports retained heap per round', () => {
    const m = fakeMachine();
    const samples = measureBench(bench(m), { rounds: 2, roundMs: 0.01, warmupMs: 0.01 }, m.hooks);
    expect(m.gcs()).toBe(2 * (1 + 2)); // per round: one before, one after each case
    expect(samples.cases[0]!.heapDelta).toEqual([0, 0]);
    expect(samples.cases[1]!.heapDelta).toEqual([24, 24]); // 3 ops x 8 bytes kept
  });

  it('rotates the order of the cases every round', () => {
    expect(roundOrder(3, 0)).toEqual([0, 1, 2]);
    expect(roundOrder(3, 1)).toEqual([1, 2, 0]);
    expect(roundOrder(3, 4)).toEqual([1, 2, 0]);
    const m = fakeMachine();
    measureBench(bench(m), { rounds: 2, roundMs: 0.004, warmupMs: 0.001 }, m.hooks);
    const timed = m.calls.slice(-2 * (4 + 1)); // 4 ref ops + 1 slow op per round
    expect(timed).toEqual(['ref', 'ref', 'ref', 'ref', 'slow', 'slow', 'ref', 'ref', 'ref', 'ref']);
  });

  it('runs at least one op per round, and has no heap figures without a GC', () => {
    expect(opsPerRound(1, 5e6)).toBe(1);
    expect(opsPerRound(10, 1e6)).toBe(10);
    const m = fakeMachine();
    const samples = measureBench(bench(m), { rounds: 1, roundMs: 0.001, warmupMs: 0.001 }, { ...m.hooks, gc: undefined });
    expect(samples.gcExposed).toBe(false);
    expect(samples.cases.every((c) => c.heapDelta.length === 0)).toBe(true);
  });

  it('refuses functions that return nothing and runs the check before timing', () => {
    const m = fakeMachine();
    const silent = bench(m, { cases: [{ name: 'silent', fn: () => undefined }] });
    expect(() => measureBench(silent, { rounds: 1 }, m.hooks)).toThrow(/returned nothing/);
    const failing = bench(m, {
      check: () => {
        throw new Error('outputs differ');
      },
    });
    expect(() => measureBench(failing, { rounds: 1 }, m.hooks)).toThrow('outputs differ');
  });

  it('rejects ill-formed definitions', () => {
    const m = fakeMachine();
    expect(() => bench(m, { cases: [{ name: 'ref', fn: m.fn('x', 1) }] })).toThrow(/used twice/);
    expect(() => bench(m, { unitsPerOp: 0 })).toThrow(/unitsPerOp/);
    expect(() => bench(m, { reference: { name: 'ref', fn: m.fn('ref', 1), goal: { minRatio: 1 } } })).toThrow(/reference cannot have a goal/);
  });
});

function summaryOf(refNs: number[], caseNs: number[], goal = 0.6): BenchSummary {
  return summarize({
    name: 'fake',
    title: 'fake work',
    unit: 'msg',
    unitsPerOp: 1000,
    options: { rounds: refNs.length, roundMs: 30, warmupMs: 200 },
    gcExposed: true,
    cases: [
      { name: 'ref', isReference: true, opsPerRound: 10, nsPerOp: refNs, heapDelta: refNs.map(() => 0) },
      { name: 'path', isReference: false, goal: { minRatio: goal }, note: 'the whole path', opsPerRound: 2, nsPerOp: caseNs, heapDelta: caseNs.map(() => 2048) },
    ],
  });
}

describe('bench summary', () => {
  it('derives per-unit figures, ratios and goals from the samples', () => {
    const s = summaryOf([700_000, 800_000, 600_000], [2_000_000, 1_600_000, 1_500_000]);
    const [ref, path] = s.cases;
    expect(ref!.ratio).toEqual({ median: 1, min: 1, max: 1 });
    expect(ref!.nsPerUnit.median).toBe(700);
    expect(ref!.unitsPerSec).toBeCloseTo(1e9 / 700);
    expect(path!.nsPerUnit).toEqual({ median: 1600, min: 1500, max: 2000 });
    expect(path!.ratio).toEqual({ median: 0.4, min: 0.35, max: 0.5 });
    expect(path!.goalResult).toEqual({ minRatio: 0.6, met: false, borderline: false });
    expect(path!.heapDelta).toEqual({ median: 2048, min: 2048, max: 2048 });
    expect(s.reference).toBe('ref');
  });
});

describe('bench output', () => {
  it('formats rates, ns and bytes for a plain table', () => {
    expect(formatRate(1_234_567)).toBe('1.23M');
    expect(formatRate(45_600)).toBe('45.6k');
    expect(formatRate(999)).toBe('999');
    expect(formatNs(12_081.4)).toBe('12,081');
    expect(formatNs(91.14)).toBe('91.1');
    expect(formatBytes(0)).toBe('+0 B');
    expect(formatBytes(-1536)).toBe('-1.5 KB');
    expect(formatBytes(3 * 1024 * 1024)).toBe('+3.0 MB');
  });

  it('aligns columns: names left, figures right', () => {
    const lines = renderTable(['case', 'ns', 'goal'], [['a', '1', ''], ['longer', '1,000', 'met']]);
    expect(lines).toEqual(['case       ns  goal', '------  -----  ----', 'a           1', 'longer  1,000  met']);
  });

  it('prints one table per benchmark with ratios and goals, never a failure for a missed goal', () => {
    const text = formatBench(summaryOf([700_000, 700_000, 700_000], [1_000_000, 1_000_000, 1_100_000]));
    expect(text).toContain('fake - fake work');
    expect(text).toMatch(/ref \[reference\]\s+1\.43M\s+700/);
    expect(text).toMatch(/path\s+1\.00M\s+1,000\s+\+-5\.0%\s+\+2\.0 KB\s+0\.700 \(0\.636-0\.700\)\s+>= 0\.6: met/);
    expect(text).toContain('  - path: the whole path');
    expect(text).not.toContain('machine was busy');
    expect(formatBench(summaryOf([700_000, 700_000, 700_000], [2_000_000, 2_000_000, 2_000_000]))).toContain('>= 0.6: NOT met');
    expect(formatBench(summaryOf([500_000, 700_000, 900_000], [2_000_000, 2_000_000, 2_000_000]))).toContain('machine was busy');
  });

  const env: RunEnvironment = { node: 'v20.0.0', platform: 'linux x64', cpu: 'cpu', cores: 2, gcExposed: false, date: '2026-01-01T00:00:00.000Z' };

  it('warns in the header when GC cannot be forced and lists failed files', () => {
    const text = formatReport(env, [summaryOf([1, 1, 1], [2, 2, 2])], [{ file: 'broken.bench.ts', error: 'boom' }]);
    expect(text).toContain('WARNING: node runs without --expose-gc');
    expect(text).toContain('FAILED broken.bench.ts: boom');
    expect(text.endsWith('\n')).toBe(true);
  });

  it('writes a JSON document with every figure and a goal tally', () => {
    const doc = jsonReport(env, [summaryOf([1, 1, 1], [2, 2, 2]), summaryOf([1, 1, 1], [1, 1, 1], 0.9)], [], 42);
    expect(doc.format).toBe('qicore-bench/1');
    expect(doc.goals).toEqual({ total: 2, met: 1 });
    expect(doc.checksum).toBe(42);
    const round = JSON.parse(JSON.stringify(doc)) as typeof doc;
    expect(round.benches[0]!.cases[1]!.ratio).toEqual({ median: 0.5, min: 0.5, max: 0.5 });
  });
});

describe('bench command line', () => {
  it('reads flags, with --quick as a preset the explicit flags override', () => {
    expect(parseCli([])).toEqual({ json: false, out: undefined, filter: undefined, inProcess: false, child: undefined, measure: {} });
    const cli = parseCli(['--json', '--out=r.json', '--filter=path', '--quick', '--rounds=7']);
    expect(cli).toMatchObject({ json: true, out: 'r.json', filter: 'path', measure: { rounds: 7, roundMs: 20, warmupMs: 100 } });
    expect(() => parseCli(['--rounds=zero'])).toThrow(/--rounds/);
    expect(() => parseCli(['--nope'])).toThrow();
  });

  it('finds *.bench.ts files, sorted and filtered', () => {
    const names = ['run.ts', 'b.bench.ts', 'lib', 'a.bench.ts', 'a.bench.ts.bak', 'collector-path.bench.ts'];
    expect(benchFiles(names)).toEqual(['a.bench.ts', 'b.bench.ts', 'collector-path.bench.ts']);
    expect(benchFiles(names, 'path')).toEqual(['collector-path.bench.ts']);
  });
});
