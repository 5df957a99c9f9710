import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CANDLE_PATTERN_NAMES,
  CANDLE_PATTERNS,
  patternDirection,
  STAR_PENETRATION,
  type CandlePatternName,
  type PatternBar,
} from '../../layers/shared/src/indicators/candle-patterns.js';

/** Golden vectors from TA-Lib's C library; see tests/fixtures/talib/patterns.c. */
interface Golden {
  readonly origin: string;
  readonly input: Record<'ts' | 'open' | 'high' | 'low' | 'close', number[]>;
  readonly outputs: Record<string, { function: string; params: Record<string, number>; begIdx: number; values: number[] }>;
}
const golden = JSON.parse(readFileSync(new URL('../fixtures/talib/patterns.json', import.meta.url), 'utf8')) as Golden;
const bars: PatternBar[] = golden.input.close.map((close, i) => ({
  open: golden.input.open[i]!,
  high: golden.input.high[i]!,
  low: golden.input.low[i]!,
  close,
}));

describe(`candle patterns against ${golden.origin}`, () => {
  it('covers every pattern offered, each printed several times in the golden series', () => {
    expect(new Set(Object.keys(golden.outputs))).toEqual(new Set(CANDLE_PATTERN_NAMES));
    for (const name of CANDLE_PATTERN_NAMES) {
      expect(golden.outputs[name]!.values.filter((v) => v !== 0).length, name).toBeGreaterThanOrEqual(4);
    }
  });

  for (const name of CANDLE_PATTERN_NAMES) {
    it(`${name}: TA-Lib's first bar and the same output on every bar`, () => {
      const ref = golden.outputs[name]!;
      const def = CANDLE_PATTERNS[name];
      expect(`TA_${def.talib}`).toBe(ref.function);
      if ('penetration' in ref.params) expect(STAR_PENETRATION).toBe(ref.params['penetration']);
      expect(def.lookback).toBe(ref.begIdx);
      const out = def.compute(bars);
      expect(out).toHaveLength(bars.length);
      expect(out.slice(0, ref.begIdx).every((v) => v === null)).toBe(true);
      const mismatches: string[] = [];
      ref.values.forEach((expected, j) => {
        const actual = out[ref.begIdx + j];
        if (actual !== expected) mismatches.push(`bar ${ref.begIdx + j}: ${actual} != ${expected}`);
      });
      expect(mismatches.slice(0, 5)).toEqual([]);
    });
  }

  it('too few bars gives no output at all, as TA-Lib does', () => {
    for (const name of CANDLE_PATTERN_NAMES) {
      const def = CANDLE_PATTERNS[name];
      expect(def.compute(bars.slice(0, def.lookback)).every((v) => v === null), name).toBe(true);
      expect(def.compute(bars.slice(0, def.lookback + 1)).at(-1), name).not.toBeNull();
    }
  });

  it('a window of the series gives the same matches as the whole series (averages only look back a few bars)', () => {
    const from = 1234;
    const window = bars.slice(from);
    for (const name of CANDLE_PATTERN_NAMES) {
      const full = CANDLE_PATTERNS[name].compute(bars);
      const part = CANDLE_PATTERNS[name].compute(window);
      const lb = CANDLE_PATTERNS[name].lookback;
      for (let j = lb; j < window.length; j++) expect(part[j], `${name} at ${from + j}`).toBe(full[from + j]);
    }
  });

  it('direction: sign of the output, a doji has none', () => {
    const cases: [CandlePatternName, number, string][] = [
      ['doji', 100, 'neutral'],
      ['hammer', 100, 'bullish'],
      ['engulfing', -80, 'bearish'],
      ['harami', 80, 'bullish'],
      ['marubozu', -100, 'bearish'],
    ];
    for (const [name, value, direction] of cases) expect(patternDirection(name, value)).toBe(direction);
  });
});
