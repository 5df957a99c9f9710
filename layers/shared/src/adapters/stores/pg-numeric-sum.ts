/**
 * PostgreSQL's `sum(x::numeric)` over float8 values, computed exactly in the client, so a batch's
 * candle volume needs no per-row numeric conversion on the server.
 *
 * `float8::numeric` is the value rounded to 15 significant digits (`%.15g`; C's printf rounds the
 * exact binary value, ties to even). Three ways to that decimal here:
 * - short decimals (what exchange amounts are): when m / 10^k === x, one correctly rounded IEEE
 *   division with m < 10^15 and k <= 15 both exact, x is the nearest double to the decimal
 *   D = m / 10^k of at most 15 digits, and D is the only such decimal that rounds to x (what
 *   DBL_DIG = 15 means), so the 15-digit rounding of x is D: no tie can arise.
 * - one ulp off a short decimal (float arithmetic: 0.1 + 0.2, 0.001 * 9): when m / 10^k is the
 *   double next to x, |x - D| <= ulp + ulp/2, and an ulp is under 0.23 of a unit in the 15th
 *   significant digit (2^-52 * 10^15), so |x - D| < half that unit: the rounding is D, no tie.
 * - otherwise `toPrecision(15)`, which rounds the exact value too but ties up; a tie (the exact
 *   value ends in a 5 at the 16th digit) is checked exactly and rounded to even.
 * Non-finite values and those needing more than MAX_SCALE decimals are refused (`add` returns false).
 */

/** decimals kept: 15 significant digits of amounts down to 1e-15 */
const MAX_SCALE = 30;
const FAST_SCALE = 15;
const POW10: readonly number[] = Array.from({ length: FAST_SCALE + 1 }, (_, k) => 10 ** k);
/** 10^15: 15-digit mantissas stay below it */
const MAX_MANTISSA = 1e15;
/** per-scale partial sums go to BigInt before they could pass 2^53 */
const FLUSH_AT = 2 ** 52;

/** x as `mantissa * 10^-scale` with |mantissa| < 10^15 (or a BigInt when the value is large). */
interface Decimal {
  readonly mantissa: number | bigint;
  readonly scale: number;
}

const float = new DataView(new ArrayBuffer(16));

/** Whether a and b (finite, non-zero) are neighbouring doubles. */
function adjacent(a: number, b: number): boolean {
  float.setFloat64(0, a);
  float.setFloat64(8, b);
  // same sign, bit patterns one apart (in order of magnitude): exact, as the high words differ by <= 1
  const high = float.getUint32(0) - float.getUint32(8);
  if (high > 1 || high < -1) return false;
  const diff = high * 4_294_967_296 + (float.getUint32(4) - float.getUint32(12));
  return diff === 1 || diff === -1;
}

/** Whether x is exactly digits * 10^exp10 (x finite). */
function exactlyEquals(x: number, digits: bigint, exp10: number): boolean {
  float.setFloat64(0, x);
  const hi = float.getUint32(0);
  const lo = float.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased !== 0) mant |= 1n << 52n;
  if (hi >>> 31) mant = -mant;
  const exp2 = (biased === 0 ? 1 : biased) - 1075;
  // mant * 2^exp2 === digits * 10^exp10, cross-multiplied into integers
  let left = mant;
  let right = digits;
  if (exp2 >= 0) left <<= BigInt(exp2);
  else right <<= BigInt(-exp2);
  if (exp10 >= 0) right *= 10n ** BigInt(exp10);
  else left *= 10n ** BigInt(-exp10);
  return left === right;
}

/** The 15-significant-digit decimal PostgreSQL makes of x, or null. */
function numericOf(x: number): Decimal | null {
  for (let k = 0; k <= FAST_SCALE; k++) {
    const m = Math.round(x * POW10[k]!);
    if (Math.abs(m) >= MAX_MANTISSA) break;
    const d = m / POW10[k]!;
    if (d === x || (m !== 0 && adjacent(d, x))) return { mantissa: m, scale: k };
  }
  if (!Number.isFinite(x)) return null;
  // "-1.23450000000000e-7" or "123.450000000000": 15 digits and a decimal exponent
  const text = x.toPrecision(15);
  const e = text.indexOf('e');
  const fixed = e < 0 ? text : text.slice(0, e);
  const point = fixed.indexOf('.');
  const digitsText = point < 0 ? fixed : fixed.slice(0, point) + fixed.slice(point + 1);
  const exp10 = (e < 0 ? 0 : Number(text.slice(e + 1))) - (point < 0 ? 0 : fixed.length - point - 1);
  let digits = Number(digitsText);
  // toPrecision breaks a tie upwards, printf to even: was x exactly halfway below what it gave?
  const magnitude = Math.abs(digits);
  if (magnitude % 2 === 1 && exactlyEquals(x, BigInt(digits) * 10n - (digits < 0 ? -5n : 5n), exp10 - 1)) {
    digits -= Math.sign(digits);
  }
  let scale = -exp10;
  while (scale > 0 && digits % 10 === 0) {
    digits /= 10;
    scale -= 1;
  }
  if (scale < 0) return { mantissa: BigInt(digits) * 10n ** BigInt(-scale), scale: 0 };
  return scale > MAX_SCALE ? null : { mantissa: digits, scale };
}

/** An exact running sum of float8 values as PostgreSQL's numeric sees them. */
export class ExactNumericSum {
  /** integer partial sums per scale: the value is sum(units[k] / 10^k) (+ overflow) */
  private readonly units: number[] = new Array<number>(MAX_SCALE + 1).fill(0);
  private overflow: bigint[] | null = null;
  private maxScale = 0;

  /** Adds x; false (and nothing added) when x is not finite or has too many decimals to keep. */
  add(x: number): boolean {
    const d = numericOf(x);
    if (!d) return false;
    const k = d.scale;
    if (k > this.maxScale) this.maxScale = k;
    if (typeof d.mantissa === 'number') {
      const units = this.units[k]! + d.mantissa;
      if (Math.abs(units) < FLUSH_AT) {
        this.units[k] = units;
        return true;
      }
      this.units[k] = 0;
      this.addBig(k, BigInt(units));
    } else {
      this.addBig(k, d.mantissa);
    }
    return true;
  }

  /** The sum as a decimal literal, e.g. "0.3" (what `numeric` reads back as the same value). */
  toString(): string {
    const scale = this.maxScale;
    let total = 0n;
    for (let k = 0; k <= scale; k++) {
      const units = BigInt(this.units[k]!) + (this.overflow?.[k] ?? 0n);
      if (units !== 0n) total += units * 10n ** BigInt(scale - k);
    }
    const negative = total < 0n;
    const digits = (negative ? -total : total).toString().padStart(scale + 1, '0');
    const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
    return negative ? `-${text}` : text;
  }

  private addBig(k: number, units: bigint): void {
    this.overflow ??= new Array<bigint>(MAX_SCALE + 1).fill(0n);
    this.overflow[k] = this.overflow[k]! + units;
  }
}
