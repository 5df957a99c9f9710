import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { okxBookChecksum, okxDecimal } from '../../local/sim/protocols/okx.js';

type Level = readonly [string, string];

describe("OKX order-book checksum (OKX's documented CRC32 algorithm)", () => {
  // OKX's docs work two examples: with equal depth the levels alternate bid, ask, bid, ask...
  //   bids [3366.1 x 7, 3366 x 6], asks [3366.8 x 9, 3368 x 8]
  //   -> "3366.1:7:3366.8:9:3366:6:3368:8" -> checksum -1881014294 (crc32 0x8FE1FFEA read as a signed int32)
  // and with fewer bids than asks the missing bids are simply left out:
  //   bids [3366.1 x 7], asks [3366.8 x 9, 3368 x 8, 3372 x 8]
  //   -> "3366.1:7:3366.8:9:3368:8:3372:8" -> checksum 831078360
  it('reproduces the documented example with equal depth on both sides', () => {
    const bids: Level[] = [
      ['3366.1', '7'],
      ['3366', '6'],
    ];
    const asks: Level[] = [
      ['3366.8', '9'],
      ['3368', '8'],
    ];
    expect(okxBookChecksum(bids, asks)).toBe(-1881014294);
    // the unsigned CRC32 of the documented string is above 2^31: OKX sends it as a signed int32
    expect(zlib.crc32('3366.1:7:3366.8:9:3366:6:3368:8')).toBe(2413953002);
  });

  it('reproduces the documented example where one side is shorter', () => {
    expect(
      okxBookChecksum(
        [['3366.1', '7']],
        [
          ['3366.8', '9'],
          ['3368', '8'],
          ['3372', '8'],
        ],
      ),
    ).toBe(831078360);
  });

  it('covers only the best 25 levels of each side', () => {
    const side = (start: number, step: number): Level[] => Array.from({ length: 40 }, (_, i) => [String(start + i * step), String(i + 1)] as const);
    const bids = side(1000, -1);
    const asks = side(1001, 1);
    const top25 = okxBookChecksum(bids.slice(0, 25), asks.slice(0, 25));
    expect(okxBookChecksum(bids, asks)).toBe(top25);
    expect(okxBookChecksum(bids.slice(0, 24), asks.slice(0, 25))).not.toBe(top25);
    const pieces = bids.slice(0, 25).flatMap((b, i) => [...b, ...asks[i]!]);
    expect(top25).toBe(zlib.crc32(pieces.join(':')) | 0);
  });

  it('is 0 for an empty book and depends on the exact strings sent', () => {
    expect(okxBookChecksum([], [])).toBe(0);
    expect(okxBookChecksum([['3366.1', '7']], [])).not.toBe(okxBookChecksum([['3366.10', '7']], []));
  });
});

describe('OKX decimal formatting', () => {
  it('drops trailing zeros like the OKX API', () => {
    expect(okxDecimal('65000.10')).toBe('65000.1');
    expect(okxDecimal('65000.00')).toBe('65000');
    expect(okxDecimal('0.00100')).toBe('0.001');
    expect(okxDecimal('120')).toBe('120');
    expect(okxDecimal('-0.000')).toBe('0');
  });
});
