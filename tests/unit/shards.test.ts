import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseMarkets } from '../../layers/shared/src/config/markets.js';
import {
  formatMarkets,
  formatShard,
  MAX_SHARDS,
  shardScore,
  parseShard,
  shardMarkets,
  shardOfMarket,
  ShardSchema,
  shardSizes,
  SINGLE_SHARD,
  type Shard,
} from '../../layers/shared/src/config/shards.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';

const LIVE = parseMarkets('binance:BTC/USDT,ETH/USDT;coinbase:BTC/USD,ETH/USD;kraken:BTC/USD,ETH/USD');

type Markets = Map<string, string[]>;

/** `exchange:symbol` keys of a market map, in its order. */
function keys(markets: ReadonlyMap<string, readonly string[]>): string[] {
  return [...markets].flatMap(([exchange, symbols]) => symbols.map((s) => `${exchange}:${s}`));
}

function toMarkets(pairs: readonly (readonly [string, string])[]): Markets {
  const markets: Markets = new Map();
  for (const [exchange, symbol] of pairs) markets.set(exchange, [...(markets.get(exchange) ?? []), symbol]);
  return markets;
}

/** Every shard of `count`, i = 0 .. count-1. */
function allShards(count: number): Shard[] {
  return Array.from({ length: count }, (_, index) => ({ index, count }));
}

/** Shard index of every market of `markets` under `count` shards. */
function assignment(markets: ReadonlyMap<string, readonly string[]>, count: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [exchange, symbols] of markets) for (const s of symbols) out.set(`${exchange}:${s}`, shardOfMarket(exchange, s, count));
  return out;
}

/** A large, realistic-looking set: `exchanges` ccxt ids times `perExchange` symbols. */
function syntheticMarkets(exchanges: number, perExchange: number): Markets {
  const ids = ['binance', 'okx', 'bybit', 'coinbase', 'kraken', 'bitget', 'kucoin', 'gate', 'mexc', 'htx', 'bitfinex', 'bitstamp', 'cryptocom', 'gemini', 'bitmex', 'deribit', 'upbit', 'bithumb', 'woo', 'phemex'];
  const markets: Markets = new Map();
  for (const id of ids.slice(0, exchanges)) {
    markets.set(
      id,
      Array.from({ length: perExchange }, (_, i) => `C${i}/${i % 3 === 0 ? 'USDT' : i % 3 === 1 ? 'USDC' : 'BTC'}${i % 7 === 0 ? ':USDT' : ''}`),
    );
  }
  return markets;
}

const exchangeArb = fc.constantFrom('binance', 'okx', 'bybit', 'coinbase', 'kraken', 'bitget', 'kucoin', 'gate');
const symbolArb = fc.stringMatching(/^[A-Z0-9]{1,6}\/[A-Z]{2,5}(:[A-Z]{3,4})?$/);
const marketsArb = (minLength: number, maxLength: number) =>
  fc
    .uniqueArray(fc.tuple(exchangeArb, symbolArb), { minLength, maxLength, selector: ([e, s]) => `${e}:${s}` })
    .map((pairs) => toMarkets(pairs));

describe('parseShard', () => {
  it('reads INDEX/COUNT with INDEX from 0, and formatShard writes it back', () => {
    expect(parseShard('0/1')).toEqual(SINGLE_SHARD);
    expect(allShards(4).map((s) => parseShard(formatShard(s)))).toEqual(allShards(4));
    expect(parseShard(' 3/4 ')).toEqual({ index: 3, count: 4 });
    expect(parseShard(`${MAX_SHARDS - 1}/${MAX_SHARDS}`)).toEqual({ index: MAX_SHARDS - 1, count: MAX_SHARDS });
  });

  it('rejects an INDEX that is not below COUNT, listing the valid ones', () => {
    expect(() => parseShard('3/3')).toThrow(ConfigError);
    expect(() => parseShard('3/3')).toThrow("shard '3/3': INDEX counts from 0, so with 3 shards it is 0/3, 1/3 or 2/3");
    expect(() => parseShard('1/1')).toThrow("shard '1/1': INDEX counts from 0, so with 1 shard it is 0/1");
    expect(() => parseShard('12/12')).toThrow('with 12 shards it is 0/12, 1/12, ... or 11/12');
  });

  it('rejects a COUNT of 0 or past the maximum', () => {
    expect(() => parseShard('0/0')).toThrow("shard '0/0': COUNT must be 1 to 1024, got 0");
    expect(() => parseShard(`0/${MAX_SHARDS + 1}`)).toThrow(`COUNT must be 1 to 1024, got ${MAX_SHARDS + 1}`);
  });

  it('rejects anything not two whole numbers around a slash, saying what is valid', () => {
    for (const bad of ['a/b', '-1/4', '1/-4', '1.0/4', '+1/4', '1/4/2', '1', '1/', '/4', '', ' ', '1 / 4', '0x1/4', '1e2/200', '99999999/2']) {
      let error: unknown;
      try {
        parseShard(bad);
      } catch (e) {
        error = e;
      }
      expect(error, bad).toBeInstanceOf(ConfigError);
      expect((error as Error).message, bad).toContain('INDEX/COUNT');
      expect((error as Error).message, bad).toContain('0/4, 1/4, 2/4 and 3/4 for four shards');
    }
  });

  it('gives its message as a zod issue in an environment schema', () => {
    const schema = z.object({ SHARD: ShardSchema.optional() });
    expect(schema.parse({ SHARD: '1/2' })).toEqual({ SHARD: { index: 1, count: 2 } });
    expect(schema.parse({})).toEqual({});
    const bad = schema.safeParse({ SHARD: '2/2' });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]).toMatchObject({ path: ['SHARD'], message: expect.stringContaining('0/2 or 1/2') });
  });
});

