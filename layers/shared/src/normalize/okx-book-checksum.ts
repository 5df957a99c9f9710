/**
 * OKX's order-book checksum (v5 `books` channel), pure: shared by the simulator, which sends it,
 * and the collector, which verifies ccxt's book against it (ccxt ignores the field).
 *
 * OKX: CRC32 of the best 25 bids and asks interleaved as `bidPx:bidSz:askPx:askSz:...` (a side
 * with fewer levels simply stops contributing), over the price and size strings exactly as sent,
 * as a signed 32-bit integer. OKX prints decimals without trailing zeros, so a level ccxt parsed
 * into numbers prints back to the same string (`okxLevelString`) unless OKX sent a padded form,
 * which `isCanonicalOkxDecimal` tells.
 */
import { crc32 } from 'node:zlib';

/** Levels per side that OKX's `books` checksum covers. */
export const OKX_CHECKSUM_LEVELS = 25;

/** CRC-32 (IEEE, zlib's) of an ASCII string, as a signed 32-bit integer. */
export function crc32Signed(text: string): number {
  return crc32(text) | 0;
}

/** The string OKX's checksum is computed over, from string levels. */
export function okxChecksumString(bids: readonly (readonly [string, string])[], asks: readonly (readonly [string, string])[]): string {
  const parts: string[] = [];
  for (let i = 0; i < OKX_CHECKSUM_LEVELS; i++) {
    const bid = bids[i];
    if (bid) parts.push(bid[0], bid[1]);
    const ask = asks[i];
    if (ask) parts.push(ask[0], ask[1]);
  }
  return parts.join(':');
}

/** OKX's checksum of levels given as the strings sent. */
export function okxBookChecksum(bids: readonly (readonly [string, string])[], asks: readonly (readonly [string, string])[]): number {
  return crc32Signed(okxChecksumString(bids, asks));
}

/**
 * A number as OKX prints it: plain decimal, no exponent, no trailing zeros. JavaScript's shortest
 * round-trip form is that already, except below 1e-6 and from 1e21 where it switches to exponents.
 */
export function okxLevelString(n: number): string {
  const s = String(n);
  const e = s.indexOf('e');
  if (e < 0) return s;
  const negative = s.startsWith('-');
  const mantissa = s.slice(negative ? 1 : 0, e);
  const exponent = Number(s.slice(e + 1));
  const [int = '', frac = ''] = mantissa.split('.');
  const digits = int + frac;
  const point = int.length + exponent;
  let out: string;
  if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  return negative ? `-${out}` : out;
}

/** True when a decimal string as sent is what `okxLevelString` prints for its value. */
export function isCanonicalOkxDecimal(text: string): boolean {
  const n = Number(text);
  return Number.isFinite(n) && okxLevelString(n) === text;
}

/**
 * OKX's checksum of a parsed book (ccxt's `[price, amount]` numbers, best first), or null when a
 * level is not a finite number.
 */
export function okxBookChecksumOfNumbers(bids: readonly (readonly unknown[])[], asks: readonly (readonly unknown[])[]): number | null {
  const parts: string[] = [];
  const push = (level: readonly unknown[] | undefined): boolean => {
    if (!level) return true;
    const [price, amount] = level;
    if (typeof price !== 'number' || typeof amount !== 'number' || !Number.isFinite(price) || !Number.isFinite(amount)) return false;
    parts.push(okxLevelString(price), okxLevelString(amount));
    return true;
  };
  for (let i = 0; i < OKX_CHECKSUM_LEVELS; i++) {
    if (!push(bids[i]) || !push(asks[i])) return null;
  }
  return crc32Signed(parts.join(':'));
}
