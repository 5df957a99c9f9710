/**
 * Bad input and exchange faults never cost a trade or stop a feed: skipped, duplicated, reordered
 * and malformed frames and failing REST fills, injected by the simulator into what real ccxt.pro
 * clients receive; and configuration errors that fail at start with what is valid.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UnknownExchangeError, UnlistedSymbolError, connectExchanges } from '../../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitFor } from '../support/pipeline.js';

const SYMBOL = 'BTC/USDT';
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

async function start(seed: number) {
  sim = await startSimulatedExchange({ seed, symbols: [SYMBOL], tradesPerSecond: 30, autoRun: false });
  pipeline = await startCollectorPipeline({
    markets: new Map([['binance', [SYMBOL]]]),
    endpoints: { binance: { rest: sim.httpUrl, ws: sim.wsUrl } },
    // a short trade watchdog: a quiet tail (trades missed just before the market stops) is found by it
    tuning: { reorderGraceMs: 300, staleAfterMs: { trades: 1_500 } },
    database,
  });
  await sim.waitForStreams([binanceTradeStream(SYMBOL)], { timeoutMs: 15_000 });
  sim.market.start();
  return { sim, pipeline };
}

/** Stops the market and waits until the store has every printed trade (the assertions say what is missing if not). */
async function finish(s: SimulatedExchange, p: CollectorPipeline) {
  s.market.stop();
  await waitFor(
    'every printed trade stored',
    async () => {
      await p.settle();
      return (await p.trades('binance', SYMBOL)).length - s.printedTrades(SYMBOL).length;
    },
    (diff) => diff === 0,
    { timeoutMs: 15_000, intervalMs: 250 },
  ).catch(() => undefined);
  await p.settle();
  await p.stopCollector();
}

async function expectExactlyPrinted(s: SimulatedExchange, p: CollectorPipeline) {
  const printed = s.printedTrades(SYMBOL);
  const stored = await p.trades('binance', SYMBOL);
  expect(new Set(stored.map((t) => t.id)).size).toBe(stored.length);
  expect(stored.map((t) => t.id)).toEqual(printed.map((t) => String(t.id)));
  expect(stored.map((t) => [t.ts, t.price, t.amount, t.side])).toEqual(printed.map((t) => [t.ts, t.price, t.amount, t.side]));
}

