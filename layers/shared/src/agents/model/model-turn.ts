/**
 * One model turn of an agent step: the model may call the step's read-only MCP tools (through
 * ctx.tools, so budget, kill switch and audit apply) and must end by calling one of the step's
 * answer tools. Anything else it says is refused here, never thrown: the caller records it and
 * falls back to the rules.
 */
import { generateText, jsonSchema, stepCountIs, tool, type JSONSchema7, type LanguageModel, type StepResult, type ToolSet } from 'ai';
import { z } from 'zod';
import { BudgetExceededError, KillSwitchEngagedError, type AgentName, type RunContext } from '../contracts.js';

export interface ModelStepOptions {
  /** model calls at most in one turn, tool round trips included; default 8 */
  readonly maxSteps?: number;
  /** default 0: the same data should give the same answer as far as the model allows */
  readonly temperature?: number;
  readonly maxOutputTokens?: number;
  /** one turn's wall time at most (ms); default 60 000 */
  readonly timeoutMs?: number;
  /** provider retries of a failed call (429, 5xx); default 1 */
  readonly maxRetries?: number;
}

/** An answer tool: the step's output shape, validated with zod after the model calls it. */
export interface AnswerTool<T> {
  readonly description: string;
  readonly schema: z.ZodType<T>;
  /** checks zod cannot express (e.g. "the market asked about"); a message per problem */
  readonly check?: (value: T) => string[];
}

/** What the model replied, as the audit log keeps it for a refused turn. */
export interface ModelReply {
  readonly text: string;
  readonly toolCalls: readonly { tool: string; input: unknown }[];
}

export type TurnResult<A extends Record<string, unknown>> =
  | { readonly ok: true; readonly answer: { [K in keyof A]: { name: K; value: A[K] } }[keyof A]; readonly steps: number }
  | { readonly ok: false; readonly reply: ModelReply | null; readonly errors: string[]; readonly steps: number };

/** Largest tool result text the model is sent; the rest is cut with a note (context and token budget). */
const MAX_TOOL_TEXT = 24_000;
const MAX_REPLY_TEXT = 4_000;

export interface TurnRequest<A extends Record<string, unknown>> {
  readonly ctx: RunContext;
  readonly model: LanguageModel;
  readonly agent: AgentName;
  readonly system: string;
  readonly prompt: string;
  /** MCP tools this step may use; only those the server lists are offered */
  readonly readTools: ReadonlySet<string>;
  readonly answers: { [K in keyof A]: AnswerTool<A[K]> };
  readonly options: ModelStepOptions;
}

