import type { SignalDirection, Timeframe } from '../../domain/index.js';
import type { Analysis, AnalystStep, MarketRef, Proposal, RunContext, Strategy } from '../contracts.js';
import { round } from './candle-figures.js';
import { ask, marketKey } from './tool-answers.js';

/** The indicator values the rules analyst decides on: the newest complete value of each. */
export interface TechnicalFigures {
  readonly close: number;
  readonly emaFast: number;
  readonly emaSlow: number;
  readonly rsi: number;
  readonly macdHistogram: number;
  readonly bbUpper: number;
  readonly bbLower: number;
  readonly adx: number;
  readonly atr: number;
}

export interface AnalystSettings {
  readonly timeframe: Timeframe;
  readonly emaFast: number;
  readonly emaSlow: number;
  /** ADX below this, with no Bollinger breakout: no trend to trade */
  readonly minAdx: number;
  /** indicators agreeing (out of 4) for a proposal */
  readonly minAgreement: number;
}

export const DEFAULT_ANALYST_SETTINGS: AnalystSettings = { timeframe: '1m', emaFast: 20, emaSlow: 50, minAdx: 20, minAgreement: 3 };

/** The rules' view of one market: a proposal's content, or why there is none. Pure. */
export type TechnicalView =
  | { readonly direction: Exclude<SignalDirection, 'flat'>; readonly strength: number; readonly confidence: number; readonly strategy: Strategy; readonly rationale: string }
  | { readonly direction: null; readonly note: string };

const signed = (n: number) => (n > 0 ? `+${n}` : String(n));

/** Shortest form of a figure that keeps 4 significant digits (and no float noise). */
export function fmt(value: number): string {
  if (value === 0) return '0';
  const digits = Math.max(0, 3 - Math.floor(Math.log10(Math.abs(value))));
  return String(Number(value.toFixed(Math.min(8, digits))));
}

/**
 * Trend (fast vs slow EMA), momentum (MACD histogram), RSI above 55 / below 45, and a close
 * outside the Bollinger bands each vote; `minAgreement` votes one way make a proposal, unless ADX
 * says there is no trend. The stop-loss is 2 ATR; the strategy backtested is the same votes in
 * backtest_strategy's condition language.
 */
export function technicalView(f: TechnicalFigures, s: AnalystSettings = DEFAULT_ANALYST_SETTINGS): TechnicalView {
  const sign = (x: number) => (x > 0 ? 1 : x < 0 ? -1 : 0);
  const trend = sign(f.emaFast - f.emaSlow);
  const momentum = sign(f.macdHistogram);
  const rsiVote = f.rsi >= 55 ? 1 : f.rsi <= 45 ? -1 : 0;
  const breakout = f.close > f.bbUpper ? 1 : f.close < f.bbLower ? -1 : 0;
  const score = trend + momentum + rsiVote + breakout;
  const cited =
    `EMA${s.emaFast} ${fmt(f.emaFast)} ${trend > 0 ? '>' : trend < 0 ? '<' : '='} EMA${s.emaSlow} ${fmt(f.emaSlow)}, ` +
    `MACD histogram ${fmt(f.macdHistogram)}, RSI14 ${fmt(f.rsi)}, ` +
    `close ${fmt(f.close)} ${breakout > 0 ? 'above' : breakout < 0 ? 'below' : 'inside'} Bollinger(20,2) ${fmt(f.bbLower)}-${fmt(f.bbUpper)}, ` +
    `ADX14 ${fmt(f.adx)}, ATR14 ${fmt(f.atr)}`;
  if (f.adx < s.minAdx && breakout === 0) return { direction: null, note: `no trend: ${cited}; ADX14 below ${s.minAdx} and no breakout` };
  if (Math.abs(score) < s.minAgreement) return { direction: null, note: `mixed: ${cited}; net vote ${signed(score)} of 4, ${s.minAgreement} needed either way` };
  const long = score > 0;
  const extreme = long ? f.rsi >= 80 : f.rsi <= 20;
  const agreement = Math.abs(score) / 4;
  const strength = round(Math.min(1, agreement * Math.min(1, f.adx / 40)), 2);
  const confidence = round(Math.min(1, Math.max(0, 0.4 + 0.4 * agreement + (f.adx >= 25 ? 0.1 : 0) - (extreme ? 0.2 : 0))), 2);
  const stopLossPct = round(Math.min(20, Math.max(0.2, ((2 * f.atr) / f.close) * 100)), 2);
  const [above, below] = long ? ['>', '<'] : ['<', '>'];
  const strategy: Strategy = {
    name: `rules-trend-${long ? 'long' : 'short'}`,
    timeframe: s.timeframe,
    side: long ? 'long' : 'short',
    entry: { conditions: [`ema:${s.emaFast} ${above} ema:${s.emaSlow}`, `macd.histogram ${above} 0`, `rsi:14 ${above} 50`], match: 'all' },
    exit: { conditions: [`ema:${s.emaFast} ${below} ema:${s.emaSlow}`], match: 'any' },
    stopLossPct,
    takeProfitPct: round(stopLossPct * 2, 2),
  };
  const rationale =
    `${long ? 'long' : 'short'}: ${cited}; net vote ${signed(score)} of 4` +
    `${extreme ? ` (RSI14 ${long ? 'overbought' : 'oversold'}: confidence lowered)` : ''}; stop-loss ${fmt(stopLossPct)}% (2 ATR14)`;
  return { direction: long ? 'long' : 'short', strength, confidence, strategy, rationale };
}

