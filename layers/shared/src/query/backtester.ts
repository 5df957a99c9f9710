import { ValidationError } from '../domain/errors.js';
import { bucketStart, timeframeMs, type Timeframe } from '../domain/index.js';
import type { Bar } from '../indicators/indicators.js';
import type { LedgerReader } from '../ports/index.js';
import type { CandleGap, CandleGapReason, CandlePageItem, CandleView, Freshness, MarketQueryService } from './market-query.js';
import { holds, parseSeries, type ParsedCondition, type ScanCondition, type SeriesSpec } from './market-scanner.js';

/**
 * Rule-based backtests over stored candles: signals on each closed candle's close, fills at the
 * next candle's open, fees and adverse slippage per side, optional stop-loss / take-profit.
 * The pure core (`runBacktest`) knows nothing of the store; `Backtester` reads the candles and
 * refuses ranges whose data is lost or unverified rather than trading on invented prices.
 */

export const BACKTEST_LIMITS = {
  maxConditions: 8,
  /** candles of the tested range (warm-up not counted) */
  maxBars: 5_000,
  /** candles read before the range so indicators have values (and settle) from its first candle */
  maxWarmupBars: 1_000,
  defaultMaxTrades: 100,
  maxTrades: 500,
  /** candles read per page of the range */
  pageSize: 1_000,
  /** smallest page a gappy stretch is re-read in (a page lists at most 100 gap ranges) */
  minPageSize: 60,
  maxGapsListed: 20,
} as const;

const YEAR_MS = 365.25 * 24 * 3600 * 1000;

/** Conventions stated in every answer, so a model never guesses how a figure was made. */
export const BACKTEST_CONVENTIONS = {
  execution:
    "Signals are evaluated on each closed candle's close; orders fill at the NEXT candle's open (no look-ahead). " +
    'A position still open after the last candle is closed at its close (exitReason end_of_range). Only one position at a time; ' +
    'an entry signal while in a position is ignored, and no position is reversed.',
  costs:
    'Slippage moves every fill against the trade by slippageBps (buys higher, sells lower); fees are feeBps of each fill\'s notional, ' +
    'charged on entry and on exit. Position size: positionFraction of equity at entry, fee included (quantity = allocation / (price x (1 + fee))).',
  stops:
    "Stop-loss / take-profit are % from the entry fill, checked on every candle from the fill candle on against its low/high; a candle opening " +
    'beyond the level fills at its open. When both are touched in one candle the stop is assumed first (the conservative reading).',
  metrics:
    'Equity is marked at each candle close. Max drawdown: largest fall from a running peak of that closing equity. Sharpe: mean / sample ' +
    'standard deviation of per-candle equity returns x sqrt(candles per year, 365.25 days of 24 h: crypto trades all the time), risk-free rate 0. ' +
    "Win rate: trades with a positive net P&L (fees and slippage included) / trades. Exposure: share of the range's candles closing with a position. " +
    "Buy-and-hold: first candle's open to last candle's close, no fees.",
  gaps:
    'Present candles are treated as consecutive: buckets without trades (a quiet market, no_trades) are skipped, not filled with flat candles.',
} as const;

export type BacktestSide = 'long' | 'short';
export type ExitReason = 'signal' | 'stop_loss' | 'take_profit' | 'end_of_range';

export interface RuleSet {
  readonly conditions: readonly ScanCondition[];
  /** every condition must hold ('all') or at least one ('any') */
  readonly match: 'all' | 'any';
}

export interface BacktestStrategy {
  readonly side: BacktestSide;
  readonly entry: RuleSet;
  /** conditions closing the position; none means only stops or the end of the range close it */
  readonly exit: RuleSet;
  readonly stopLossPct?: number;
  readonly takeProfitPct?: number;
  /** share of equity put into each position, (0, 1] */
  readonly positionFraction: number;
  /** fee per side in basis points of the fill's notional */
  readonly feeBps: number;
  /** adverse slippage per fill in basis points of the price */
  readonly slippageBps: number;
  readonly initialCapital: number;
}

