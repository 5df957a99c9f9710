/** Figures of a measured benchmark, the plain-text table and the JSON document. Pure; unit-tested. */
import type { BenchSamples, MeasureOptions } from './measure.js';
import { evaluateGoal, goalLabel, ratioSpread, relativeSpreadPct, spread, type Goal, type GoalResult, type Spread } from './stats.js';

export interface CaseSummary {
  readonly name: string;
  readonly isReference: boolean;
  readonly note?: string;
  readonly rounds: number;
  readonly opsPerRound: number;
  readonly nsPerOp: Spread;
  readonly nsPerUnit: Spread;
  /** units per second at the median */
  readonly unitsPerSec: number;
  /** ± half the min–max range of ns/op, % of the median */
  readonly spreadPct: number;
  /** retained heap growth per round after a full GC, bytes; null without --expose-gc */
  readonly heapDelta: Spread | null;
  /** reference time ÷ this case's time, per round (1 for the reference itself) */
  readonly ratio: Spread;
  readonly goal?: Goal;
  readonly goalResult?: GoalResult;
}

export interface BenchSummary {
  readonly name: string;
  readonly title: string;
  readonly unit: string;
  readonly unitsPerOp: number;
  readonly options: MeasureOptions;
  readonly gcExposed: boolean;
  readonly reference: string;
  readonly cases: readonly CaseSummary[];
}

export function summarize(samples: BenchSamples): BenchSummary {
  const reference = samples.cases.find((c) => c.isReference);
  if (!reference) throw new Error(`${samples.name}: no reference case`);
  return {
    name: samples.name,
    title: samples.title,
    unit: samples.unit,
    unitsPerOp: samples.unitsPerOp,
    options: samples.options,
    gcExposed: samples.gcExposed,
    reference: reference.name,
    cases: samples.cases.map((c): CaseSummary => {
      const nsPerOp = spread(c.nsPerOp);
      const nsPerUnit = { median: nsPerOp.median / samples.unitsPerOp, min: nsPerOp.min / samples.unitsPerOp, max: nsPerOp.max / samples.unitsPerOp };
      const ratio = c.isReference ? { median: 1, min: 1, max: 1 } : ratioSpread(reference.nsPerOp, c.nsPerOp);
      return {
        name: c.name,
        isReference: c.isReference,
        ...(c.note ? { note: c.note } : {}),
        rounds: c.nsPerOp.length,
        opsPerRound: c.opsPerRound,
        nsPerOp,
        nsPerUnit,
        unitsPerSec: 1e9 / nsPerUnit.median,
        spreadPct: relativeSpreadPct(nsPerOp),
        heapDelta: c.heapDelta.length > 0 ? spread(c.heapDelta) : null,
        ratio,
        ...(c.goal ? { goal: c.goal, goalResult: evaluateGoal(c.goal, ratio) } : {}),
      };
    }),
  };
}

// ---- number formatting ----------------------------------------------------------------------------

/** 1234567 -> "1.23M", 45600 -> "45.6k", 999 -> "999". */
export function formatRate(perSec: number): string {
  if (!Number.isFinite(perSec)) return String(perSec);
  const abs = Math.abs(perSec);
  if (abs >= 1e9) return `${(perSec / 1e9).toFixed(2)}G`;
  if (abs >= 1e6) return `${(perSec / 1e6).toFixed(2)}M`;
  if (abs >= 1e3) return `${(perSec / 1e3).toFixed(1)}k`;
  return perSec.toFixed(0);
}

/** ns with thousands separators; one decimal below 100 ns. */
export function formatNs(ns: number): string {
  if (Math.abs(ns) < 100) return ns.toFixed(1);
  return Math.round(ns).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Signed byte count: "+0 B", "-1.5 KB", "+2.3 MB". */
export function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '+';
  const abs = Math.abs(bytes);
  if (abs >= 1024 * 1024) return `${sign}${(abs / 1024 / 1024).toFixed(1)} MB`;
  if (abs >= 1024) return `${sign}${(abs / 1024).toFixed(1)} KB`;
  return `${sign}${Math.round(abs)} B`;
}

