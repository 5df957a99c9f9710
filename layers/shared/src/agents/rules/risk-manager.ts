import { ValidationError } from '../../domain/errors.js';
import { timeframeMs } from '../../domain/index.js';
import type { MarketRef, Proposal, RiskCheck, RiskDecision, RiskLimits, RiskStep, RunContext, Strategy } from '../contracts.js';
import { alignedReturns, correlation, round, type RuleCandle } from './candle-figures.js';
import { fmt } from './technical-analyst.js';
import { ask, healthProblem, marketKey, readCandles, tradeFeedOf, type FeedHealthView, type PortfolioView, type PositionView } from './tool-answers.js';

const DAY_MS = 86_400_000;
/** An order below this notional (quote currency) is not worth placing: the proposal is rejected instead. */
export const MIN_ORDER_NOTIONAL = 10;
/** Candles the backtest may span (backtest_strategy's own cap is 5000). */
const MAX_BACKTEST_BARS = 5_000;
/** 1h closes the correlation check compares: 7 days. */
const CORRELATION_BARS = 169;
/** Fewer common returns than this and the correlation is not judged. */
const MIN_CORRELATION_RETURNS = 24;

const COMPARATOR = /^(.+?)\s+(<=|>=|<|>|crosses_above|crosses_below)\s+(.+)$/;

/** A strategy condition ('ema:20 > ema:50') as backtest_strategy takes it ({series, op, value}). */
export function conditionOf(text: string): { series: string; op: string; value: number | string } {
  const m = COMPARATOR.exec(text.trim());
  if (!m) throw new ValidationError(`strategy condition '${text.slice(0, 80)}' is not '<series> <op> <series|number>'`);
  const right = m[3]!.trim();
  const n = Number(right);
  return { series: m[1]!.trim(), op: m[2]!, value: right !== '' && Number.isFinite(n) ? n : right };
}

/** backtest_strategy's arguments for a proposal's strategy over the `backtestDays` before `now`. */
export function backtestArgs(p: Proposal, limits: RiskLimits, now: number): Record<string, unknown> {
  const size = timeframeMs(p.strategy.timeframe);
  const until = Math.floor(now / size) * size;
  const bars = Math.min(MAX_BACKTEST_BARS, Math.ceil((limits.backtestDays * DAY_MS) / size));
  const rules = (r: Strategy['entry']) => ({ conditions: r.conditions.map(conditionOf), match: r.match });
  return {
    exchange: p.market.exchange,
    symbol: p.market.symbol,
    timeframe: p.strategy.timeframe,
    since: until - bars * size,
    until,
    side: p.strategy.side,
    entry: rules(p.strategy.entry),
    ...(p.strategy.exit && { exit: rules(p.strategy.exit) }),
    stopLossPct: p.strategy.stopLossPct,
    ...(p.strategy.takeProfitPct !== undefined && { takeProfitPct: p.strategy.takeProfitPct }),
    feeBps: limits.feeBps,
    slippageBps: limits.slippageBps,
    maxTrades: 0,
  };
}

/** Base asset of a unified symbol: BTC of BTC/USDT and BTC/USDT:USDT. */
const baseOf = (symbol: string) => symbol.split('/')[0]!;
const sameMarket = (a: MarketRef, b: MarketRef) => a.exchange === b.exchange && a.symbol === b.symbol;

/** Everything the risk manager read about one proposal, for `decide`. */
export interface RiskInputs {
  readonly health: string | null | 'unknown';
  /** the backtest's metrics, or why it was refused */
  readonly backtest: { trades: number; totalReturnPct: number; maxDrawdownPct: number; bars: number } | { refused: string };
  readonly portfolio: PortfolioView;
  /** highest correlation of 1h returns with an open position's market, with that market */
  readonly correlation: { value: number; with: string } | null;
}

/**
 * The verdict on one proposal. Hard checks (data health, backtest, stop-loss, drawdown,
 * correlation, direction) reject; size limits (position, daily notional, concentration, cash)
 * resize down to what fits, and reject when that is below MIN_ORDER_NOTIONAL. Pure.
 */
