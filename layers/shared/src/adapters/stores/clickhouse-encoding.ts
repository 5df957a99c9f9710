/**
 * How values travel to ClickHouse in JSONEachRow rows, exactly on 18.16 and on current versions.
 *
 * 18.16 reads floats in every text input format with a fast, inexact routine (1.88455995 arrives
 * as 1.8845599499999999), so a float is sent as the hex of its 8 IEEE 754 bytes, little-endian,
 * which the `<table>_in` views turn back with reinterpretAsFloat64(unhex(x)), bit for bit.
 * Decimals (what volumes are summed from) are sent as plain decimal text for toDecimal128.
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
