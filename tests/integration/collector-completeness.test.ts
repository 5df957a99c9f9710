/**
 * The collector never loses a trade: real ccxt.pro clients against the simulated Binance, faults
 * injected with the simulator's hooks, everything stored through the real writer into PGlite, and
 * the completeness ledger read back from the store.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TradeIdHistory } from '../../layers/shared/src/collector/trade-history.js';
import type { GapRecord } from '../../layers/shared/src/ports/index.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitFor } from '../support/pipeline.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let sim: SimulatedExchange | undefined;
let pipeline: CollectorPipeline | undefined;
let database: TestDatabase;

// one PGlite for the file (it is slow to start), emptied before each test
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

async function start(options: { seed: number; tuning?: Parameters<typeof startCollectorPipeline>[0]['tuning']; symbols?: readonly string[] }) {
  const symbols = options.symbols ?? SYMBOLS;
  sim = await startSimulatedExchange({ seed: options.seed, symbols, tradesPerSecond: 30, autoRun: false });
  pipeline = await startCollectorPipeline({
    markets: new Map([['binance', symbols]]),
    endpoints: { binance: { rest: sim.httpUrl, ws: sim.wsUrl } },
    // a short trade watchdog: a quiet tail (trades missed just before the market stops) is found by it
    tuning: { reorderGraceMs: 300, staleAfterMs: { trades: 1_500 }, ...options.tuning },
    database,
  });
  await sim.waitForStreams(symbols.map(binanceTradeStream), { timeoutMs: 15_000 });
  sim.market.start();
  return { sim, pipeline };
}

/** Stops the market, lets the collector finish its fills and the writer store everything. */
async function finish(s: SimulatedExchange, p: CollectorPipeline, symbols: readonly string[] = SYMBOLS): Promise<void> {
  s.market.stop();
  // until the store has every printed trade (or it is clear it will not: the assertions then say what is missing)
  await waitFor(
    'every printed trade stored',
    async () => {
      await p.settle();
      const counts = await Promise.all(symbols.map(async (sym) => (await p.trades('binance', sym)).length - s.printedTrades(sym).length));
      return counts;
    },
    (diffs) => diffs.every((d) => d === 0),
    { timeoutMs: 15_000, intervalMs: 250 },
  ).catch(() => undefined);
  await p.settle();
  await p.stopCollector();
}

/** Stored trades equal the printed ones: same count, same ids, same values, none twice. */
async function expectExactly(p: CollectorPipeline, symbol: string, printed: readonly PrintedTrade[]): Promise<void> {
  const stored = await p.trades('binance', symbol);
  const ids = stored.map((t) => t.id);
  expect(new Set(ids).size, `${symbol}: duplicates`).toBe(ids.length);
  expect(stored.length, `${symbol}: count`).toBe(printed.length);
  expect(ids).toEqual(printed.map((t) => String(t.id)));
  expect(stored.map((t) => [t.ts, t.price, t.amount, t.side])).toEqual(printed.map((t) => [t.ts, t.price, t.amount, t.side]));
}

