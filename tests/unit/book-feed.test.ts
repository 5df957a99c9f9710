import { describe, expect, it } from 'vitest';
import { bookTop, compareWithRest, readBookFrame, type BookTop } from '../../layers/shared/src/collector/book-feed.js';
import type { CcxtOrderBookLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';
import { SimulatedMarket } from '../../local/sim/market.js';

const SYMBOL = 'BTC/USDT';
const LEVELS = 20;

/** The simulated exchange's book as ccxt holds it (numbers, best first, update id as nonce). */
function ccxtBook(market: SimulatedMarket): CcxtOrderBookLike & { bids: number[][]; asks: number[][] } {
  const b = market.book(SYMBOL, 100);
  return { symbol: SYMBOL, nonce: b.lastUpdateId, bids: b.bids.map((e) => [e.price, e.amount]), asks: b.asks.map((e) => [e.price, e.amount]) };
}

function market(seed: number): SimulatedMarket {
  const m = new SimulatedMarket({ seed, symbols: [SYMBOL], autoRun: false });
  m.step(200);
  return m;
}

describe('REST cross-check comparison (real simulated books)', () => {
  it('agrees when REST is the live book, and compares the overlapping top levels', () => {
    const m = market(1);
    const live = ccxtBook(m);
    const outcome = compareWithRest(live, [bookTop(live, LEVELS)], LEVELS);
    expect(outcome).toEqual({ kind: 'agree', compared: 2 * LEVELS });
    // asked for fewer levels than the live states hold: only the range both hold is compared
    const shallow = { ...live, bids: live.bids.slice(0, 5), asks: live.asks.slice(0, 5) };
    expect(compareWithRest(shallow, [bookTop(live, LEVELS)], 5)).toEqual({ kind: 'agree', compared: 10 });
    // but a REST side shorter than asked is the whole side: a live level beyond it is one REST lacks
    expect(compareWithRest(shallow, [bookTop(live, LEVELS)], LEVELS)).toMatchObject({ kind: 'mismatch', detail: expect.stringMatching(/is not in REST/) });
  });

  it('finds a wrong amount, a level REST lacks and a level the live book lacks', () => {
    const m = market(2);
    const rest = ccxtBook(m);
    const wrongAmount = ccxtBook(m);
    wrongAmount.bids[3] = [wrongAmount.bids[3]![0]!, wrongAmount.bids[3]![1]! + 1];
    expect(compareWithRest(rest, [bookTop(wrongAmount, LEVELS)], LEVELS)).toMatchObject({ kind: 'mismatch', detail: expect.stringMatching(/^1 level\(s\) differ: REST bid/) });
    const phantom = ccxtBook(m);
    phantom.asks.splice(1, 0, [(phantom.asks[0]![0]! + phantom.asks[1]![0]!) / 2, 7]);
    expect(compareWithRest(rest, [bookTop(phantom, LEVELS)], LEVELS)).toMatchObject({ kind: 'mismatch', detail: expect.stringMatching(/live ask .* x 7 is not in REST/) });
    const missing = ccxtBook(m);
    missing.bids.splice(0, 1);
    expect(compareWithRest(rest, [bookTop(missing, LEVELS)], LEVELS)).toMatchObject({ kind: 'mismatch' });
  });

  it('leaves out levels that moved while REST was asked, and uses only the states around the REST update id', () => {
    const m = market(3);
    const before = ccxtBook(m);
    const states: BookTop[] = [bookTop(before, LEVELS)];
    let rest: CcxtOrderBookLike | null = null;
    for (let i = 0; i < 30; i++) {
      m.step(1, SYMBOL);
      if (i === 15) rest = ccxtBook(m);
      states.push(bookTop(ccxtBook(m), LEVELS));
    }
    const outcome = compareWithRest(rest!, states, LEVELS);
    expect(outcome.kind).toBe('agree');
    // without the update ids, the states that moved are left out and the rest still agree
    const noIds = (b: CcxtOrderBookLike) => ({ ...b, nonce: undefined });
    expect(compareWithRest(noIds(rest!), states.map((s) => ({ ...s, nonce: null })), LEVELS).kind).not.toBe('mismatch');
    // REST older than anything seen live cannot be judged
    expect(compareWithRest(before, states.slice(5), LEVELS).kind).toBe('inconclusive');
  });

  it('a level a frame named is left out even when the states around it show the same amount (coalesced changes)', () => {
    const m = market(4);
    const live = ccxtBook(m);
    const rest = ccxtBook(m);
    rest.bids[2] = [rest.bids[2]![0]!, rest.bids[2]![1]! * 2];
    // the frame that took the live book to REST's update id named that level
    const earlier = { ...bookTop(live, LEVELS), nonce: live.nonce! - 1 };
    const plain = [earlier, bookTop(live, LEVELS)];
    expect(compareWithRest(rest, plain, LEVELS).kind).toBe('mismatch');
    const touched = [earlier, bookTop(live, LEVELS, { bids: new Set([live.bids[2]![0]!]), asks: new Set() })];
    expect(compareWithRest(rest, touched, LEVELS)).toEqual({ kind: 'agree', compared: 2 * LEVELS - 1 });
  });
});

describe('book frames read after ccxt applied them', () => {
  it('reads OKX books pushes: action, checksum (0 means none), whether the strings print back from numbers', () => {
    const frame = (checksum: number, px = '3366.1') =>
      readBookFrame({ arg: { channel: 'books', instId: 'BTC-USDT' }, action: 'update', data: [{ bids: [[px, '7', '0', '1']], asks: [], checksum, seqId: 2, prevSeqId: 1 }] });
    expect(frame(-1881014294)).toMatchObject({ marketId: 'BTC-USDT', kind: 'update', checksum: -1881014294, canonical: true });
    expect(frame(0)).toMatchObject({ checksum: null });
    expect(frame(5, '3366.10')).toMatchObject({ checksum: 5, canonical: false });
    expect([...frame(5)!.touched().bids]).toEqual([3366.1]);
    expect(readBookFrame({ arg: { channel: 'books5', instId: 'BTC-USDT' }, data: [{ bids: [], asks: [] }] })).toBeNull();
    expect(readBookFrame({ arg: { channel: 'trades', instId: 'BTC-USDT' }, data: [] })).toBeNull();
  });

  it('reads Binance depthUpdate events (no checksum) and ignores everything else', () => {
    const f = readBookFrame({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 10, u: 12, b: [['100.5', '1']], a: [['101', '0']] });
    expect(f).toMatchObject({ marketId: 'BTCUSDT', kind: 'update', checksum: null });
    expect(f!.touched()).toEqual({ bids: new Set([100.5]), asks: new Set([101]) });
    for (const other of [null, 'pong', { e: 'trade', s: 'BTCUSDT' }, { result: null, id: 1 }]) expect(readBookFrame(other)).toBeNull();
  });
});
