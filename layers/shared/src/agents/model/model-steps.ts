/**
 * Model variants of the agent steps, with the same step types as the rules so the flow runs
 * either. The model reads through the step's read-only MCP tools and answers through one local
 * answer tool; an answer that fails validation is recorded (rejected_model_output) and the rules
 * decide instead. Nothing a model says can make a step throw.
 */
import type { LanguageModel } from 'ai';
import { z } from 'zod';
import { SignalDirectionSchema, TIMEFRAMES, TimeframeSchema } from '../../domain/index.js';
import {
  MarketRefSchema,
  ObservationSchema,
  StrategySchema,
  type Analysis,
  type AnalystStep,
  type MarketRef,
  type MonitorReport,
  type MonitorStep,
  type Proposal,
  type RiskDecision,
  type RiskStep,
  type RunContext,
} from '../contracts.js';
import { conditionOf } from '../rules/risk-manager.js';
import { clip, recordRejected, runModelTurn, type ModelStepOptions } from './model-turn.js';

export type { ModelStepOptions } from './model-turn.js';

const key = (m: MarketRef) => `${m.exchange}:${m.symbol}`;
const same = (a: MarketRef, b: MarketRef) => a.exchange === b.exchange && a.symbol === b.symbol;

/** Read-only tools each step may offer the model; write actions (publish, orders, kill switch, audit, memory) never. */
export const MODEL_READ_TOOLS = {
  market_monitor: new Set(['list_markets', 'get_data_health', 'get_market_snapshot', 'get_ticker', 'compare_exchanges', 'scan_markets', 'get_candles', 'compute_indicators']),
  technical_analyst: new Set(['get_candles', 'compute_indicators', 'detect_patterns', 'get_ticker', 'get_order_book', 'get_trades', 'get_data_health', 'get_signals', 'backtest_strategy']),
  risk_manager: new Set(['get_data_health', 'get_candles', 'compute_indicators', 'get_order_book', 'get_ticker', 'get_paper_portfolio', 'backtest_strategy']),
} as const;

// ---------------------------------------------------------------------------------------------
// Technical analyst
// ---------------------------------------------------------------------------------------------

/** What the model submits for a proposal; the run id, signal id, price and `by` are the step's, not the model's. */
export const ModelProposalSchema = z.strictObject({
  market: MarketRefSchema.describe('The market analysed, exactly as asked: exchange and symbol.'),
  direction: SignalDirectionSchema.exclude(['flat']).describe('long (expect up) or short (expect down).'),
  strength: z.number().min(0).max(1).describe('Expected size of the move, 0 to 1.'),
  confidence: z.number().min(0).max(1).describe('How sure you are, 0 to 1.'),
  horizon: TimeframeSchema.describe(`Time frame the signal is meant for: ${TIMEFRAMES.join(', ')}.`),
  strategy: StrategySchema.describe(
    "The rule strategy behind the signal, as backtest_strategy takes it: conditions like 'ema:20 > ema:50', 'rsi:14 < 30', 'macd.histogram > 0'; stopLossPct required.",
  ),
  rationale: z.string().min(1).max(4000).describe('Why, citing the figures (indicator values, levels) you read from the tools.'),
});
export type ModelProposal = z.infer<typeof ModelProposalSchema>;

export const ModelNoProposalSchema = z.strictObject({
  market: MarketRefSchema.describe('The market analysed, exactly as asked.'),
  note: z.string().min(1).max(2000).describe('Why there is no trade, citing the figures.'),
});

function analystSystem(market: MarketRef): string {
  return [
    `You are the technical analyst of a paper-trading system. Analyse one market: ${market.symbol} on ${market.exchange}.`,
    'Read candles and indicators with the tools (get_candles, compute_indicators, ...); a tool answer starting with ERROR tells you what went wrong.',
    'Then call exactly one of submit_proposal (a long or short signal with the strategy behind it) or submit_no_proposal (no trade, and why).',
    'Cite the numbers you used in the rationale. Do not invent figures you did not read.',
  ].join('\n');
}

