import { describe, expect, it } from 'vitest';
import {
  crc32Signed,
  isCanonicalOkxDecimal,
  okxBookChecksum,
  okxBookChecksumOfNumbers,
  okxChecksumString,
  okxLevelString,
} from '../../layers/shared/src/normalize/okx-book-checksum.js';
import { okxBookChecksum as simChecksum } from '../../local/sim/protocols/okx.js';

type Level = readonly [string, string];

describe("OKX book checksum (shared module, OKX's documented examples)", () => {
  // OKX v5 docs, "Checksum": with equal depth the levels alternate bid, ask, bid, ask...
  //   bids [3366.1 x 7, 3366 x 6], asks [3366.8 x 9, 3368 x 8] -> "3366.1:7:3366.8:9:3366:6:3368:8" -> -1881014294
  // and a shorter side simply stops contributing:
  //   bids [3366.1 x 7], asks [3366.8 x 9, 3368 x 8, 3372 x 8] -> "3366.1:7:3366.8:9:3368:8:3372:8" -> 831078360
  const bids: Level[] = [
    ['3366.1', '7'],
    ['3366', '6'],
  ];
  const asks: Level[] = [
    ['3366.8', '9'],
    ['3368', '8'],
  ];

  it('reproduces the documented example with equal depth', () => {
    expect(okxChecksumString(bids, asks)).toBe('3366.1:7:3366.8:9:3366:6:3368:8');
    expect(okxBookChecksum(bids, asks)).toBe(-1881014294);
  });

  it('reproduces the documented example with a shorter side', () => {
    const longer: Level[] = [...asks, ['3372', '8']];
    expect(okxChecksumString([['3366.1', '7']], longer)).toBe('3366.1:7:3366.8:9:3368:8:3372:8');
    expect(okxBookChecksum([['3366.1', '7']], longer)).toBe(831078360);
  });

  it('is CRC-32 (IEEE) as a signed integer, and the simulator uses this very function', () => {
    // the standard check values of CRC-32/ISO-HDLC: 0xCBF43926 and 0x414FA339, read as int32
    expect(crc32Signed('')).toBe(0);
    expect(crc32Signed('123456789')).toBe(0xcbf43926 | 0);
    expect(crc32Signed('The quick brown fox jumps over the lazy dog')).toBe(0x414fa339);
    expect(simChecksum).toBe(okxBookChecksum);
  });

  it('is 0 for an empty book and depends on the exact strings sent', () => {
    expect(okxBookChecksum([], [])).toBe(0);
    expect(okxBookChecksum([['3366.1', '7']], [])).not.toBe(okxBookChecksum([['3366.10', '7']], []));
  });

  it('covers only the best 25 levels of each side', () => {
    const side = (start: number, step: number): Level[] => Array.from({ length: 40 }, (_, i) => [String(start + i * step), String(i + 1)] as const);
    const b = side(1000, -1);
    const a = side(1001, 1);
    expect(okxBookChecksum(b, a)).toBe(okxBookChecksum(b.slice(0, 25), a.slice(0, 25)));
    expect(okxBookChecksum(b.slice(0, 24), a)).not.toBe(okxBookChecksum(b, a));
  });

  it("a parsed book (ccxt's numbers) gives the checksum of the strings OKX sent", () => {
    const numeric = (side: Level[]) => side.map(([p, s]) => [Number(p), Number(s)]);
    expect(okxBookChecksumOfNumbers(numeric(bids), numeric(asks))).toBe(-1881014294);
    const tiny: Level[] = [['0.00000012', '0.0000001']];
    const huge: Level[] = [['2000000000000000000000', '1']];
    expect(okxBookChecksumOfNumbers(numeric(tiny), numeric(huge))).toBe(okxBookChecksum(tiny, huge));
    expect(okxBookChecksumOfNumbers([[Number.NaN, 1]], [])).toBeNull();
  });

  it('prints numbers as OKX does and tells padded strings apart', () => {
    expect(okxLevelString(65000.1)).toBe('65000.1');
    expect(okxLevelString(1e-7)).toBe('0.0000001');
    expect(okxLevelString(1.5e-8)).toBe('0.000000015');
    expect(okxLevelString(2e21)).toBe('2000000000000000000000');
    expect(okxLevelString(0)).toBe('0');
    expect(isCanonicalOkxDecimal('65000.1')).toBe(true);
    expect(isCanonicalOkxDecimal('0.0000001')).toBe(true);
    expect(isCanonicalOkxDecimal('65000.10')).toBe(false);
    expect(isCanonicalOkxDecimal('1.0')).toBe(false);
    expect(isCanonicalOkxDecimal('abc')).toBe(false);
  });
});