export interface BacktestTrade {
  readonly side: BacktestSide;
  /** close time of the candle whose close signalled the entry */
  readonly signalTs: number;
  /** open time of the candle whose open filled the entry */
  readonly entryTs: number;
  /** fill price, slippage included */
  readonly entryPrice: number;
  /** open time of the candle the exit filled in */
  readonly exitTs: number;
  readonly exitPrice: number;
  readonly exitReason: ExitReason;
  readonly quantity: number;
  /** entry and exit fees */
  readonly fees: number;
  /** net of fees and slippage */
  readonly pnl: number;
  /** pnl / the equity allocated at entry, % */
  readonly returnPct: number;
  /** candles from the entry fill to the exit, both counted */
  readonly bars: number;
}

export interface BacktestMetrics {
  readonly initialCapital: number;
  readonly finalEquity: number;
  readonly totalReturnPct: number;
  readonly maxDrawdownPct: number;
  /** null when the per-candle returns do not vary (or fewer than two) */
  readonly sharpe: number | null;
  /** null without trades */
  readonly winRatePct: number | null;
  readonly trades: number;
  readonly wins: number;
  readonly losses: number;
  readonly exposurePct: number;
  readonly feesPaid: number;
  readonly buyAndHoldReturnPct: number;
}

export interface BacktestRun {
  readonly trades: readonly BacktestTrade[];
  readonly metrics: BacktestMetrics;
  /** closing equity of each candle of the range */
  readonly equity: readonly number[];
  /** false when some series had no value on some candle of the range (too little warm-up): its conditions were false there */
  readonly signalsComplete: boolean;
}

interface Position {
  readonly signalTs: number;
  readonly entryIndex: number;
  readonly entryPrice: number;
  readonly quantity: number;
  readonly entryFee: number;
  readonly allocated: number;
}

/** Parses the rules' series; a ValidationError names the bad one. */
export function parseRules(rules: RuleSet, where: string): ParsedCondition[] {
  if (rules.conditions.length > BACKTEST_LIMITS.maxConditions) {
    throw new ValidationError(`${where}.conditions: at most ${BACKTEST_LIMITS.maxConditions}, got ${rules.conditions.length}.`);
  }
  return rules.conditions.map((c, i) => ({
    left: parseSeries(c.series, `${where}.conditions[${i}].series`),
    op: c.op,
    right: typeof c.value === 'number' ? c.value : parseSeries(c.value, `${where}.conditions[${i}].value`),
  }));
}

/** Distinct series the conditions read. */
function seriesOf(conditions: readonly ParsedCondition[]): SeriesSpec[] {
  const out = new Map<string, SeriesSpec>();
  for (const c of conditions) for (const s of [c.left, c.right]) if (typeof s !== 'number') out.set(s.text, s);
  return [...out.values()];
}

/** Candles needed before the first one of the range so every series has a settled value there (and the one before, for crossings). */
export function warmupBarsFor(strategy: Pick<BacktestStrategy, 'entry' | 'exit'>): number {
  const conditions = [...parseRules(strategy.entry, 'entry'), ...parseRules(strategy.exit, 'exit')];
  const specs = seriesOf(conditions);
  if (specs.length === 0) return 0;
  const crossing = conditions.some((c) => c.op === 'crosses_above' || c.op === 'crosses_below');
  return Math.max(...specs.map((s) => s.lookback + s.settle)) + (crossing ? 1 : 0);
}

/**
 * Runs the strategy over `bars[start..]`; bars before `start` are warm-up for the indicators only.
 * Pure and deterministic: the same bars give the same trades.
 */
