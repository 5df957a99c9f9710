import type { Logger } from '../observability/logger.js';
import type { AgentTools, Analysis, Execution, MarketRef, MonitorReport, RiskDecision, RiskLimits, RunBudget, RunSummary } from './contracts.js';
import { createAgentSteps, newRunId, stopStatus, summarizeRun, type RulesOrModelSteps } from './agent-steps.js';
import { clip, createRunUsage } from './run-context.js';

export interface AgentCycleOptions {
  readonly tools: AgentTools;
  readonly limits: RiskLimits;
  readonly budget: RunBudget;
  readonly steps: RulesOrModelSteps;
  readonly runId?: string;
  /** ms epoch; Date.now by default */
  readonly clock?: () => number;
  readonly logger?: Logger;
  /** analysts running at once; default 4 */
  readonly maxParallel?: number;
}

export interface AgentCycleResult {
  readonly summary: RunSummary;
  /** null when the run stopped before the monitor reported */
  readonly report: MonitorReport | null;
  readonly analyses: readonly Analysis[];
  readonly decisions: readonly RiskDecision[];
  readonly executions: readonly Execution[];
}

/**
 * One agent run, composed of the same step entry points the Lambdas run: kill switch -> run_start
 * -> monitor -> an analyst per market (at most `maxParallel` at once) -> risk -> execute -> run_end.
 * The kill switch or the budget stops it cleanly before the next action ('killed',
 * 'budget_exhausted'); anything else ends it as 'failed'. Every ending is in the audit log.
 */
export async function runAgentCycle(options: AgentCycleOptions): Promise<AgentCycleResult> {
  const clock = options.clock ?? Date.now;
  const runId = options.runId ?? newRunId(clock());
  const usage = createRunUsage(options.budget, clock());
  const steps = createAgentSteps({
    tools: options.tools,
    limits: options.limits,
    budget: options.budget,
    steps: options.steps,
    clock,
    usage,
    recordStops: false,
    ...(options.logger && { logger: options.logger }),
  });
  let report: MonitorReport | null = null;
  let analyses: Analysis[] = [];
  let decisions: RiskDecision[] = [];
  try {
    ({ report } = await steps.monitorStep({ runId }));
    analyses = await mapBounded(report.markets, options.maxParallel ?? 4, (market: MarketRef) => steps.analystStep({ runId, market }));
    ({ decisions } = await steps.riskStep({ runId, analyses }));
    const done = await steps.executeStep({ runId, decisions, observations: report.observations.length });
    return { summary: done.summary, report, analyses, decisions, executions: done.executions };
  } catch (error) {
    const status = stopStatus(error) ?? 'failed';
    const proposals = analyses.filter((a) => a.proposal !== null).length;
    const summary = summarizeRun(
      runId,
      status,
      { observations: report?.observations.length ?? 0, proposals, decisions },
      `${status === 'failed' ? 'failed' : 'stopped'}: ${(error as Error).message}`,
    );
    if (status === 'failed') options.logger?.error('agent run failed', { runId, error: (error as Error).message, stack: (error as Error).stack });
    else options.logger?.warn('agent run stopped', { runId, status, reason: (error as Error).message });
    // written with the raw tools: a run out of budget still records its end
    const written = await options.tools
      .call('record_decision', {
        runId,
        agent: 'paper_executor',
        kind: 'run_end',
        inputs: [],
        output: summary,
        summary: clip(`run ${runId} ${status}: ${summary.detail}`, 2000),
      })
      .catch((e: unknown) => ({ isError: true, text: (e as Error).message }));
    if (written.isError) options.logger?.error('run_end not recorded', { runId, error: written.text });
    return { summary, report, analyses, decisions, executions: [] };
  }
}

/**
 * `fn` over `items`, at most `limit` at once, results in input order. A stop (kill switch,
 * budget) in one call is thrown once the calls already running have ended.
 */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw failure;
  return results;
}