export function formatRatio(ratio: Spread, isReference: boolean): string {
  if (isReference) return '1 (ref)';
  return `${ratio.median.toFixed(3)} (${ratio.min.toFixed(3)}-${ratio.max.toFixed(3)})`;
}

export function formatGoal(c: CaseSummary): string {
  if (!c.goal || !c.goalResult) return '';
  return `>= ${c.goal.minRatio}: ${goalLabel(c.goalResult)}`;
}

// ---- table --------------------------------------------------------------------------------------

/** Left-aligned first column, right-aligned figures, two spaces between columns. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 || i === cells.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

/** Above this spread of the reference, the table says the figures are shaky. */
export const NOISY_SPREAD_PCT = 15;

export function formatBench(b: BenchSummary): string {
  const u = b.unit;
  const header = ['case', `${u}s/s`, `ns/${u}`, 'spread', 'heap/round', 'ratio (min-max)', 'goal'];
  const rows = b.cases.map((c) => [
    c.isReference ? `${c.name} [reference]` : c.name,
    formatRate(c.unitsPerSec),
    formatNs(c.nsPerUnit.median),
    `+-${c.spreadPct.toFixed(1)}%`,
    c.heapDelta ? formatBytes(c.heapDelta.median) : 'n/a',
    formatRatio(c.ratio, c.isReference),
    formatGoal(c),
  ]);
  const notes = b.cases.filter((c) => c.note).map((c) => `  - ${c.name}: ${c.note}`);
  const ref = b.cases.find((c) => c.isReference);
  const noisy =
    ref && ref.spreadPct > NOISY_SPREAD_PCT
      ? [`  ! the reference varied +-${ref.spreadPct.toFixed(0)}% between rounds: the machine was busy; ratios are less certain (rerun, or --rounds=15)`]
      : [];
  return [
    `${b.name} - ${b.title}`,
    `  ${b.unitsPerOp} ${u}s per op; ${b.options.rounds} rounds; ratio = ${b.reference} time / case time (per round, median)`,
    ...renderTable(header, rows).map((l) => `  ${l}`),
    ...notes,
    ...noisy,
  ].join('\n');
}

export interface RunEnvironment {
  readonly node: string;
  readonly platform: string;
  readonly cpu: string;
  readonly cores: number;
  readonly gcExposed: boolean;
  readonly date: string;
}

export interface BenchFailure {
  readonly file: string;
  readonly error: string;
}

export function formatReport(env: RunEnvironment, benches: readonly BenchSummary[], failures: readonly BenchFailure[]): string {
  const head = [
    `bench: node ${env.node}, ${env.platform}, ${env.cores} x ${env.cpu}, ${env.date}`,
    env.gcExposed ? 'GC forced before each timed run (--expose-gc).' : 'WARNING: node runs without --expose-gc: no GC between runs, no heap figures.',
    'Figures are medians over rounds; spread is +- half the min-max range. Ratio > 1 means faster than the reference.',
    'Goals are reported, never enforced: a NOT met goal does not fail the run.',
  ];
  const fails = failures.map((f) => `FAILED ${f.file}: ${f.error}`);
  return [...head, '', ...benches.flatMap((b) => [formatBench(b), '']), ...fails].join('\n').trimEnd() + '\n';
}

export interface JsonReport {
  readonly format: 'qicore-bench/1';
  readonly environment: RunEnvironment;
  readonly benches: readonly BenchSummary[];
  readonly failures: readonly BenchFailure[];
  /** goals of all benches: how many met */
  readonly goals: { readonly total: number; readonly met: number };
  /** folded from every consumed result (proof the work was not optimized away) */
  readonly checksum: number;
}

export function jsonReport(env: RunEnvironment, benches: readonly BenchSummary[], failures: readonly BenchFailure[], checksum: number): JsonReport {
  const goals = benches.flatMap((b) => b.cases.flatMap((c) => (c.goalResult ? [c.goalResult] : [])));
  return {
    format: 'qicore-bench/1',
    environment: env,
    benches,
    failures,
    goals: { total: goals.length, met: goals.filter((g) => g.met).length },
    checksum,
  };
}
