/**
 * Candlestick patterns to TA-Lib 0.6's CDL functions and default candle settings, checked per bar for
 * exact equality against TA-Lib's C library (tests/fixtures/talib/patterns.c).
 *
 * Sizes are relative: a body is "long" or "short" against the average of the previous N candles, as
 * TA_CandleDefaultSettings says. The averages are TA-Lib's running totals (add the newest, drop the
 * oldest), kept in the same order of floating-point operations, so ties on a price tick resolve as
 * TA-Lib resolves them. Output per bar is TA-Lib's integer: +100 bullish, -100 bearish, +-80 for the
 * weaker engulfing/harami where one end of the bodies matches, 100 for a doji (no direction), 0 none.
 */

/** One candle as the patterns see it. */
export interface PatternBar {
  readonly open: number;
  readonly high: number;
  readonly low: number;
  readonly close: number;
}

type RangeType = 'realBody' | 'highLow' | 'shadows';

/** One of TA-Lib's candle settings: what is measured, over how many previous candles, times what. */
export interface CandleSetting {
  readonly rangeType: RangeType;
  /** previous candles averaged; 0 compares with the candle itself */
  readonly avgPeriod: number;
  readonly factor: number;
}

/** TA_CandleDefaultSettings (ta_global.c). */
export const CANDLE_SETTINGS = {
  /** body longer than the average body of the previous 10 */
  bodyLong: { rangeType: 'realBody', avgPeriod: 10, factor: 1 },
  /** body shorter than the average body of the previous 10 */
  bodyShort: { rangeType: 'realBody', avgPeriod: 10, factor: 1 },
  /** body shorter than 10% of the average high-low range of the previous 10 */
  bodyDoji: { rangeType: 'highLow', avgPeriod: 10, factor: 0.1 },
  /** shadow longer than the candle's own body */
  shadowLong: { rangeType: 'realBody', avgPeriod: 0, factor: 1 },
  /** shadow shorter than 10% of the average high-low range of the previous 10 */
  shadowVeryShort: { rangeType: 'highLow', avgPeriod: 10, factor: 0.1 },
  /** within 20% of the average high-low range of the previous 5 */
  near: { rangeType: 'highLow', avgPeriod: 5, factor: 0.2 },
  /** at least 60% of the average high-low range of the previous 5 */
  far: { rangeType: 'highLow', avgPeriod: 5, factor: 0.6 },
} as const satisfies Record<string, CandleSetting>;

/** TA-Lib's default penetration of the morning/evening star's third candle into the first body. */
export const STAR_PENETRATION = 0.3;

const realBody = (b: PatternBar) => Math.abs(b.close - b.open);
const upperShadow = (b: PatternBar) => b.high - (b.close >= b.open ? b.close : b.open);
const lowerShadow = (b: PatternBar) => (b.close >= b.open ? b.open : b.close) - b.low;
const color = (b: PatternBar) => (b.close >= b.open ? 1 : -1);
const bodyTop = (b: PatternBar) => Math.max(b.open, b.close);
const bodyBottom = (b: PatternBar) => Math.min(b.open, b.close);
/** TA_REALBODYGAPUP(later, earlier) */
const bodyGapUp = (later: PatternBar, earlier: PatternBar) => bodyBottom(later) > bodyTop(earlier);
const bodyGapDown = (later: PatternBar, earlier: PatternBar) => bodyTop(later) < bodyBottom(earlier);

function candleRange(s: CandleSetting, b: PatternBar): number {
  if (s.rangeType === 'realBody') return realBody(b);
  if (s.rangeType === 'highLow') return b.high - b.low;
  return upperShadow(b) + lowerShadow(b);
}

/**
 * TA-Lib's running total of one setting's range over the `avgPeriod` candles before bar i - `offset`,
 * for bars i from `start` on; `average(idx)` is TA_CANDLEAVERAGE for the candle at idx (= i - offset).
 */
class CandleAverage {
  private total = 0;
  private trailing: number;

  constructor(
    private readonly bars: readonly PatternBar[],
    private readonly setting: CandleSetting,
    start: number,
    private readonly offset: number,
  ) {
    this.trailing = start - offset - setting.avgPeriod;
    for (let k = this.trailing; k < start - offset; k++) this.total += candleRange(setting, bars[k]!);
  }

