/**
 * How values travel to ClickHouse, exactly on 18.16 and on current versions.
 *
 * Trades (the bulk of every batch) go as RowBinary straight into their table: a double is its
 * 8 IEEE 754 bytes, so nothing is parsed from text on the server and every bit arrives, and a
 * Decimal128(18) is its scaled 128-bit integer. The other tables still take JSONEachRow rows
 * into `<table>_in` views: 18.16 reads floats in every text input format with a fast, inexact
 * routine (1.88455995 arrives as 1.8845599499999999), so there a float is sent as the hex of its
 * 8 IEEE 754 bytes, little-endian, which the views turn back with reinterpretAsFloat64(unhex(x)),
 * and decimals (what volumes are summed from) as plain decimal text for toDecimal128.
 */
import { PlatformError } from '../../domain/errors.js';

/** A number that cannot be sent as the column type needs (non-finite, or outside Decimal128(18)). */
export class ValueEncodingError extends PlatformError {}

const scratch = Buffer.alloc(8);

/** The 16 hex digits of a double's IEEE 754 bytes, little-endian (what unhex + reinterpretAsFloat64 read). */
export function float64Hex(value: number): string {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new ValueEncodingError(`not a number: ${String(value)}`);
  scratch.writeDoubleLE(value);
  return scratch.toString('hex');
}

/** float64Hex, keeping null as null (Nullable columns). */
export function nullableFloat64Hex(value: number | null): string | null {
  return value === null ? null : float64Hex(value);
}

const DECIMALS = 18;
const MAX_INTEGER_DIGITS = 38 - DECIMALS;

/**
 * The decimal Postgres' numeric makes of a float8 (its 15 significant digits), as plain text with
 * at most 18 decimals (rounded half away from zero beyond that), for a Decimal128(18) column.
 */
export function decimalText(value: number): string {
  if (!Number.isFinite(value)) throw new ValueEncodingError(`not a finite number: ${String(value)}`);
  if (value === 0) return '0';
  // Fast path (most amounts): a double's shortest round-trip text with at most 15 significant
  // digits is exactly its 15-digit rounding (the double is within half an ulp, far inside half a
  // unit of the 15th digit), so it is the answer as it stands when it is plain and has <= 18 decimals.
  const shortest = String(value);
  if (isPlainWithin15Digits(shortest)) return shortest;
  const [mantissa, exp] = value.toExponential(14).split('e') as [string, string];
  const negative = mantissa.startsWith('-');
  const digits = mantissa.replace(/^-/, '').replace('.', ''); // 15 digits, d.dddd...
  const exponent = Number(exp);
  if (exponent + 1 > MAX_INTEGER_DIGITS) throw new ValueEncodingError(`${value} is outside Decimal128(${DECIMALS})`);
  // value = 0.digits * 10^(exponent + 1): place the point, then cut at 18 decimals
  const point = exponent + 1;
  let intPart: string;
  let fracPart: string;
  if (point <= 0) {
    intPart = '0';
    fracPart = '0'.repeat(-point) + digits;
  } else if (point >= digits.length) {
    intPart = digits + '0'.repeat(point - digits.length);
    fracPart = '';
  } else {
    intPart = digits.slice(0, point);
    fracPart = digits.slice(point);
  }
  if (fracPart.length > DECIMALS) {
    const roundUp = fracPart.charCodeAt(DECIMALS) >= 53; // '5'
    let kept = BigInt(intPart + fracPart.slice(0, DECIMALS));
    if (roundUp) kept += 1n;
    const text = kept.toString().padStart(DECIMALS + 1, '0');
    intPart = text.slice(0, -DECIMALS);
    fracPart = text.slice(-DECIMALS);
  }
  fracPart = fracPart.replace(/0+$/, '');
  intPart = intPart.replace(/^0+(?=\d)/, '');
  const body = fracPart ? `${intPart}.${fracPart}` : intPart;
  return negative && /[1-9]/.test(body) ? `-${body}` : body;
}

/**
 * True for `-?digits[.digits]` (no exponent) with at most 15 significant digits (trailing zeros
 * of the integer part counted: conservative), at most 18 decimals and 20 integer digits.
 */
function isPlainWithin15Digits(text: string): boolean {
  let significant = 0;
  let integerDigits = 0;
  let decimals = -1;
  for (let i = text.charCodeAt(0) === 45 ? 1 : 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      decimals = 0;
      continue;
    }
    if (c < 48 || c > 57) return false; // 'e', 'Infinity'...
    if (decimals >= 0) decimals++;
    else integerDigits++;
    if (significant > 0 || c !== 48) significant++;
  }
  return significant <= 15 && decimals <= DECIMALS && integerDigits <= MAX_INTEGER_DIGITS;
}

// A lone UTF-16 surrogate has no UTF-8 form; with the u flag a pair is one code point, so \p{Cs}
// matches only lone halves.
const LONE_SURROGATE = /\p{Cs}/u;
const TWO_POW_32 = 2 ** 32;
const DECIMAL128_LIMBS = 8; // 16-bit limbs: limb * 1e9 + carry stays an exact double

/**
 * Builds a ClickHouse RowBinary body (what `INSERT ... FORMAT RowBinary` reads): values are
 * appended column by column, row by row, in the order the INSERT names the columns. Every
 * method refuses a value the column could not hold exactly, with a ValueEncodingError.
 */