describe('collector under injected faults (simulated Binance)', () => {
  it('skipped trade frames become gaps that REST fills; every one is in the ledger', async () => {
    const { sim: s, pipeline: p } = await start(31);
    await sleep(600);
    s.faults.skipTrades(3, { symbol: SYMBOL });
    await sleep(800);
    s.faults.skipTrades(1, { symbol: SYMBOL });
    await sleep(800);
    await finish(s, p);

    await expectExactlyPrinted(s, p);
    const skipped = s.faults.injectedLog().filter((f) => f.fault === 'skipTrade').map((f) => Number(f.ref));
    expect(skipped.length).toBe(4);
    const gaps = await p.ledger.gaps({ exchange: 'binance', symbol: SYMBOL });
    // every skipped id lies in a gap the ledger recorded as filled
    for (const id of skipped) {
      expect(gaps.some((g) => g.status === 'filled' && Number(g.fromId) <= id && id <= Number(g.toId)), `trade ${id}`).toBe(true);
    }
    const health = (await p.health('binance', SYMBOL))!;
    expect(health.gapsDetected).toBe(gaps.length);
    expect(health.gapsFilled).toBe(gaps.length);
    expect(health.tradesRecovered).toBeGreaterThanOrEqual(skipped.length);
  }, 60_000);

  it('drops duplicated trade frames and takes reordered ones, without a gap record for a mere reorder', async () => {
    const { sim: s, pipeline: p } = await start(32);
    await sleep(500);
    s.faults.duplicateFrames(5, { symbol: SYMBOL, kind: 'trade' });
    await sleep(600);
    s.faults.reorderFrames(3, { symbol: SYMBOL, kind: 'trade' });
    await sleep(1_000);
    await finish(s, p);

    await expectExactlyPrinted(s, p);
    const injected = s.faults.injected();
    expect(injected.duplicated).toBe(5);
    // a held-back frame with no frame after it is sent late without overtaking: not counted as a reorder
    expect(injected.reordered).toBeGreaterThanOrEqual(1);
    const health = (await p.health('binance', SYMBOL))!;
    expect(health.duplicates).toBeGreaterThanOrEqual(5);
    expect(health.reordered).toBe(injected.reordered);
    expect(await p.ledger.gaps({ exchange: 'binance', symbol: SYMBOL })).toEqual([]);
    expect(health.gapsDetected).toBe(0);
  }, 60_000);

  it('counts malformed and schema-breaking frames on their feed, logs one sample, and keeps the feed running', async () => {
    const { sim: s, pipeline: p } = await start(33);
    await sleep(500);
    s.faults.malformedFrames(4, { symbol: SYMBOL, kind: 'trade', shape: 'text' });
    await sleep(500);
    s.faults.malformedFrames(3, { symbol: SYMBOL, kind: 'trade', shape: 'schema' });
    await sleep(1_000);
    await finish(s, p);

    await expectExactlyPrinted(s, p);
    expect(s.faults.injected().malformed).toBe(7);
    const health = (await p.health('binance', SYMBOL, 'trades'))!;
    expect(health.malformed + health.rejected).toBe(7);
    expect(health.malformed).toBeGreaterThanOrEqual(4);
    expect(health.malformedSample).toBeTruthy();
    // no feed stopped: trades kept arriving after the last bad frame
    expect(health.watchErrors).toBe(0);
    expect(health.messages).toBeGreaterThan(20);
  }, 60_000);

  it('retries fills through REST errors and 429s, then fills', async () => {
    const { sim: s, pipeline: p } = await start(34);
    await sleep(500);
    s.faults.failNextRest(2, 429);
    s.faults.skipTrades(2, { symbol: SYMBOL });
    await sleep(2_500);
    s.faults.failNextRest(2, 503);
    s.faults.skipTrades(1, { symbol: SYMBOL });
    await sleep(2_500);
    await finish(s, p);

    await expectExactlyPrinted(s, p);
    expect(s.faults.injected().rest429s + s.faults.injected().restErrors).toBe(4);
    const health = (await p.health('binance', SYMBOL))!;
    expect(health.gapsDetected).toBeGreaterThanOrEqual(2);
    expect(health.gapsFilled).toBe(health.gapsDetected);
  }, 60_000);
});

describe('collector configuration', () => {
  it('an unknown exchange fails at start, listing the ccxt.pro exchange ids', async () => {
    const error = await connectExchanges(new Map([['binanse', ['BTC/USDT']]]), { logger: silentLogger }).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(UnknownExchangeError);
    expect((error as Error).message).toMatch(/no exchange 'binanse'/);
    for (const id of ['binance', 'okx', 'kraken', 'bybit']) expect((error as Error).message).toContain(id);
  });

  it('a symbol the exchange does not list fails at start, listing symbols it does', async () => {
    const s = await startSimulatedExchange({ symbols: ['BTC/USDT', 'ETH/USDT'], autoRun: false });
    try {
      const error = await connectExchanges(new Map([['binance', ['BTC/USDT', 'DOGE/USDT']]]), {
        logger: silentLogger,
        configure: (exchange) => applyEndpointOverride(exchange, { rest: s.httpUrl, ws: s.wsUrl }),
      }).catch((e: unknown) => e as Error);
      expect(error).toBeInstanceOf(UnlistedSymbolError);
      expect((error as Error).message).toMatch(/binance does not list DOGE\/USDT; it lists 2 symbols, e\.g\. (BTC\/USDT, ETH\/USDT|ETH\/USDT, BTC\/USDT)/);
    } finally {
      await s.close();
    }
  });
});
