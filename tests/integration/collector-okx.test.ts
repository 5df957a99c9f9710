/**
 * The collector on OKX (the simulator's OKX v5 protocol, real ccxt.pro okx): trade gaps filled from
 * `history-trades` paged backwards by tradeId, reconnects, exchange candles, and funding rate and
 * open interest of a swap market.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PrintedTrade } from '../../local/sim/market.js';
import { okxProtocol } from '../../local/sim/protocols/okx.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { OffsetClock, waitFor } from '../support/pipeline.js';
import type { Candle } from '../../layers/shared/src/domain/index.js';

const SPOT = ['BTC/USDT', 'ETH/USDT'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let sim: SimulatedExchange | undefined;
let pipeline: CollectorPipeline | undefined;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.dispose();
});
afterEach(async () => {
  await pipeline?.close();
  await sim?.close();
  pipeline = undefined;
  sim = undefined;
});

async function startOkx(
  seed: number,
  symbols: readonly string[],
  channels?: Parameters<typeof startCollectorPipeline>[0]['channels'],
  clock?: OffsetClock,
) {
  sim = await startSimulatedExchange({
    seed,
    ...(clock && { clock }),
    symbols: SPOT,
    tradesPerSecond: 30,
    autoRun: false,
    protocols: [okxProtocol({ candleIntervalMs: 200, fundingIntervalMs: 200 })],
  });
  pipeline = await startCollectorPipeline({
    markets: new Map([['okx', symbols]]),
    endpoints: { okx: { ...sim.endpoints['okx']!, marketTypes: ['spot', 'swap'] } },
    tuning: { reorderGraceMs: 300, fundingIntervalMs: 300 },
    database,
    ...(channels && { channels }),
  });
  return { sim, pipeline };
}

async function expectExactly(p: CollectorPipeline, symbol: string, printed: readonly PrintedTrade[]) {
  const stored = await p.trades('okx', symbol);
  expect(new Set(stored.map((t) => t.id)).size, `${symbol}: duplicates`).toBe(stored.length);
  expect(stored.map((t) => t.id), symbol).toEqual(printed.map((t) => String(t.id)));
  expect(stored.map((t) => [t.ts, t.price, t.amount, t.side])).toEqual(printed.map((t) => [t.ts, t.price, t.amount, t.side]));
}

describe('collector against the simulated OKX', () => {
  it('fills skipped trades from history-trades and reconnects after drops: exactly the printed trades', async () => {
    const { sim: s, pipeline: p } = await startOkx(41, SPOT);
    await waitFor('okx trade subscriptions', () => s.activeStreams('okx').filter((n) => n.includes('trades')).length, (n) => n >= SPOT.length, { timeoutMs: 15_000 });
    s.market.start();
    await sleep(700);
    s.faults.skipTrades(4, { protocol: 'okx', symbol: 'BTC/USDT' });
    await sleep(800);
    await s.faults.dropConnections();
    await sleep(1_500);
    s.market.stop();
    // the last prints, and the fills of trades missed across the drop, arrive after stop(): under load
    // they can take seconds, so settle until every printed trade is stored before stopping the collector
    await waitFor(
      'every printed trade stored',
      async () => {
        await p.settle();
        const counts = await Promise.all(SPOT.map(async (symbol) => (await p.trades('okx', symbol)).length));
        return counts.every((n, i) => n >= s.printedTrades(SPOT[i]!).length);
      },
      (done) => done,
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    await p.stopCollector();

    for (const symbol of SPOT) {
      await expectExactly(p, symbol, s.printedTrades(symbol));
      const health = (await p.health('okx', symbol))!;
      expect(health.gapsUnfilled, symbol).toBe(0);
      expect(health.gapsFilled).toBe(health.gapsDetected);
    }
    const skipped = s.faults.injectedLog().filter((f) => f.fault === 'skipTrade').map((f) => Number(f.ref));
    expect(skipped).toHaveLength(4);
    const gaps = await p.ledger.gaps({ exchange: 'okx', symbol: 'BTC/USDT' });
    for (const id of skipped) expect(gaps.some((g) => Number(g.fromId) <= id && id <= Number(g.toId)), `trade ${id}`).toBe(true);
  }, 60_000);

  it('stores exchange 1m candles with source exchange, closed once the next minute starts', async () => {
    const clock = new OffsetClock();
    const { sim: s, pipeline: p } = await startOkx(42, ['BTC/USDT'], ['candles'], clock);
    // exchange time 2.5 s before a minute boundary (set once subscribed), so the run sees a minute close
    const boundary = clock.leadMinuteBoundaryBy(2_500);
    s.market.start();
    const candleEvents = () => p.published.filter((e): e is Candle => e.type === 'candle');
    await waitFor('candles of the next minute', () => candleEvents().filter((c) => c.ts >= boundary).length, (n) => n >= 2, { timeoutMs: 20_000 });
    s.market.stop();
    await p.settle();
    await p.stopCollector();

    expect(p.service.collector.feeds.map((f) => `${f.symbol} ${f.channel}`)).toEqual(['BTC/USDT candles']);
    expect((await p.health('okx', 'BTC/USDT', 'candles'))!.rejected).toBe(0);
    // forming while its minute runs, published once more with its final values when the next one started
    const minute = boundary - 60_000;
    const before = candleEvents().filter((c) => c.ts === minute);
    expect(before.length).toBeGreaterThanOrEqual(2);
    expect(before.at(-1)!.closed).toBe(true);
    expect(before.slice(0, -1).every((c) => !c.closed)).toBe(true);
    expect(candleEvents().filter((c) => c.ts >= boundary).every((c) => !c.closed)).toBe(true);
    // stored with source 'exchange', and the closed minute agrees with the trades printed in it
    const [stored] = await p.store.candles({ exchange: 'okx', symbol: 'BTC/USDT', timeframe: '1m', since: minute, until: boundary, limit: 1 });
    const trades = s.printedTrades('BTC/USDT').filter((t) => t.ts >= minute && t.ts < boundary);
    expect(trades.length).toBeGreaterThan(0);
    expect(stored).toMatchObject({
      ts: minute,
      source: 'exchange',
      open: trades[0]!.price,
      high: Math.max(...trades.map((t) => t.price)),
      low: Math.min(...trades.map((t) => t.price)),
      close: trades.at(-1)!.price,
    });
    expect(stored!.volume).toBeCloseTo(trades.reduce((v, t) => v + t.amount, 0), 9);
  }, 60_000);

  it('polls funding rate and open interest of a swap market, and only of swap markets', async () => {
    const { sim: s, pipeline: p } = await startOkx(43, ['BTC/USDT', 'BTC/USDT:USDT'], ['funding']);
    s.market.start();
    await waitFor('funding polled', () => p.service.collector.feeds[0]?.events ?? 0, (n) => n >= 4, { timeoutMs: 20_000 });
    s.market.stop();
    await p.settle();
    await p.stopCollector();

    expect(p.service.collector.feeds.map((f) => `${f.symbol} ${f.channel}`)).toEqual(['BTC/USDT:USDT funding']);
    const funding = await p.store.funding({ exchange: 'okx', symbol: 'BTC/USDT:USDT', limit: 100 });
    expect(funding.some((f) => f.fundingRate !== null && f.nextFundingTs !== null && f.nextFundingTs > f.ts)).toBe(true);
    expect(funding.some((f) => f.openInterest !== null && f.openInterest > 0)).toBe(true);
    const health = (await p.health('okx', 'BTC/USDT:USDT', 'funding'))!;
    expect(health.messages).toBeGreaterThanOrEqual(4);
    expect(health.rejected).toBe(0);
    expect(health.watchErrors).toBe(0);
  }, 60_000);
});
