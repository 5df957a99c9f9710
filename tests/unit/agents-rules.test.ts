/** The rules agents' decisions on fixed inputs, with hand-checked expectations. */
import { describe, expect, it } from 'vitest';
import { RiskLimitsSchema, type Proposal } from '../../layers/shared/src/agents/contracts.js';
import { correlation, marketFigures, simpleAtr, type RuleCandle } from '../../layers/shared/src/agents/rules/candle-figures.js';
import { assessMarkets, DEFAULT_MONITOR_THRESHOLDS } from '../../layers/shared/src/agents/rules/market-monitor.js';
import { clientOrderIdOf } from '../../layers/shared/src/agents/rules/paper-executor.js';
import { backtestArgs, conditionOf, decide, type RiskInputs } from '../../layers/shared/src/agents/rules/risk-manager.js';
import { figuresFrom, fmt, technicalView, type TechnicalFigures } from '../../layers/shared/src/agents/rules/technical-analyst.js';
import type { PortfolioView } from '../../layers/shared/src/agents/rules/tool-answers.js';

const MIN = 60_000;
const T = Date.UTC(2026, 0, 5, 12, 0);

function candles(closes: readonly number[], volumes?: readonly number[], spread = 1): RuleCandle[] {
  return closes.map((close, i) => ({ ts: T + i * MIN, open: close, high: close + spread, low: close - spread, close, volume: volumes?.[i] ?? 10, closed: true }));
}

describe('technical analyst rules', () => {
  const bullish: TechnicalFigures = { close: 102, emaFast: 101.2, emaSlow: 99.8, rsi: 63.1, macdHistogram: 0.35, bbUpper: 103.4, bbLower: 95.1, adx: 27.5, atr: 1.2 };

  it('proposes long when trend, momentum and RSI agree, citing the numbers it used', () => {
    const view = technicalView(bullish);
    expect(view.direction).toBe('long');
    if (view.direction === null) throw new Error('unreachable');
    // 3 of 4 votes (close inside the bands); strength 0.75 x min(1, 27.5/40) = 0.515..; confidence 0.4 + 0.3 + 0.1
    expect(view.strength).toBe(0.52);
    expect(view.confidence).toBe(0.8);
    // stop 2 ATR: 2.4 / 102 = 2.3529%
    expect(view.strategy.stopLossPct).toBe(2.35);
    expect(view.strategy.takeProfitPct).toBe(4.7);
    expect(view.rationale).toContain('EMA20 101.2 > EMA50 99.8');
    expect(view.rationale).toContain('RSI14 63.1');
    expect(view.rationale).toContain('MACD histogram 0.35');
    expect(view.rationale).toContain('ADX14 27.5');
    expect(view.rationale).toContain('net vote +3 of 4');
    expect(view.strategy.entry.conditions).toEqual(['ema:20 > ema:50', 'macd.histogram > 0', 'rsi:14 > 50']);
    expect(view.strategy.side).toBe('long');
  });

  it('proposes short on the mirror image, with the mirrored strategy', () => {
    const view = technicalView({ ...bullish, close: 94, emaFast: 98, emaSlow: 99.8, rsi: 30, macdHistogram: -0.2, bbLower: 95 });
    expect(view.direction).toBe('short');
    if (view.direction === null) throw new Error('unreachable');
    // all 4 agree (close 94 below the lower band 95): strength 1 x 0.6875
    expect(view.strength).toBe(0.69);
    expect(view.rationale).toContain('close 94 below Bollinger(20,2) 95-103.4');
    expect(view.strategy.entry.conditions).toEqual(['ema:20 < ema:50', 'macd.histogram < 0', 'rsi:14 < 50']);
  });

  it('makes no proposal without a trend (ADX below 20, no breakout) or with mixed votes, and says why', () => {
    const flat = technicalView({ ...bullish, adx: 12 });
    expect(flat).toMatchObject({ direction: null });
    expect(flat.direction === null && flat.note).toContain('ADX14 below 20');
    const mixed = technicalView({ ...bullish, macdHistogram: -0.1, rsi: 50 });
    expect(mixed.direction === null && mixed.note).toContain('net vote 0 of 4, 3 needed either way');
  });

  it('is deterministic: the same figures give the same view', () => {
    expect(technicalView(bullish)).toEqual(technicalView({ ...bullish }));
  });

  it('reads the newest values of a compute_indicators answer and names what is missing', () => {
    const r = (name: string, params: Record<string, unknown>, values: Record<string, number | null>) => ({ name, params, latest: { ts: T, values } });
    const answer = {
      results: [
        r('ema', { period: 20 }, { value: 101.2 }),
        r('ema', { period: 50 }, { value: 99.8 }),
        r('rsi', { period: 14 }, { value: 63.1 }),
        r('macd', {}, { macd: 1, signal: 0.65, histogram: 0.35 }),
        r('bbands', {}, { upper: 103.4, middle: 99, lower: 95.1 }),
        r('adx', { period: 14 }, { adx: 27.5, plusDI: 30, minusDI: 10 }),
        r('atr', { period: 14 }, { value: 1.2 }),
      ],
    };
    expect(figuresFrom(answer, 102)).toEqual({ figures: bullish });
    answer.results[1] = r('ema', { period: 50 }, { value: null });
    expect(figuresFrom(answer, 102)).toEqual({ missing: 'emaSlow' });
  });

  it('formats figures to 4 significant digits without float noise', () => {
    expect([fmt(101.23456), fmt(0.000123456), fmt(63.1), fmt(27000.4), fmt(0)]).toEqual(['101.2', '0.0001235', '63.1', '27000', '0']);
  });
});

