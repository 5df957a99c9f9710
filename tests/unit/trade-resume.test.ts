/**
 * A trade feed that knows where the previous run's trades ended: its start-up fill reaches back to
 * that id (trades printed while no collector ran), at most maxFillTrades of them, the rest recorded
 * as an unfilled gap; and the file that carries the ids from one run to the next. The exchange is
 * a scripted raw-id history (no network in unit tests); ledger, fill queue and feed are the real ones.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FeedLedger } from '../../layers/shared/src/collector/feed-ledger.js';
import { FillQueue } from '../../layers/shared/src/collector/fill-queue.js';
import { loadTradeIds, saveTradeIds, tradeIdFileFor } from '../../layers/shared/src/collector/trade-id-checkpoint.js';
import { TradeFeed } from '../../layers/shared/src/collector/trade-feed.js';
import { binanceRawTrades, type HistoryExchange } from '../../layers/shared/src/collector/trade-history.js';
import type { GapEvent, StreamEvent, Trade } from '../../layers/shared/src/domain/index.js';
import type { CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';

const T = 1_767_614_400_000;
const clock = { now: () => T + 600_000 };
const raw = (id: number): CcxtTradeLike => ({ id: String(id), symbol: 'BTC/USDT', timestamp: T + id, price: 100 + (id % 7), amount: 1, side: 'buy' });

function setup(resumeAfterId: number | undefined, maxFillTrades: number) {
  const published: StreamEvent[] = [];
  const emitted: Trade[] = [];
  const ledger = new FeedLedger(clock, (events) => published.push(...events), 'run-r');
  const fills = new FillQueue(1, 1);
  // ids 1..1000 were printed; historicalTrades answers from fromId, 1000 a page
  const exchange: HistoryExchange = {
    id: 'binance',
    fetchTrades: async (_symbol, _since, limit, params) => {
      const from = Number((params as { fromId: number }).fromId);
      return Array.from({ length: Math.max(0, Math.min(limit ?? 1000, 1001 - from)) }, (_, i) => raw(from + i));
    },
  };
  const state = ledger.feed('binance', 'BTC/USDT', 'trades');
  const feed = new TradeFeed({
    exchange,
    symbol: 'BTC/USDT',
    state,
    completeness: { mode: 'id', history: binanceRawTrades },
    ledger,
    fills,
    clock,
    logger: silentLogger,
    tuning: { reorderGraceMs: 10, maxFillTrades, maxFillAttempts: 2, startupLookback: 10 },
    emit: (trades) => emitted.push(...trades),
    reject: () => undefined,
    ...(resumeAfterId !== undefined && { resumeAfterId }),
  });
  const gaps = () => published.filter((e): e is GapEvent => e.type === 'gap');
  return { feed, fills, emitted, gaps };
}

describe('resuming after the previous run', () => {
  it('fetches every trade after the last id the previous run kept, before the first live one', async () => {
    const { feed, fills, emitted, gaps } = setup(400, 50_000);
    feed.subscribed();
    feed.onLive([raw(900), raw(901)], T + 1_000);
    await fills.idle();
    const ids = emitted.map((t) => Number(t.id)).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 501 }, (_, i) => 401 + i));
    expect(feed.lastId).toBe(901);
    expect(gaps().at(-1)).toMatchObject({ reason: 'startup', status: 'filled', fromId: '401', toId: '900', recovered: 499 });
  });

  it('takes at most maxFillTrades and records the older rest as unfilled', async () => {
    const { feed, fills, emitted, gaps } = setup(400, 100);
    feed.subscribed();
    feed.onLive([raw(900)], T + 1_000);
    await fills.idle();
    expect(Math.min(...emitted.map((t) => Number(t.id)))).toBe(800);
    const unfilled = gaps().find((g) => g.status === 'unfilled');
    expect(unfilled).toMatchObject({ reason: 'startup', fromId: '401', toId: '799', missing: 399 });
  });

  it('without a previous id, takes only what was printed since its own subscription', async () => {
    const { feed, fills, emitted } = setup(undefined, 50_000);
    feed.subscribed();
    feed.onLive([raw(900)], T + 1_000);
    await fills.idle();
    expect(Math.min(...emitted.map((t) => Number(t.id)))).toBeGreaterThan(880);
  });
});

describe('the last trade ids file', () => {
  it('round-trips next to the journal directory, and an unreadable one is ignored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'trade-ids-'));
    try {
      const file = tradeIdFileFor(join(dir, 'kinesis-market-events'));
      expect(file).toBe(join(dir, 'kinesis-market-events.last-trade-ids.json'));
      expect(await loadTradeIds(file, silentLogger)).toEqual(new Map());
      await saveTradeIds(file, new Map([['binance|BTC/USDT', 901]]));
      expect(await loadTradeIds(file, silentLogger)).toEqual(new Map([['binance|BTC/USDT', 901]]));
      await writeFile(file, '{"version":1,"ids":{"binance|BTC/USDT":"x"}}');
      expect(await loadTradeIds(file, silentLogger)).toEqual(new Map());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
