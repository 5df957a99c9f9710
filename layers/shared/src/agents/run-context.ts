import { PlatformError } from '../domain/errors.js';
import {
  BudgetExceededError,
  KillSwitchEngagedError,
  type AgentName,
  type AgentToolResult,
  type AgentTools,
  type DecisionInput,
  type RiskLimits,
  type RunBudget,
  type RunContext,
  type ToolCallRecord,
} from './contracts.js';

/** Tools that change something: the kill switch is asked before each one. */
export const WRITE_ACTIONS: ReadonlySet<string> = new Set(['publish_signal', 'place_paper_order']);

/** A decision could not be written to the audit log: nothing may go on unaudited. */
export class AuditWriteError extends PlatformError {}

/** Largest JSON size of one tool result kept in the audit log; bigger ones keep a prefix. */
export const MAX_RECORDED_RESULT_CHARS = 4_000;
/** record_decision takes at most this many inputs; the newest are kept. */
const MAX_INPUTS = 100;
/**
 * One record_decision call must fit the server's request limits (100 KB body, 4096 JSON elements
 * in the arguments): the results of all its inputs share these, and results past them keep a prefix.
 */
const MAX_INPUTS_CHARS = 48_000;
const MAX_INPUTS_ELEMENTS = 2_500;

/**
 * What a run has used, shared by every context of the run (the analysts run in parallel, each
 * with its own context so its audit entries list only its own calls, against one budget).
 */
export interface RunUsage {
  readonly budget: RunBudget;
  readonly startedAt: number;
  toolCalls: number;
  modelTokens: number;
}

export function createRunUsage(budget: RunBudget, startedAt: number): RunUsage {
  return { budget, startedAt, toolCalls: 0, modelTokens: 0 };
}

export interface RunContextOptions {
  readonly runId: string;
  /** the raw tools: calls through the context are counted, checked and recorded */
  readonly tools: AgentTools;
  readonly limits: RiskLimits;
  /** which agent's entries `record` writes */
  readonly agent: AgentName;
  readonly usage: RunUsage;
  /** ms epoch; Date.now by default */
  readonly clock?: () => number;
  readonly maxResultChars?: number;
}

/**
 * A RunContext over `tools`: every call counts against the budget (tool calls, wall time), a
 * write action asks the kill switch first, and every call is kept for the next audit entry.
 * The kill switch reads and the audit writes themselves are plumbing: they count against nothing,
 * so a run out of budget can still write its end.
 */
export function createRunContext(options: RunContextOptions): RunContext & { readonly agent: AgentName; readonly usage: RunUsage } {
  const { runId, tools: raw, usage, agent } = options;
  const clock = options.clock ?? Date.now;
  const maxChars = options.maxResultChars ?? MAX_RECORDED_RESULT_CHARS;
  let pending: ToolCallRecord[] = [];

  const checkWallTime = () => {
    if (clock() - usage.startedAt > usage.budget.maxWallMs) throw new BudgetExceededError('maxWallMs', usage.budget.maxWallMs);
  };
  const checkKillSwitch = async (): Promise<void> => {
    const state = await readKillSwitch(raw);
    if (state.engaged) throw new KillSwitchEngagedError(state.reason);
  };

  const tools: AgentTools = {
    list: () => raw.list(),
    close: () => raw.close(),
    async call(name, args) {
      checkWallTime();
      if (usage.toolCalls >= usage.budget.maxToolCalls) throw new BudgetExceededError('maxToolCalls', usage.budget.maxToolCalls);
      if (WRITE_ACTIONS.has(name)) await checkKillSwitch();
      usage.toolCalls += 1;
      const started = performance.now();
      const result = await raw.call(name, args);
      pending.push({
        tool: name,
        args: { ...args },
        isError: result.isError,
        result: result.isError ? result.text : (result.structured ?? result.text),
        ms: Math.round((performance.now() - started) * 100) / 100,
      });
      return result;
    },
  };

  return {
    runId,
    agent,
    usage,
    tools,
    limits: options.limits,
    now: clock,
    spendTokens(tokens: number) {
      usage.modelTokens += Math.max(0, tokens);
      if (usage.modelTokens > usage.budget.maxModelTokens) throw new BudgetExceededError('maxModelTokens', usage.budget.maxModelTokens);
    },
    checkKillSwitch,
    async record(entry: Omit<DecisionInput, 'runId' | 'inputs'>) {
      const inputs = boundedInputs(pending.length > MAX_INPUTS ? pending.slice(pending.length - MAX_INPUTS) : pending, maxChars);
      pending = [];
      const decision: DecisionInput = {
        runId,
        agent: entry.agent,
        kind: entry.kind,
        ...(entry.market && { market: entry.market }),
        inputs,
        output: entry.output,
        summary: clip(entry.summary, 2000),
      };
      let result: AgentToolResult;
      try {
        result = await raw.call('record_decision', decision as unknown as Record<string, unknown>);
      } catch (error) {
        throw new AuditWriteError(`audit entry ${entry.kind} of run ${runId} not written: ${(error as Error).message}`, { cause: error });
      }
      if (result.isError) throw new AuditWriteError(`audit entry ${entry.kind} of run ${runId} refused: ${clip(result.text, 500)}`);
    },
  };
}

