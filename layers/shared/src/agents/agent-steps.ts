import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ValidationError, formatIssues } from '../domain/index.js';
import type { Logger } from '../observability/logger.js';
import {
  AnalysisSchema,
  BudgetExceededError,
  ExecutionSchema,
  KillSwitchEngagedError,
  MarketRefSchema,
  MonitorReportSchema,
  RiskDecisionSchema,
  RunSummarySchema,
  type AgentName,
  type AgentTools,
  type Analysis,
  type AnalystStep,
  type ExecuteStep,
  type Execution,
  type MonitorReport,
  type MonitorStep,
  type RiskDecision,
  type RiskLimits,
  type RiskStep,
  type RunBudget,
  type RunSummary,
} from './contracts.js';
import { clip, createRunContext, createRunUsage, type RunUsage } from './run-context.js';

/**
 * The four steps of a run as Step Functions calls them (one Lambda each) and as the local flow
 * composes them: JSON in, JSON out, both checked against the contract's schemas. Each step asks
 * the kill switch before it starts.
 */

const RunIdSchema = z.string().min(1).max(100);
export const MonitorEventSchema = z.strictObject({ runId: RunIdSchema.optional() });
export const AnalystEventSchema = z.strictObject({ runId: RunIdSchema, market: MarketRefSchema });
export const RiskEventSchema = z.strictObject({ runId: RunIdSchema, analyses: z.array(AnalysisSchema).max(500) });
export const ExecuteEventSchema = z.strictObject({
  runId: RunIdSchema,
  decisions: z.array(RiskDecisionSchema).max(500),
  /** the monitor's observation count, for the run summary (the state machine may pass it on) */
  observations: z.number().int().nonnegative().optional(),
});
export const MonitorResultSchema = z.strictObject({ runId: RunIdSchema, report: MonitorReportSchema });
export const RiskResultSchema = z.strictObject({ runId: RunIdSchema, decisions: z.array(RiskDecisionSchema) });
export const ExecuteResultSchema = z.strictObject({ runId: RunIdSchema, executions: z.array(ExecutionSchema), summary: RunSummarySchema });

export type MonitorResult = z.infer<typeof MonitorResultSchema>;
export type RiskResult = z.infer<typeof RiskResultSchema>;
export type ExecuteResult = z.infer<typeof ExecuteResultSchema>;

/** A step's input (or a step's own output) does not match the contract. */
export class StepPayloadError extends ValidationError {}

export interface RulesOrModelSteps {
  readonly monitor: MonitorStep;
  readonly analyst: AnalystStep;
  readonly risk: RiskStep;
  readonly execute: ExecuteStep;
}

export interface AgentStepDeps {
  readonly tools: AgentTools;
  readonly limits: RiskLimits;
  readonly budget: RunBudget;
  readonly steps: RulesOrModelSteps;
  readonly clock?: () => number;
  readonly logger?: Logger;
  /** shared by every step of one local cycle; each Lambda invocation gets its own budget when absent */
  readonly usage?: RunUsage;
  /**
   * write run_end when a step stops on the kill switch or the budget (Lambdas: the state machine
   * ends there); the local flow writes it itself, with the whole run's figures
   */
  readonly recordStops?: boolean;
}

export interface AgentStepFunctions {
  monitorStep(event: unknown): Promise<MonitorResult>;
  analystStep(event: unknown): Promise<Analysis>;
  riskStep(event: unknown): Promise<RiskResult>;
  executeStep(event: unknown): Promise<ExecuteResult>;
}

/** A run id: sortable by start time, unique enough to key the audit log. */
export function newRunId(now: number = Date.now()): string {
  return `run-${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(4).toString('hex')}`;
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new StepPayloadError(`${what}: ${formatIssues(r.error.issues)}`, r.error.issues.map((i) => i.message));
  return r.data;
}

/** The run's outcome from what it produced; `status` and `detail` from how it ended. */
export function summarizeRun(
  runId: string,
  status: RunSummary['status'],
  parts: { observations?: number; proposals?: number; decisions?: readonly RiskDecision[]; executions?: readonly Execution[] },
  detail: string,
): RunSummary {
  const decisions = parts.decisions ?? [];
  const count = (v: RiskDecision['verdict']) => decisions.filter((d) => d.verdict === v).length;
  return {
    runId,
    status,
    observations: parts.observations ?? 0,
    proposals: parts.proposals ?? decisions.length,
    decisions: { approve: count('approve'), resize: count('resize'), reject: count('reject') },
    executions: (parts.executions ?? []).filter((e) => e.status === 'filled' || e.status === 'partial').length,
    detail: clip(detail, 2000),
  };
}