interface IndicatorAnswer {
  results: { name: string; params: Record<string, unknown>; latest: { ts: number; values: Record<string, number | null> } | null }[];
}

/** The figures from a compute_indicators answer and the last close; null with the missing one named. */
export function figuresFrom(answer: IndicatorAnswer, close: number, s: AnalystSettings = DEFAULT_ANALYST_SETTINGS): { figures: TechnicalFigures } | { missing: string } {
  const value = (name: string, output: string, period?: number): number | null => {
    const r = answer.results.find((x) => x.name === name && (period === undefined || x.params['period'] === period));
    const v = r?.latest?.values[output];
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  };
  const picked = {
    emaFast: value('ema', 'value', s.emaFast),
    emaSlow: value('ema', 'value', s.emaSlow),
    rsi: value('rsi', 'value'),
    macdHistogram: value('macd', 'histogram'),
    bbUpper: value('bbands', 'upper'),
    bbLower: value('bbands', 'lower'),
    adx: value('adx', 'adx'),
    atr: value('atr', 'value'),
  };
  const missing = Object.entries(picked).filter(([, v]) => v === null).map(([k]) => k);
  if (missing.length) return { missing: missing.join(', ') };
  return { figures: { close, ...(picked as { [K in keyof typeof picked]: number }) } };
}

/** The rules technical analyst: candles and indicators of one market, then a signal or the reason for none. */
export function createTechnicalAnalyst(settings: Partial<AnalystSettings> = {}): AnalystStep {
  const s = { ...DEFAULT_ANALYST_SETTINGS, ...settings };
  return async (ctx: RunContext, market: MarketRef): Promise<Analysis> => {
    const none = async (note: string): Promise<Analysis> => {
      const analysis: Analysis = { runId: ctx.runId, market, proposal: null, note: note.slice(0, 2000) };
      await ctx.record({ agent: 'technical_analyst', kind: 'no_proposal', market, output: analysis, summary: `${marketKey(market)}: ${note}` });
      return analysis;
    };
    const candles = await ask<{ candles: { ts: number; close: number; closed: boolean }[] }>(ctx, 'get_candles', {
      exchange: market.exchange,
      symbol: market.symbol,
      timeframe: s.timeframe,
      limit: 5,
    });
    if (!candles.ok) return none(`candles unavailable: ${candles.error}`);
    const last = candles.value.candles.filter((c) => c.closed).at(-1);
    if (!last) return none(`no closed ${s.timeframe} candle`);
    const indicators = await ask<IndicatorAnswer>(ctx, 'compute_indicators', {
      exchange: market.exchange,
      symbol: market.symbol,
      timeframe: s.timeframe,
      limit: 1,
      until: last.ts + 1,
      indicators: [
        { name: 'ema', params: { period: s.emaFast } },
        { name: 'ema', params: { period: s.emaSlow } },
        { name: 'rsi', params: { period: 14 } },
        { name: 'macd' },
        { name: 'bbands', params: { period: 20, stdDev: 2 } },
        { name: 'adx', params: { period: 14 } },
        { name: 'atr', params: { period: 14 } },
      ],
    });
    if (!indicators.ok) return none(`indicators unavailable: ${indicators.error}`);
    const picked = figuresFrom(indicators.value, last.close, s);
    if ('missing' in picked) return none(`not enough ${s.timeframe} history for ${picked.missing}`);
    const view = technicalView(picked.figures, s);
    if (view.direction === null) return none(view.note);
    const published = await ask<{ signal: { id: string } }>(ctx, 'publish_signal', {
      exchange: market.exchange,
      symbol: market.symbol,
      direction: view.direction,
      strength: view.strength,
      confidence: view.confidence,
      horizon: s.timeframe,
      rationale: view.rationale,
    });
    if (!published.ok) return none(`signal not published: ${published.error}`);
    const proposal: Proposal = {
      runId: ctx.runId,
      market,
      signalId: published.value.signal.id,
      direction: view.direction,
      strength: view.strength,
      confidence: view.confidence,
      horizon: s.timeframe,
      price: last.close,
      strategy: view.strategy,
      rationale: view.rationale,
      by: 'rules',
    };
    const analysis: Analysis = { runId: ctx.runId, market, proposal, note: view.rationale.slice(0, 2000) };
    await ctx.record({ agent: 'technical_analyst', kind: 'proposal', market, output: proposal, summary: `${marketKey(market)} ${view.rationale}` });
    return analysis;
  };
}

export const technicalAnalyst: AnalystStep = createTechnicalAnalyst();
