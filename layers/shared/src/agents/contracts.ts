/**
 * What the scheduled agents hand each other, and what the agent tools of the MCP server take and
 * return. Agents are MCP clients: every read and every action goes through a tool call, so these
 * shapes are the whole contract between the agent runtime (client side), the flow that runs it
 * (local runner or Step Functions) and the server's agent toolset.
 *
 * Every shape is JSON (a Step Functions payload) and strict: a field that is not known is refused.
 */
import { z } from 'zod';
import { PlatformError } from '../domain/errors.js';
import { SignalDirectionSchema, TimeframeSchema } from '../domain/index.js';

/** The four steps of an agent run, in flow order. */
export const AGENT_NAMES = ['market_monitor', 'technical_analyst', 'risk_manager', 'paper_executor'] as const;
export const AgentNameSchema = z.enum(AGENT_NAMES);
export type AgentName = z.infer<typeof AgentNameSchema>;

/** A market: ccxt exchange id and unified symbol. */
export const MarketRefSchema = z.strictObject({ exchange: z.string().min(1).max(64), symbol: z.string().min(1).max(64) });
export type MarketRef = z.infer<typeof MarketRefSchema>;

// ---------------------------------------------------------------------------------------------
// The client side: how an agent reaches the MCP server
// ---------------------------------------------------------------------------------------------

/** One tool as the server lists it. */
export interface AgentToolInfo {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments */
  readonly inputSchema: Readonly<Record<string, unknown>>;
}

/** A tool's answer: an error result (`isError`) is data for the agent, never a thrown error. */
export interface AgentToolResult {
  readonly isError: boolean;
  /** `structuredContent` of a success; undefined for errors */
  readonly structured?: unknown;
  /** the text content joined; for errors, the message telling how to recover */
  readonly text: string;
}

/** The MCP tools as an agent sees them. Implementations: an SDK Client over HTTP (JWT) or in memory. */
export interface AgentTools {
  list(): Promise<readonly AgentToolInfo[]>;
  call(name: string, args: Readonly<Record<string, unknown>>): Promise<AgentToolResult>;
  close(): Promise<void>;
}

/** One tool call as the audit log keeps it: the inputs of a decision. */
export const ToolCallRecordSchema = z.strictObject({
  tool: z.string(),
  args: z.record(z.string(), z.unknown()),
  isError: z.boolean(),
  /** the structured result (or the error text), cut to a bounded size by the recorder */
  result: z.unknown(),
  ms: z.number().nonnegative(),
});
export type ToolCallRecord = z.infer<typeof ToolCallRecordSchema>;

/** Per-run limits; a run that reaches one ends cleanly with what it has decided so far. */
export const RunBudgetSchema = z.strictObject({
  maxToolCalls: z.number().int().positive().default(200),
  maxModelTokens: z.number().int().nonnegative().default(50_000),
  maxWallMs: z.number().int().positive().default(120_000),
});
export type RunBudget = z.infer<typeof RunBudgetSchema>;

/** Why a run or an action did not go on: a budget ran out, or the kill switch is engaged. */
export class BudgetExceededError extends PlatformError {
  constructor(
    readonly budget: keyof RunBudget,
    readonly limit: number,
  ) {
    super(`run budget exhausted: ${budget} ${limit}`);
  }
}
export class KillSwitchEngagedError extends PlatformError {
  constructor(readonly reason: string) {
    super(`kill switch engaged: ${reason}`);
  }
}

// ---------------------------------------------------------------------------------------------
// What the steps hand each other (Step Functions payloads)
// ---------------------------------------------------------------------------------------------

/** A strategy in backtest_strategy's terms: what the risk manager backtests before approving. */
export const StrategyRuleSetSchema = z.strictObject({
  conditions: z.array(z.string().min(1).max(200)).min(1).max(8),
  match: z.enum(['all', 'any']),
});
export const StrategySchema = z.strictObject({
  name: z.string().min(1).max(100),
  timeframe: TimeframeSchema,
  side: z.enum(['long', 'short']),
  entry: StrategyRuleSetSchema,
  exit: StrategyRuleSetSchema.optional(),
  stopLossPct: z.number().gt(0).max(100),
  takeProfitPct: z.number().gt(0).max(1000).optional(),
});
export type Strategy = z.infer<typeof StrategySchema>;

