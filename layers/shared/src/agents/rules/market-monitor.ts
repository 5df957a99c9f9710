import { PlatformError } from '../../domain/errors.js';
import type { Timeframe } from '../../domain/index.js';
import type { MarketRef, MonitorReport, MonitorStep, Observation, RunContext } from '../contracts.js';
import { marketFigures, round, type MarketFigures } from './candle-figures.js';
import { ask, healthProblem, marketKey, readCandles, tradeFeedOf, type FeedHealthView, type ListedMarket } from './tool-answers.js';

/** The monitor could not read the market list: there is nothing to monitor this run. */
export class MonitorInputError extends PlatformError {}

/** When the monitor calls something notable. */
export interface MonitorThresholds {
  /** last candle's volume at least this many times the mean of the candles before */
  readonly volumeSpike: number;
  /** last candle's return at least this many standard deviations of the earlier returns */
  readonly moveZ: number;
  /** short/long ATR at or above: volatility expanding; at or below `atrRatioLow`: contracting */
  readonly atrRatioHigh: number;
  readonly atrRatioLow: number;
  /** an exchange's last price this far (bps) from the cross-exchange median */
  readonly divergenceBps: number;
  /** a market whose newest trade is older than this (ms) is left out as stale */
  readonly staleAfterMs: number;
}

export const DEFAULT_MONITOR_THRESHOLDS: MonitorThresholds = {
  volumeSpike: 3,
  moveZ: 4,
  atrRatioHigh: 1.5,
  atrRatioLow: 0.5,
  divergenceBps: 50,
  staleAfterMs: 120_000,
};

export interface MarketMonitorOptions {
  /** only these markets (AGENT_MARKETS); every market held when omitted */
  readonly markets?: readonly MarketRef[];
  /** candles the anomaly figures are read from; default 1m */
  readonly timeframe?: Timeframe;
  /** how many; default 120 */
  readonly candles?: number;
  readonly thresholds?: Partial<MonitorThresholds>;
}

/** What one compare_exchanges answer says of one exchange's market. */
export interface DivergenceView {
  readonly exchange: string;
  readonly symbol: string;
  readonly divergenceBps: number | null;
}

/** Everything the monitor read, for `assessMarkets`. */
export interface MonitorInputs {
  readonly markets: readonly ListedMarket[];
  /** null when the deployment offers no data health */
  readonly feeds: readonly FeedHealthView[] | null;
  readonly divergences: readonly DivergenceView[];
  readonly figures: ReadonlyMap<string, MarketFigures | null>;
}

/** The monitor's judgement over what it read. Pure, so it can be checked on fixed inputs. */
export function assessMarkets(
  runId: string,
  input: MonitorInputs,
  t: MonitorThresholds = DEFAULT_MONITOR_THRESHOLDS,
): MonitorReport {
  const observations: Observation[] = [];
  const excluded: MonitorReport['excluded'] = [];
  const healthy: { market: MarketRef; flagged: boolean }[] = [];
  if (input.feeds === null) {
    observations.push({ kind: 'data_health', severity: 'warning', detail: 'get_data_health is not offered: feed health unknown, only staleness checked', figures: {} });
  }
  for (const m of input.markets) {
    const market = { exchange: m.exchange, symbol: m.symbol };
    const tradesAge = m.channels.trades?.ageMs;
    let problem: string | null = null;
    if (tradesAge === undefined) problem = 'no trades held';
    else if (tradesAge > t.staleAfterMs) problem = `stale: newest trade ${Math.round(tradesAge / 1000)} s old (limit ${Math.round(t.staleAfterMs / 1000)} s)`;
    else if (input.feeds !== null) problem = healthProblem(tradeFeedOf(input.feeds, market));
    if (problem !== null) {
      excluded.push({ market, reason: problem });
      observations.push({
        kind: 'data_health',
        market,
        severity: 'critical',
        detail: `${marketKey(market)} left out of analysis: ${problem}`,
        figures: tradesAge === undefined ? {} : { tradesAgeMs: tradesAge },
      });
      continue;
    }
    let flagged = false;
    const f = input.figures.get(marketKey(market)) ?? null;
    if (f !== null) {
      if (f.volumeRatio !== null && f.volumeRatio >= t.volumeSpike) {
        flagged = true;
        observations.push({
          kind: 'anomaly',
          market,
          severity: 'warning',
          detail: `${marketKey(market)} volume spike: last candle ${round(f.volumeRatio)}x its average volume`,
          figures: { volumeRatio: round(f.volumeRatio, 4), lastClose: f.lastClose },
        });
      }
      if (f.moveZ !== null && Math.abs(f.moveZ) >= t.moveZ) {
        flagged = true;
        observations.push({
          kind: 'anomaly',
          market,
          severity: Math.abs(f.moveZ) >= 2 * t.moveZ ? 'critical' : 'warning',
          detail: `${marketKey(market)} big move: ${round(f.lastMovePct, 3)}% in the last candle, ${round(f.moveZ)} standard deviations`,
          figures: { movePct: round(f.lastMovePct, 4), moveZ: round(f.moveZ, 4), lastClose: f.lastClose },
        });
      }
      if (f.atrRatio !== null && (f.atrRatio >= t.atrRatioHigh || f.atrRatio <= t.atrRatioLow)) {
        const expanding = f.atrRatio >= t.atrRatioHigh;
        flagged ||= expanding;
        observations.push({
          kind: 'volatility_regime',
          market,
          severity: expanding ? 'warning' : 'info',
          detail: `${marketKey(market)} volatility ${expanding ? 'expanding' : 'contracting'}: short ATR ${round(f.atrShort!, 6)} is ${round(f.atrRatio)}x the long ATR ${round(f.atrLong!, 6)}`,
          figures: { atrRatio: round(f.atrRatio, 4), atrShort: f.atrShort!, atrLong: f.atrLong! },
        });
      }
    }
    const d = input.divergences.find((x) => x.exchange === m.exchange && x.symbol === m.symbol);
    if (d && d.divergenceBps !== null && Math.abs(d.divergenceBps) >= t.divergenceBps) {
      flagged = true;
      observations.push({
        kind: 'divergence',
        market,
        severity: Math.abs(d.divergenceBps) >= 4 * t.divergenceBps ? 'critical' : 'warning',
        detail: `${marketKey(market)} last price ${round(d.divergenceBps, 1)} bps from the cross-exchange median`,
        figures: { divergenceBps: round(d.divergenceBps, 2) },
      });
    }
    healthy.push({ market, flagged });
  }
  // flagged first; otherwise the order list_markets gave (exchange, then symbol)
  const markets = [...healthy.filter((h) => h.flagged), ...healthy.filter((h) => !h.flagged)].map((h) => h.market);
  return { runId, observations, markets, excluded };
}