/** How a stop error ends a run; null for any other error. */
export function stopStatus(error: unknown): 'killed' | 'budget_exhausted' | null {
  if (error instanceof KillSwitchEngagedError) return 'killed';
  if (error instanceof BudgetExceededError) return 'budget_exhausted';
  return null;
}

/** The step entry points over `deps`. */
export function createAgentSteps(deps: AgentStepDeps): AgentStepFunctions {
  const clock = deps.clock ?? Date.now;
  const contextFor = (runId: string, agent: AgentName) =>
    createRunContext({ runId, tools: deps.tools, limits: deps.limits, agent, usage: deps.usage ?? createRunUsage(deps.budget, clock()), clock });

  /** Runs `body`; a kill switch or budget stop writes run_end (when asked to) and is thrown on. */
  const guarded = async <T>(runId: string, agent: AgentName, body: (ctx: ReturnType<typeof contextFor>) => Promise<T>): Promise<T> => {
    const ctx = contextFor(runId, agent);
    try {
      await ctx.checkKillSwitch();
      return await body(ctx);
    } catch (error) {
      const status = stopStatus(error);
      if (status !== null && deps.recordStops !== false) {
        const summary = summarizeRun(runId, status, {}, `stopped in ${agent}: ${(error as Error).message}`);
        await ctx
          .record({ agent, kind: 'run_end', output: summary, summary: summary.detail })
          .catch((e: unknown) => deps.logger?.error('run_end not recorded', { runId, error: (e as Error).message }));
      }
      throw error;
    }
  };

  return {
    async monitorStep(event) {
      const { runId: given } = parse(MonitorEventSchema, event ?? {}, 'monitor input');
      const runId = given ?? newRunId(clock());
      return guarded(runId, 'market_monitor', async (ctx) => {
        await ctx.record({
          agent: 'market_monitor',
          kind: 'run_start',
          output: { limits: deps.limits, budget: deps.budget },
          summary: `run ${runId} started`,
        });
        const report: MonitorReport = parse(MonitorReportSchema, await deps.steps.monitor(ctx), 'monitor output');
        return { runId, report };
      });
    },

    async analystStep(event) {
      const { runId, market } = parse(AnalystEventSchema, event, 'analyst input');
      return guarded(runId, 'technical_analyst', async (ctx) => {
        try {
          return parse(AnalysisSchema, await deps.steps.analyst(ctx, market), 'analyst output');
        } catch (error) {
          if (stopStatus(error) !== null) throw error;
          // one market's failure is that market's "no proposal", never the run's end
          deps.logger?.warn('analyst failed', { runId, market, error: (error as Error).message });
          const analysis: Analysis = { runId, market, proposal: null, note: clip(`analysis failed: ${(error as Error).message}`, 2000) };
          await ctx.record({ agent: 'technical_analyst', kind: 'no_proposal', market, output: analysis, summary: analysis.note });
          return analysis;
        }
      });
    },

    async riskStep(event) {
      const { runId, analyses } = parse(RiskEventSchema, event, 'risk input');
      return guarded(runId, 'risk_manager', async (ctx) => {
        const proposals = analyses.flatMap((a) => (a.proposal ? [a.proposal] : []));
        const decisions = proposals.length === 0 ? [] : await deps.steps.risk(ctx, proposals);
        return parse(RiskResultSchema, { runId, decisions }, 'risk output');
      });
    },

    async executeStep(event) {
      const { runId, decisions, observations } = parse(ExecuteEventSchema, event, 'execute input');
      return guarded(runId, 'paper_executor', async (ctx) => {
        const executions = decisions.length === 0 ? [] : await deps.steps.execute(ctx, decisions);
        const summary = summarizeRun(
          runId,
          'completed',
          { ...(observations !== undefined && { observations }), decisions, executions },
          `${decisions.length} decisions, ${executions.filter((e) => e.status === 'filled' || e.status === 'partial').length} paper fills`,
        );
        await ctx.record({ agent: 'paper_executor', kind: 'run_end', output: summary, summary: `run ${runId} completed: ${summary.detail}` });
        return parse(ExecuteResultSchema, { runId, executions, summary }, 'execute output');
      });
    },
  };
}