/**
 * The model analyst. A valid proposal is published through publish_signal (as the rules analyst
 * does) and returned with `by: 'model'`; its reference price is the last closed candle read here,
 * never a figure the model typed. A refused answer is recorded and `fallback` analyses instead
 * (none: the market gets no proposal).
 */
export function modelAnalyst(model: LanguageModel, fallback: AnalystStep | null, options: ModelStepOptions = {}): AnalystStep {
  return async (ctx: RunContext, market: MarketRef): Promise<Analysis> => {
    const wrongMarket = (m: MarketRef) => (same(m, market) ? [] : [`market ${key(m)} is not the one analysed (${key(market)})`]);
    // the risk manager backtests the strategy: a condition it cannot read is refused here, not there
    const unreadable = (p: ModelProposal) =>
      [...p.strategy.entry.conditions, ...(p.strategy.exit?.conditions ?? [])].flatMap((c) => {
        try {
          conditionOf(c);
          return [];
        } catch (error) {
          return [(error as Error).message];
        }
      });
    const turn = await runModelTurn({
      ctx,
      model,
      agent: 'technical_analyst',
      system: analystSystem(market),
      prompt: `Analyse ${market.symbol} on ${market.exchange} now (run ${ctx.runId}).`,
      readTools: MODEL_READ_TOOLS.technical_analyst,
      answers: {
        submit_proposal: { description: 'Submit your trade proposal for the market analysed. Ends your analysis.', schema: ModelProposalSchema, check: (p) => [...wrongMarket(p.market), ...unreadable(p)] },
        submit_no_proposal: { description: 'Say there is no trade in the market analysed, and why. Ends your analysis.', schema: ModelNoProposalSchema, check: (p) => wrongMarket(p.market) },
      },
      options,
    });
    const none = async (note: string): Promise<Analysis> => {
      const analysis: Analysis = { runId: ctx.runId, market, proposal: null, note: clip(note, 2000) };
      await ctx.record({ agent: 'technical_analyst', kind: 'no_proposal', market, output: analysis, summary: clip(`${key(market)} (model): ${note}`, 2000) });
      return analysis;
    };
    if (!turn.ok) {
      await recordRejected(ctx, 'technical_analyst', turn, `analysis of ${key(market)}`, market);
      // without rules to fall back on, the market simply gets no proposal this run
      return fallback ? fallback(ctx, market) : none(`model output refused: ${turn.errors.join('; ')}`);
    }
    if (turn.answer.name === 'submit_no_proposal') return none(turn.answer.value.note);

    const p = turn.answer.value;
    // sizing rests on a price the step read, not on one the model could have made up
    const candles = await ctx.tools.call('get_candles', { exchange: market.exchange, symbol: market.symbol, timeframe: p.strategy.timeframe, limit: 5 });
    const last = candles.isError
      ? undefined
      : (candles.structured as { candles?: { close: number; closed: boolean }[] } | undefined)?.candles?.filter((c) => c.closed).at(-1);
    if (!last || !(last.close > 0)) return none(`model proposed ${p.direction}, but no closed ${p.strategy.timeframe} candle to price it: ${candles.isError ? clip(candles.text, 300) : 'none'}`);

    const published = await ctx.tools.call('publish_signal', {
      exchange: market.exchange,
      symbol: market.symbol,
      direction: p.direction,
      strength: p.strength,
      confidence: p.confidence,
      horizon: p.horizon,
      rationale: p.rationale,
    });
    const signalId = (published.structured as { signal?: { id?: unknown } } | undefined)?.signal?.id;
    if (published.isError || typeof signalId !== 'string') return none(`signal not published: ${clip(published.text, 500)}`);

    const proposal: Proposal = {
      runId: ctx.runId,
      market,
      signalId,
      direction: p.direction,
      strength: p.strength,
      confidence: p.confidence,
      horizon: p.horizon,
      price: last.close,
      strategy: p.strategy,
      rationale: p.rationale,
      by: 'model',
    };
    await ctx.record({ agent: 'technical_analyst', kind: 'proposal', market, output: proposal, summary: clip(`${key(market)} (model) ${p.direction}: ${p.rationale}`, 2000) });
    return { runId: ctx.runId, market, proposal, note: clip(p.rationale, 2000) };
  };
}