describe('the rendezvous rule', () => {
  it('scores by SHA-256 of the shard index and market key (a contract between processes; values from sha256sum)', () => {
    expect(shardScore('binance:BTC/USDT', 0)).toBe(0x165ad003);
    expect(shardScore('binance:BTC/USDT', 1)).toBe(0x1dbad3ab);
    expect(shardScore('okx:ETH/USDT', 3)).toBe(0xd82d1dbf);
  });

  it('splits the stage markets the same way every time (changing this reshuffles deployed shards)', () => {
    expect(shardMarkets(LIVE, { index: 0, count: 2 })).toEqual(new Map([['coinbase', ['ETH/USD']], ['kraken', ['BTC/USD', 'ETH/USD']]]));
    expect(shardMarkets(LIVE, { index: 1, count: 2 })).toEqual(new Map([['binance', ['BTC/USDT', 'ETH/USDT']], ['coinbase', ['BTC/USD']]]));
    expect(shardSizes(LIVE, 2)).toEqual([3, 3]);
    expect(shardSizes(LIVE, 3)).toEqual([2, 2, 2]);
  });

  it('keeps the whole set in one shard, in order, when COUNT is 1', () => {
    expect(shardMarkets(LIVE, SINGLE_SHARD)).toEqual(LIVE);
    expect(formatMarkets(LIVE)).toBe('binance:BTC/USDT,ETH/USDT;coinbase:BTC/USD,ETH/USD;kraken:BTC/USD,ETH/USD');
    expect(shardSizes(LIVE, 1)).toEqual([6]);
  });

  it('puts every market in exactly one shard, for any set and any COUNT, keeping the configured order', () => {
    fc.assert(
      fc.property(marketsArb(1, 60), fc.integer({ min: 1, max: 40 }), (markets, count) => {
        const parts = allShards(count).map((shard) => shardMarkets(markets, shard));
        const seen = parts.flatMap((p) => keys(p));
        expect(seen.sort()).toEqual(keys(markets).sort());
        expect(new Set(seen).size).toBe(seen.length);
        const order = keys(markets);
        for (const part of parts) {
          const k = keys(part);
          // a shard keeps the set's order: its keys appear in the same relative order as in the set
          expect(k).toEqual(order.filter((key) => k.includes(key)));
          for (const symbols of part.values()) expect(symbols.length).toBeGreaterThan(0);
        }
        expect(shardSizes(markets, count)).toEqual(parts.map((p) => keys(p).length));
        // what a deployment hands each shard reads back as that part, and the rule keeps all of it
        parts.forEach((part, index) => {
          if (part.size === 0) return;
          expect(parseMarkets(formatMarkets(part))).toEqual(part);
          expect(shardMarkets(part, { index, count })).toEqual(part);
        });
      }),
      { numRuns: 150 },
    );
  });

  it('moves no other market when one is added or removed', () => {
    fc.assert(
      fc.property(marketsArb(2, 60), fc.integer({ min: 1, max: 40 }), (markets, count) => {
        const [first, ...rest] = [...markets].flatMap(([e, ss]) => ss.map((s) => [e, s] as const));
        const without = toMarkets(rest);
        const before = assignment(without, count);
        const after = assignment(markets, count);
        for (const [key, shard] of before) expect(after.get(key), key).toBe(shard);
        expect(after.get(`${first![0]}:${first![1]}`)).toBe(shardOfMarket(first![0], first![1], count));
      }),
      { numRuns: 150 },
    );
  });

  it('going from n to n+1 shards moves only markets into the new shard, about 1/(n+1) of them', () => {
    const markets = syntheticMarkets(20, 500); // 10,000 markets
    const total = keys(markets).length;
    let previous = assignment(markets, 1);
    for (let n = 1; n <= 24; n++) {
      const next = assignment(markets, n + 1);
      let moved = 0;
      for (const [key, shard] of next) {
        if (shard !== previous.get(key)) {
          moved += 1;
          expect(shard, key).toBe(n);
        }
      }
      // binomial(total, 1/(n+1)): +-30% is over 7 standard deviations at n = 24
      const expected = total / (n + 1);
      expect(moved, `n=${n}`).toBeGreaterThan(0.7 * expected);
      expect(moved, `n=${n}`).toBeLessThan(1.3 * expected);
      previous = next;
    }
  });

  it('gives every shard of a large set a share within 25% of the even one', () => {
    const markets = syntheticMarkets(20, 500);
    const total = keys(markets).length;
    for (let count = 2; count <= 32; count++) {
      const sizes = shardSizes(markets, count);
      const even = total / count;
      // binomial: +-25% is over 4.4 standard deviations at 32 shards
      expect(Math.min(...sizes), `count=${count}`).toBeGreaterThan(0.75 * even);
      expect(Math.max(...sizes), `count=${count}`).toBeLessThan(1.25 * even);
    }
  });

  it('gives every shard a share within half of the even one whenever there are 200 markets a shard', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }).chain((count) => fc.tuple(fc.constant(count), marketsArb(200 * count, 200 * count))), ([count, markets]) => {
        const sizes = shardSizes(markets, count);
        const even = keys(markets).length / count;
        expect(Math.min(...sizes)).toBeGreaterThan(0.5 * even);
        expect(Math.max(...sizes)).toBeLessThan(1.5 * even);
      }),
      { numRuns: 25 },
    );
  });

  it('rejects a shard count that is not a whole number >= 1', () => {
    expect(() => shardOfMarket('binance', 'BTC/USDT', 0)).toThrow(RangeError);
    expect(() => shardOfMarket('binance', 'BTC/USDT', 1.5)).toThrow(/whole number >= 1, got 1.5/);
  });
});