export function decide(runId: string, p: Proposal, input: RiskInputs, limits: RiskLimits): RiskDecision {
  const checks: RiskCheck[] = [];
  const check = (name: RiskCheck['name'], passed: boolean, detail: string) => checks.push({ name, passed, detail: detail.slice(0, 1000) });
  const buying = p.direction === 'long';
  const pf = input.portfolio;
  const held: PositionView | undefined = pf.positions.find((x) => sameMarket(x, p.market) && x.quantity > 0);

  if (buying) check('direction', true, 'long: a buy');
  else if (held) check('direction', true, `${p.direction}: sells the open long of ${fmt(held.quantity)} (value ${fmt(held.value)})`);
  else check('direction', false, `${p.direction}: paper trading is long only and there is no open long in ${marketKey(p.market)} to reduce`);

  if (input.health === 'unknown') check('data_health', false, 'data health unavailable: get_data_health not offered or failed');
  else check('data_health', input.health === null, input.health === null ? 'trade feed ok' : input.health);

  const bt = input.backtest;
  if ('refused' in bt) check('backtest', false, `backtest over ${limits.backtestDays} days refused: ${bt.refused}`);
  else {
    const ok = bt.trades >= limits.minBacktestTrades && bt.totalReturnPct >= limits.minBacktestReturnPct;
    check(
      'backtest',
      ok,
      `${bt.bars} ${p.strategy.timeframe} candles: ${bt.trades} trades (min ${limits.minBacktestTrades}), return ${fmt(round(bt.totalReturnPct, 2))}% ` +
        `(min ${fmt(limits.minBacktestReturnPct)}%), max drawdown ${fmt(round(bt.maxDrawdownPct, 2))}%`,
    );
  }

  check(
    'stop_loss',
    p.strategy.stopLossPct <= limits.maxStopLossPct,
    `stop-loss ${fmt(p.strategy.stopLossPct)}% (max ${fmt(limits.maxStopLossPct)}%)`,
  );

  if (buying) {
    check('drawdown', pf.drawdownPct < limits.maxDrawdownPct, `drawdown ${fmt(round(pf.drawdownPct, 2))}% (max ${fmt(limits.maxDrawdownPct)}%)`);
    const c = input.correlation;
    check(
      'correlation',
      c === null || c.value <= limits.maxCorrelation,
      c === null ? 'no open position to correlate with (or too little common history)' : `1h returns correlate ${fmt(round(c.value, 3))} with ${c.with} (max ${fmt(limits.maxCorrelation)})`,
    );
  } else {
    check('drawdown', true, 'a sale reduces exposure');
    check('correlation', true, 'a sale reduces exposure');
  }

  // size: what the strength asks for, cut by every limit that applies
  const wanted = buying ? limits.maxPositionNotional * Math.max(0.25, p.strength) : (held?.value ?? 0);
  const caps: { name: RiskCheck['name']; room: number; detail: string }[] = [];
  const dailyRoom = Math.max(0, limits.maxDailyNotional - pf.dailyNotional);
  caps.push({ name: 'daily_volume', room: dailyRoom, detail: `traded today ${fmt(round(pf.dailyNotional, 2))} of ${fmt(limits.maxDailyNotional)}` });
  if (buying) {
    const positionValue = held?.value ?? 0;
    caps.push({ name: 'position_size', room: Math.max(0, limits.maxPositionNotional - positionValue), detail: `position ${fmt(round(positionValue, 2))} of ${fmt(limits.maxPositionNotional)}, cash ${fmt(round(pf.cash, 2))}` });
    caps[caps.length - 1]!.room = Math.min(caps[caps.length - 1]!.room, pf.cash);
    const base = baseOf(p.market.symbol);
    const baseValue = pf.positions.filter((x) => baseOf(x.symbol) === base).reduce((a, x) => a + x.value, 0);
    const cap = limits.maxConcentration * pf.equity;
    caps.push({ name: 'concentration', room: Math.max(0, cap - baseValue), detail: `${base} held ${fmt(round(baseValue, 2))}, at most ${fmt(limits.maxConcentration * 100)}% of equity ${fmt(round(pf.equity, 2))} = ${fmt(round(cap, 2))}` });
  } else {
    check('position_size', true, `sells the position, value ${fmt(round(wanted, 2))}`);
    check('concentration', true, 'a sale reduces concentration');
  }
  let notional = wanted;
  const cutBy: string[] = [];
  for (const c of caps) {
    const fits = c.room >= MIN_ORDER_NOTIONAL || c.room >= notional;
    check(c.name, fits, `${c.detail}; room ${fmt(round(c.room, 2))}`);
    if (c.room < notional) {
      notional = c.room;
      cutBy.push(c.name);
    }
  }
  notional = round(Math.max(0, notional), 2);

  const failed = checks.filter((c) => !c.passed).map((c) => c.name);
  let verdict: RiskDecision['verdict'];
  let reason: string;
  if (failed.length > 0 || notional < MIN_ORDER_NOTIONAL) {
    verdict = 'reject';
    const tooSmall = failed.length === 0 ? [`size ${fmt(notional)} below the minimum order ${MIN_ORDER_NOTIONAL}`] : [];
    reason = `rejected: ${[...failed.map((n) => `${n} (${checks.find((c) => c.name === n)!.detail})`), ...tooSmall].join('; ')}`;
    notional = 0;
  } else if (notional < round(wanted, 2)) {
    verdict = 'resize';
    reason = `resized from ${fmt(round(wanted, 2))} to ${fmt(notional)} by ${cutBy.join(', ')}`;
  } else {
    verdict = 'approve';
    reason = `approved: ${buying ? 'buy' : 'sell'} ${fmt(notional)}; every check passed`;
  }
  return { runId, proposal: p, verdict, notional, reason: reason.slice(0, 2000), checks };
}

