import { ValidationError } from '../domain/errors.js';
import { formatIssues } from '../domain/issues.js';
import { timeframeMs, type Timeframe } from '../domain/index.js';
import { INDICATOR_PARAMS, INDICATORS, type Bar, type IndicatorDefinition, type IndicatorName } from '../indicators/indicators.js';
import type { CandleView, MarketQueryService } from './market-query.js';

/**
 * Screens every market the store holds by conditions on the candles of one timeframe, e.g.
 * `rsi:14 < 30` and `volume > volume_sma:20`, evaluated on each market's last closed candle.
 */

export type Comparator = '<' | '<=' | '>' | '>=' | 'crosses_above' | 'crosses_below';
export const COMPARATORS: readonly Comparator[] = ['<', '<=', '>', '>=', 'crosses_above', 'crosses_below'];

export interface ScanCondition {
  /** a series, e.g. 'rsi:14', 'close', 'macd.histogram', 'bbands.lower:20,2' */
  readonly series: string;
  readonly op: Comparator;
  /** a number, or another series */
  readonly value: number | string;
}

export interface ScanRequest {
  readonly timeframe: Timeframe;
  readonly conditions: readonly ScanCondition[];
  /** every condition must hold ('all') or at least one ('any') */
  readonly match: 'all' | 'any';
  /** only these exchanges; all when omitted */
  readonly exchanges?: readonly string[];
  /** evaluate on the last closed candle (default) or on the newest one even if still forming */
  readonly at: 'last_closed' | 'latest';
  /** series the matches are sorted by; the first condition's series when omitted */
  readonly sortBy?: string;
  readonly order: 'asc' | 'desc';
  readonly limit: number;
  readonly maxMarkets: number;
}

export type SkipReason = 'no_candles' | 'not_enough_candles' | 'no_closed_candle';

export interface ScanMatch {
  readonly exchange: string;
  readonly symbol: string;
  /** open time of the candle evaluated */
  readonly ts: number;
  readonly closed: boolean;
  /** every series of the request at that candle (and `<series>@prev` for crossings) */
  readonly values: Readonly<Record<string, number>>;
  /** which conditions held, in request order */
  readonly held: readonly boolean[];
  /** false when some recursive series (EMA, RSI, ...) had less history than it needs to be exact */
  readonly settled: boolean;
  /** candle buckets missing in the candles read */
  readonly missingBars: number;
  /** age of the market's newest data */
  readonly ageMs: number | null;
}

export interface ScanSkip {
  readonly exchange: string;
  readonly symbol: string;
  readonly reason: SkipReason;
  readonly detail: string;
}

export interface ScanAnswer {
  readonly matches: readonly ScanMatch[];
  /** markets that met the conditions, before `limit` */
  readonly matched: number;
  readonly scanned: number;
  /** markets the store holds (of the requested exchanges) */
  readonly totalMarkets: number;
  /** markets not scanned because of `maxMarkets` */
  readonly notScanned: number;
  readonly skipped: readonly ScanSkip[];
  readonly skippedOmitted: number;
  readonly candlesRead: number;
  readonly sortBy: string;
  readonly asOf: number;
}

export const SCAN_LIMITS = {
  maxConditions: 8,
  defaultLimit: 20,
  maxLimit: 100,
  defaultMaxMarkets: 100,
  maxMarkets: 300,
  maxSkippedListed: 50,
  /** candles read per market: a long EMA would otherwise read 2,000 bars of every market to settle (flagged settled: false instead) */
  maxBarsPerMarket: 1_000,
  /** markets read at once: enough to overlap store round trips, few enough not to swamp the store */
  concurrency: 8,
} as const;

/** One series: price fields, volume_sma/change_pct, or an indicator output with positional params. */
export interface SeriesSpec {
  readonly text: string;
  /** bars before the first value */
  readonly lookback: number;
  /** extra bars a recursive series needs before its values no longer depend on where history starts */
  readonly settle: number;
  compute(bars: readonly Bar[]): readonly (number | null)[];
}

const PRICE_FIELDS = ['open', 'high', 'low', 'close', 'volume'] as const;
const SERIES_SYNTAX = /^([a-z_]+)(?:\.([a-z_]+))?(?::([a-z0-9.]+(?:,[a-z0-9.]+)*))?$/i;

