import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { INDICATOR_PARAMS, INDICATORS, INDICATOR_NAMES, type Bar, type IndicatorName } from '../../layers/shared/src/indicators/indicators.js';

/** Golden vectors from TA-Lib's C library (VWAP from an independent C loop); see tests/fixtures/talib/golden.c. */
interface Golden {
  readonly origin: string;
  readonly input: Record<'ts' | 'open' | 'high' | 'low' | 'close' | 'volume', number[]>;
  readonly outputs: Record<string, { params: Record<string, unknown>; begIdx: number } & Record<string, number[]>>;
}
const golden = JSON.parse(readFileSync(new URL('../fixtures/talib/golden.json', import.meta.url), 'utf8')) as Golden;
const bars: Bar[] = golden.input.close.map((close, i) => ({
  ts: golden.input.ts[i]!,
  open: golden.input.open[i]!,
  high: golden.input.high[i]!,
  low: golden.input.low[i]!,
  close,
  volume: golden.input.volume[i]!,
}));

/** golden output name -> (indicator, its column); TA-Lib's PLUS_DI/MINUS_DI are ADX's extra columns here. */
const CASES: readonly { golden: string; indicator: IndicatorName; columns: Record<string, string> }[] = [
  { golden: 'sma', indicator: 'sma', columns: { value: 'value' } },
  { golden: 'ema', indicator: 'ema', columns: { value: 'value' } },
  { golden: 'rsi', indicator: 'rsi', columns: { value: 'value' } },
  { golden: 'macd', indicator: 'macd', columns: { macd: 'macd', signal: 'signal', histogram: 'histogram' } },
  { golden: 'bbands', indicator: 'bbands', columns: { upper: 'upper', middle: 'middle', lower: 'lower' } },
  { golden: 'atr', indicator: 'atr', columns: { value: 'value' } },
  { golden: 'adx', indicator: 'adx', columns: { value: 'adx' } },
  { golden: 'plus_di', indicator: 'adx', columns: { value: 'plusDI' } },
  { golden: 'minus_di', indicator: 'adx', columns: { value: 'minusDI' } },
  { golden: 'stoch', indicator: 'stoch', columns: { k: 'k', d: 'd' } },
  { golden: 'obv', indicator: 'obv', columns: { value: 'value' } },
  { golden: 'vwap', indicator: 'vwap', columns: { value: 'value' } },
];

describe(`indicators against ${golden.origin}`, () => {
  it('covers every indicator offered', () => {
    expect(new Set(CASES.map((c) => c.indicator))).toEqual(new Set(INDICATOR_NAMES));
  });

  for (const c of CASES) {
    it(`${c.golden}: same first bar as TA-Lib and equal within 1e-9 on every bar after it`, () => {
      const ref = golden.outputs[c.golden]!;
      const def = INDICATORS[c.indicator];
      const params = INDICATOR_PARAMS[c.indicator].parse(ref.params) as never;
      const out = def.compute(bars, params);
      if (c.golden === 'adx' || c.golden === 'plus_di' || c.golden === 'minus_di') {
        // PLUS_DI/MINUS_DI start at `period`, ADX at its lookback
        if (c.golden === 'adx') expect(def.lookback(params)).toBe(ref.begIdx);
      } else {
        expect(def.lookback(params)).toBe(ref.begIdx);
      }
      for (const [goldenColumn, column] of Object.entries(c.columns)) {
        const expected = ref[goldenColumn]!;
        const actual = out[column]!;
        expect(actual).toHaveLength(bars.length);
        expect(actual.slice(0, ref.begIdx).every((v) => v === null)).toBe(true);
        let worst = 0;
        for (let j = 0; j < expected.length; j++) {
          const v = actual[ref.begIdx + j];
          expect(v, `${column} at bar ${ref.begIdx + j}`).not.toBeNull();
          worst = Math.max(worst, Math.abs(v! - expected[j]!) / Math.max(1, Math.abs(expected[j]!)));
        }
        expect(worst).toBeLessThan(1e-9);
      }
    });
  }

  it('defaults are the usual ones: RSI 14, MACD 12/26/9, Bollinger 20/2, Stochastic 14/3/3, VWAP per UTC day', () => {
    expect(INDICATOR_PARAMS.rsi.parse({})).toEqual({ period: 14 });
    expect(INDICATOR_PARAMS.macd.parse({})).toEqual({ fast: 12, slow: 26, signal: 9 });
    expect(INDICATOR_PARAMS.bbands.parse({})).toEqual({ period: 20, stdDev: 2 });
    expect(INDICATOR_PARAMS.stoch.parse({})).toEqual({ kPeriod: 14, kSmoothing: 3, dPeriod: 3 });
    expect(INDICATOR_PARAMS.vwap.parse({})).toEqual({ anchor: 'day' });
    expect(INDICATOR_PARAMS.macd.safeParse({ fast: 26, slow: 12 }).success).toBe(false);
  });

  it('a recursive indicator read with its settle bars of history matches the full-history value', () => {
    for (const name of ['ema', 'rsi', 'atr', 'adx', 'macd'] as const) {
      const def = INDICATORS[name];
      const params = INDICATOR_PARAMS[name].parse({}) as never;
      const want = 20;
      const from = bars.length - want - def.lookback(params) - def.settle(params);
      expect(from, name).toBeGreaterThan(0);
      const full = def.compute(bars, params);
      const part = def.compute(bars.slice(from), params);
      const column = def.outputs[0]!;
      for (let j = 1; j <= want; j++) {
        const a = full[column]!.at(-j)!;
        const b = part[column]!.at(-j)!;
        expect(Math.abs(a - b) / Math.max(1, Math.abs(a)), `${name} ${j} from the end`).toBeLessThan(1e-9);
      }
    }
  });

  it('VWAP resets at 00:00 UTC: the first bar of a session is its own typical price', () => {
    const out = INDICATORS.vwap.compute(bars, { anchor: 'day' }).value!;
    const i = bars.findIndex((b) => b.ts % 86_400_000 === 0);
    expect(i).toBeGreaterThan(0);
    const b = bars[i]!;
    expect(out[i]).toBeCloseTo((b.high + b.low + b.close) / 3, 12);
    expect(out[i - 1]).not.toBeCloseTo((bars[i - 1]!.high + bars[i - 1]!.low + bars[i - 1]!.close) / 3, 6);
  });
});