/** Runs one turn. Throws only BudgetExceededError and KillSwitchEngagedError (the run's end), never on model output. */
export async function runModelTurn<A extends Record<string, unknown>>(req: TurnRequest<A>): Promise<TurnResult<A>> {
  const { ctx } = req;
  const answerNames = Object.keys(req.answers);
  // a budget end or kill switch inside a tool or a usage callback: the SDK would turn a thrown error
  // into a tool error (or swallow it in a callback), so it is kept here and the loop is stopped
  let fatal: BudgetExceededError | KillSwitchEngagedError | null = null;
  const isFatal = (e: unknown): e is BudgetExceededError | KillSwitchEngagedError => e instanceof BudgetExceededError || e instanceof KillSwitchEngagedError;

  const tools: ToolSet = {};
  for (const info of await ctx.tools.list()) {
    if (!req.readTools.has(info.name) || answerNames.includes(info.name)) continue;
    tools[info.name] = tool({
      description: info.description,
      inputSchema: jsonSchema<Record<string, unknown>>(info.inputSchema as JSONSchema7),
      execute: async (input: Record<string, unknown>) => {
        if (fatal) return 'ERROR: the run has ended';
        try {
          const result = await ctx.tools.call(info.name, input ?? {});
          // a tool error is the model's to handle: it reads as the tool's answer
          return bounded(result.isError ? `ERROR: ${result.text}` : result.text || JSON.stringify(result.structured ?? null));
        } catch (error) {
          if (isFatal(error)) {
            fatal = error;
            return 'ERROR: the run has ended';
          }
          return `ERROR: ${(error as Error).message}`;
        }
      },
    });
  }
  for (const name of answerNames) {
    const answer = req.answers[name]!;
    // no execute: calling it ends the loop; its input is validated below, with zod, so the errors can be recorded
    tools[name] = tool({
      description: answer.description,
      inputSchema: jsonSchema<unknown>(z.toJSONSchema(answer.schema, { io: 'input', unrepresentable: 'any' }) as JSONSchema7),
    });
  }

  // parallel analysts share the run's budget: none starts a model call once it is spent
  ctx.spendTokens(0);
  const maxSteps = req.options.maxSteps ?? 8;
  let steps: StepResult<ToolSet>[];
  try {
    const result = await generateText({
      model: req.model,
      system: req.system,
      prompt: req.prompt,
      tools,
      // not 'required': several OpenAI-compatible servers ignore it, and a reply without a tool call
      // is then refused below with the model's text on record
      toolChoice: 'auto',
      temperature: req.options.temperature ?? 0,
      maxOutputTokens: req.options.maxOutputTokens ?? 1_024,
      maxRetries: req.options.maxRetries ?? 1,
      timeout: req.options.timeoutMs ?? 60_000,
      stopWhen: [
        stepCountIs(maxSteps),
        () => fatal !== null,
        // the first invalid call ends the turn: a model that cannot call tools is not trusted to analyse
        ({ steps: s }) => s.at(-1)?.toolCalls.some((c) => c.invalid === true) ?? false,
      ],
      onStepFinish: (step) => {
        if (fatal) return;
        try {
          ctx.spendTokens(tokensOf(step.usage));
        } catch (error) {
          if (isFatal(error)) fatal = error;
          else throw error;
        }
      },
    });
    steps = result.steps;
  } catch (error) {
    if (fatal) throw fatal;
    if (isFatal(error)) throw error;
    // the provider failed (unreachable, refused, timed out): the rules take over
    return { ok: false, reply: null, errors: [`model call failed: ${(error as Error).name}: ${clip((error as Error).message, 500)}`], steps: 0 };
  }
  if (fatal) throw fatal;

  const last = steps.at(-1);
  const reply = last ? replyOf(last) : null;
  const errors: string[] = [];
  for (const call of last?.toolCalls ?? []) {
    if (call.invalid === true) errors.push(`${call.toolName}: ${clip(errorText(call.error), 500)}`);
  }
  const answerCalls = (last?.toolCalls ?? []).filter((c) => c.invalid !== true && answerNames.includes(c.toolName));
  if (errors.length === 0 && answerCalls.length === 0) {
    const stillCalling = (last?.toolCalls.length ?? 0) > 0;
    errors.push(stillCalling && steps.length >= maxSteps ? `no answer (${answerNames.join(' or ')}) within ${maxSteps} model steps` : `the model ended without calling ${answerNames.join(' or ')}`);
  }
  if (errors.length === 0 && answerCalls.length > 1) errors.push(`${answerCalls.length} answers in one reply; one expected`);
  if (errors.length > 0) return { ok: false, reply, errors, steps: steps.length };

  const call = answerCalls[0]!;
  const answer = req.answers[call.toolName]!;
  const parsed = answer.schema.safeParse(call.input);
  if (!parsed.success) {
    return { ok: false, reply, errors: parsed.error.issues.slice(0, 10).map((i) => `${[call.toolName, ...i.path.map(String)].join('.')}: ${i.message}`), steps: steps.length };
  }
  const problems = answer.check?.(parsed.data) ?? [];
  if (problems.length > 0) return { ok: false, reply, errors: problems.map((p) => `${call.toolName}: ${p}`), steps: steps.length };
  return { ok: true, answer: { name: call.toolName, value: parsed.data } as never, steps: steps.length };
}

/** Records a refused turn (rejected_model_output) with what the model said and why it was refused. */
export async function recordRejected(
  ctx: RunContext,
  agent: AgentName,
  turn: Extract<TurnResult<Record<string, unknown>>, { ok: false }>,
  what: string,
  market?: { exchange: string; symbol: string },
): Promise<void> {
  await ctx.record({
    agent,
    kind: 'rejected_model_output',
    ...(market && { market }),
    output: { reply: turn.reply, errors: turn.errors },
    summary: clip(`model output refused (${what}): ${turn.errors.join('; ')}`, 2000),
  });
}

function tokensOf(usage: { totalTokens?: number | undefined; inputTokens?: number | undefined; outputTokens?: number | undefined }): number {
  return usage.totalTokens ?? (usage.inputTokens ?? 0) + (usage.outputTokens ?? 0);
}

function replyOf(step: StepResult<ToolSet>): ModelReply {
  return {
    text: clip(step.text, MAX_REPLY_TEXT),
    toolCalls: step.toolCalls.map((c) => ({ tool: c.toolName, input: c.input })),
  };
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

function bounded(text: string): string {
  return text.length <= MAX_TOOL_TEXT ? text : `${text.slice(0, MAX_TOOL_TEXT)}\n[cut: ${text.length - MAX_TOOL_TEXT} more characters; ask for fewer rows]`;
}

export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