// ---------------------------------------------------------------------------------------------
// Market monitor
// ---------------------------------------------------------------------------------------------

export const ModelMonitorReviewSchema = z.strictObject({
  observations: z.array(ObservationSchema).max(50).describe('Further things you saw, each with the figures that make it notable.'),
  markets: z.array(MarketRefSchema).max(500).describe('Markets to analyse this run, most interesting first: a subset of the candidates, none added.'),
  dropped: z
    .array(z.strictObject({ market: MarketRefSchema, reason: z.string().min(1).max(500) }))
    .max(500)
    .describe('Candidates you leave out of analysis, with why.'),
});

/**
 * The model monitor. The deterministic monitor (`fallback`) always runs first: data health decides
 * which markets may be analysed. The model then reviews with read-only tools and may add
 * observations, order the candidates and drop some, but never adds a market the rules excluded or
 * did not list. A refused review leaves the rules' report as it is.
 */
export function modelMonitor(model: LanguageModel, fallback: MonitorStep, options: ModelStepOptions = {}): MonitorStep {
  return async (ctx: RunContext): Promise<MonitorReport> => {
    const report = await fallback(ctx);
    if (report.markets.length === 0) return report;
    const candidates = new Set(report.markets.map(key));
    const turn = await runModelTurn({
      ctx,
      model,
      agent: 'market_monitor',
      system: [
        'You are the market monitor of a paper-trading system. Look for anomalies, volatility regime changes, cross-exchange divergence and data-health problems.',
        'Use the tools to read the markets; a tool answer starting with ERROR tells you what went wrong. Then call submit_review once.',
        'You may only order or drop the candidate markets; you cannot add any.',
      ].join('\n'),
      prompt: `Candidates to analyse: ${report.markets.map(key).join(', ')}.\nAlready observed: ${JSON.stringify(report.observations).slice(0, 8_000)}`,
      readTools: MODEL_READ_TOOLS.market_monitor,
      answers: {
        submit_review: {
          description: 'Submit your observations and the candidate markets to analyse, most interesting first. Ends your review.',
          schema: ModelMonitorReviewSchema,
          check: (r) => [...r.markets, ...r.dropped.map((d) => d.market)].filter((m) => !candidates.has(key(m))).map((m) => `market ${key(m)} is not a candidate`),
        },
      },
      options,
    });
    if (!turn.ok) {
      await recordRejected(ctx, 'market_monitor', turn, 'monitor review');
      return report;
    }
    const review = turn.answer.value;
    const dropped = new Map(review.dropped.map((d) => [key(d.market), d.reason]));
    const seen = new Set<string>();
    const markets = review.markets.filter((m) => !dropped.has(key(m)) && !seen.has(key(m)) && seen.add(key(m)));
    // candidates the model neither kept nor dropped stay, after its picks
    for (const m of report.markets) if (!seen.has(key(m)) && !dropped.has(key(m))) markets.push(m);
    const reviewed: MonitorReport = {
      runId: report.runId,
      observations: [...report.observations, ...review.observations],
      markets,
      excluded: [...report.excluded, ...report.markets.filter((m) => dropped.has(key(m))).map((m) => ({ market: m, reason: `model: ${dropped.get(key(m))}` }))],
    };
    await ctx.record({
      agent: 'market_monitor',
      kind: 'observation',
      output: reviewed,
      summary: `monitor (model review): ${reviewed.markets.length} markets to analyse, ${reviewed.excluded.length} excluded, ${review.observations.length} observations added`,
    });
    return reviewed;
  };
}

