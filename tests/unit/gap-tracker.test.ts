import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  fallbackTradeKey,
  SequentialTradeTracker,
  TradeKeyTracker,
  type AcceptResult,
} from '../../layers/shared/src/collector/trade-gap-tracker.js';

const T = 1_767_614_400_000;

function feed(tracker: SequentialTradeTracker, ids: readonly number[], source: 'live' | 'rest' = 'live'): AcceptResult[] {
  return ids.map((id) => tracker.accept(id, T + id, source));
}

const accepted = (rs: readonly AcceptResult[]) => rs.filter((r) => r.accepted).length;

describe('SequentialTradeTracker', () => {
  it('takes consecutive ids with no gap and refuses every repeat', () => {
    const t = new SequentialTradeTracker();
    expect(accepted(feed(t, [10, 11, 12, 13]))).toBe(4);
    expect(feed(t, [12, 13, 10])).toEqual([
      { accepted: false, duplicate: true },
      { accepted: false, duplicate: true },
      { accepted: false, duplicate: true },
    ]);
    expect(t.openGaps).toEqual([]);
    expect(t.contiguousUpTo).toBe(13);
  });

  it('opens a gap on an id jump, with the ids and times around it', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 2, 3]);
    const [r] = feed(t, [8]);
    expect(r).toMatchObject({ accepted: true, opened: { fromId: 4, toId: 7, fromTs: T + 3, toTs: T + 8, remaining: 4, reason: 'sequence' } });
    expect(t.contiguousUpTo).toBe(3);
    expect(t.head).toEqual({ id: 8, ts: T + 8 });
  });

  it('takes a late id inside an open gap as a reorder, shrinks the gap and closes it when complete', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 2, 4]);
    const gap = t.openGaps[0]!;
    const [late] = feed(t, [3]);
    expect(late).toMatchObject({ accepted: true, reordered: true, closed: [gap] });
    expect(t.openGaps).toEqual([]);
    expect(t.contiguousUpTo).toBe(4);
    // the late one, again, is a duplicate
    expect(feed(t, [3])[0]).toEqual({ accepted: false, duplicate: true });
  });

  it('counts REST trades as recovered, not reordered, once the gap is declared', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 5]);
    const gap = t.openGaps[0]!;
    gap.declared = true;
    const rs = feed(t, [2, 3, 4], 'rest');
    expect(rs.every((r) => r.accepted && !r.reordered)).toBe(true);
    expect(gap.recovered).toBe(3);
    expect(rs.at(-1)).toMatchObject({ closed: [gap] });
    // what REST returns beyond the gap and the stream already had is a duplicate
    expect(feed(t, [5], 'rest')[0]!.accepted).toBe(false);
  });

  it('keeps several gaps apart and advances the watermark only past closed ones', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 4, 9]);
    expect(t.openGaps.map((g) => [g.fromId, g.toId])).toEqual([
      [2, 3],
      [5, 8],
    ]);
    feed(t, [5, 6, 7, 8]);
    expect(t.openGaps.map((g) => [g.fromId, g.toId])).toEqual([[2, 3]]);
    expect(t.contiguousUpTo).toBe(1);
    feed(t, [3, 2]);
    expect(t.openGaps).toEqual([]);
    expect(t.contiguousUpTo).toBe(9);
  });

  it('gives a gap up: the watermark moves past it, and a late trade of it is still taken once', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 2, 6, 7]);
    const gap = t.openGaps[0]!;
    feed(t, [4]);
    t.abandon(gap);
    expect(t.openGaps).toEqual([]);
    expect(t.contiguousUpTo).toBe(7);
    expect(feed(t, [4])[0]!.accepted).toBe(false);
    expect(feed(t, [3])[0]!.accepted).toBe(true);
    expect(feed(t, [3])[0]!.accepted).toBe(false);
  });

  it('attributes the next gap to a reconnect, until a live trade arrives without one', () => {
    const t = new SequentialTradeTracker();
    feed(t, [1, 2]);
    t.markDiscontinuity('reconnect');
    expect(feed(t, [6])[0]).toMatchObject({ opened: { reason: 'reconnect', fromId: 3, toId: 5 } });
    t.markDiscontinuity('resubscribe');
    feed(t, [7]);
    expect(feed(t, [9])[0]).toMatchObject({ opened: { reason: 'sequence' } });
  });

  it('takes ids below the first one once while the start-up window is open, never after', () => {
    const t = new SequentialTradeTracker();
    feed(t, [100, 101]);
    expect(feed(t, [99, 98, 99]).map((r) => r.accepted)).toEqual([true, true, false]);
    expect(t.openGaps).toEqual([]);
    t.closeStartup();
    expect(feed(t, [97])[0]!.accepted).toBe(false);
  });

  it('delivers every id exactly once for any order, duplication and loss of a sequence (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 200 }),
        fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 60 }),
        (stream, fill) => {
          const t = new SequentialTradeTracker();
          const seen: number[] = [];
          const first = stream[0]!;
          for (const id of stream) if (t.accept(id, T + id, 'live').accepted) seen.push(id);
          for (const id of fill) if (t.accept(id, T + id, 'rest').accepted) seen.push(id);
          // nothing twice
          expect(new Set(seen).size).toBe(seen.length);
          // every id from the first to the highest seen is taken or still inside an open gap
          const highest = Math.max(...seen);
          const open = new Set(t.openGaps.flatMap((g) => Array.from({ length: g.toId - g.fromId + 1 }, (_, i) => g.fromId + i)));
          for (let id = first; id <= highest; id++) expect(seen.includes(id) || open.has(id)).toBe(true);
          // an open gap holds only ids not taken, and counts them right
          for (const g of t.openGaps) {
            let missing = 0;
            for (let id = g.fromId; id <= g.toId; id++) if (!seen.includes(id)) missing++;
            expect(g.remaining).toBe(missing);
          }
        },
      ),
    );
  });
});

describe('TradeKeyTracker and the fallback key', () => {
  it('refuses a key already seen', () => {
    const t = new TradeKeyTracker();
    expect(t.accept('a', T)).toBe(true);
    expect(t.accept('b', T)).toBe(true);
    expect(t.accept('a', T + 5)).toBe(false);
    expect(t.newest).toBe(T);
  });

  it('tells identical trades of one batch apart by their position', () => {
    const trade = { ts: T, price: 100.5, amount: 0.25, side: 'buy' };
    expect(fallbackTradeKey(trade, 0)).toBe(`${T}:100.5:0.25:buy:0`);
    expect(fallbackTradeKey(trade, 1)).not.toBe(fallbackTradeKey(trade, 0));
  });
});
