/**
 * Pure statistics of the bench harness: medians, spreads, paired ratios and goals. No timing here,
 * so all of it is unit-tested (tests/unit/bench-harness.test.ts).
 */

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new RangeError('spread of an empty list');
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** Half the min–max range relative to the median, in percent (±x%): a plain noise figure. */
export function relativeSpreadPct(s: Spread): number {
  return s.median === 0 ? 0 : ((s.max - s.min) / 2 / s.median) * 100;
}

/**
 * Throughput of a case relative to the reference, round by round: reference time ÷ case time
 * (> 1: faster than the reference). Both were timed in the same round, one after the other, so a
 * slow moment of the machine hits both; the median of the per-round ratios is the figure.
 */
export function pairedRatios(referenceNs: readonly number[], caseNs: readonly number[]): number[] {
  if (referenceNs.length !== caseNs.length) {
    throw new RangeError(`paired samples differ in length: ${referenceNs.length} vs ${caseNs.length}`);
  }
  return referenceNs.map((ref, i) => {
    const own = caseNs[i]!;
    if (!(ref > 0) || !(own > 0)) throw new RangeError(`round ${i}: times must be > 0 (reference ${ref}, case ${own})`);
    return ref / own;
  });
}

export function ratioSpread(referenceNs: readonly number[], caseNs: readonly number[]): Spread {
  return spread(pairedRatios(referenceNs, caseNs));
}

/** What a benchmark aims for; only a ratio goal for now (throughput relative to the reference). */
export interface Goal {
  /** the case's median ratio must be at least this */
  readonly minRatio: number;
}

export interface GoalResult {
  readonly minRatio: number;
  readonly met: boolean;
  /** met on the median, but the slowest round fell below the goal (or the reverse) */
  readonly borderline: boolean;
}

export function evaluateGoal(goal: Goal, ratio: Spread): GoalResult {
  const met = ratio.median >= goal.minRatio;
  const borderline = met ? ratio.min < goal.minRatio : ratio.max >= goal.minRatio;
  return { minRatio: goal.minRatio, met, borderline };
}

/** "met", "NOT met", with "(borderline)" when the rounds straddle the goal. */
export function goalLabel(result: GoalResult): string {
  return `${result.met ? 'met' : 'NOT met'}${result.borderline ? ' (borderline)' : ''}`;
}
