/**
 * Exchange-agnostic market model of the simulator: per symbol a seeded random-walk fair price,
 * an L2 book around it with per-symbol update ids, taker orders that fill against the book
 * (raw trades, grouped into aggregate trades), 1m klines and rolling 24h stats.
 *
 * Prices are integer ticks and amounts integer lot steps internally, so every printed value is
 * an exact decimal; protocols only format. The sequence of sides/prices/amounts depends on the
 * seed alone (one PRNG per symbol); timestamps come from the clock.
 */
import { ConfigError, PlatformError } from '../../layers/shared/src/domain/errors.js';
import { UNIFIED_SYMBOL } from '../../layers/shared/src/domain/symbols.js';
import { bucketStart, TIMEFRAME_MS, type Timeframe } from '../../layers/shared/src/domain/timeframes.js';
import { systemClock, type Clock } from '../../layers/shared/src/ports/clock.js';
import { checkHistoryOptions, HistoryTape, type HistoryOptions } from './history.js';
import { deriveSeed, Prng } from './prng.js';
import { placeScenario, type PlacedScenario, type ScenarioOptions } from './scenarios.js';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Whole history hours kept (about 5 years' worth) before the cache starts over. */
const HISTORY_HOUR_CACHE = 45_000;
const MAX_DECIMALS = 8;
/** How many book levels one taker order may sweep before the rest is cancelled (IOC). */
const MAX_SWEEP_LEVELS = 3;

/** A symbol whose scenario stopped its feed was asked to print trades. */
export class SimSymbolHaltedError extends PlatformError {
  constructor(readonly symbol: string) {
    super(`simulated ${symbol} prints no trades: its scenario stopped the feed`);
  }
}

/** A symbol the simulator is asked for but does not list. */
export class UnknownSimSymbolError extends PlatformError {
  constructor(readonly symbol: string) {
    super(`simulated market has no symbol ${symbol}`);
  }
}

export type TakerSide = 'buy' | 'sell';
export type BookSideName = 'bid' | 'ask';

/** Static description of one simulated market. Decimal fields are exact strings. */
export interface SymbolSpec {
  /** ccxt unified symbol, e.g. `BTC/USDT` */
  readonly symbol: string;
  readonly base: string;
  readonly quote: string;
  readonly initialPrice: number;
  readonly tickSize: string;
  readonly stepSize: string;
  readonly minQty: string;
  readonly maxQty: string;
  readonly minNotional: string;
  /** relative standard deviation of the fair price per taker order */
  readonly volatility: number;
  /** median taker order size in base units */
  readonly medianQty: number;
  /** distance between resting levels beyond the touch, in ticks */
  readonly levelGapTicks: number;
}

/** A symbol name (uses the built-in spec if known, generic values otherwise) or a partial spec. */
export type SymbolSpecInput = string | (Partial<SymbolSpec> & { readonly symbol: string });

/** One raw trade as printed (Binance `/api/v3/trades` id space). */
export interface PrintedTrade {
  readonly symbol: string;
  /** raw trade id, +1 per trade */
  readonly id: number;
  /** id of the aggregate trade this fill belongs to */
  readonly aggId: number;
  readonly ts: number;
  readonly price: number;
  readonly amount: number;
  /** taker side */
  readonly side: TakerSide;
  /** exact decimals at the symbol's tick/step scale */
  readonly priceString: string;
  readonly amountString: string;
  /** price × amount, exact */
  readonly quoteString: string;
}

/** Consecutive raw fills of one taker order at one price (Binance `/api/v3/aggTrades` id space). */
export interface AggregateTrade {
  readonly symbol: string;
  readonly aggId: number;
  readonly firstId: number;
  readonly lastId: number;
  readonly ts: number;
  readonly price: number;
  readonly amount: number;
  readonly side: TakerSide;
  readonly priceString: string;
  readonly amountString: string;
}

export interface BookEntry {
  readonly price: number;
  readonly amount: number;
  readonly priceString: string;
  readonly amountString: string;
}

export interface BookSnapshot {
  readonly symbol: string;
  /** update id of the last change included */
  readonly lastUpdateId: number;
  readonly ts: number;
  /** best first */
  readonly bids: readonly BookEntry[];
  readonly asks: readonly BookEntry[];
}

/** One level's new absolute amount (`0` = level removed). */
export interface BookLevelChange extends BookEntry {
  readonly side: BookSideName;
}

/** Changes with update ids `firstUpdateId..lastUpdateId` (one id per level change). */
export interface BookDelta {
  readonly symbol: string;
  readonly firstUpdateId: number;
  readonly lastUpdateId: number;
  readonly ts: number;
  readonly changes: readonly BookLevelChange[];
}

export interface TopOfBook {
  readonly symbol: string;
  readonly lastUpdateId: number;
  readonly bid: BookEntry;
  readonly ask: BookEntry;
}

/** OHLCV bar built from printed trades; empty intervals carry the previous close with 0 volume. */
export interface Kline {
  readonly openTime: number;
  /** openTime + interval - 1 */
  readonly closeTime: number;
  readonly open: string;
  readonly high: string;
  readonly low: string;
  readonly close: string;
  readonly volume: string;
  readonly quoteVolume: string;
  readonly count: number;
  /** first/last raw trade id, -1 when empty */
  readonly firstId: number;
  readonly lastId: number;
  readonly takerBuyVolume: string;
  readonly takerBuyQuoteVolume: string;
}

export interface KlineQuery {
  readonly startTime?: number;
  readonly endTime?: number;
  /** default 500 */
  readonly limit?: number;
}

/** Rolling 24h statistics at the model clock's now. Prices are exact decimal strings. */
export interface Stats24h {
  readonly symbol: string;
  /** window start (now - 24h) */
  readonly openTime: number;
  /** window end (now) */
  readonly closeTime: number;
  readonly open: string;
  readonly high: string;
  readonly low: string;
  readonly last: string;
  readonly lastQty: string;
  /** last price before the window (== open when none) */
  readonly prevClose: string;
  /** last - open, exact */
  readonly change: string;
  /** percent, 3 decimals */
  readonly changePct: string;
  readonly weightedAvg: string;
  readonly volume: string;
  readonly quoteVolume: string;
  readonly count: number;
  /** -1 when the window is empty */
  readonly firstId: number;
  readonly lastId: number;
}

export interface AggTradeQuery {
  readonly fromId?: number;
  readonly startTime?: number;
  readonly endTime?: number;
  /** default 500 */
  readonly limit?: number;
}

/** Receives model events synchronously, in print order. */
export interface MarketListener {
  /** a taker order printed these raw trades (and aggregates); always at least one */
  trades?(symbol: string, trades: readonly PrintedTrade[], aggregates: readonly AggregateTrade[]): void;
  book?(delta: BookDelta): void;
}

export interface MarketOptions {
  /** run seed, default 1 */
  readonly seed?: number;
  /** default BTC/USDT, ETH/USDT, SOL/USDT */
  readonly symbols?: readonly SymbolSpecInput[];
  /** taker orders per second per symbol while auto-running (each prints 1+ raw trades); default 2 */
  readonly tradesPerSecond?: number;
  /** print on a timer (default true); false = only `step()` / `printTrades()` print */
  readonly autoRun?: boolean;
  /** auto-run timer period, default 50 ms */
  readonly tickMs?: number;
  /** resting levels per book side, default 50 */
  readonly bookLevels?: number;
  /** time source for trade timestamps and 24h windows */
  readonly clock?: Clock;
  /** print this many orders per symbol at construction, spread over the last `spanMs` (candles to backfill) */
  readonly warmup?: { readonly orders: number; readonly spanMs: number };
  /**
   * Synthetic trade history before the start (before the warmup, if any), served by the REST
   * paging endpoints (klines, historical and aggregate trades) in the live trades' id space.
   * `true` for the defaults. Off by default.
   */
  readonly history?: HistoryOptions | boolean;
  /**
   * Scripted scenarios (scenarios.ts), at most one per symbol: with history on, each move is
   * complete where the history ends (a backfill sees it); without, it plays live from the start.
   */
  readonly scenarios?: readonly ScenarioOptions[];
}

export const DEFAULT_SYMBOLS: readonly string[] = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'];

type SpecDefaults = Omit<SymbolSpec, 'symbol' | 'base' | 'quote'>;

/** Realistic-looking parameters for the symbols the simulator knows by name. */
const KNOWN_SPECS: Readonly<Record<string, SpecDefaults>> = {
  'BTC/USDT': {
    initialPrice: 65000,
    tickSize: '0.01',
    stepSize: '0.00001',
    minQty: '0.00001',
    maxQty: '9000',
    minNotional: '5',
    volatility: 0.00005,
    medianQty: 0.01,
    levelGapTicks: 50,
  },
  'ETH/USDT': {
    initialPrice: 3200,
    tickSize: '0.01',
    stepSize: '0.0001',
    minQty: '0.0001',
    maxQty: '9000',
    minNotional: '5',
    volatility: 0.00007,
    medianQty: 0.2,
    levelGapTicks: 5,
  },
  'SOL/USDT': {
    initialPrice: 150,
    tickSize: '0.01',
    stepSize: '0.001',
    minQty: '0.001',
    maxQty: '90000',
    minNotional: '5',
    volatility: 0.0001,
    medianQty: 3,
    levelGapTicks: 1,
  },
  'BNB/USDT': {
    initialPrice: 600,
    tickSize: '0.01',
    stepSize: '0.001',
    minQty: '0.001',
    maxQty: '90000',
    minNotional: '5',
    volatility: 0.00007,
    medianQty: 0.5,
    levelGapTicks: 2,
  },
  'XRP/USDT': {
    initialPrice: 0.55,
    tickSize: '0.0001',
    stepSize: '0.1',
    minQty: '0.1',
    maxQty: '9000000',
    minNotional: '5',
    volatility: 0.0001,
    medianQty: 500,
    levelGapTicks: 1,
  },
  'DOGE/USDT': {
    initialPrice: 0.15,
    tickSize: '0.00001',
    stepSize: '1',
    minQty: '1',
    maxQty: '9000000',
    minNotional: '1',
    volatility: 0.0001,
    medianQty: 2000,
    levelGapTicks: 1,
  },
};

const GENERIC_SPEC: SpecDefaults = {
  initialPrice: 100,
  tickSize: '0.01',
  stepSize: '0.001',
  minQty: '0.001',
  maxQty: '90000',
  minNotional: '5',
  volatility: 0.0001,
  medianQty: 1,
  levelGapTicks: 1,
};

/** Full spec for a symbol name or partial spec (built-in values for known symbols). */
export function resolveSymbolSpec(input: SymbolSpecInput): SymbolSpec {
  const partial = typeof input === 'string' ? { symbol: input } : input;
  const symbol = partial.symbol;
  if (!UNIFIED_SYMBOL.test(symbol) || symbol.includes(':')) {
    throw new ConfigError(`simulator symbol must be a spot ccxt symbol like BTC/USDT, got "${symbol}"`);
  }
  const [base = '', quote = ''] = symbol.split('/');
  // BTC/USD, BTC/USDC… borrow BTC/USDT's parameters: same asset, same price scale
  const usdLike = ['USDT', 'USDC', 'USD', 'FDUSD', 'BUSD'].includes(quote);
  const defaults = KNOWN_SPECS[symbol] ?? (usdLike ? KNOWN_SPECS[`${base}/USDT`] : undefined) ?? GENERIC_SPEC;
  const spec: SymbolSpec = { ...defaults, ...partial, symbol, base, quote };
  for (const key of ['tickSize', 'stepSize', 'minQty', 'maxQty', 'minNotional'] as const) {
    if (!/^\d+(\.\d{1,8})?$/.test(spec[key])) {
      throw new ConfigError(`${symbol}: ${key} must be a decimal string with at most 8 decimals, got "${spec[key]}"`);
    }
  }
  if (Number(spec.tickSize) <= 0 || Number(spec.stepSize) <= 0) {
    throw new ConfigError(`${symbol}: tickSize and stepSize must be positive`);
  }
  if (!(spec.initialPrice > 0) || !Number.isFinite(spec.initialPrice)) {
    throw new ConfigError(`${symbol}: initialPrice must be a positive number`);
  }
  if (!(spec.medianQty > 0) || !(spec.volatility >= 0) || !Number.isInteger(spec.levelGapTicks) || spec.levelGapTicks < 1) {
    throw new ConfigError(`${symbol}: medianQty > 0, volatility >= 0 and integer levelGapTicks >= 1 required`);
  }
  return spec;
}

// ---------------------------------------------------------------------------------------------
// exact decimals

/** An exact decimal step: value = units / 10^decimals. */
interface Scale {
  readonly units: number;
  readonly decimals: number;
}

function scaleOf(decimal: string): Scale {
  const [int = '0', frac = ''] = decimal.split('.');
  const trimmed = frac.replace(/0+$/, '');
  return { units: Number(int + trimmed), decimals: trimmed.length };
}

/** Formats `units / 10^decimals` with exactly `outDecimals` decimals (half-up rounding when shorter). */
export function formatScaled(units: bigint | number, decimals: number, outDecimals: number): string {
  let value = BigInt(units);
  const negative = value < 0n;
  if (negative) value = -value;
  if (outDecimals < decimals) {
    const div = 10n ** BigInt(decimals - outDecimals);
    value = (value + div / 2n) / div;
  } else {
    value *= 10n ** BigInt(outDecimals - decimals);
  }
  const digits = value.toString().padStart(outDecimals + 1, '0');
  const int = digits.slice(0, digits.length - outDecimals);
  const frac = digits.slice(digits.length - outDecimals);
  return (negative && value !== 0n ? '-' : '') + (outDecimals > 0 ? `${int}.${frac}` : int);
}

/** Re-pads an exact decimal string to `decimals` places (e.g. Binance's 8), rounding half-up if longer. */
export function padDecimals(decimal: string, decimals: number): string {
  const negative = decimal.startsWith('-');
  const body = negative ? decimal.slice(1) : decimal;
  const [int = '0', frac = ''] = body.split('.');
  const units = BigInt(int + frac);
  return formatScaled(negative ? -units : units, frac.length, decimals);
}

// ---------------------------------------------------------------------------------------------
// per-symbol state

interface MinuteBar {
  readonly openTime: number;
  openTicks: number;
  highTicks: number;
  lowTicks: number;
  closeTicks: number;
  volumeSteps: number;
  /** Σ priceUnits × qtyUnits at (priceDecimals + qtyDecimals) */
  quoteUnits: bigint;
  count: number;
  readonly firstId: number;
  lastId: number;
  takerBuySteps: number;
  takerBuyQuoteUnits: bigint;
}

/** What a bar adds up; a MinuteBar is one. */
type BarTotals = Omit<MinuteBar, 'openTime'>;

/** `acc` followed (in time) by `next`; a new object on the first call, `acc` updated in place after. */
function addTotals(acc: BarTotals | undefined, next: BarTotals): BarTotals {
  if (!acc) return { ...next };
  acc.highTicks = Math.max(acc.highTicks, next.highTicks);
  acc.lowTicks = Math.min(acc.lowTicks, next.lowTicks);
  acc.closeTicks = next.closeTicks;
  acc.volumeSteps += next.volumeSteps;
  acc.quoteUnits += next.quoteUnits;
  acc.count += next.count;
  acc.lastId = next.lastId;
  acc.takerBuySteps += next.takerBuySteps;
  acc.takerBuyQuoteUnits += next.takerBuyQuoteUnits;
  return acc;
}

interface TradeCore {
  readonly ticks: number;
  readonly steps: number;
}

/** Max/min of a sliding window by monotonic deques (amortised O(1)). */
class MonotonicDeque {
  private readonly idx: number[] = [];
  private head = 0;
  constructor(private readonly better: (a: number, b: number) => boolean) {}

  push(index: number, values: readonly TradeCore[]): void {
    const v = values[index]!.ticks;
    while (this.idx.length > this.head && !this.better(values[this.idx[this.idx.length - 1]!]!.ticks, v)) this.idx.pop();
    this.idx.push(index);
  }

  evictBefore(start: number): void {
    while (this.head < this.idx.length && this.idx[this.head]! < start) this.head++;
    if (this.head > 1024 && this.head * 2 > this.idx.length) {
      this.idx.splice(0, this.head);
      this.head = 0;
    }
  }

  front(): number | undefined {
    return this.head < this.idx.length ? this.idx[this.head] : undefined;
  }
}

class SymbolMarket {
  readonly spec: SymbolSpec;
  private readonly rng: Prng;
  private readonly price: Scale;
  private readonly qty: Scale;
  private readonly minSteps: number;
  private readonly maxSteps: number;
  private readonly levels: number;

  private fair: number; // in ticks, float
  private anchor: number;
  /** the scripted scenario on this symbol, if any, and its log-price offset last applied */
  readonly scenario: PlacedScenario | undefined;
  private shapeOffset = 0;
  readonly bids = new Map<number, number>(); // ticks → steps
  readonly asks = new Map<number, number>();
  updateId = 10_000_000;
  private lastTs = 0;

  readonly trades: PrintedTrade[] = [];
  private readonly cores: TradeCore[] = [];
  readonly aggregates: AggregateTrade[] = [];
  readonly bars: MinuteBar[] = [];
  /** id of the first live trade / aggregate (with history: the slot after the history's last) */
  readonly firstTradeId: number;
  readonly firstAggId: number;
  /** synthetic trades before the start, when enabled */
  readonly history: HistoryTape | undefined;
  /** history trade `id` belongs to aggregate `id - historyAggOffset`: aggregate ids differ from raw ids, as on Binance */
  private readonly historyAggOffset: number;
  /** totals of whole history hours (null: no trade), so long bars do not recompute every trade */
  private readonly historyHours = new Map<number, BarTotals | null>();

  // rolling 24h window over `trades`
  private windowStart = 0;
  private windowVolumeSteps = 0;
  private windowQuoteUnits = 0n;
  private readonly highs = new MonotonicDeque((a, b) => a > b);
  private readonly lows = new MonotonicDeque((a, b) => a < b);

  constructor(
    spec: SymbolSpec,
    seed: number,
    levels: number,
    history?: { readonly origin: number; readonly options: HistoryOptions },
    scenario?: { readonly placed: PlacedScenario; readonly origin: number },
  ) {
    this.spec = spec;
    this.scenario = scenario?.placed;
    this.rng = new Prng(deriveSeed(seed, spec.symbol));
    this.price = scaleOf(spec.tickSize);
    this.qty = scaleOf(spec.stepSize);
    this.minSteps = Math.max(1, Math.ceil(Number(spec.minQty) / Number(spec.stepSize) - 1e-9));
    this.maxSteps = Math.max(this.minSteps, Math.floor(Number(spec.maxQty) / Number(spec.stepSize) + 1e-9));
    this.levels = levels;
    const initialTicks = Math.max(2, Math.round(spec.initialPrice / Number(spec.tickSize)));
    this.history = history
      ? new HistoryTape(
          {
            symbol: spec.symbol,
            initialTicks,
            medianSteps: spec.medianQty / Number(spec.stepSize),
            minSteps: this.minSteps,
            maxSteps: this.maxSteps,
            volatility: spec.volatility,
            ...(scenario ? { shape: scenario.placed.shape } : {}),
          },
          seed,
          history.origin,
          history.options,
        )
      : undefined;
    const tape = this.history && !this.history.empty ? this.history : undefined;
    // with history, live ids continue the history's and the live price starts where it ended
    this.historyAggOffset = tape ? Math.floor(tape.firstId / 2) : 0;
    this.firstTradeId = tape ? tape.endId : 1_000_000_000;
    this.firstAggId = tape ? tape.endId - this.historyAggOffset : 700_000_000;
    this.anchor = tape ? Math.max(2, tape.slot(tape.endId - 1).ticks) : initialTicks;
    this.fair = this.anchor;
    // the live path goes on from the shape's level at the start (the history's last trade has it)
    if (scenario) this.shapeOffset = scenario.placed.shape.offset(scenario.origin);
    this.requote([]); // initial book: not an update, ids start at updateId
  }

  // -- formatting ----------------------------------------------------------------------------

  priceString(ticks: number): string {
    return formatScaled(ticks * this.price.units, this.price.decimals, this.price.decimals);
  }

  amountString(steps: number): string {
    return formatScaled(steps * this.qty.units, this.qty.decimals, this.qty.decimals);
  }

  private quoteUnits(ticks: number, steps: number): bigint {
    return BigInt(ticks * this.price.units) * BigInt(steps * this.qty.units);
  }

  quoteString(units: bigint): string {
    const decimals = this.price.decimals + this.qty.decimals;
    return formatScaled(units, decimals, Math.min(decimals, MAX_DECIMALS));
  }

  entry(ticks: number, steps: number): BookEntry {
    const priceString = this.priceString(ticks);
    const amountString = this.amountString(steps);
    return { price: Number(priceString), amount: Number(amountString), priceString, amountString };
  }

  // -- book ----------------------------------------------------------------------------------

  private randomLevelSteps(): number {
    const steps = Math.round(this.rng.logNormal((this.spec.medianQty * 2) / Number(this.spec.stepSize), 0.8));
    return Math.min(this.maxSteps, Math.max(this.minSteps, steps));
  }

  private setLevel(side: BookSideName, ticks: number, steps: number, changes: BookLevelChange[]): void {
    const book = side === 'bid' ? this.bids : this.asks;
    if (steps <= 0) {
      if (!book.has(ticks)) return;
      book.delete(ticks);
    } else {
      if (book.get(ticks) === steps) return;
      book.set(ticks, steps);
    }
    changes.push({ side, ...this.entry(ticks, Math.max(0, steps)) });
  }

  bestBidTicks(): number {
    let best = 0;
    for (const t of this.bids.keys()) if (t > best) best = t;
    return best;
  }

  bestAskTicks(): number {
    let best = Number.POSITIVE_INFINITY;
    for (const t of this.asks.keys()) if (t < best) best = t;
    return best;
  }

  /** Moves the fair price one random step (after the scenario's scripted move to `ts`) and re-centres the book on it. */
  private requote(changes: BookLevelChange[], ts?: number): void {
    const rng = this.rng;
    if (this.scenario && ts !== undefined) {
      const offset = this.scenario.shape.offset(ts);
      if (offset !== this.shapeOffset) {
        const k = Math.exp(offset - this.shapeOffset);
        this.fair *= k;
        this.anchor *= k;
        this.shapeOffset = offset;
      }
    }
    // random walk with a slight pull to the initial price so long runs stay plausible
    this.fair += rng.normal() * this.spec.volatility * this.fair + (this.anchor - this.fair) * 0.0005;
    this.fair = Math.max(2, this.fair);
    const bb = Math.max(1, Math.floor(this.fair));
    const ba = bb + 1; // one-tick spread at the touch
    const gap = this.spec.levelGapTicks;

    for (const t of [...this.bids.keys()]) if (t > bb) this.setLevel('bid', t, 0, changes);
    for (const t of [...this.asks.keys()]) if (t < ba) this.setLevel('ask', t, 0, changes);
    if (!this.bids.has(bb)) this.setLevel('bid', bb, this.randomLevelSteps(), changes);
    if (!this.asks.has(ba)) this.setLevel('ask', ba, this.randomLevelSteps(), changes);

    // resting grid beyond the touch, aligned to multiples of the gap so levels persist across moves
    let p = Math.floor((bb - 1) / gap) * gap;
    for (let i = 0; i < this.levels - 1 && p > 0; i++, p -= gap) {
      if (!this.bids.has(p)) this.setLevel('bid', p, this.randomLevelSteps(), changes);
    }
    p = Math.ceil((ba + 1) / gap) * gap;
    for (let i = 0; i < this.levels - 1; i++, p += gap) {
      if (!this.asks.has(p)) this.setLevel('ask', p, this.randomLevelSteps(), changes);
    }
    const bidTicks = [...this.bids.keys()].sort((a, b) => b - a);
    for (const t of bidTicks.slice(this.levels)) this.setLevel('bid', t, 0, changes);
    const askTicks = [...this.asks.keys()].sort((a, b) => a - b);
    for (const t of askTicks.slice(this.levels)) this.setLevel('ask', t, 0, changes);

    // other participants re-size a few resting orders near the touch
    const resizes = rng.int(0, 2);
    for (let i = 0; i < resizes; i++) {
      const side: BookSideName = rng.chance(0.5) ? 'bid' : 'ask';
      const sorted = side === 'bid' ? [...this.bids.keys()].sort((a, b) => b - a) : [...this.asks.keys()].sort((a, b) => a - b);
      const ticks = sorted[rng.int(0, Math.min(9, sorted.length - 1))];
      if (ticks !== undefined) this.setLevel(side, ticks, this.randomLevelSteps(), changes);
    }
  }

  private delta(changes: readonly BookLevelChange[], ts: number): BookDelta | undefined {
    if (changes.length === 0) return undefined;
    const firstUpdateId = this.updateId + 1;
    this.updateId += changes.length;
    return { symbol: this.spec.symbol, firstUpdateId, lastUpdateId: this.updateId, ts, changes };
  }

  snapshot(ts: number, limit: number): BookSnapshot {
    const bids = [...this.bids.entries()].sort((a, b) => b[0] - a[0]).slice(0, limit);
    const asks = [...this.asks.entries()].sort((a, b) => a[0] - b[0]).slice(0, limit);
    return {
      symbol: this.spec.symbol,
      lastUpdateId: this.updateId,
      ts,
      bids: bids.map(([t, s]) => this.entry(t, s)),
      asks: asks.map(([t, s]) => this.entry(t, s)),
    };
  }

  // -- trading -------------------------------------------------------------------------------

  /** Executes one taker order: re-quote, then fill against the touch (sweeping up to 3 levels). */
  executeOrder(
    ts: number,
  ): { requote?: BookDelta; trades: PrintedTrade[]; aggregates: AggregateTrade[]; fills?: BookDelta } {
    ts = Math.max(ts, this.lastTs); // timestamps never go backwards within a symbol
    if (this.haltedAt(ts)) return { trades: [], aggregates: [] };
    this.lastTs = ts;
    const rng = this.rng;
    const requoteChanges: BookLevelChange[] = [];
    this.requote(requoteChanges, ts);
    const requote = this.delta(requoteChanges, ts);

    const side: TakerSide = rng.chance(0.5) ? 'buy' : 'sell';
    const volumeFactor = this.scenario ? this.scenario.shape.volume(ts) : 1;
    let remaining = Math.min(
      this.maxSteps,
      Math.max(this.minSteps, Math.round(rng.logNormal((this.spec.medianQty * volumeFactor) / Number(this.spec.stepSize), 1))),
    );
    const bookSide: BookSideName = side === 'buy' ? 'ask' : 'bid';
    const book = side === 'buy' ? this.asks : this.bids;
    const touchOrder = [...book.keys()].sort((a, b) => (side === 'buy' ? a - b : b - a)).slice(0, MAX_SWEEP_LEVELS);

    const trades: PrintedTrade[] = [];
    const aggregates: AggregateTrade[] = [];
    const fillChanges: BookLevelChange[] = [];
    for (const ticks of touchOrder) {
      if (remaining <= 0) break;
      const available = book.get(ticks) ?? 0;
      const filled = Math.min(remaining, available);
      remaining -= filled;
      // the level holds several maker orders: one raw trade per maker, one aggregate per level
      const makers = Math.min(filled, rng.chance(0.7) ? 1 : rng.int(2, 4));
      const pieces = this.split(filled, makers);
      const aggId = this.firstAggId + this.aggregates.length;
      const firstId = this.firstTradeId + this.trades.length;
      for (const steps of pieces) this.recordTrade(ticks, steps, side, aggId, ts, trades);
      const priceString = this.priceString(ticks);
      const amountString = this.amountString(filled);
      const agg: AggregateTrade = {
        symbol: this.spec.symbol,
        aggId,
        firstId,
        lastId: firstId + pieces.length - 1,
        ts,
        price: Number(priceString),
        amount: Number(amountString),
        side,
        priceString,
        amountString,
      };
      this.aggregates.push(agg);
      aggregates.push(agg);
      this.setLevel(bookSide, ticks, available - filled, fillChanges);
    }
    const fills = this.delta(fillChanges, ts);
    return { ...(requote ? { requote } : {}), trades, aggregates, ...(fills ? { fills } : {}) };
  }

  /** Whether the scenario has stopped this symbol's feed by `ts`. */
  haltedAt(ts: number): boolean {
    const haltFrom = this.scenario?.shape.haltFrom;
    return haltFrom !== undefined && ts >= haltFrom;
  }

  /** Splits `total` steps into `parts` positive integers (random cut points). */
  private split(total: number, parts: number): number[] {
    if (parts <= 1) return [total];
    const cuts = new Set<number>();
    while (cuts.size < parts - 1) cuts.add(this.rng.int(1, total - 1));
    const sorted = [...cuts].sort((a, b) => a - b);
    const out: number[] = [];
    let prev = 0;
    for (const c of [...sorted, total]) {
      out.push(c - prev);
      prev = c;
    }
    return out;
  }

  private recordTrade(ticks: number, steps: number, side: TakerSide, aggId: number, ts: number, out: PrintedTrade[]): void {
    const id = this.firstTradeId + this.trades.length;
    const priceString = this.priceString(ticks);
    const amountString = this.amountString(steps);
    const quote = this.quoteUnits(ticks, steps);
    const trade: PrintedTrade = {
      symbol: this.spec.symbol,
      id,
      aggId,
      ts,
      price: Number(priceString),
      amount: Number(amountString),
      side,
      priceString,
      amountString,
      quoteString: this.quoteString(quote),
    };
    this.trades.push(trade);
    const index = this.cores.length;
    this.cores.push({ ticks, steps });
    out.push(trade);

    // 1m bar
    const minute = bucketStart(ts, '1m');
    let bar = this.bars[this.bars.length - 1];
    if (!bar || bar.openTime !== minute) {
      bar = {
        openTime: minute,
        openTicks: ticks,
        highTicks: ticks,
        lowTicks: ticks,
        closeTicks: ticks,
        volumeSteps: 0,
        quoteUnits: 0n,
        count: 0,
        firstId: id,
        lastId: id,
        takerBuySteps: 0,
        takerBuyQuoteUnits: 0n,
      };
      this.bars.push(bar);
    }
    bar.highTicks = Math.max(bar.highTicks, ticks);
    bar.lowTicks = Math.min(bar.lowTicks, ticks);
    bar.closeTicks = ticks;
    bar.volumeSteps += steps;
    bar.quoteUnits += quote;
    bar.count++;
    bar.lastId = id;
    if (side === 'buy') {
      bar.takerBuySteps += steps;
      bar.takerBuyQuoteUnits += quote;
    }

    // 24h window
    this.windowVolumeSteps += steps;
    this.windowQuoteUnits += quote;
    this.highs.push(index, this.cores);
    this.lows.push(index, this.cores);
  }

  // -- queries -------------------------------------------------------------------------------
  // Trades and aggregates are addressed by id: history ids run up to the first live id, so one
  // id space covers both (ids are contiguous).

  /** Id of the oldest trade (history or live). */
  lowestTradeId(): number {
    return this.history && !this.history.empty ? this.history.firstId : this.firstTradeId;
  }

  /** One past the newest trade's id. */
  nextTradeId(): number {
    return this.firstTradeId + this.trades.length;
  }

  /** The trade with `id`, history or live, if it exists. */
  tradeById(id: number): PrintedTrade | undefined {
    if (id >= this.firstTradeId) return this.trades[id - this.firstTradeId];
    const tape = this.history;
    if (!tape || id < tape.firstId || id >= tape.endId) return undefined;
    const t = tape.slot(id);
    const priceString = this.priceString(t.ticks);
    const amountString = this.amountString(t.steps);
    return {
      symbol: this.spec.symbol,
      id,
      aggId: id - this.historyAggOffset, // one maker per history trade: one aggregate each
      ts: t.ts,
      price: Number(priceString),
      amount: Number(amountString),
      side: t.side,
      priceString,
      amountString,
      quoteString: this.quoteString(this.quoteUnits(t.ticks, t.steps)),
    };
  }

  /** Id of the first trade with ts >= t (nextTradeId() when none). */
  tradeIdAtOrAfter(t: number): number {
    const tape = this.history;
    if (tape && !tape.empty) {
      const id = tape.idAtOrAfter(t);
      if (id < tape.endId) return id;
    }
    return this.firstTradeId + firstAtOrAfter(this.trades, t);
  }

  /** Id of the oldest aggregate trade. */
  lowestAggId(): number {
    return this.history && !this.history.empty ? this.history.firstId - this.historyAggOffset : this.firstAggId;
  }

  /** One past the newest aggregate trade's id. */
  nextAggId(): number {
    return this.firstAggId + this.aggregates.length;
  }

  /** The aggregate trade with `aggId` (each history trade is one aggregate), if it exists. */
  aggregateById(aggId: number): AggregateTrade | undefined {
    if (aggId >= this.firstAggId) return this.aggregates[aggId - this.firstAggId];
    const t = this.tradeById(aggId + this.historyAggOffset);
    if (!t) return undefined;
    return {
      symbol: t.symbol,
      aggId,
      firstId: t.id,
      lastId: t.id,
      ts: t.ts,
      price: t.price,
      amount: t.amount,
      side: t.side,
      priceString: t.priceString,
      amountString: t.amountString,
    };
  }

  /** Id of the first aggregate trade with ts >= t (nextAggId() when none). */
  aggIdAtOrAfter(t: number): number {
    const tape = this.history;
    if (tape && !tape.empty) {
      const id = tape.idAtOrAfter(t);
      if (id < tape.endId) return id - this.historyAggOffset;
    }
    return this.firstAggId + firstAtOrAfter(this.aggregates, t);
  }

  /** Time of the oldest trade, if any. */
  firstTs(): number | undefined {
    return this.history?.firstTs() ?? this.trades[0]?.ts;
  }

  /** Time of the newest trade, if any. */
  newestTs(): number | undefined {
    return this.trades.at(-1)?.ts ?? this.tradeById(this.nextTradeId() - 1)?.ts;
  }

  stats(now: number): Stats24h {
    const from = now - DAY_MS;
    while (this.windowStart < this.cores.length && this.trades[this.windowStart]!.ts < from) {
      const core = this.cores[this.windowStart]!;
      this.windowVolumeSteps -= core.steps;
      this.windowQuoteUnits -= this.quoteUnits(core.ticks, core.steps);
      this.windowStart++;
    }
    this.highs.evictBefore(this.windowStart);
    this.lows.evictBefore(this.windowStart);
    const count = this.cores.length - this.windowStart;
    const lastCore = this.cores[this.cores.length - 1];
    const fallbackTicks = lastCore?.ticks ?? this.bestBidTicks();
    const lastTicks = fallbackTicks;
    const before = this.cores[this.windowStart - 1];
    if (count === 0) {
      const p = this.priceString(lastTicks);
      return {
        symbol: this.spec.symbol,
        openTime: from,
        closeTime: now,
        open: p,
        high: p,
        low: p,
        last: p,
        lastQty: this.amountString(0),
        prevClose: p,
        change: this.priceString(0),
        changePct: '0.000',
        weightedAvg: p,
        volume: this.amountString(0),
        quoteVolume: this.quoteString(0n),
        count: 0,
        firstId: -1,
        lastId: -1,
      };
    }
    const first = this.trades[this.windowStart]!;
    const firstCore = this.cores[this.windowStart]!;
    const last = this.trades[this.trades.length - 1]!;
    const highTicks = this.cores[this.highs.front()!]!.ticks;
    const lowTicks = this.cores[this.lows.front()!]!.ticks;
    const changeTicks = lastTicks - firstCore.ticks;
    const changePct = ((changeTicks / firstCore.ticks) * 100).toFixed(3);
    // vwap = Σquote / Σvolume, at price precision
    const priceUnitsScaled = (this.windowQuoteUnits * 10n ** BigInt(MAX_DECIMALS)) / BigInt(this.windowVolumeSteps * this.qty.units);
    return {
      symbol: this.spec.symbol,
      openTime: from,
      closeTime: now,
      open: first.priceString,
      high: this.priceString(highTicks),
      low: this.priceString(lowTicks),
      last: last.priceString,
      lastQty: last.amountString,
      prevClose: before ? this.priceString(before.ticks) : first.priceString,
      change: formatScaled(changeTicks * this.price.units, this.price.decimals, this.price.decimals),
      changePct: changePct === '-0.000' ? '0.000' : changePct,
      weightedAvg: formatScaled(priceUnitsScaled, this.price.decimals + MAX_DECIMALS, this.price.decimals),
      volume: this.amountString(this.windowVolumeSteps),
      quoteVolume: this.quoteString(this.windowQuoteUnits),
      count,
      firstId: first.id,
      lastId: last.id,
    };
  }

  /** First bar index with openTime >= t. */
  private barIndexAtOrAfter(t: number): number {
    let lo = 0;
    let hi = this.bars.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.bars[mid]!.openTime < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The bar of `tf` opening at `openTime`: the history's trades in it, then the live 1m bars
   * (flat at the previous close when empty; undefined before the first trade).
   */
  kline(tf: Timeframe, openTime: number): Kline | undefined {
    const size = TIMEFRAME_MS[tf];
    const end = openTime + size;
    let acc = this.historyTotals(openTime, end);
    const from = this.barIndexAtOrAfter(openTime);
    const to = this.barIndexAtOrAfter(end);
    for (let i = from; i < to; i++) acc = addTotals(acc, this.bars[i]!);
    const closeTime = end - 1;
    if (!acc) {
      const prevTicks = this.bars[from - 1]?.closeTicks ?? this.historyCloseBefore(openTime);
      if (prevTicks === undefined) return undefined;
      const p = this.priceString(prevTicks);
      const zeroQty = this.amountString(0);
      const zeroQuote = this.quoteString(0n);
      return {
        openTime,
        closeTime,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: zeroQty,
        quoteVolume: zeroQuote,
        count: 0,
        firstId: -1,
        lastId: -1,
        takerBuyVolume: zeroQty,
        takerBuyQuoteVolume: zeroQuote,
      };
    }
    return {
      openTime,
      closeTime,
      open: this.priceString(acc.openTicks),
      high: this.priceString(acc.highTicks),
      low: this.priceString(acc.lowTicks),
      close: this.priceString(acc.closeTicks),
      volume: this.amountString(acc.volumeSteps),
      quoteVolume: this.quoteString(acc.quoteUnits),
      count: acc.count,
      firstId: acc.firstId,
      lastId: acc.lastId,
      takerBuyVolume: this.amountString(acc.takerBuySteps),
      takerBuyQuoteVolume: this.quoteString(acc.takerBuyQuoteUnits),
    };
  }

  /** Totals of the history trades in [from, to): whole hours from a cache, the rest trade by trade. */
  private historyTotals(from: number, to: number): BarTotals | undefined {
    const tape = this.history;
    if (!tape || tape.empty) return undefined;
    const last = tape.slot(tape.endId - 1).ts;
    let acc: BarTotals | undefined;
    for (let t = Math.max(from, tape.slot(tape.firstId).ts - HOUR_MS); t < to && t <= last; ) {
      const hourStart = Math.floor(t / HOUR_MS) * HOUR_MS;
      const next = Math.min(to, hourStart + HOUR_MS);
      if (t === hourStart && next === hourStart + HOUR_MS) {
        let hour = this.historyHours.get(hourStart);
        if (hour === undefined) {
          if (this.historyHours.size >= HISTORY_HOUR_CACHE) this.historyHours.clear();
          hour = this.addHistorySlots(undefined, hourStart, next) ?? null;
          this.historyHours.set(hourStart, hour);
        }
        if (hour) acc = addTotals(acc, hour);
      } else {
        acc = this.addHistorySlots(acc, t, next);
      }
      t = next;
    }
    return acc;
  }

  /** `acc` plus the history trades in [from, to), one by one. */
  private addHistorySlots(acc: BarTotals | undefined, from: number, to: number): BarTotals | undefined {
    const tape = this.history!;
    for (let id = tape.idAtOrAfter(from); id < tape.endId; id++) {
      const t = tape.slot(id);
      if (t.ts >= to) break;
      const quote = this.quoteUnits(t.ticks, t.steps);
      const buy = t.side === 'buy';
      acc = addTotals(acc, {
        openTicks: t.ticks,
        highTicks: t.ticks,
        lowTicks: t.ticks,
        closeTicks: t.ticks,
        volumeSteps: t.steps,
        quoteUnits: quote,
        count: 1,
        firstId: id,
        lastId: id,
        takerBuySteps: buy ? t.steps : 0,
        takerBuyQuoteUnits: buy ? quote : 0n,
      });
    }
    return acc;
  }

  /** Price (ticks) of the last history trade before `ts`, if there is one. */
  private historyCloseBefore(ts: number): number | undefined {
    const tape = this.history;
    if (!tape || tape.empty) return undefined;
    const id = tape.idAtOrAfter(ts) - 1;
    return id >= tape.firstId ? tape.slot(id).ticks : undefined;
  }
}

// ---------------------------------------------------------------------------------------------

/** The simulated market: all symbols, the auto-run timer and listeners. */
export class SimulatedMarket {
  readonly seed: number;
  readonly tradesPerSecond: number;
  readonly symbols: readonly string[];
  private readonly markets = new Map<string, SymbolMarket>();
  private readonly listeners = new Set<MarketListener>();
  private readonly clock: Clock;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private runStartedAt = 0;
  private runOrdersAtStart = 0;
  private runOrders = 0;

  constructor(options: MarketOptions = {}) {
    const seed = options.seed ?? 1;
    if (!Number.isInteger(seed)) throw new ConfigError(`simulator seed must be an integer, got ${seed}`);
    const tps = options.tradesPerSecond ?? 2;
    if (!(tps > 0) || !Number.isFinite(tps)) throw new ConfigError(`tradesPerSecond must be a positive number, got ${tps}`);
    const tickMs = options.tickMs ?? 50;
    if (!(tickMs >= 1)) throw new ConfigError(`tickMs must be >= 1, got ${tickMs}`);
    const levels = options.bookLevels ?? 50;
    if (!Number.isInteger(levels) || levels < 2 || levels > 1000) throw new ConfigError(`bookLevels must be an integer in 2..1000, got ${levels}`);
    this.seed = seed;
    this.tradesPerSecond = tps;
    this.tickMs = tickMs;
    this.clock = options.clock ?? systemClock;
    const warmupSpan = options.warmup && options.warmup.orders > 0 ? options.warmup.spanMs : 0;
    const historyOptions = options.history === true ? {} : options.history || undefined;
    if (historyOptions) checkHistoryOptions(historyOptions);
    // history ends where the warmup (or the live market) begins
    const origin = this.now() - warmupSpan;
    const history = historyOptions ? { origin, options: historyOptions } : undefined;
    const scenarios = this.placeScenarios(options, origin, history !== undefined);
    for (const input of options.symbols ?? DEFAULT_SYMBOLS) {
      const spec = resolveSymbolSpec(input);
      if (this.markets.has(spec.symbol)) throw new ConfigError(`duplicate simulator symbol ${spec.symbol}`);
      const placed = scenarios.get(spec.symbol);
      this.markets.set(spec.symbol, new SymbolMarket(spec, seed, levels, history, placed ? { placed, origin } : undefined));
    }
    if (this.markets.size === 0) throw new ConfigError('the simulator needs at least one symbol');
    this.symbols = [...this.markets.keys()];
    for (const symbol of scenarios.keys()) {
      if (!this.markets.has(symbol)) throw new ConfigError(`scenario on ${symbol}, which the simulator does not list (symbols: ${this.symbols.join(', ')})`);
    }
    if (options.warmup && options.warmup.orders > 0) this.warmup(options.warmup.orders, options.warmup.spanMs);
    if (options.autoRun ?? true) this.start();
  }

  /** The scenarios by symbol: complete at `origin` with history, playing live from the start without. */
  private placeScenarios(options: MarketOptions, origin: number, withHistory: boolean): Map<string, PlacedScenario> {
    const out = new Map<string, PlacedScenario>();
    for (const s of options.scenarios ?? []) {
      if (out.has(s.symbol)) throw new ConfigError(`two scenarios on ${s.symbol}: at most one per symbol`);
      out.set(s.symbol, placeScenario(s, withHistory ? { endsAt: origin } : { startsAt: this.now() }));
    }
    return out;
  }

  /** The scripted scenarios, placed in time. */
  placedScenarios(): readonly PlacedScenario[] {
    return [...this.markets.values()].flatMap((m) => (m.scenario ? [m.scenario] : []));
  }

  /** Current time of the model clock (ms epoch). */
  now(): number {
    return this.clock.now();
  }

  /** Whether the auto-run timer is active. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Starts printing `tradesPerSecond` orders per symbol on a timer (no-op if running). */
  start(): void {
    if (this.timer) return;
    this.runStartedAt = this.now();
    this.runOrdersAtStart = this.runOrders;
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  /** Stops the auto-run timer. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops timers and drops listeners. */
  close(): void {
    this.stop();
    this.listeners.clear();
  }

  private tick(): void {
    const elapsed = Math.max(0, this.now() - this.runStartedAt);
    const due = Math.floor((elapsed * this.tradesPerSecond) / 1000) - (this.runOrders - this.runOrdersAtStart);
    // after a long stall print at most ~1s worth at once instead of a burst of thousands
    const n = Math.min(due, Math.max(1, Math.ceil(this.tradesPerSecond)));
    if (n > 0) {
      this.step(n);
      this.runOrders += n; // only timer-driven orders count against the rate; manual steps are extra
    }
    if (due > n) this.runOrdersAtStart -= due - n; // forget the backlog
  }

  /** Registers a listener; returns the unsubscribe function. */
  subscribe(listener: MarketListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  hasSymbol(symbol: string): boolean {
    return this.markets.has(symbol);
  }

  private get(symbol: string): SymbolMarket {
    const m = this.markets.get(symbol);
    if (!m) throw new UnknownSimSymbolError(symbol);
    return m;
  }

  spec(symbol: string): SymbolSpec {
    return this.get(symbol).spec;
  }

  /** Runs `orders` taker orders on every symbol (or only `symbol`); returns the raw trades printed. */
  step(orders = 1, symbol?: string): PrintedTrade[] {
    const targets = symbol === undefined ? this.symbols : [symbol];
    const out: PrintedTrade[] = [];
    for (let i = 0; i < orders; i++) {
      const ts = this.now();
      for (const s of targets) out.push(...this.executeOne(this.get(s), ts));
    }
    return out;
  }

  /** Runs orders on `symbol` until at least `count` raw trades were printed (an order's fills are never split). */
  printTrades(count: number, symbol: string): PrintedTrade[] {
    const m = this.get(symbol);
    if (count > 0 && m.haltedAt(this.now())) throw new SimSymbolHaltedError(symbol);
    const out: PrintedTrade[] = [];
    while (out.length < count) out.push(...this.executeOne(m, this.now()));
    return out;
  }

  private executeOne(m: SymbolMarket, ts: number): PrintedTrade[] {
    const { requote, trades, aggregates, fills } = m.executeOrder(ts);
    for (const l of this.listeners) {
      if (requote) l.book?.(requote);
      if (trades.length > 0) l.trades?.(m.spec.symbol, trades, aggregates);
      if (fills) l.book?.(fills);
    }
    return trades;
  }

  private warmup(orders: number, spanMs: number): void {
    const end = this.now();
    for (const m of this.markets.values()) {
      for (let i = 0; i < orders; i++) m.executeOrder(end - spanMs + Math.floor(((i + 1) * spanMs) / orders));
    }
  }

  /** Every raw trade printed for `symbol`, in order (the record tests compare against). */
  printedTrades(symbol: string): readonly PrintedTrade[] {
    return this.get(symbol).trades;
  }

  /** Every aggregate trade printed for `symbol`, in order. */
  aggregateTrades(symbol: string): readonly AggregateTrade[] {
    return this.get(symbol).aggregates;
  }

  /** Last `limit` raw trades (history included when the live ones are fewer). */
  recentTrades(symbol: string, limit: number): readonly PrintedTrade[] {
    const m = this.get(symbol);
    const next = m.nextTradeId();
    return this.tradesFromId(symbol, Math.max(m.lowestTradeId(), next - limit), limit);
  }

  /** Up to `limit` raw trades starting at raw id `fromId` (ids are contiguous, history then live). */
  tradesFromId(symbol: string, fromId: number, limit: number): readonly PrintedTrade[] {
    const m = this.get(symbol);
    if (fromId >= m.firstTradeId) {
      const start = fromId - m.firstTradeId;
      return m.trades.slice(start, start + limit);
    }
    const out: PrintedTrade[] = [];
    const end = m.nextTradeId();
    for (let id = Math.max(fromId, m.lowestTradeId()); id < end && out.length < limit; id++) out.push(m.tradeById(id)!);
    return out;
  }

  /** The raw trade with `id` (history or live), if it exists. */
  tradeById(symbol: string, id: number): PrintedTrade | undefined {
    return this.get(symbol).tradeById(id);
  }

  /** Ids the market has trades for: `first` (oldest) up to `next` (exclusive). */
  tradeIds(symbol: string): { readonly first: number; readonly next: number } {
    const m = this.get(symbol);
    return { first: m.lowestTradeId(), next: m.nextTradeId() };
  }

  /** Id of the first raw trade at or after `ts` (tradeIds().next when there is none). */
  tradeIdAtOrAfter(symbol: string, ts: number): number {
    return this.get(symbol).tradeIdAtOrAfter(ts);
  }

  /** Aggregate trades by Binance `aggTrades` rules: fromId, else [startTime, endTime], else most recent. */
  queryAggregateTrades(symbol: string, q: AggTradeQuery): readonly AggregateTrade[] {
    const m = this.get(symbol);
    const limit = q.limit ?? 500;
    const lowest = m.lowestAggId();
    const next = m.nextAggId();
    let start: number;
    if (q.fromId !== undefined) start = Math.max(lowest, q.fromId);
    else if (q.startTime !== undefined) start = m.aggIdAtOrAfter(q.startTime);
    else if (q.endTime !== undefined) start = Math.max(lowest, m.aggIdAtOrAfter(q.endTime + 1) - limit);
    else start = Math.max(lowest, next - limit);
    const out: AggregateTrade[] = [];
    for (let id = start; id < next && out.length < limit; id++) {
      const a = m.aggregateById(id)!;
      if (q.startTime !== undefined && a.ts < q.startTime) continue;
      if (q.endTime !== undefined && a.ts > q.endTime) break;
      out.push(a);
    }
    return out;
  }

  /** Raw trades with startTime <= ts <= endTime (for endpoints that filter raw trades by time). */
  tradesBetween(symbol: string, startTime: number, endTime: number, limit: number): readonly PrintedTrade[] {
    const m = this.get(symbol);
    const out: PrintedTrade[] = [];
    const next = m.nextTradeId();
    for (let id = m.tradeIdAtOrAfter(startTime); id < next && out.length < limit; id++) {
      const t = m.tradeById(id)!;
      if (t.ts > endTime) break;
      out.push(t);
    }
    return out;
  }

  /** Current book, best levels first, at most `limit` per side. */
  book(symbol: string, limit = 1000): BookSnapshot {
    return this.get(symbol).snapshot(this.now(), limit);
  }

  /** Best bid and ask with the current update id. */
  topOfBook(symbol: string): TopOfBook {
    const m = this.get(symbol);
    const bb = m.bestBidTicks();
    const ba = m.bestAskTicks();
    return {
      symbol,
      lastUpdateId: m.updateId,
      bid: m.entry(bb, m.bids.get(bb) ?? 0),
      ask: m.entry(ba, m.asks.get(ba) ?? 0),
    };
  }

  /** Update id of the latest book change. */
  lastUpdateId(symbol: string): number {
    return this.get(symbol).updateId;
  }

  /** Rolling 24h stats at the model clock's now. */
  stats24h(symbol: string): Stats24h {
    return this.get(symbol).stats(this.now());
  }

  /** One kline of `tf` opening at `openTime` (undefined before the first trade). */
  kline(symbol: string, tf: Timeframe, openTime: number): Kline | undefined {
    return this.get(symbol).kline(tf, bucketStart(openTime, tf));
  }

  /**
   * The bar of `tf`'s length opening exactly at `openTime`, without aligning it to UTC buckets
   * (for exchanges whose daily bars open at another hour, e.g. OKX's UTC+8 `1D`).
   */
  klineAt(symbol: string, tf: Timeframe, openTime: number): Kline | undefined {
    return this.get(symbol).kline(tf, openTime);
  }

  /** Timestamp of the first trade (the history's first with history on), if any. */
  firstTradeTs(symbol: string): number | undefined {
    return this.get(symbol).firstTs();
  }

  /**
   * Klines of `tf` from the first trade's interval to the interval containing now, Binance rules:
   * with startTime the first `limit` from there, otherwise the last `limit` up to endTime.
   */
  klines(symbol: string, tf: Timeframe, q: KlineQuery = {}): Kline[] {
    const m = this.get(symbol);
    const firstTs = m.firstTs();
    if (firstTs === undefined) return [];
    const limit = q.limit ?? 500;
    const size = TIMEFRAME_MS[tf];
    const first = bucketStart(firstTs, tf);
    let last = bucketStart(Math.max(this.now(), m.newestTs()!), tf);
    if (q.endTime !== undefined) last = Math.min(last, bucketStart(q.endTime, tf));
    const out: Kline[] = [];
    if (q.startTime !== undefined) {
      let b = bucketStart(q.startTime, tf);
      if (b < q.startTime) b += size;
      b = Math.max(b, first);
      for (; b <= last && out.length < limit; b += size) {
        const k = m.kline(tf, b);
        if (k) out.push(k);
      }
      return out;
    }
    for (let b = last; b >= first && out.length < limit; b -= size) {
      const k = m.kline(tf, b);
      if (k) out.push(k);
    }
    return out.reverse();
  }
}

/** Binary search: index of the first item with ts >= t in a list sorted by ts. */
function firstAtOrAfter(items: readonly { readonly ts: number }[], t: number): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (items[mid]!.ts < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