/** How to write a series, for descriptions and error hints. */
export const SERIES_HELP =
  "A series is 'open', 'high', 'low', 'close', 'volume', 'volume_sma:N' (mean volume of the last N candles), " +
  "'change_pct:N' (close vs the close N candles back, %), or an indicator 'name[.output][:p1,p2,...]' with parameters " +
  "in order and omitted ones at their defaults: sma:N, ema:N, rsi:N, atr:N, obv, vwap[:day|week|month], macd[.macd|.signal|.histogram][:fast,slow,signal], " +
  "bbands[.upper|.middle|.lower][:period,stdDev], adx[.adx|.plusdi|.minusdi][:N], stoch[.k|.d][:kPeriod,kSmoothing,dPeriod]. " +
  "Examples: 'rsi:14', 'ema:50', 'macd.histogram', 'bbands.lower:20,2', 'volume_sma:20'.";

/** Parses a series; a ValidationError says what is wrong and how to write it. */
export function parseSeries(text: string, where: string): SeriesSpec {
  const m = SERIES_SYNTAX.exec(text.trim());
  if (!m) throw new ValidationError(`${where}: '${text.slice(0, 64)}' is not a series. ${SERIES_HELP}`);
  const name = m[1]!.toLowerCase();
  const output = m[2]?.toLowerCase();
  const args = m[3]?.split(',') ?? [];
  const canonical = text.trim().toLowerCase();
  const noOutput = () => {
    if (output !== undefined) throw new ValidationError(`${where}: '${name}' has no outputs to pick ('.${output}'). ${SERIES_HELP}`);
  };
  const onePeriod = (): number => {
    const n = Number(args[0]);
    if (args.length !== 1 || !Number.isInteger(n) || n < 1 || n > 500) {
      throw new ValidationError(`${where}: '${name}' takes one period, a whole number 1-500, e.g. '${name}:20'.`);
    }
    return n;
  };
  if ((PRICE_FIELDS as readonly string[]).includes(name)) {
    noOutput();
    if (args.length) throw new ValidationError(`${where}: '${name}' takes no parameters.`);
    const field = name as (typeof PRICE_FIELDS)[number];
    return { text: canonical, lookback: 0, settle: 0, compute: (bars) => bars.map((b) => b[field]) };
  }
  if (name === 'volume_sma') {
    noOutput();
    const n = onePeriod();
    return { text: canonical, lookback: n - 1, settle: 0, compute: (bars) => rollingMean(bars.map((b) => b.volume), n) };
  }
  if (name === 'change_pct') {
    noOutput();
    const n = onePeriod();
    return {
      text: canonical,
      lookback: n,
      settle: 0,
      compute: (bars) => bars.map((b, i) => (i >= n ? ((b.close - bars[i - n]!.close) / bars[i - n]!.close) * 100 : null)),
    };
  }
  const def = INDICATORS[name as IndicatorName] as IndicatorDefinition | undefined;
  if (!def) {
    throw new ValidationError(`${where}: unknown series '${name}'. ${SERIES_HELP}`);
  }
  const column = output === undefined ? def.outputs[0]! : def.outputs.find((o) => o.toLowerCase() === output);
  if (column === undefined) {
    throw new ValidationError(`${where}: ${name} has outputs ${def.outputs.map((o) => o.toLowerCase()).join(', ')}, not '${output}'.`);
  }
  const schema = INDICATOR_PARAMS[def.name];
  const keys = Object.keys(schema.shape);
  if (args.length > keys.length) {
    throw new ValidationError(`${where}: ${name} takes at most ${keys.length} parameter(s) (${keys.join(', ') || 'none'}), got ${args.length}.`);
  }
  const raw: Record<string, unknown> = {};
  args.forEach((a, i) => (raw[keys[i]!] = /^[0-9.]+$/.test(a) ? Number(a) : a));
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ValidationError(`${where}: ${name} parameters (${keys.join(', ')}): ${formatIssues(parsed.error.issues)}`);
  const params = parsed.data as never;
  return {
    text: canonical,
    lookback: def.lookback(params),
    settle: def.settle(params),
    compute: (bars) => def.compute(bars, params)[column]!,
  };
}