/** The rules market monitor: list_markets, get_data_health, compare_exchanges, candles per market. */
export function createMarketMonitor(options: MarketMonitorOptions = {}): MonitorStep {
  const thresholds = { ...DEFAULT_MONITOR_THRESHOLDS, ...options.thresholds };
  const timeframe = options.timeframe ?? '1m';
  const candles = options.candles ?? 120;
  const wanted = options.markets && new Set(options.markets.map(marketKey));
  return async (ctx: RunContext) => {
    const listed = await ask<{ markets: ListedMarket[] }>(ctx, 'list_markets', { limit: 1000 });
    if (!listed.ok) throw new MonitorInputError(`market monitor: ${listed.error}`);
    const markets = listed.value.markets.filter((m) => !wanted || wanted.has(marketKey(m)));
    const health = await ask<{ feeds: FeedHealthView[] }>(ctx, 'get_data_health', { gapLimit: 0 });
    const symbols = [...new Set(markets.map((m) => m.symbol))];
    const divergences: DivergenceView[] = [];
    for (let i = 0; i < symbols.length; i += 20) {
      const compared = await ask<{ symbols: { symbol: string; exchanges: { exchange: string; divergenceBps: number | null }[] }[] }>(
        ctx,
        'compare_exchanges',
        { symbols: symbols.slice(i, i + 20), staleAfterMs: thresholds.staleAfterMs },
      );
      // one exchange per symbol has nothing to diverge from; an error here costs only this figure
      if (compared.ok) for (const s of compared.value.symbols) for (const e of s.exchanges) divergences.push({ exchange: e.exchange, symbol: s.symbol, divergenceBps: e.divergenceBps });
    }
    const figures = new Map<string, MarketFigures | null>();
    for (const m of markets) {
      if (m.channels.trades === undefined || m.channels.trades.ageMs > thresholds.staleAfterMs) continue;
      const c = await readCandles(ctx, m, timeframe, candles);
      figures.set(marketKey(m), c.ok ? marketFigures(c.value) : null);
    }
    const report = assessMarkets(ctx.runId, { markets, feeds: health.ok ? health.value.feeds : null, divergences, figures }, thresholds);
    // the report first: it carries every call the monitor made; then one entry per observation
    await ctx.record({
      agent: 'market_monitor',
      kind: 'observation',
      output: report,
      summary: `monitor: ${report.markets.length} markets to analyse, ${report.excluded.length} excluded, ${report.observations.length} observations`,
    });
    for (const o of report.observations) {
      await ctx.record({ agent: 'market_monitor', kind: 'observation', ...(o.market && { market: o.market }), output: o, summary: o.detail });
    }
    return report;
  };
}

export const marketMonitor: MonitorStep = createMarketMonitor();