/** Something the market monitor saw, with the figure that made it notable. */
export const ObservationSchema = z.strictObject({
  kind: z.enum(['anomaly', 'volatility_regime', 'divergence', 'data_health']),
  market: MarketRefSchema.optional(),
  severity: z.enum(['info', 'warning', 'critical']),
  detail: z.string().max(2000),
  figures: z.record(z.string(), z.number()),
});
export type Observation = z.infer<typeof ObservationSchema>;

/** The monitor's output: what it saw and which markets the analysts look at this run. */
export const MonitorReportSchema = z.strictObject({
  runId: z.string(),
  observations: z.array(ObservationSchema),
  /** markets to analyse: healthy ones, flagged first */
  markets: z.array(MarketRefSchema),
  /** markets left out of analysis this run (data health), with why */
  excluded: z.array(z.strictObject({ market: MarketRefSchema, reason: z.string() })),
});
export type MonitorReport = z.infer<typeof MonitorReportSchema>;

/** A signal the analyst published (through publish_signal) and the strategy behind it. */
export const ProposalSchema = z.strictObject({
  runId: z.string(),
  market: MarketRefSchema,
  signalId: z.string(),
  direction: SignalDirectionSchema,
  strength: z.number().min(0).max(1),
  confidence: z.number().min(0).max(1),
  horizon: TimeframeSchema,
  /** last close the analysis used: the reference price for sizing */
  price: z.number().positive(),
  strategy: StrategySchema,
  rationale: z.string().max(4000),
  /** 'rules', or 'model' when the model's proposal passed validation */
  by: z.enum(['rules', 'model']),
});
export type Proposal = z.infer<typeof ProposalSchema>;

/** The analyst's output for one market: a proposal, or none with why. */
export const AnalysisSchema = z.strictObject({
  runId: z.string(),
  market: MarketRefSchema,
  proposal: ProposalSchema.nullable(),
  note: z.string().max(2000),
});
export type Analysis = z.infer<typeof AnalysisSchema>;

/** Limits the risk manager enforces; a deployment sets them in configuration. */
export const RiskLimitsSchema = z.strictObject({
  /** paper account the portfolio checks read */
  account: z.string().min(1).max(64).default('default'),
  /** largest position in one market, quote currency */
  maxPositionNotional: z.number().positive().default(2_000),
  /** traded notional per UTC day, all markets */
  maxDailyNotional: z.number().positive().default(10_000),
  /** largest share of equity in one base asset, 0 to 1 */
  maxConcentration: z.number().gt(0).max(1).default(0.4),
  /** no new positions once equity is this far (%) below its peak */
  maxDrawdownPct: z.number().gt(0).max(100).default(10),
  /** a proposal's stop-loss may be at most this wide (%) */
  maxStopLossPct: z.number().gt(0).max(100).default(5),
  /** refuse a new position whose returns correlate above this with an open one (1h closes, 7 days) */
  maxCorrelation: z.number().gt(0).max(1).default(0.9),
  /** the strategy behind a proposal must have been backtested over this many days of clean data */
  backtestDays: z.number().int().positive().max(365).default(7),
  /** ...with at least this many trades and a return not below this % */
  minBacktestTrades: z.number().int().nonnegative().default(1),
  minBacktestReturnPct: z.number().default(-5),
  /** fee and slippage the backtest and the paper fills assume, bps */
  feeBps: z.number().min(0).max(1000).default(10),
  slippageBps: z.number().min(0).max(1000).default(5),
});
export type RiskLimits = z.infer<typeof RiskLimitsSchema>;

/** One limit or requirement as checked for one proposal. */
export const RiskCheckSchema = z.strictObject({
  name: z.enum(['data_health', 'backtest', 'stop_loss', 'position_size', 'daily_volume', 'concentration', 'drawdown', 'correlation', 'direction']),
  passed: z.boolean(),
  detail: z.string().max(1000),
});
export type RiskCheck = z.infer<typeof RiskCheckSchema>;

/** The risk manager's verdict on one proposal. */
export const RiskDecisionSchema = z.strictObject({
  runId: z.string(),
  proposal: ProposalSchema,
  verdict: z.enum(['approve', 'resize', 'reject']),
  /** notional to trade, quote currency; 0 when rejected */
  notional: z.number().nonnegative(),
  reason: z.string().max(2000),
  checks: z.array(RiskCheckSchema),
});
export type RiskDecision = z.infer<typeof RiskDecisionSchema>;