  average(idx: number): number {
    const s = this.setting;
    const base = s.avgPeriod !== 0 ? this.total / s.avgPeriod : candleRange(s, this.bars[idx]!);
    return (s.factor * base) / (s.rangeType === 'shadows' ? 2 : 1);
  }

  /** after bar i: the candle at i - offset joins, the oldest leaves */
  advance(i: number): void {
    this.total += candleRange(this.setting, this.bars[i - this.offset]!) - candleRange(this.setting, this.bars[this.trailing]!);
    this.trailing++;
  }
}

type Averages = Record<string, CandleAverage>;

/** Runs `rule` on every bar from `lookback` on with TA-Lib's running averages; null before. */
function scan(
  bars: readonly PatternBar[],
  lookback: number,
  averages: Readonly<Record<string, readonly [CandleSetting, number]>>,
  rule: (i: number, avg: Averages) => number,
): (number | null)[] {
  const out: (number | null)[] = new Array<number | null>(bars.length).fill(null);
  if (bars.length <= lookback) return out;
  const avg: Averages = {};
  for (const [key, [setting, offset]] of Object.entries(averages)) avg[key] = new CandleAverage(bars, setting, lookback, offset);
  const all = Object.values(avg);
  for (let i = lookback; i < bars.length; i++) {
    out[i] = rule(i, avg);
    for (const a of all) a.advance(i);
  }
  return out;
}

export type CandlePatternName =
  | 'doji'
  | 'hammer'
  | 'inverted_hammer'
  | 'hanging_man'
  | 'shooting_star'
  | 'engulfing'
  | 'harami'
  | 'morning_star'
  | 'evening_star'
  | 'three_white_soldiers'
  | 'three_black_crows'
  | 'marubozu';

export interface CandlePatternDefinition {
  readonly name: CandlePatternName;
  readonly title: string;
  /** the TA-Lib function it follows */
  readonly talib: string;
  /** candles forming the pattern, the signal candle last */
  readonly candles: number;
  /** earlier candles the rule also compares with (e.g. the hammer's previous low) */
  readonly context: number;
  /** bars before the first output (TA-Lib's lookback) */
  readonly lookback: number;
  /** the rule, in words, for the caller */
  readonly convention: string;
  /** TA-Lib's output per bar (see the module comment); null before `lookback` */
  compute(bars: readonly PatternBar[]): (number | null)[];
}

const S = CANDLE_SETTINGS;
const sizes =
  'Sizes are relative to the previous candles (TA-Lib defaults): long/short body vs the average body of the previous 10, ' +
  'doji body and very short shadow under 10% of the average high-low range of the previous 10, long shadow longer than the body, ' +
  'near within 20% and far at least 60% of the average range of the previous 5. No trend filter: judge the trend yourself.';

function define(
  name: CandlePatternName,
  d: Omit<CandlePatternDefinition, 'name' | 'compute' | 'convention'> & {
    readonly rule: string;
    readonly averages: Readonly<Record<string, readonly [CandleSetting, number]>>;
    readonly test: (b: readonly PatternBar[], i: number, avg: Averages) => number;
  },
): CandlePatternDefinition {
  const { rule, averages, test, ...rest } = d;
  return {
    name,
    ...rest,
    convention: `${rule} TA-Lib ${d.talib}. ${sizes}`,
    compute: (bars) => scan(bars, d.lookback, averages, (i, avg) => test(bars, i, avg)),
  };
}

/** A one-candle rule: small body, one long shadow, the other very short (hammer family). */
const smallBodyShadows = { body: [S.bodyShort, 0], shadowLong: [S.shadowLong, 0], shadowVeryShort: [S.shadowVeryShort, 0] } as const;

/** Hammer and hanging man: small body, lower shadow long, upper shadow very short (smallBodyShadows' averages). */
function hammerShaped(c: PatternBar, i: number, avg: Averages): boolean {
  return realBody(c) < avg.body!.average(i) && lowerShadow(c) > avg.shadowLong!.average(i) && upperShadow(c) < avg.shadowVeryShort!.average(i);
}