export function runBacktest(bars: readonly Bar[], start: number, strategy: BacktestStrategy, timeframe: Timeframe): BacktestRun {
  if (start < 0 || start >= bars.length) throw new ValidationError('the range holds no candle to test.');
  const entry = parseRules(strategy.entry, 'entry');
  const exit = parseRules(strategy.exit, 'exit');
  if (entry.length === 0) throw new ValidationError('entry.conditions: give at least one condition.');
  const columns = new Map(seriesOf([...entry, ...exit]).map((s) => [s.text, s.compute(bars)]));
  const valueAt = (s: SeriesSpec | number, i: number): number | null => {
    if (typeof s === 'number') return s;
    const v = i >= 0 ? columns.get(s.text)![i] : null;
    return v === null || v === undefined || !Number.isFinite(v) ? null : v;
  };
  let signalsComplete = true;
  const ready = (c: ParsedCondition, i: number): boolean => {
    const crossing = c.op === 'crosses_above' || c.op === 'crosses_below';
    for (const s of [c.left, c.right]) {
      if (valueAt(s, i) === null || (crossing && valueAt(s, i - 1) === null)) return false;
    }
    return true;
  };
  const fires = (conditions: readonly ParsedCondition[], match: 'all' | 'any', i: number): boolean => {
    if (conditions.length === 0) return false;
    const held = conditions.map((c) => {
      if (!ready(c, i)) {
        signalsComplete = false;
        return false;
      }
      return holds(c, i, valueAt);
    });
    return match === 'all' ? held.every(Boolean) : held.some(Boolean);
  };

  const long = strategy.side === 'long';
  const fee = strategy.feeBps / 10_000;
  const slip = strategy.slippageBps / 10_000;
  // buys fill higher, sells lower
  const buyPrice = (p: number) => p * (1 + slip);
  const sellPrice = (p: number) => p * (1 - slip);
  const size = timeframeMs(timeframe);

  let cash = strategy.initialCapital;
  let position: Position | null = null;
  let pending: { kind: 'enter' | 'exit'; signalTs: number } | null = null;
  const trades: BacktestTrade[] = [];
  const equity: number[] = [];
  let feesPaid = 0;
  let exposed = 0;

  const open = (i: number, signalTs: number) => {
    const price = long ? buyPrice(bars[i]!.open) : sellPrice(bars[i]!.open);
    const allocated = Math.max(0, cash) * strategy.positionFraction;
    const quantity = allocated / (price * (1 + fee));
    const entryFee = quantity * price * fee;
    cash += long ? -(quantity * price + entryFee) : quantity * price - entryFee;
    feesPaid += entryFee;
    position = { signalTs, entryIndex: i, entryPrice: price, quantity, entryFee, allocated };
  };
  const close = (i: number, rawPrice: number, reason: ExitReason) => {
    const p = position!;
    const price = long ? sellPrice(rawPrice) : buyPrice(rawPrice);
    const exitFee = p.quantity * price * fee;
    cash += long ? p.quantity * price - exitFee : -(p.quantity * price + exitFee);
    feesPaid += exitFee;
    const gross = (long ? price - p.entryPrice : p.entryPrice - price) * p.quantity;
    const pnl = gross - p.entryFee - exitFee;
    trades.push({
      side: strategy.side,
      signalTs: p.signalTs,
      entryTs: bars[p.entryIndex]!.ts,
      entryPrice: p.entryPrice,
      exitTs: bars[i]!.ts,
      exitPrice: price,
      exitReason: reason,
      quantity: p.quantity,
      fees: p.entryFee + exitFee,
      pnl,
      returnPct: p.allocated > 0 ? (pnl / p.allocated) * 100 : 0,
      bars: i - p.entryIndex + 1,
    });
    position = null;
  };
  /** The level a stop or target fills at on bar i, if touched: the level, or the open when the bar opened beyond it. */
  const stopExit = (i: number): { price: number; reason: ExitReason } | null => {
    const p = position!;
    const bar = bars[i]!;
    // levels are on the fill price, the price the trade is carried at
    const sl = strategy.stopLossPct;
    const tp = strategy.takeProfitPct;
    if (long) {
      if (sl !== undefined) {
        const level = p.entryPrice * (1 - sl / 100);
        if (bar.low <= level) return { price: Math.min(bar.open, level), reason: 'stop_loss' };
      }
      if (tp !== undefined) {
        const level = p.entryPrice * (1 + tp / 100);
        if (bar.high >= level) return { price: Math.max(bar.open, level), reason: 'take_profit' };
      }
    } else {
      if (sl !== undefined) {
        const level = p.entryPrice * (1 + sl / 100);
        if (bar.high >= level) return { price: Math.max(bar.open, level), reason: 'stop_loss' };
      }
      if (tp !== undefined) {
        const level = p.entryPrice * (1 - tp / 100);
        if (bar.low <= level) return { price: Math.min(bar.open, level), reason: 'take_profit' };
      }
    }
    return null;
  };

  const last = bars.length - 1;
  for (let i = start; i <= last; i++) {
    const bar = bars[i]!;
    if (pending) {
      if (pending.kind === 'enter') open(i, pending.signalTs);
      else close(i, bar.open, 'signal');
      pending = null;
    }
    if (position) {
      const hit = stopExit(i);
      if (hit) close(i, hit.price, hit.reason);
    }
    if (i === last) {
      if (position) close(i, bar.close, 'end_of_range');
    } else if (position) {
      if (fires(exit, strategy.exit.match, i)) pending = { kind: 'exit', signalTs: bar.ts + size };
    } else if (fires(entry, strategy.entry.match, i)) {
      pending = { kind: 'enter', signalTs: bar.ts + size };
    }
    const held = position as Position | null;
    if (held) exposed++;
    equity.push(held ? cash + (long ? 1 : -1) * held.quantity * bar.close : cash);
  }

  const metrics = measure(bars, start, strategy.initialCapital, equity, trades, feesPaid, exposed, size);
  return { trades, metrics, equity, signalsComplete };
}

