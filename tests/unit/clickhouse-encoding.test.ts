import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValueEncodingError, decimalText, float64Hex } from '../../layers/shared/src/adapters/stores/clickhouse-encoding.js';

describe('float64Hex', () => {
  it('is the little-endian IEEE 754 bytes, so every double (−0, subnormals) survives', () => {
    expect(float64Hex(1)).toBe('000000000000f03f');
    expect(float64Hex(-0)).toBe('0000000000000080');
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (x) => {
        expect(Object.is(Buffer.from(float64Hex(x), 'hex').readDoubleLE(0), x)).toBe(true);
      }),
    );
    expect(() => float64Hex(Number.NaN)).toThrow(ValueEncodingError);
  });
});

describe('decimalText', () => {
  it("is Postgres' float8::numeric: 15 significant digits, plain text", () => {
    expect(decimalText(0.1)).toBe('0.1');
    expect(decimalText(0.1 + 0.2)).toBe('0.3');
    expect(decimalText(1.88455995)).toBe('1.88455995');
    expect(decimalText(1e-7)).toBe('0.0000001');
    expect(decimalText(123456789012345678)).toBe('123456789012346000');
    expect(decimalText(-2.5)).toBe('-2.5');
    expect(decimalText(0)).toBe('0');
  });

  it('keeps at most 18 decimals, rounding beyond', () => {
    expect(decimalText(1.2345678901234567e-5)).toBe('0.000012345678901235');
    expect(decimalText(4e-19)).toBe('0');
    expect(decimalText(6e-19)).toBe('0.000000000000000001');
  });

  it('refuses what Decimal128(18) cannot hold', () => {
    expect(() => decimalText(1e21)).toThrow(ValueEncodingError);
    expect(() => decimalText(Infinity)).toThrow(ValueEncodingError);
  });

  it('agrees with the 15-digit value for any amount from 0.001 (where 15 digits fit in 18 decimals)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-3, max: 1e15, noNaN: true }), (x) => {
        const text = decimalText(x);
        expect(text).toMatch(/^\d+(\.\d{1,18})?$/);
        expect(Number(text)).toBe(Number(x.toPrecision(15)));
      }),
      { numRuns: 2_000 },
    );
  });
});