describe('market monitor rules', () => {
  it('computes volume spike, move and ATR figures from candles', () => {
    // 20 candles of volume 10 and +0.1 steps, then one of volume 50 jumping +5
    const closes = [...Array.from({ length: 20 }, (_, i) => 100 + i * 0.1), 106.9];
    const f = marketFigures(candles(closes, [...Array(20).fill(10), 50]), { short: 5, long: 15 })!;
    expect(f.volumeRatio).toBe(5);
    expect(f.lastMovePct).toBeCloseTo((106.9 / 101.9 - 1) * 100, 10);
    expect(f.moveZ).toBeGreaterThan(100);
    // true ranges: 2 (high-low) everywhere but the jump: max(2, 107.9 - 101.9 = 6) = 6
    expect(simpleAtr(candles(closes), 1)).toBeCloseTo(6, 10);
    expect(simpleAtr(candles(closes), 5)).toBeCloseTo((2 * 4 + 6) / 5, 10);
    expect(f.atrRatio).toBeCloseTo(2.8 / ((2 * 14 + 6) / 15), 10);
  });

  it('excludes stale and unhealthy markets with the reason, and puts flagged ones first', () => {
    const m = (exchange: string, symbol: string, ageMs: number) => ({ exchange, symbol, channels: { trades: { lastTs: T - ageMs, ageMs } } });
    const feed = (symbol: string, status: 'ok' | 'degraded', gapsUnfilled = 0) => ({ exchange: 'binance', symbol, channel: 'trades', status, lastMessageAgeMs: 1000, gapsUnfilled, gapsOpen: 0 });
    const spike = marketFigures(candles(Array.from({ length: 21 }, () => 100), [...Array(20).fill(10), 40]))!;
    const report = assessMarkets(
      'r1',
      {
        markets: [m('binance', 'AAA/USDT', 1000), m('binance', 'BBB/USDT', 1000), m('binance', 'CCC/USDT', 600_000), m('binance', 'DDD/USDT', 1000)],
        feeds: [feed('AAA/USDT', 'ok'), feed('BBB/USDT', 'ok'), feed('CCC/USDT', 'ok'), feed('DDD/USDT', 'degraded', 2)],
        divergences: [],
        figures: new Map([['binance:BBB/USDT', spike]]),
      },
      DEFAULT_MONITOR_THRESHOLDS,
    );
    expect(report.markets).toEqual([
      { exchange: 'binance', symbol: 'BBB/USDT' },
      { exchange: 'binance', symbol: 'AAA/USDT' },
    ]);
    expect(report.excluded).toEqual([
      { market: { exchange: 'binance', symbol: 'CCC/USDT' }, reason: 'stale: newest trade 600 s old (limit 120 s)' },
      { market: { exchange: 'binance', symbol: 'DDD/USDT' }, reason: 'trade feed degraded (last message 1 s ago, 2 unfilled gaps)' },
    ]);
    const anomaly = report.observations.find((o) => o.kind === 'anomaly')!;
    expect(anomaly.figures).toEqual({ volumeRatio: 4, lastClose: 100 });
    expect(anomaly.detail).toBe('binance:BBB/USDT volume spike: last candle 4x its average volume');
  });

  it('reports cross-exchange divergence past the threshold', () => {
    const report = assessMarkets('r1', {
      markets: [{ exchange: 'okx', symbol: 'BTC/USDT', channels: { trades: { lastTs: T, ageMs: 10 } } }],
      feeds: null,
      divergences: [{ exchange: 'okx', symbol: 'BTC/USDT', divergenceBps: -75.5 }],
      figures: new Map(),
    });
    expect(report.observations.map((o) => o.kind)).toEqual(['data_health', 'divergence']);
    expect(report.observations[1]!.figures).toEqual({ divergenceBps: -75.5 });
    expect(report.markets).toHaveLength(1);
  });
});