function rollingMean(values: readonly number[], n: number): (number | null)[] {
  const out: (number | null)[] = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= n) sum -= values[i - n]!;
    out.push(i >= n - 1 ? sum / n : null);
  }
  return out;
}

/** A condition with its series parsed; shared with the backtester. */
export interface ParsedCondition {
  readonly left: SeriesSpec;
  readonly op: Comparator;
  readonly right: SeriesSpec | number;
}

/** Reads each market's recent candles and evaluates the conditions; bounded in markets and in candles per market. */
export class MarketScanner {
  constructor(private readonly query: MarketQueryService) {}

  async scan(req: ScanRequest): Promise<ScanAnswer> {
    if (req.conditions.length === 0) throw new ValidationError('conditions: give at least one condition.');
    if (req.conditions.length > SCAN_LIMITS.maxConditions) {
      throw new ValidationError(`conditions: at most ${SCAN_LIMITS.maxConditions}, got ${req.conditions.length}; split the scan.`);
    }
    const conditions: ParsedCondition[] = req.conditions.map((c, i) => ({
      left: parseSeries(c.series, `conditions[${i}].series`),
      op: c.op,
      right: typeof c.value === 'number' ? c.value : parseSeries(c.value, `conditions[${i}].value`),
    }));
    const sortSeries = req.sortBy === undefined ? conditions[0]!.left : parseSeries(req.sortBy, 'sortBy');
    const series = new Map<string, SeriesSpec>();
    for (const s of [...conditions.flatMap((c) => [c.left, c.right]), sortSeries]) if (typeof s !== 'number') series.set(s.text, s);
    const crossing = conditions.some((c) => c.op === 'crosses_above' || c.op === 'crosses_below');
    const specs = [...series.values()];
    // bars each market needs: the longest warm-up and settling, the previous bar for crossings, a forming bar
    const need = Math.max(...specs.map((s) => s.lookback)) + 1 + (crossing ? 1 : 0);
    const settledCount = Math.max(...specs.map((s) => s.lookback + s.settle)) + 2 + (crossing ? 1 : 0);
    const count = Math.min(settledCount, Math.max(need + 1, SCAN_LIMITS.maxBarsPerMarket));

    const { markets: toScan, total, asOf } = await this.listMarkets(req.exchanges, req.maxMarkets);
    const matches: (ScanMatch & { sortValue: number })[] = [];
    const skipped: ScanSkip[] = [];
    let candlesRead = 0;
    let next = 0;
    const worker = async () => {
      for (;;) {
        const market = toScan[next++];
        if (!market) return;
        if (!market.hasCandles) {
          skipped.push({ ...market.id, reason: 'no_candles', detail: 'the store holds no trades or candles for this market' });
          continue;
        }
        const { candles, freshness } = await this.query.getCandleHistory({ ...market.id, timeframe: req.timeframe, count });
        candlesRead += candles.length;
        const at = req.at === 'latest' ? candles.length - 1 : findLastIndex(candles, (c) => c.closed);
        if (at < 0) {
          skipped.push({
            ...market.id,
            reason: candles.length ? 'no_closed_candle' : 'no_candles',
            detail: candles.length ? `its only ${req.timeframe} candle is still forming; retry with at='latest'` : `no ${req.timeframe} candles`,
          });
          continue;
        }
        const used = candles.slice(0, at + 1);
        const bars: Bar[] = used.map((c) => ({ ts: c.ts, open: c.open, high: c.high, low: c.low, close: c.close, volume: c.volume }));
        const columns = new Map(specs.map((s) => [s.text, s.compute(bars)]));
        const valueAt = (s: SeriesSpec | number, i: number): number | null => (typeof s === 'number' ? s : (columns.get(s.text)![i] ?? null));
        const values: Record<string, number> = {};
        let missing: string | null = null;
        for (const s of specs) {
          const v = valueAt(s, at);
          if (v === null || !Number.isFinite(v)) missing ??= s.text;
          else values[s.text] = v;
        }
        if (crossing) {
          for (const c of conditions) {
            if (c.op !== 'crosses_above' && c.op !== 'crosses_below') continue;
            for (const s of [c.left, c.right]) {
              if (typeof s === 'number') continue;
              const v = at >= 1 ? valueAt(s, at - 1) : null;
              if (v === null || !Number.isFinite(v)) missing ??= `${s.text} on the previous candle`;
              else values[`${s.text}@prev`] = v;
            }
          }
        }
        if (missing !== null) {
          skipped.push({
            ...market.id,
            reason: 'not_enough_candles',
            detail: `${missing} has no value yet: needs at least ${need} ${req.timeframe} candles, the store has ${used.length}`,
          });
          continue;
        }
        const held = conditions.map((c) => holds(c, at, valueAt));
        const ok = req.match === 'all' ? held.every(Boolean) : held.some(Boolean);
        if (!ok) continue;
        matches.push({
          ...market.id,
          ts: used[at]!.ts,
          closed: used[at]!.closed,
          values,
          held,
          settled: specs.every((s) => at >= s.lookback + s.settle),
          missingBars: missingBuckets(used, timeframeMs(req.timeframe)),
          ageMs: freshness.ageMs,
          sortValue: values[sortSeries.text]!,
        });
      }
    };
    await Promise.all(Array.from({ length: Math.min(SCAN_LIMITS.concurrency, toScan.length) }, worker));
    const sign = req.order === 'asc' ? 1 : -1;
    matches.sort((a, b) => sign * (a.sortValue - b.sortValue) || a.exchange.localeCompare(b.exchange) || a.symbol.localeCompare(b.symbol));
    skipped.sort((a, b) => a.exchange.localeCompare(b.exchange) || a.symbol.localeCompare(b.symbol));
    return {
      matches: matches.slice(0, req.limit).map(({ sortValue: _, ...m }) => m),
      matched: matches.length,
      scanned: toScan.length,
      totalMarkets: total,
      notScanned: total - toScan.length,
      skipped: skipped.slice(0, SCAN_LIMITS.maxSkippedListed),
      skippedOmitted: Math.max(0, skipped.length - SCAN_LIMITS.maxSkippedListed),
      candlesRead,
      sortBy: sortSeries.text,
      asOf,
    };
  }