// ---------------------------------------------------------------------------------------------
// Risk review
// ---------------------------------------------------------------------------------------------

export const ModelRiskReviewSchema = z.strictObject({
  verdict: z.enum(['keep', 'resize', 'reject']).describe('keep the rules\' verdict, resize to a smaller notional, or reject.'),
  notional: z.number().positive().optional().describe('With resize: the smaller notional, quote currency.'),
  reason: z.string().min(1).max(1000).describe('Why, citing the figures.'),
});
export type ModelRiskReview = z.infer<typeof ModelRiskReviewSchema>;

/**
 * A reviewed decision: the model may only tighten. Reject stays reject; a resize must be smaller
 * than the rules' notional. Returns the problem instead when the review would loosen anything.
 */
export function tighten(decision: RiskDecision, review: ModelRiskReview): RiskDecision | { problem: string } {
  if (review.verdict === 'keep') return decision;
  if (review.verdict === 'reject') {
    return { ...decision, verdict: 'reject', notional: 0, reason: clip(`${decision.reason}; model review rejected: ${review.reason}`, 2000) };
  }
  if (review.notional === undefined) return { problem: 'resize without a notional' };
  // never raise a size: only strictly smaller than what the limits allowed
  if (!(review.notional < decision.notional)) return { problem: `resize to ${review.notional} is not below the rules' notional ${decision.notional}` };
  return { ...decision, verdict: 'resize', notional: review.notional, reason: clip(`${decision.reason}; model review resized to ${review.notional}: ${review.reason}`, 2000) };
}

/**
 * The model risk review. The deterministic limits (`rules`) always run first and decide alone on
 * anything they reject: the model is asked only about approved or resized decisions and can only
 * tighten them (reject, or a smaller notional); it never approves what the rules rejected nor
 * raises a size. A refused review keeps the rules' decision.
 */
export function modelRiskReview(model: LanguageModel, rules: RiskStep, options: ModelStepOptions = {}): RiskStep {
  return async (ctx: RunContext, proposals) => {
    const decisions = await rules(ctx, proposals);
    const out: RiskDecision[] = [];
    for (const decision of decisions) {
      if (decision.verdict === 'reject') {
        out.push(decision);
        continue;
      }
      const p = decision.proposal;
      const turn = await runModelTurn({
        ctx,
        model,
        agent: 'risk_manager',
        system: [
          'You are the risk reviewer of a paper-trading system. The deterministic limits approved the decision below.',
          'You may keep it, reject it, or resize it to a smaller notional; you can never raise the size. Read what you need with the tools, then call submit_review once.',
        ].join('\n'),
        prompt: JSON.stringify({ proposal: p, decision: { verdict: decision.verdict, notional: decision.notional, reason: decision.reason, checks: decision.checks } }),
        readTools: MODEL_READ_TOOLS.risk_manager,
        answers: {
          submit_review: {
            description: 'Submit your review of the decision: keep, resize (smaller notional only) or reject. Ends your review.',
            schema: ModelRiskReviewSchema,
            check: (r) => {
              const t = tighten(decision, r);
              return 'problem' in t ? [t.problem] : [];
            },
          },
        },
        options,
      });
      if (!turn.ok) {
        await recordRejected(ctx, 'risk_manager', turn, `risk review of ${key(p.market)}`, p.market);
        out.push(decision);
        continue;
      }
      const reviewed = tighten(decision, turn.answer.value);
      if ('problem' in reviewed || reviewed === decision) {
        out.push(decision);
        continue;
      }
      await ctx.record({ agent: 'risk_manager', kind: 'risk_decision', market: p.market, output: reviewed, summary: clip(`${key(p.market)} ${p.direction} (model review): ${reviewed.reason}`, 2000) });
      out.push(reviewed);
    }
    return out;
  };
}