describe('risk manager rules', () => {
  const limits = RiskLimitsSchema.parse({});
  const proposal: Proposal = {
    runId: 'r1',
    market: { exchange: 'binance', symbol: 'BTC/USDT' },
    signalId: 's1',
    direction: 'long',
    strength: 0.5,
    confidence: 0.7,
    horizon: '1h',
    price: 100,
    strategy: { name: 't', timeframe: '1h', side: 'long', entry: { conditions: ['ema:20 > ema:50', 'rsi:14 crosses_above 30'], match: 'all' }, stopLossPct: 2 },
    rationale: 'x',
    by: 'rules',
  };
  const portfolio: PortfolioView = { account: 'default', cash: 10_000, equity: 10_000, peakEquity: 10_000, drawdownPct: 0, dailyNotional: 0, positions: [] };
  const ok: RiskInputs = { health: null, backtest: { trades: 4, totalReturnPct: 3.2, maxDrawdownPct: 1.1, bars: 168 }, portfolio, correlation: null };

  it('approves a proposal that passes every check, sized by its strength', () => {
    const d = decide('r1', proposal, ok, limits);
    expect(d.verdict).toBe('approve');
    // 2000 x 0.5
    expect(d.notional).toBe(1000);
    expect(d.checks.map((c) => c.name).sort()).toEqual(['backtest', 'concentration', 'correlation', 'daily_volume', 'data_health', 'direction', 'drawdown', 'position_size', 'stop_loss']);
    expect(d.checks.every((c) => c.passed)).toBe(true);
  });

  it('resizes down to the daily notional left, saying by which limit', () => {
    const d = decide('r1', proposal, { ...ok, portfolio: { ...portfolio, dailyNotional: 9_600 } }, limits);
    expect(d).toMatchObject({ verdict: 'resize', notional: 400, reason: 'resized from 1000 to 400 by daily_volume' });
  });

  it('resizes to the concentration cap: 40% of equity less what the base asset already holds', () => {
    const held = { exchange: 'okx', symbol: 'BTC/USDT', quantity: 35, averageCost: 100, markPrice: 100, value: 3_500 };
    const d = decide('r1', proposal, { ...ok, portfolio: { ...portfolio, cash: 6_500, positions: [held] } }, limits);
    expect(d).toMatchObject({ verdict: 'resize', notional: 500, reason: 'resized from 1000 to 500 by concentration' });
  });

  it('rejects naming every failed check', () => {
    const d = decide(
      'r1',
      { ...proposal, strategy: { ...proposal.strategy, stopLossPct: 8 } },
      { ...ok, health: 'trade feed stale', backtest: { refused: 'Backtest refused: gap' }, portfolio: { ...portfolio, drawdownPct: 12 } },
      limits,
    );
    expect(d.verdict).toBe('reject');
    expect(d.notional).toBe(0);
    for (const name of ['data_health', 'backtest', 'stop_loss', 'drawdown']) expect(d.reason).toContain(name);
    expect(d.checks.filter((c) => !c.passed).map((c) => c.name).sort()).toEqual(['backtest', 'data_health', 'drawdown', 'stop_loss']);
  });

  it('rejects a backtest with too few trades or too big a loss', () => {
    const d = decide('r1', proposal, { ...ok, backtest: { trades: 2, totalReturnPct: -7.5, maxDrawdownPct: 9, bars: 168 } }, limits);
    expect(d.verdict).toBe('reject');
    expect(d.checks.find((c) => c.name === 'backtest')).toMatchObject({ passed: false, detail: '168 1h candles: 2 trades (min 1), return -7.5% (min -5%), max drawdown 9%' });
  });

  it('rejects a correlated new position', () => {
    const d = decide('r1', proposal, { ...ok, correlation: { value: 0.95, with: 'binance:ETH/USDT' } }, limits);
    expect(d.verdict).toBe('reject');
    expect(d.reason).toContain('correlation (1h returns correlate 0.95 with binance:ETH/USDT (max 0.9))');
  });

  it('rejects a short with no long to reduce, and sells the whole long when there is one', () => {
    const short = { ...proposal, direction: 'short' as const };
    expect(decide('r1', short, ok, limits)).toMatchObject({ verdict: 'reject' });
    expect(decide('r1', short, ok, limits).reason).toContain('direction');
    const held = { exchange: 'binance', symbol: 'BTC/USDT', quantity: 5, averageCost: 90, markPrice: 100, value: 500 };
    expect(decide('r1', short, { ...ok, portfolio: { ...portfolio, positions: [held] } }, limits)).toMatchObject({ verdict: 'approve', notional: 500 });
  });

  it('rejects when what fits is below the minimum order', () => {
    const d = decide('r1', proposal, { ...ok, portfolio: { ...portfolio, dailyNotional: 9_995 } }, limits);
    expect(d.verdict).toBe('reject');
    expect(d.reason).toContain('daily_volume');
  });

  it('turns strategy conditions into backtest_strategy conditions over whole candles of the range', () => {
    expect(conditionOf('ema:20 > ema:50')).toEqual({ series: 'ema:20', op: '>', value: 'ema:50' });
    expect(conditionOf('rsi:14 crosses_above 30')).toEqual({ series: 'rsi:14', op: 'crosses_above', value: 30 });
    expect(conditionOf('macd.histogram <= -0.5')).toEqual({ series: 'macd.histogram', op: '<=', value: -0.5 });
    expect(() => conditionOf('rsi above 30')).toThrow(/is not '<series> <op>/);
    const now = T + 37 * MIN + 5_000;
    const args = backtestArgs(proposal, limits, now);
    // 7 days of 1h candles up to the last whole hour
    expect(args).toMatchObject({ since: T - 7 * 24 * 3_600_000, until: T, timeframe: '1h', side: 'long', stopLossPct: 2, feeBps: 10, slippageBps: 5 });
    expect(args['entry']).toEqual({ conditions: [conditionOf('ema:20 > ema:50'), conditionOf('rsi:14 crosses_above 30')], match: 'all' });
  });

  it('correlates returns', () => {
    expect(correlation([1, 2, 3, 4], [2, 4, 6, 8])).toBeCloseTo(1, 12);
    expect(correlation([1, 2, 3, 4], [8, 6, 4, 2])).toBeCloseTo(-1, 12);
    expect(correlation([1, 1, 1], [1, 2, 3])).toBeNull();
  });
});

describe('paper executor', () => {
  it('derives the same client order id from the same run and signal, a different one otherwise', () => {
    const id = clientOrderIdOf('run-1', 'sig-1');
    expect(clientOrderIdOf('run-1', 'sig-1')).toBe(id);
    expect(clientOrderIdOf('run-1', 'sig-2')).not.toBe(id);
    expect(clientOrderIdOf('run-2', 'sig-1')).not.toBe(id);
    expect(id).toMatch(/^agt-[0-9a-f]{32}$/);
  });
});