function measure(
  bars: readonly Bar[],
  start: number,
  initial: number,
  equity: readonly number[],
  trades: readonly BacktestTrade[],
  feesPaid: number,
  exposed: number,
  size: number,
): BacktestMetrics {
  let peak = initial;
  let maxDrawdown = 0;
  const returns: number[] = [];
  let previous = initial;
  for (const e of equity) {
    peak = Math.max(peak, e);
    if (peak > 0) maxDrawdown = Math.max(maxDrawdown, (peak - e) / peak);
    returns.push(previous > 0 ? e / previous - 1 : 0);
    previous = e;
  }
  const final = equity.at(-1) ?? initial;
  const wins = trades.filter((t) => t.pnl > 0).length;
  return {
    initialCapital: initial,
    finalEquity: final,
    totalReturnPct: (final / initial - 1) * 100,
    maxDrawdownPct: maxDrawdown * 100,
    sharpe: sharpe(returns, YEAR_MS / size),
    winRatePct: trades.length ? (wins / trades.length) * 100 : null,
    trades: trades.length,
    wins,
    losses: trades.length - wins,
    exposurePct: equity.length ? (exposed / equity.length) * 100 : 0,
    feesPaid,
    buyAndHoldReturnPct: (bars.at(-1)!.close / bars[start]!.open - 1) * 100,
  };
}

/** Annualized Sharpe of per-period returns, risk-free 0; null when they do not vary. */
export function sharpe(returns: readonly number[], periodsPerYear: number): number | null {
  if (returns.length < 2) return null;
  const mean = returns.reduce((a, b) => a + b, 0) / returns.length;
  const variance = returns.reduce((a, r) => a + (r - mean) ** 2, 0) / (returns.length - 1);
  const sd = Math.sqrt(variance);
  // a flat curve has float dust for a deviation; no meaningful ratio there
  if (!(sd > 1e-12)) return null;
  return (mean / sd) * Math.sqrt(periodsPerYear);
}

/** The tested range holds lost or unverified data: a backtest over it would trade on invented prices. */
export class IncompleteRangeError extends ValidationError {
  constructor(
    message: string,
    readonly problems: readonly RangeProblem[],
  ) {
    super(message);
  }
}

/** A stretch of the range that cannot be trusted, and why. */
export interface RangeProblem {
  readonly from: number;
  readonly to: number;
  readonly buckets: number;
  /** a gap's reason, or 'candle_feed_gap_*' for a candle short of trades the ledger knows are lost or being filled */
  readonly reason: Exclude<CandleGapReason, 'no_trades'> | 'candle_feed_gap_unfilled' | 'candle_feed_gap_open' | 'ledger_partial' | 'gaps_unlisted';
}

export interface BacktestRequest {
  readonly exchange: string;
  readonly symbol: string;
  readonly timeframe: Timeframe;
  /** first candle's open time, inclusive */
  readonly since: number;
  /** end, exclusive; the current (forming) candle is never tested */
  readonly until?: number;
  readonly strategy: BacktestStrategy;
  readonly maxTrades: number;
}