/** The rules risk manager: every check of RiskCheckSchema per proposal, in order. */
export function createRiskManager(): RiskStep {
  return async (ctx: RunContext, proposals: readonly Proposal[]): Promise<RiskDecision[]> => {
    const decisions: RiskDecision[] = [];
    for (const p of proposals) {
      const d = await assess(ctx, p);
      await ctx.record({ agent: 'risk_manager', kind: 'risk_decision', market: p.market, output: d, summary: `${marketKey(p.market)} ${p.direction}: ${d.reason}` });
      decisions.push(d);
    }
    return decisions;
  };
}

async function assess(ctx: RunContext, p: Proposal): Promise<RiskDecision> {
  const limits = ctx.limits;
  const health = await ask<{ feeds: FeedHealthView[] }>(ctx, 'get_data_health', { exchange: p.market.exchange, symbol: p.market.symbol, gapLimit: 0 });
  const bt = await ask<{ bars: number; metrics: { trades: number; totalReturnPct: number; maxDrawdownPct: number } }>(
    ctx,
    'backtest_strategy',
    backtestArgs(p, limits, ctx.now()),
  );
  const pf = await ask<PortfolioView>(ctx, 'get_paper_portfolio', { account: limits.account });
  if (!pf.ok) {
    // without the portfolio no size, drawdown or direction can be judged
    return {
      runId: ctx.runId,
      proposal: p,
      verdict: 'reject',
      notional: 0,
      reason: `rejected: portfolio unavailable (${pf.error.slice(0, 300)})`,
      checks: [{ name: 'position_size', passed: false, detail: `portfolio unavailable: ${pf.error.slice(0, 300)}` }],
    };
  }
  let corr: RiskInputs['correlation'] = null;
  const others = pf.value.positions.filter((x) => x.quantity > 0 && !sameMarket(x, p.market));
  if (p.direction === 'long' && others.length > 0) {
    const mine = await readCandles(ctx, p.market, '1h', CORRELATION_BARS);
    if (mine.ok) {
      for (const o of others) {
        const theirs = await readCandles(ctx, o, '1h', CORRELATION_BARS);
        if (!theirs.ok) continue;
        const r = alignedReturns(closedOnly(mine.value), closedOnly(theirs.value));
        if (r.a.length < MIN_CORRELATION_RETURNS) continue;
        const c = correlation(r.a, r.b);
        if (c !== null && (corr === null || c > corr.value)) corr = { value: c, with: marketKey(o) };
      }
    }
  }
  return decide(
    ctx.runId,
    p,
    {
      health: health.ok ? healthProblem(tradeFeedOf(health.value.feeds, p.market)) : 'unknown',
      backtest: bt.ok ? { ...bt.value.metrics, bars: bt.value.bars } : { refused: bt.error.slice(0, 600) },
      portfolio: pf.value,
      correlation: corr,
    },
    limits,
  );
}

const closedOnly = (c: readonly RuleCandle[]) => c.filter((x) => x.closed);

export const riskManager: RiskStep = createRiskManager();