  /**
   * Markets held (of `exchanges`) in the query service's list order, read until `max` are listed,
   * and how many there are in all.
   */
  private async listMarkets(exchanges: readonly string[] | undefined, max: number) {
    const scopes: (string | undefined)[] = exchanges?.length ? [...new Set(exchanges)] : [undefined];
    const markets: { id: { exchange: string; symbol: string }; hasCandles: boolean }[] = [];
    let total = 0;
    let asOf = 0;
    for (const exchange of scopes) {
      let cursor: string | undefined;
      let first = true;
      do {
        const page = await this.query.listMarkets({ ...(exchange !== undefined && { exchange }), limit: 1000, ...(cursor && { cursor }) });
        if (first) total += page.total;
        first = false;
        asOf = page.asOf;
        for (const m of page.markets) {
          if (markets.length >= max) break;
          markets.push({ id: { exchange: m.exchange, symbol: m.symbol }, hasCandles: m.channels.trades !== undefined || m.channels.candles !== undefined });
        }
        cursor = markets.length < max ? (page.nextCursor ?? undefined) : undefined;
      } while (cursor);
    }
    return { markets, total, asOf };
  }
}

/** Whether `c` holds at bar `at`; every value it reads (and the previous bar's, for crossings) must be present. */
export function holds(c: ParsedCondition, at: number, valueAt: (s: SeriesSpec | number, i: number) => number | null): boolean {
  const l = valueAt(c.left, at)!;
  const r = valueAt(c.right, at)!;
  switch (c.op) {
    case '<':
      return l < r;
    case '<=':
      return l <= r;
    case '>':
      return l > r;
    case '>=':
      return l >= r;
    case 'crosses_above':
      return valueAt(c.left, at - 1)! <= valueAt(c.right, at - 1)! && l > r;
    case 'crosses_below':
      return valueAt(c.left, at - 1)! >= valueAt(c.right, at - 1)! && l < r;
  }
}

function findLastIndex<T>(items: readonly T[], test: (item: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (test(items[i]!)) return i;
  return -1;
}

function missingBuckets(candles: readonly CandleView[], size: number): number {
  if (candles.length < 2) return 0;
  return Math.max(0, Math.round((candles.at(-1)!.ts - candles[0]!.ts) / size) + 1 - candles.length);
}