export interface BacktestAnswer extends Omit<BacktestRun, 'equity'> {
  /** trades left out of `trades` (the newest) to keep the answer bounded; metrics count them */
  readonly tradesOmitted: number;
  /** the tested buckets, [from, to) in open times */
  readonly range: { readonly from: number; readonly to: number };
  readonly bars: number;
  /** candles read before the range for the indicators, and how many they would need */
  readonly warmup: { readonly bars: number; readonly needed: number };
  /** buckets of the range without trades (quiet market): skipped, not filled */
  readonly quietBuckets: number;
  readonly ledger: 'checked' | 'absent';
  readonly freshness: Freshness;
}

/** Reads a market's candles and runs a strategy over them, refusing ranges with lost or unverified data. */
export class Backtester {
  constructor(
    private readonly query: MarketQueryService,
    private readonly ledger?: LedgerReader,
  ) {}

  async run(req: BacktestRequest): Promise<BacktestAnswer> {
    const size = timeframeMs(req.timeframe);
    const since = bucketStart(req.since, req.timeframe);
    if (since !== req.since) throw new ValidationError(`since must be a ${req.timeframe} candle's open time, e.g. ${new Date(since).toISOString()} (${since}).`);
    const needed = warmupBarsFor(req.strategy);
    if (req.strategy.entry.conditions.length === 0) throw new ValidationError('entry.conditions: give at least one condition.');
    if (req.until !== undefined && (req.until - since) / size > BACKTEST_LIMITS.maxBars) {
      throw new ValidationError(
        `the range spans ${Math.ceil((req.until - since) / size)} ${req.timeframe} candles; at most ${BACKTEST_LIMITS.maxBars}. Shorten it or use a longer timeframe.`,
      );
    }

    const { candles, gaps, freshness, to, ledgerPartial, gapsUnlisted } = await this.readRange(req, since);
    const problems = this.problems(candles, gaps, size);
    // ledger gaps beyond one read, or gap ranges beyond one page's list, are unseen: completeness not verified
    if (ledgerPartial) problems.push({ from: since, to, buckets: 0, reason: 'ledger_partial' });
    if (gapsUnlisted) problems.push({ from: since, to, buckets: 0, reason: 'gaps_unlisted' });
    if (problems.length) throw new IncompleteRangeError(refusal(req, problems), problems);
    const tested = candles.filter((c) => c.closed);
    if (tested.length === 0) {
      throw new ValidationError(
        `no closed ${req.timeframe} candle of ${req.exchange} ${req.symbol} in the range from ${iso(since)}${req.until !== undefined ? ` to ${iso(req.until)}` : ''}: pick a range where get_candles shows data.`,
      );
    }

    const warm = needed > 0 ? (await this.query.getCandleHistory({ exchange: req.exchange, symbol: req.symbol, timeframe: req.timeframe, until: since, count: Math.min(needed, BACKTEST_LIMITS.maxWarmupBars) })).candles : [];
    const bars: Bar[] = [...warm, ...tested].map(barOf);
    const run = runBacktest(bars, warm.length, req.strategy, req.timeframe);
    const { equity: _equity, ...rest } = run;
    return {
      ...rest,
      trades: run.trades.slice(0, req.maxTrades),
      tradesOmitted: Math.max(0, run.trades.length - req.maxTrades),
      range: { from: since, to: Math.min(to, tested.at(-1)!.ts + size) },
      bars: tested.length,
      warmup: { bars: warm.length, needed },
      quietBuckets: gaps.filter((g) => g.reason === 'no_trades').reduce((n, g) => n + g.buckets, 0),
      ledger: this.ledger ? 'checked' : 'absent',
      freshness,
    };
  }