export const CANDLE_PATTERNS: { readonly [N in CandlePatternName]: CandlePatternDefinition } = {
  doji: define('doji', {
    title: 'Doji',
    talib: 'CDLDOJI',
    candles: 1,
    context: 0,
    lookback: S.bodyDoji.avgPeriod,
    rule: 'Open and close almost equal: body at most 10% of the average high-low range; indecision, no direction (+100).',
    averages: { doji: [S.bodyDoji, 0] },
    test: (b, i, avg) => (realBody(b[i]!) <= avg.doji!.average(i) ? 100 : 0),
  }),
  hammer: define('hammer', {
    title: 'Hammer',
    talib: 'CDLHAMMER',
    candles: 1,
    context: 1,
    lookback: Math.max(S.bodyShort.avgPeriod, S.shadowLong.avgPeriod, S.shadowVeryShort.avgPeriod, S.near.avgPeriod) + 1,
    rule: 'Small body, lower shadow longer than the body, very short upper shadow, body at or near the previous low; bullish (+100).',
    averages: { ...smallBodyShadows, near: [S.near, 1] },
    test: (b, i, avg) => {
      const c = b[i]!;
      return hammerShaped(c, i, avg) && Math.min(c.close, c.open) <= b[i - 1]!.low + avg.near!.average(i - 1) ? 100 : 0;
    },
  }),
  inverted_hammer: define('inverted_hammer', {
    title: 'Inverted hammer',
    talib: 'CDLINVERTEDHAMMER',
    candles: 1,
    context: 1,
    lookback: Math.max(S.bodyShort.avgPeriod, S.shadowLong.avgPeriod, S.shadowVeryShort.avgPeriod) + 1,
    rule: 'Small body, upper shadow longer than the body, very short lower shadow, body gapping down from the previous body; bullish (+100).',
    averages: smallBodyShadows,
    test: (b, i, avg) => {
      const c = b[i]!;
      return realBody(c) < avg.body!.average(i) &&
        upperShadow(c) > avg.shadowLong!.average(i) &&
        lowerShadow(c) < avg.shadowVeryShort!.average(i) &&
        bodyGapDown(c, b[i - 1]!)
        ? 100
        : 0;
    },
  }),
  hanging_man: define('hanging_man', {
    title: 'Hanging man',
    talib: 'CDLHANGINGMAN',
    candles: 1,
    context: 1,
    lookback: Math.max(S.bodyShort.avgPeriod, S.shadowLong.avgPeriod, S.shadowVeryShort.avgPeriod, S.near.avgPeriod) + 1,
    rule: 'Hammer-shaped (small body, long lower shadow, very short upper shadow) with the body at or near the previous high; bearish (-100).',
    averages: { ...smallBodyShadows, near: [S.near, 1] },
    test: (b, i, avg) => {
      const c = b[i]!;
      return hammerShaped(c, i, avg) && Math.min(c.close, c.open) >= b[i - 1]!.high - avg.near!.average(i - 1) ? -100 : 0;
    },
  }),
  shooting_star: define('shooting_star', {
    title: 'Shooting star',
    talib: 'CDLSHOOTINGSTAR',
    candles: 1,
    context: 1,
    lookback: Math.max(S.bodyShort.avgPeriod, S.shadowLong.avgPeriod, S.shadowVeryShort.avgPeriod) + 1,
    rule: 'Small body, upper shadow longer than the body, very short lower shadow, body gapping up from the previous body; bearish (-100).',
    averages: smallBodyShadows,
    test: (b, i, avg) => {
      const c = b[i]!;
      return realBody(c) < avg.body!.average(i) &&
        upperShadow(c) > avg.shadowLong!.average(i) &&
        lowerShadow(c) < avg.shadowVeryShort!.average(i) &&
        bodyGapUp(c, b[i - 1]!)
        ? -100
        : 0;
    },
  }),
  engulfing: define('engulfing', {
    title: 'Engulfing',
    talib: 'CDLENGULFING',
    candles: 2,
    context: 0,
    lookback: 2,
    rule:
      'Second body of the opposite colour engulfs the first body: white over black bullish (+100), black over white bearish (-100); ' +
      '+-80 when one end of the bodies is equal.',
    averages: {},
    test: (b, i) => {
      const c = b[i]!;
      const p = b[i - 1]!;
      const bullish =
        color(c) === 1 && color(p) === -1 && ((c.close >= p.open && c.open < p.close) || (c.close > p.open && c.open <= p.close));
      const bearish =
        color(c) === -1 && color(p) === 1 && ((c.open >= p.close && c.close < p.open) || (c.open > p.close && c.close <= p.open));
      if (!bullish && !bearish) return 0;
      return color(c) * (c.open !== p.close && c.close !== p.open ? 100 : 80);
    },
  }),
  harami: define('harami', {
    title: 'Harami',
    talib: 'CDLHARAMI',
    candles: 2,
    context: 0,
    lookback: Math.max(S.bodyShort.avgPeriod, S.bodyLong.avgPeriod) + 1,
    rule:
      'A long body, then a short body inside it: after a black one bullish (+100), after a white one bearish (-100); ' +
      '+-80 when one end of the bodies is equal.',
    averages: { long: [S.bodyLong, 1], short: [S.bodyShort, 0] },
    test: (b, i, avg) => {
      const c = b[i]!;
      const p = b[i - 1]!;
      if (!(realBody(p) > avg.long!.average(i - 1) && realBody(c) <= avg.short!.average(i))) return 0;
      if (bodyTop(c) < bodyTop(p) && bodyBottom(c) > bodyBottom(p)) return -color(p) * 100;
      if (bodyTop(c) <= bodyTop(p) && bodyBottom(c) >= bodyBottom(p)) return -color(p) * 80;
      return 0;
    },
  }),
  morning_star: define('morning_star', {
    title: 'Morning star',
    talib: 'CDLMORNINGSTAR',
    candles: 3,
    context: 0,
    lookback: Math.max(S.bodyShort.avgPeriod, S.bodyLong.avgPeriod) + 2,
    rule:
      'Long black body, a short body gapping down below it, then a white body (not short) closing above the first close by ' +
      `more than ${STAR_PENETRATION * 100}% of the first body; bullish (+100).`,
    averages: { long: [S.bodyLong, 2], short: [S.bodyShort, 1], short2: [S.bodyShort, 0] },
    test: (b, i, avg) => {
      const [a, m, c] = [b[i - 2]!, b[i - 1]!, b[i]!];
      return realBody(a) > avg.long!.average(i - 2) &&
        color(a) === -1 &&
        realBody(m) <= avg.short!.average(i - 1) &&
        bodyGapDown(m, a) &&
        realBody(c) > avg.short2!.average(i) &&
        color(c) === 1 &&
        c.close > a.close + realBody(a) * STAR_PENETRATION
        ? 100
        : 0;
    },
  }),
  evening_star: define('evening_star', {
    title: 'Evening star',
    talib: 'CDLEVENINGSTAR',
    candles: 3,
    context: 0,
    lookback: Math.max(S.bodyShort.avgPeriod, S.bodyLong.avgPeriod) + 2,
    rule:
      'Long white body, a short body gapping up above it, then a black body (not short) closing below the first close by ' +
      `more than ${STAR_PENETRATION * 100}% of the first body; bearish (-100).`,
    averages: { long: [S.bodyLong, 2], short: [S.bodyShort, 1], short2: [S.bodyShort, 0] },
    test: (b, i, avg) => {
      const [a, m, c] = [b[i - 2]!, b[i - 1]!, b[i]!];
      return realBody(a) > avg.long!.average(i - 2) &&
        color(a) === 1 &&
        realBody(m) <= avg.short!.average(i - 1) &&
        bodyGapUp(m, a) &&
        realBody(c) > avg.short2!.average(i) &&
        color(c) === -1 &&
        c.close < a.close - realBody(a) * STAR_PENETRATION
        ? -100
        : 0;
    },
  }),
  three_white_soldiers: define('three_white_soldiers', {
    title: 'Three white soldiers',
    talib: 'CDL3WHITESOLDIERS',
    candles: 3,
    context: 0,
    lookback: Math.max(S.shadowVeryShort.avgPeriod, S.bodyShort.avgPeriod, S.far.avgPeriod, S.near.avgPeriod) + 2,
    rule:
      'Three white candles with higher closes and very short upper shadows, each opening above the previous open and at most near ' +
      'its close, none far shorter than the one before, the last not short; bullish (+100).',
    averages: {
      vs2: [S.shadowVeryShort, 2],
      vs1: [S.shadowVeryShort, 1],
      vs0: [S.shadowVeryShort, 0],
      near2: [S.near, 2],
      near1: [S.near, 1],
      far2: [S.far, 2],
      far1: [S.far, 1],
      body: [S.bodyShort, 0],
    },
    test: (b, i, avg) => {
      const [a, m, c] = [b[i - 2]!, b[i - 1]!, b[i]!];
      return color(a) === 1 &&
        upperShadow(a) < avg.vs2!.average(i - 2) &&
        color(m) === 1 &&
        upperShadow(m) < avg.vs1!.average(i - 1) &&
        color(c) === 1 &&
        upperShadow(c) < avg.vs0!.average(i) &&
        c.close > m.close &&
        m.close > a.close &&
        m.open > a.open &&
        m.open <= a.close + avg.near2!.average(i - 2) &&
        c.open > m.open &&
        c.open <= m.close + avg.near1!.average(i - 1) &&
        realBody(m) > realBody(a) - avg.far2!.average(i - 2) &&
        realBody(c) > realBody(m) - avg.far1!.average(i - 1) &&
        realBody(c) > avg.body!.average(i)
        ? 100
        : 0;
    },
  }),
  three_black_crows: define('three_black_crows', {
    title: 'Three black crows',
    talib: 'CDL3BLACKCROWS',
    candles: 3,
    context: 1,
    lookback: S.shadowVeryShort.avgPeriod + 3,
    rule:
      'After a white candle, three black candles with lower closes and very short lower shadows, the second and third opening ' +
      'inside the previous body, the first closing under the white candle high; bearish (-100).',
    averages: { vs2: [S.shadowVeryShort, 2], vs1: [S.shadowVeryShort, 1], vs0: [S.shadowVeryShort, 0] },
    test: (b, i, avg) => {
      const [w, a, m, c] = [b[i - 3]!, b[i - 2]!, b[i - 1]!, b[i]!];
      return color(w) === 1 &&
        color(a) === -1 &&
        lowerShadow(a) < avg.vs2!.average(i - 2) &&
        color(m) === -1 &&
        lowerShadow(m) < avg.vs1!.average(i - 1) &&
        color(c) === -1 &&
        lowerShadow(c) < avg.vs0!.average(i) &&
        m.open < a.open &&
        m.open > a.close &&
        c.open < m.open &&
        c.open > m.close &&
        w.high > a.close &&
        a.close > m.close &&
        m.close > c.close
        ? -100
        : 0;
    },
  }),
  marubozu: define('marubozu', {
    title: 'Marubozu',
    talib: 'CDLMARUBOZU',
    candles: 1,
    context: 0,
    lookback: Math.max(S.bodyLong.avgPeriod, S.shadowVeryShort.avgPeriod),
    rule: 'Long body with very short (or no) shadows on both ends: white bullish (+100), black bearish (-100).',
    averages: { long: [S.bodyLong, 0], vs: [S.shadowVeryShort, 0] },
    test: (b, i, avg) => {
      const c = b[i]!;
      const vs = avg.vs!.average(i);
      return realBody(c) > avg.long!.average(i) && upperShadow(c) < vs && lowerShadow(c) < vs ? color(c) * 100 : 0;
    },
  }),
};

export const CANDLE_PATTERN_NAMES = Object.keys(CANDLE_PATTERNS) as CandlePatternName[];

export type PatternDirection = 'bullish' | 'bearish' | 'neutral';

/** Direction of a non-zero output; a doji's +100 only says "indecision". */
export function patternDirection(name: CandlePatternName, value: number): PatternDirection {
  if (name === 'doji' || value === 0) return 'neutral';
  return value > 0 ? 'bullish' : 'bearish';
}
