/**
 * Trade feeds of exchanges without sequential trade ids: duplicates by id or by the documented
 * fallback key, and after a reconnect a fill by time that records a time gap. The exchange is a
 * scripted REST history (no network in unit tests); ledger, fill queue and feed are the real ones.
 */
import { describe, expect, it } from 'vitest';
import { FeedLedger } from '../../layers/shared/src/collector/feed-ledger.js';
import { FillQueue } from '../../layers/shared/src/collector/fill-queue.js';
import { TradeFeed } from '../../layers/shared/src/collector/trade-feed.js';
import { tradesSince, type HistoryExchange } from '../../layers/shared/src/collector/trade-history.js';
import type { GapEvent, StreamEvent, Trade } from '../../layers/shared/src/domain/index.js';
import type { CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';

const T = 1_767_614_400_000;
const clock = { now: () => T + 60_000 };

/** A trade as ccxt gives it for an exchange without trade ids. */
const raw = (ts: number, price: number, amount = 1, side = 'buy'): CcxtTradeLike => ({ symbol: 'BTC/USD', timestamp: ts, price, amount, side });

function setup(history: readonly CcxtTradeLike[]) {
  const published: StreamEvent[] = [];
  const emitted: Trade[] = [];
  const ledger = new FeedLedger(clock, (events) => published.push(...events), 'run-t');
  const fills = new FillQueue(1, 1);
  const calls: number[] = [];
  const exchange: HistoryExchange = {
    id: 'kraken',
    fetchTrades: async (_symbol, since) => {
      calls.push(since!);
      return history.filter((t) => (t.timestamp ?? 0) >= since!);
    },
  };
  const state = ledger.feed('kraken', 'BTC/USD', 'trades');
  const feed = new TradeFeed({
    exchange,
    symbol: 'BTC/USD',
    state,
    completeness: { mode: 'time', history: tradesSince },
    ledger,
    fills,
    clock,
    logger: silentLogger,
    tuning: { reorderGraceMs: 10, maxFillTrades: 10_000, maxFillAttempts: 2, startupLookback: 10 },
    emit: (trades) => emitted.push(...trades),
    reject: () => {
      state.rejected += 1;
    },
  });
  return { feed, fills, state, emitted, published, calls };
}

describe('trade feed without sequential ids (time fallback)', () => {
  it('keys trades without an id by time, price, amount, side and position, and drops repeats', () => {
    const { feed, emitted, state } = setup([]);
    feed.onLive([raw(T, 100), raw(T, 100), raw(T + 1, 101)], T + 5);
    // the same batch again (a duplicated frame): all three are repeats
    feed.onLive([raw(T, 100), raw(T, 100), raw(T + 1, 101)], T + 6);
    expect(emitted.map((t) => t.id)).toEqual([`${T}:100:1:buy:0`, `${T}:100:1:buy:1`, `${T + 1}:101:1:buy:0`]);
    expect(state.duplicates).toBe(3);
  });

  it('after a reconnect fetches by time since the newest trade, takes only what is new and records a time gap', async () => {
    const missed = [raw(T + 2_000, 102), raw(T + 3_000, 103, 2, 'sell')];
    const { feed, fills, emitted, published, state, calls } = setup([raw(T + 1_000, 101), ...missed]);
    feed.onLive([raw(T, 100), raw(T + 1_000, 101)], T + 1_005);
    feed.interrupted('reconnect');
    await fills.idle();
    expect(calls).toEqual([T + 1_000]);
    expect(emitted.map((t) => t.price)).toEqual([100, 101, 102, 103]);
    expect(state.tradesRecovered).toBe(2);
    const gaps = published.filter((e): e is GapEvent => e.type === 'gap');
    expect(gaps.map((g) => g.status)).toEqual(['open', 'filled']);
    expect(gaps[1]).toMatchObject({ kind: 'time', reason: 'reconnect', fromId: null, fromTs: T + 1_000, toTs: T + 3_000, recovered: 2 });
    expect(state.gapsDetected).toBe(1);
    expect(state.gapsFilled).toBe(1);
    // the live stream then repeats one of them: a duplicate
    feed.onLive([raw(T + 3_000, 103, 2, 'sell')], T + 3_100);
    expect(emitted).toHaveLength(4);
  });

  it('records nothing when the fill finds nothing new', async () => {
    const { feed, fills, published } = setup([raw(T, 100)]);
    feed.onLive([raw(T, 100)], T + 5);
    feed.interrupted('resubscribe');
    await fills.idle();
    expect(published.filter((e) => e.type === 'gap')).toEqual([]);
  });
});