/** The kill switch as the server reports it (get_agent_controls); an answer it cannot read counts as engaged. */
export async function readKillSwitch(tools: AgentTools): Promise<{ engaged: boolean; reason: string }> {
  let result: AgentToolResult;
  try {
    result = await tools.call('get_agent_controls', {});
  } catch (error) {
    // fail closed: no action without knowing the switch is off
    return { engaged: true, reason: `kill switch state unknown: ${(error as Error).message}` };
  }
  if (result.isError) return { engaged: true, reason: `kill switch state unknown: ${clip(result.text, 300)}` };
  const ks = (result.structured as { killSwitch?: { engaged?: unknown; reason?: unknown } } | undefined)?.killSwitch;
  if (typeof ks?.engaged !== 'boolean') return { engaged: true, reason: 'kill switch state unknown: get_agent_controls gave no killSwitch.engaged' };
  return { engaged: ks.engaged, reason: typeof ks.reason === 'string' && ks.reason ? ks.reason : 'engaged' };
}

/**
 * Tool calls as one audit entry keeps them: each result whole while it fits `maxChars` and the
 * entry's share of size and JSON elements, else the first characters of its JSON.
 */
export function boundedInputs(calls: readonly ToolCallRecord[], maxChars: number): ToolCallRecord[] {
  const perResult = Math.max(200, Math.min(maxChars, Math.floor(MAX_INPUTS_CHARS / Math.max(1, calls.length))));
  let elements = 0;
  return calls.map((c) => {
    const json = JSON.stringify(c.result) ?? 'null';
    const argElements = countElements(c.args, MAX_INPUTS_ELEMENTS);
    const resultElements = json.length <= perResult ? countElements(c.result, MAX_INPUTS_ELEMENTS) : 0;
    const whole = json.length <= perResult && elements + argElements + resultElements + 6 <= MAX_INPUTS_ELEMENTS;
    // arguments are small (the agents write them); a huge one is cut like a result
    const argsJson = JSON.stringify(c.args);
    const args = elements + argElements + 6 <= MAX_INPUTS_ELEMENTS && argsJson.length <= perResult ? c.args : { truncated: true, head: argsJson.slice(0, perResult) };
    elements += (args === c.args ? argElements : 2) + (whole ? resultElements : 3) + 6;
    return { ...c, args, result: whole ? c.result : { truncated: true, chars: json.length, head: json.slice(0, perResult) } };
  });
}

/** JSON elements (values, object entries, array items) of `value`, counting stops past `cap`. */
function countElements(value: unknown, cap: number): number {
  let n = 0;
  const walk = (v: unknown): void => {
    if (n > cap) return;
    n += 1;
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (v !== null && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  walk(value);
  return n;
}

export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