/** A paper fill as the executor reports it (from place_paper_order). */
export const ExecutionSchema = z.strictObject({
  runId: z.string(),
  signalId: z.string(),
  market: MarketRefSchema,
  status: z.enum(['filled', 'partial', 'refused', 'skipped']),
  side: z.enum(['buy', 'sell']).optional(),
  quantity: z.number().nonnegative(),
  vwap: z.number().nonnegative().optional(),
  notional: z.number().nonnegative(),
  slippageBps: z.number().optional(),
  detail: z.string().max(2000),
});
export type Execution = z.infer<typeof ExecutionSchema>;

/** What a whole run did, for the caller and the run_end audit entry. */
export const RunSummarySchema = z.strictObject({
  runId: z.string(),
  status: z.enum(['completed', 'killed', 'budget_exhausted', 'failed']),
  observations: z.number().int(),
  proposals: z.number().int(),
  decisions: z.strictObject({ approve: z.number().int(), resize: z.number().int(), reject: z.number().int() }),
  executions: z.number().int(),
  detail: z.string().max(2000),
});
export type RunSummary = z.infer<typeof RunSummarySchema>;

// ---------------------------------------------------------------------------------------------
// The server's agent toolset (toolset `agents`)
// ---------------------------------------------------------------------------------------------

/** Tool names of the agent toolset and the scopes they need. */
export const AGENT_TOOLS = {
  get_agent_controls: 'agents:read',
  set_kill_switch: 'agents:admin',
  record_decision: 'agents:write',
  get_audit_log: 'agents:read',
  place_paper_order: 'paper:trade',
  get_paper_portfolio: 'agents:read',
} as const;

/** Kinds of audit entries. */
export const AUDIT_KINDS = ['run_start', 'observation', 'proposal', 'no_proposal', 'risk_decision', 'execution', 'rejected_model_output', 'run_end'] as const;
export const AuditKindSchema = z.enum(AUDIT_KINDS);

/** record_decision's input: one decision with the tool calls it rests on and what it produced. */
export const DecisionInputSchema = z.strictObject({
  runId: z.string().min(1).max(100),
  agent: AgentNameSchema,
  kind: AuditKindSchema,
  market: MarketRefSchema.optional(),
  /** tool calls (with results) the decision used */
  inputs: z.array(ToolCallRecordSchema).max(100),
  /** what the decision produced: a report, proposal, risk decision, execution, or the refused model output */
  output: z.unknown(),
  summary: z.string().min(1).max(2000),
});
export type DecisionInput = z.infer<typeof DecisionInputSchema>;

// ---------------------------------------------------------------------------------------------
// One run as the agent functions see it
// ---------------------------------------------------------------------------------------------

/**
 * What every agent step gets. `tools` is already wrapped: each call checks the kill switch before
 * any write action, counts against the budget, and is kept until the next `record` so the audit
 * entry of a decision lists the calls it rests on.
 */
export interface RunContext {
  readonly runId: string;
  readonly tools: AgentTools;
  readonly limits: RiskLimits;
  /** ms epoch */
  now(): number;
  /** model tokens used by a model call; throws BudgetExceededError past the budget */
  spendTokens(tokens: number): void;
  /** throws KillSwitchEngagedError when the kill switch is engaged (asks the server) */
  checkKillSwitch(): Promise<void>;
  /** writes one audit entry (record_decision) with the tool calls made since the last one */
  record(entry: Omit<DecisionInput, 'runId' | 'inputs'>): Promise<void>;
}

/** The market monitor: the whole market set, once per run. */
export type MonitorStep = (ctx: RunContext) => Promise<MonitorReport>;
/** The technical analyst: one market; runs in parallel across the monitor's markets. */
export type AnalystStep = (ctx: RunContext, market: MarketRef) => Promise<Analysis>;
/** The risk manager: every proposal of the run, one verdict each, in order. */
export type RiskStep = (ctx: RunContext, proposals: readonly Proposal[]) => Promise<RiskDecision[]>;
/** Paper execution of the approved and resized decisions. */
export type ExecuteStep = (ctx: RunContext, decisions: readonly RiskDecision[]) => Promise<Execution[]>;
