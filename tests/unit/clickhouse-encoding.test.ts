import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RowBinaryWriter, ValueEncodingError, decimalText, float64Hex } from '../../layers/shared/src/adapters/stores/clickhouse-encoding.js';

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

/**
 * Independent oracle for decimalText: the 15 significant digits toExponential gives (correctly
 * rounded), scaled to 18 decimals with BigInt, rounded half away from zero, trailing zeros dropped.
 */
function decimalOracle(x: number): string {
  if (x === 0) return '0';
  const [mantissa, exp] = x.toExponential(14).split('e') as [string, string];
  const negative = mantissa.startsWith('-');
  const digits = BigInt(mantissa.replace('-', '').replace('.', ''));
  const shift = Number(exp) - 14 + 18; // value * 1e18 = digits * 10^shift
  let scaled: bigint;
  if (shift >= 0) scaled = digits * 10n ** BigInt(shift);
  else {
    const div = 10n ** BigInt(-shift);
    scaled = digits / div + ((digits % div) * 2n >= div ? 1n : 0n);
  }
  const text = scaled.toString().padStart(19, '0');
  const body = `${text.slice(0, -18).replace(/^0+(?=\d)/, '')}.${text.slice(-18)}`.replace(/\.?0+$/, '');
  return negative && scaled !== 0n ? `-${body}` : body;
}

describe('decimalText against an independent oracle', () => {
  it('agrees for doubles of every magnitude it accepts, both signs (fast path and general path)', () => {
    const magnitudes = fc
      .tuple(fc.double({ min: 1, max: 10, noNaN: true }), fc.integer({ min: -25, max: 19 }), fc.boolean())
      .map(([m, e, neg]) => (neg ? -1 : 1) * m * 10 ** e)
      .filter((x) => Math.abs(Number(x.toPrecision(15))) < 1e20); // its 15-digit value must fit Decimal128(18)
    const decimals = fc.tuple(fc.integer({ min: 0, max: 10 ** 9 }), fc.integer({ min: 0, max: 12 })).map(([n, d]) => n / 10 ** d);
    fc.assert(
      fc.property(fc.oneof(magnitudes, decimals, fc.double({ min: -1e19, max: 1e19, noNaN: true })), (x) => {
        expect(decimalText(x)).toBe(decimalOracle(x));
      }),
      { numRuns: 20_000 },
    );
    for (const x of [0.1, 0.30000000000000004, 1e-7, 5e-324, 123456789012345678, 1e19, 99999999999999.99, 1.0000000000000002, 2 ** 53]) {
      expect(decimalText(x)).toBe(decimalOracle(x));
    }
  });

  it('refuses what Decimal128(18) cannot hold on the fast path too', () => {
    expect(() => decimalText(1e20)).toThrow(ValueEncodingError);
    expect(() => decimalText(-123456789012345678901)).toThrow(ValueEncodingError);
  });
});

/** Reads back what RowBinaryWriter wrote, for the tests. */
class RowBinaryReader {
  private offset = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.offset === this.buf.length;
  }
  string(): string {
    let length = 0;
    let shift = 0;
    for (;;) {
      const byte = this.buf[this.offset++]!;
      length += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80) break;
    }
    const text = this.buf.toString('utf8', this.offset, this.offset + length);
    this.offset += length;
    return text;
  }
  uint64(): bigint {
    const v = this.buf.readBigUInt64LE(this.offset);
    this.offset += 8;
    return v;
  }
  float64(): number {
    const v = this.buf.readDoubleLE(this.offset);
    this.offset += 8;
    return v;
  }
  int8(): number {
    return this.buf.readInt8(this.offset++);
  }
  int128(): bigint {
    const lo = this.buf.readBigUInt64LE(this.offset);
    const hi = this.buf.readBigInt64LE(this.offset + 8);
    this.offset += 16;
    return (hi << 64n) + lo;
  }
}

/** The Decimal128(18) integer of plain decimal text, with BigInt. */
function scaledDecimal(text: string): bigint {
  const negative = text.startsWith('-');
  const [int, frac = ''] = text.replace('-', '').split('.') as [string, string?];
  const v = BigInt(int + frac.padEnd(18, '0'));
  return negative ? -v : v;
}

describe('RowBinaryWriter', () => {
  it('writes strings as LEB128 length + UTF-8, any length, any well-formed text', () => {
    const wellFormed = fc.string({ unit: 'binary', maxLength: 400 }).filter((s) => !/\p{Cs}/u.test(s));
    fc.assert(
      fc.property(fc.array(fc.oneof(wellFormed, fc.string({ maxLength: 300 }), fc.constant('x'.repeat(20_000))), { maxLength: 20 }), (strings) => {
        const w = new RowBinaryWriter(64);
        for (const s of strings) w.string(s);
        const r = new RowBinaryReader(w.bytes());
        for (const s of strings) expect(r.string()).toBe(s);
        expect(r.done).toBe(true);
      }),
      { numRuns: 500 },
    );
    expect([...new RowBinaryWriter().string('é').bytes()]).toEqual([2, 0xc3, 0xa9]);
    expect([...new RowBinaryWriter().string('a'.repeat(128)).bytes().subarray(0, 2)]).toEqual([0x80, 0x01]);
  });

  it('refuses a lone surrogate instead of sending U+FFFD (a different id)', () => {
    expect(() => new RowBinaryWriter().string('id\ud800')).toThrow(ValueEncodingError);
    expect(() => new RowBinaryWriter().string('\udc00')).toThrow(ValueEncodingError);
    expect(new RowBinaryWriter().string('😀').bytes().length).toBe(5);
  });

  it('writes every double bit for bit, safe integers as UInt64, and Enum8 bytes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.double({ noNaN: true }), fc.maxSafeNat(), fc.integer({ min: -128, max: 127 }))), (rows) => {
        const w = new RowBinaryWriter(16);
        for (const [d, n, b] of rows) w.float64(d).uint64(n).int8(b);
        const r = new RowBinaryReader(w.bytes());
        for (const [d, n, b] of rows) {
          expect(Object.is(r.float64(), d)).toBe(true);
          expect(r.uint64()).toBe(BigInt(n));
          expect(r.int8()).toBe(b);
        }
        expect(r.done).toBe(true);
      }),
    );
    for (const bad of [-1, 0.5, 2 ** 53, Number.NaN]) expect(() => new RowBinaryWriter().uint64(bad)).toThrow(ValueEncodingError);
    expect(() => new RowBinaryWriter().float64(Number.NaN)).toThrow(ValueEncodingError);
    expect(() => new RowBinaryWriter().int8(128)).toThrow(ValueEncodingError);
  });

  it('writes Decimal128(18) as the scaled 128-bit two\'s complement integer of decimalText', () => {
    fc.assert(
      fc.property(fc.double({ min: -9e19, max: 9e19, noNaN: true }), (x) => {
        const text = decimalText(x);
        expect(new RowBinaryReader(new RowBinaryWriter().decimal128(text).bytes()).int128()).toBe(scaledDecimal(text));
      }),
      { numRuns: 5_000 },
    );
    for (const text of ['0', '-0.000000000000000001', '99999999999999999999.999999999999999999', '-99999999999999999999.999999999999999999', '1', '0.1']) {
      expect(new RowBinaryReader(new RowBinaryWriter().decimal128(text).bytes()).int128()).toBe(scaledDecimal(text));
    }
    for (const bad of ['0.0000000000000000001', '100000000000000000000', '1e5', '', '-', '1.2.3', '.5', '5.', '-.1']) {
      expect(() => new RowBinaryWriter().decimal128(bad), bad).toThrow(ValueEncodingError);
    }
  });
});