  /** Every candle and gap of [since, until) through the query layer, page by page, as get_candles sees them. */
  private async readRange(req: BacktestRequest, since: number) {
    const candles: CandlePageItem[] = [];
    const gaps: CandleGap[] = [];
    let cursor: string | undefined;
    let freshness: Freshness | undefined;
    let to = since;
    let ledgerPartial = false;
    let gapsUnlisted = false;
    let limit: number = BACKTEST_LIMITS.pageSize;
    for (;;) {
      const page = await this.query.getCandles(
        {
          exchange: req.exchange,
          symbol: req.symbol,
          timeframe: req.timeframe,
          since,
          ...(req.until !== undefined && { until: req.until }),
          limit,
          ...(cursor && { cursor }),
        },
        this.ledger,
      );
      // a page lists at most maxGapRanges gaps: re-read a gappy stretch in smaller pages so every gap's reason is seen
      if (page.gapsOmitted > 0 && limit > BACKTEST_LIMITS.minPageSize) {
        limit = Math.max(BACKTEST_LIMITS.minPageSize, Math.floor(limit / 4));
        continue;
      }
      limit = BACKTEST_LIMITS.pageSize;
      candles.push(...page.candles);
      gaps.push(...page.gaps);
      if (page.gapsOmitted > 0) gapsUnlisted = true;
      if (page.ledger === 'partial') ledgerPartial = true;
      freshness = page.freshness;
      to = page.window.to;
      cursor = page.nextCursor ?? undefined;
      if ((to - since) / timeframeMs(req.timeframe) > BACKTEST_LIMITS.maxBars) {
        throw new ValidationError(
          `the range holds more than ${BACKTEST_LIMITS.maxBars} ${req.timeframe} candles; give an until at most ${BACKTEST_LIMITS.maxBars} candles after since, or use a longer timeframe.`,
        );
      }
      if (!cursor) break;
    }
    return { candles, gaps, freshness: freshness!, to, ledgerPartial, gapsUnlisted };
  }

  private problems(candles: readonly CandlePageItem[], gaps: readonly CandleGap[], size: number): RangeProblem[] {
    const out: RangeProblem[] = [];
    for (const g of gaps) {
      if (g.reason === 'no_trades') continue;
      out.push({ from: g.from, to: g.to, buckets: g.buckets, reason: g.reason });
    }
    for (const c of candles) {
      if (c.feedGap !== 'unfilled' && c.feedGap !== 'open') continue;
      const reason = c.feedGap === 'unfilled' ? 'candle_feed_gap_unfilled' : 'candle_feed_gap_open';
      const prev = out.at(-1);
      if (prev && prev.reason === reason && prev.to === c.ts) out[out.length - 1] = { ...prev, to: c.ts + size, buckets: prev.buckets + 1 };
      else out.push({ from: c.ts, to: c.ts + size, buckets: 1, reason });
    }
    return out.sort((a, b) => a.from - b.from);
  }
}

const RECOVERY: Record<RangeProblem['reason'], string> = {
  feed_gap_unfilled: 'trades lost, could not be recovered',
  feed_gap_open: 'trades missing, a fill is running',
  unverified: 'no candle and no completeness ledger to tell a quiet market from lost data',
  before_first_data: 'before the first data held for this market',
  after_last_data: 'after the newest data held for this market',
  candle_feed_gap_unfilled: 'candles short of trades the ledger records as lost',
  candle_feed_gap_open: 'candles short of trades being filled now',
  ledger_partial: 'the ledger holds more gaps than one read covers: completeness not verified; shorten the range',
  gaps_unlisted: 'more gap ranges than one read lists: completeness not verified; shorten the range or use a longer timeframe',
};

function refusal(req: BacktestRequest, problems: readonly RangeProblem[]): string {
  const shown = problems.slice(0, BACKTEST_LIMITS.maxGapsListed);
  const list = shown.map((p) => `[${iso(p.from)}, ${iso(p.to)}) ${p.reason}: ${RECOVERY[p.reason]}${p.buckets ? ` (${p.buckets} candle${p.buckets === 1 ? '' : 's'})` : ''}`);
  const more = problems.length > shown.length ? `; and ${problems.length - shown.length} more` : '';
  const open = problems.some((p) => p.reason === 'feed_gap_open' || p.reason === 'candle_feed_gap_open');
  return (
    `Backtest refused: the ${req.timeframe} candles of ${req.exchange} ${req.symbol} in this range are not complete, and trading over ` +
    `missing data would invent profit or loss. Problems (${problems.length}): ${list.join('; ')}${more}. ` +
    `To recover: pick a since/until range that avoids these (e.g. after the last one)` +
    `${open ? ', or wait for the running fill to finish and retry' : ''}; call get_data_health for this market's feed gaps, ` +
    'or get_candles for the range to see which candles exist.'
  );
}

function barOf(c: CandleView): Bar {
  return { ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