export class RowBinaryWriter {
  private buf: Buffer;
  private offset = 0;
  private readonly limbs = new Array<number>(DECIMAL128_LIMBS).fill(0);

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(64, initialBytes));
  }

  /** The body so far (a view of the writer's buffer: use it before writing more). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.offset);
  }

  /** String / LowCardinality(String): LEB128 byte length, then the UTF-8 bytes. */
  string(value: string): this {
    const n = value.length;
    // ASCII, shorter than 128 bytes (ids, symbols, exchanges): one length byte, copied as is
    if (n < 128) {
      this.reserve(1 + n);
      const start = this.offset + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) break;
        this.buf[start + i] = c;
      }
      if (i === n) {
        this.buf[this.offset] = n;
        this.offset = start + n;
        return this;
      }
    }
    // Sent as is, a lone surrogate would reach the server as U+FFFD: a different id, silently.
    if (LONE_SURROGATE.test(value)) throw new ValueEncodingError('string holds a lone UTF-16 surrogate (not valid Unicode)');
    const length = Buffer.byteLength(value, 'utf8');
    this.reserve(5 + length);
    let rest = length;
    while (rest >= 0x80) {
      this.buf[this.offset++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    this.buf[this.offset++] = rest;
    this.offset += this.buf.write(value, this.offset, 'utf8');
    return this;
  }

  /** UInt64 from a non-negative safe integer (ms epochs, counts). */
  uint64(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new ValueEncodingError(`not a UInt64 a double holds exactly: ${String(value)}`);
    this.reserve(8);
    this.buf.writeUInt32LE(value % TWO_POW_32, this.offset);
    this.buf.writeUInt32LE(Math.floor(value / TWO_POW_32), this.offset + 4);
    this.offset += 8;
    return this;
  }

  /** Float64: the 8 IEEE 754 bytes, little-endian (-0, subnormals and infinities included; NaN refused). */
  float64(value: number): this {
    if (typeof value !== 'number' || Number.isNaN(value)) throw new ValueEncodingError(`not a number: ${String(value)}`);
    this.reserve(8);
    this.offset = this.buf.writeDoubleLE(value, this.offset);
    return this;
  }

  /** Enum8 (or Int8): one byte, the enum's value. */
  int8(value: number): this {
    if (!Number.isInteger(value) || value < -128 || value > 127) throw new ValueEncodingError(`not an Int8: ${String(value)}`);
    this.reserve(1);
    this.offset = this.buf.writeInt8(value, this.offset);
    return this;
  }

  /**
   * Decimal128(18) from decimal text (what decimalText makes: `-?digits[.digits]`, at most 18
   * decimals, |value| < 1e20): the value times 1e18 as a 128-bit two's complement integer, LE.
   */
  decimal128(text: string): this {
    const limbs = this.limbs;
    limbs.fill(0);
    const negative = text.charCodeAt(0) === 45;
    let decimals = -1;
    let integerDigits = 0;
    let digits = 0; // significant
    let chunk = 0;
    let chunkLength = 0;
    for (let i = negative ? 1 : 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 46 && decimals < 0 && integerDigits > 0) {
        decimals = 0;
        continue;
      }
      if (c < 48 || c > 57) throw new ValueEncodingError(`not plain decimal text: ${text}`);
      if (decimals >= 0) decimals++;
      else integerDigits++;
      if (digits > 0 || c !== 48) digits++;
      chunk = chunk * 10 + (c - 48);
      if (++chunkLength === 9) {
        this.multiplyAdd(1e9, chunk);
        chunk = 0;
        chunkLength = 0;
      }
    }
    if (integerDigits === 0 || decimals === 0) throw new ValueEncodingError(`not plain decimal text: ${text}`);
    if (decimals > DECIMALS || digits > 38 || (decimals < 0 ? digits : digits - decimals) > MAX_INTEGER_DIGITS) {
      throw new ValueEncodingError(`${text} does not fit Decimal128(${DECIMALS})`);
    }
    if (chunkLength > 0) this.multiplyAdd(10 ** chunkLength, chunk);
    for (let scale = DECIMALS - Math.max(decimals, 0); scale > 0; scale -= 9) this.multiplyAdd(10 ** Math.min(scale, 9), 0);
    if (negative) {
      let carry = 1;
      for (let k = 0; k < DECIMAL128_LIMBS; k++) {
        const v = (~limbs[k]! & 0xffff) + carry;
        limbs[k] = v & 0xffff;
        carry = v >>> 16;
      }
    }
    this.reserve(16);
    for (let k = 0; k < DECIMAL128_LIMBS; k++) this.buf.writeUInt16LE(limbs[k]!, this.offset + 2 * k);
    this.offset += 16;
    return this;
  }

  /** limbs = limbs * factor + add (factor <= 1e9, so every partial product is an exact double). */
  private multiplyAdd(factor: number, add: number): void {
    const limbs = this.limbs;
    let carry = add;
    for (let k = 0; k < DECIMAL128_LIMBS; k++) {
      const v = limbs[k]! * factor + carry;
      limbs[k] = v % 0x10000;
      carry = Math.floor(v / 0x10000);
    }
  }

  private reserve(bytes: number): void {
    if (this.offset + bytes <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.offset + bytes));
    this.buf.copy(next, 0, 0, this.offset);
    this.buf = next;
  }
}
