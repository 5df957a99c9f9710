import { createHash } from 'node:crypto';
import type { Execution, ExecuteStep, RiskDecision, RunContext } from '../contracts.js';
import { fmt } from './technical-analyst.js';
import { ask, marketKey, type PortfolioView } from './tool-answers.js';

/**
 * The order id of a decision: the same run and signal always give the same id, so a retried
 * step (a Lambda retry, a re-driven execution) finds its first order instead of trading twice.
 */
export function clientOrderIdOf(runId: string, signalId: string): string {
  return `agt-${createHash('sha256').update(`${runId}\u0000${signalId}`).digest('hex').slice(0, 32)}`;
}

interface OrderAnswer {
  order: { clientOrderId: string; status: 'filled' | 'partial'; side: 'buy' | 'sell'; quantity: number; vwap: number; notional: number; fee: number; slippageBps: number };
  duplicate: boolean;
}

export interface PaperExecutorOptions {
  /** refuse fills whose slippage exceeds this (bps); default 4x the limits' slippageBps, at least 20 */
  readonly maxSlippageBps?: number;
}

/** The rules executor: each approved or resized decision becomes one paper market order. */
export function createPaperExecutor(options: PaperExecutorOptions = {}): ExecuteStep {
  return async (ctx: RunContext, decisions: readonly RiskDecision[]): Promise<Execution[]> => {
    const out: Execution[] = [];
    for (const d of decisions) {
      const e = await execute(ctx, d, options);
      await ctx.record({ agent: 'paper_executor', kind: 'execution', market: d.proposal.market, output: e, summary: `${marketKey(d.proposal.market)} ${e.status}: ${e.detail}`.slice(0, 2000) });
      out.push(e);
    }
    return out;
  };
}

async function execute(ctx: RunContext, d: RiskDecision, options: PaperExecutorOptions): Promise<Execution> {
  const p = d.proposal;
  const base = { runId: ctx.runId, signalId: p.signalId, market: p.market };
  if (d.verdict === 'reject' || d.notional <= 0) return { ...base, status: 'skipped', quantity: 0, notional: 0, detail: `not traded: ${d.reason}`.slice(0, 2000) };
  const side = p.direction === 'long' ? 'buy' : 'sell';
  let size: { notional: number } | { quantity: number } = { notional: d.notional };
  if (side === 'sell') {
    // A sell reduces the long by the decided share of its value, as a quantity: the same notional
    // at the bid, below the mark it was valued at, would be more than is held.
    const pf = await ask<PortfolioView>(ctx, 'get_paper_portfolio', { account: ctx.limits.account });
    if (!pf.ok) return { ...base, status: 'refused', side, quantity: 0, notional: 0, detail: pf.error.slice(0, 2000) };
    const held = pf.value.positions.find((x) => x.exchange === p.market.exchange && x.symbol === p.market.symbol && x.quantity > 0);
    if (!held || !(held.value > 0)) return { ...base, status: 'skipped', side, quantity: 0, notional: 0, detail: 'nothing held to sell (an earlier attempt of this step may have sold it)' };
    size = { quantity: held.quantity * Math.min(1, d.notional / held.value) };
  }
  const answer = await ask<OrderAnswer>(ctx, 'place_paper_order', {
    account: ctx.limits.account,
    exchange: p.market.exchange,
    symbol: p.market.symbol,
    side,
    ...size,
    clientOrderId: clientOrderIdOf(ctx.runId, p.signalId),
    signalId: p.signalId,
    maxSlippageBps: options.maxSlippageBps ?? Math.max(20, ctx.limits.slippageBps * 4),
  });
  if (!answer.ok) return { ...base, status: 'refused', side, quantity: 0, notional: 0, detail: answer.error.slice(0, 2000) };
  const o = answer.value.order;
  return {
    ...base,
    status: o.status,
    side: o.side,
    quantity: o.quantity,
    vwap: o.vwap,
    notional: o.notional,
    slippageBps: o.slippageBps,
    detail:
      `${o.side} ${fmt(o.quantity)} at ${fmt(o.vwap)} (notional ${fmt(o.notional)}, fee ${fmt(o.fee)}, slippage ${fmt(o.slippageBps)} bps)` +
      `${o.status === 'partial' ? ', partially filled: the book was too thin' : ''}${answer.value.duplicate ? '; already placed by an earlier attempt' : ''}`,
  };
}

export const paperExecutor: ExecuteStep = createPaperExecutor();