describe('collector completeness against the simulated Binance', () => {
  it('fills a trade-id gap from REST in the raw-trade id space and records it in the ledger', async () => {
    const { sim: s, pipeline: p } = await start({ seed: 21 });
    await sleep(1_000);
    s.faults.pauseStreams('BTC/USDT');
    await sleep(800);
    s.faults.resumeStreams('BTC/USDT');
    await sleep(1_000);
    await finish(s, p);

    for (const symbol of SYMBOLS) await expectExactly(p, symbol, s.printedTrades(symbol));
    const gaps = await p.ledger.gaps({ exchange: 'binance', symbol: 'BTC/USDT' });
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps.every((g) => g.status === 'filled')).toBe(true);
    const sequence = gaps.find((g) => g.reason === 'sequence')!;
    expect(sequence).toMatchObject({ kind: 'id', status: 'filled' });
    expect(sequence.recovered).toBe(Number(sequence.toId) - Number(sequence.fromId) + 1);
    const health = (await p.health('binance', 'BTC/USDT'))!;
    expect(health).toMatchObject({ gapsDetected: gaps.length, gapsFilled: gaps.length, gapsUnfilled: 0, gapsOpen: 0 });
    expect(health.tradesRecovered).toBe(gaps.reduce((n, g) => n + g.recovered, 0));
    // the other market had no hole
    expect(await p.ledger.gaps({ exchange: 'binance', symbol: 'ETH/USDT' })).toEqual([]);
  }, 60_000);

  it('after dropped connections it reconnects, fills what was missed and records the reconnects', async () => {
    const { sim: s, pipeline: p } = await start({ seed: 22 });
    await sleep(800);
    expect(await s.faults.dropConnections()).toBeGreaterThan(0);
    await sleep(1_500);
    await s.faults.dropConnections();
    await sleep(1_500);
    await finish(s, p);

    for (const symbol of SYMBOLS) {
      await expectExactly(p, symbol, s.printedTrades(symbol));
      const health = (await p.health('binance', symbol))!;
      expect(health.reconnects, symbol).toBeGreaterThanOrEqual(1);
      expect(health.gapsUnfilled).toBe(0);
      expect(health.gapsFilled).toBe(health.gapsDetected);
    }
  }, 60_000);

  it('resubscribes a stalled feed (watchdog), records it, and fills the trades printed meanwhile', async () => {
    const { sim: s, pipeline: p } = await start({ seed: 23, tuning: { staleAfterMs: { trades: 1_200, tickers: 2_500, books: 2_500 } } });
    await sleep(800);
    s.faults.pauseStreams('BTC/USDT');
    await waitFor('a resubscribe of the stalled trade feed', () => p.service.collector.feeds.find((f) => f.symbol === 'BTC/USDT' && f.channel === 'trades')!.resubscribes, (n) => n >= 1, { timeoutMs: 10_000 });
    await sleep(500);
    s.faults.resumeStreams('BTC/USDT');
    await sleep(1_500);
    // the other market kept talking meanwhile: nothing to resubscribe (it goes quiet once the market stops)
    expect(p.service.collector.feeds.find((f) => f.symbol === 'ETH/USDT' && f.channel === 'trades')!.resubscribes).toBe(0);
    await finish(s, p);

    for (const symbol of SYMBOLS) await expectExactly(p, symbol, s.printedTrades(symbol));
    const trades = (await p.health('binance', 'BTC/USDT', 'trades'))!;
    expect(trades.resubscribes).toBeGreaterThanOrEqual(1);
    expect(trades.lastError).toMatch(/stale|UnsubscribeError|resubscrib/);
    const gaps = await p.ledger.gaps({ exchange: 'binance', symbol: 'BTC/USDT' });
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps.every((g) => g.status === 'filled')).toBe(true);
  }, 60_000);

  it('a fill through ccxt default fetchTrades (aggregate-trade ids) is caught as an id-space mismatch and recorded unfilled', async () => {
    // what a naive fill would do: fetchTrades with fromId, which binance serves from /api/v3/aggTrades
    const naive: TradeIdHistory = {
      describe: 'ccxt default fetchTrades (aggTrades)',
      page: async (exchange, symbol, range) => ({
        trades: await exchange.fetchTrades(symbol, undefined, 1000, { fromId: range.fromId }),
        next: null,
      }),
    };
    const { sim: s, pipeline: p } = await start({
      seed: 24,
      symbols: ['BTC/USDT'],
      tuning: { tradeCompleteness: () => ({ mode: 'id', history: naive }) },
    });
    await sleep(1_500);
    s.faults.pauseStreams('BTC/USDT');
    await sleep(800);
    s.faults.resumeStreams('BTC/USDT');
    await sleep(1_000);
    s.market.stop();
    await sleep(1_000);
    await p.settle();
    await p.stopCollector();

    const printed = s.printedTrades('BTC/USDT');
    const stored = await p.trades('binance', 'BTC/USDT');
    const printedIds = new Set(printed.map((t) => String(t.id)));
    // nothing foreign got in under a raw id, but the hole stayed a hole
    expect(stored.every((t) => printedIds.has(t.id))).toBe(true);
    expect(stored.length).toBeLessThan(printed.length);
    const gaps: readonly GapRecord[] = await p.ledger.gaps({ exchange: 'binance', symbol: 'BTC/USDT', status: 'unfilled' });
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps[0]!.detail).toMatch(/id space mismatch|returned 0 of/);
    const missing = printed.length - stored.length;
    expect(gaps.reduce((n, g) => n + (g.missing ?? 0), 0)).toBe(missing);
    expect((await p.health('binance', 'BTC/USDT'))!.gapsUnfilled).toBe(gaps.length);
  }, 60_000);
});
