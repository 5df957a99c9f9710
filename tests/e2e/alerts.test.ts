import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PrintedTrade } from '../../local/sim/market.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { startAlertsPipeline, type AlertsPipeline } from '../support/alerts-pipeline.js';
import { testLogger } from '../support/collector-pipeline.js';
import { waitFor } from '../support/pipeline.js';

const SYMBOL = 'BTC/USDT';
/** 0.2% above the opening ask (set before anything prints), crossed upwards by a scripted walk of the market */
let LEVEL: number;

/**
 * Simulator -> collector -> in-process stream -> alerts consumer + timescale writer (both run by
 * KinesisEventSource): a scripted upward crossing of a price level yields exactly one stored signal,
 * published by `alerts`, citing the level and the crossing trade, stamped after that trade's
 * exchange time; later prints (crossing back and forth) stay inside the rule's cooldown.
 */
let sim: SimulatedExchange;
let pipeline: AlertsPipeline;

beforeAll(async () => {
  // a volatile market (0.05% per order) so the crossing comes within some dozens of orders
  sim = await startSimulatedExchange({ seed: 11, symbols: [{ symbol: SYMBOL, volatility: 0.0005 }], autoRun: false });
  LEVEL = Math.round(Number(sim.market.topOfBook(SYMBOL).ask.price) * 1.002 * 100) / 100;
  pipeline = await startAlertsPipeline({
    sim,
    symbols: [SYMBOL],
    rules: [{ id: 'btc-level', kind: 'price_cross', level: LEVEL, direction: 'up', cooldownMs: 3_600_000, symbol: SYMBOL }],
    logger: testLogger(),
  });
}, 60_000);

afterAll(async () => {
  await pipeline?.close();
  await sim?.close();
});

/** The first printed trade at or above LEVEL right after one below it. */
function firstCrossing(printed: readonly PrintedTrade[]): PrintedTrade | undefined {
  return printed.find((t, i) => i > 0 && printed[i - 1]!.price < LEVEL && t.price >= LEVEL);
}

it('one crossing -> one signal citing the level, stored after the crossing trade', async () => {
  const printed = () => sim.printedTrades(SYMBOL);
  for (let i = 0; i < 2_000 && !firstCrossing(printed()); i++) sim.market.step(1, SYMBOL);
  const crossing = firstCrossing(printed());
  expect(crossing, 'the scripted walk crosses the level').toBeDefined();
  expect(printed()[0]!.price).toBeLessThan(LEVEL);
  await pipeline.settle();

  const stored = await waitFor(
    'the alert signal',
    async () => (await pipeline.signals.list({ publisher: 'alerts' })).signals,
    (s) => s.length > 0,
  );
  const checkedAt = Date.now();
  expect(stored).toHaveLength(1);
  const [signal] = stored;
  expect(signal).toMatchObject({ publisher: 'alerts', exchange: 'binance', symbol: SYMBOL, direction: 'long', horizon: '15m' });
  expect(signal!.rationale).toContain(`level ${LEVEL}`);
  expect(signal!.rationale).toContain(`traded ${crossing!.price} (trade ${crossing!.id},`);
  expect(signal!.rationale).toContain(`exchange ts ${crossing!.ts}`);
  // causality: printed, then received by the collector, then the signal, then seen here
  const sameMs = await pipeline.store.trades({ exchange: 'binance', symbol: SYMBOL, since: crossing!.ts, limit: 1_000 });
  const trade = sameMs.find((t) => t.id === String(crossing!.id));
  expect(trade).toMatchObject({ id: String(crossing!.id), ts: crossing!.ts, price: crossing!.price });
  expect(signal!.ts).toBeGreaterThanOrEqual(crossing!.ts);
  expect(signal!.ts).toBeGreaterThanOrEqual(trade!.localTs);
  expect(signal!.ts).toBeLessThanOrEqual(checkedAt);

  // more prints, crossing back and forth: the cooldown keeps it at one signal; the writer stored the streamed copy once
  for (let i = 0; i < 300; i++) sim.market.step(1, SYMBOL);
  // the prints reach the collector over its WebSocket after step() returns: settle until all are stored
  await waitFor(
    'every printed trade stored',
    async () => {
      await pipeline.settle();
      return pipeline.writerCounters.get('trades_written');
    },
    (n) => n === printed().length,
    { timeoutMs: 20_000, intervalMs: 200 },
  );
  const ups = printed().filter((t, i) => i > 0 && printed()[i - 1]!.price < LEVEL && t.price >= LEVEL).length;
  expect(ups, 'the level was crossed up again: the cooldown was exercised').toBeGreaterThan(1);
  expect((await pipeline.signals.list({ publisher: 'alerts' })).signals.map((s) => s.id)).toEqual([signal!.id]);
  expect(pipeline.alertCounters.get('fired.btc-level')).toBe(1);
  expect(pipeline.alertCounters.get('published.btc-level')).toBe(1);
  expect(pipeline.writerCounters.get('trades_written')).toBe(printed().length);
  expect(pipeline.writerCounters.get('signals_written')).toBe(0); // streamed copy: stored already, no new row
}, 60_000);
