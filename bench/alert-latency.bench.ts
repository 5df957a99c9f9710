/**
 * Alert latency, embedded mode: a trade printed by the simulator -> the alert signal it triggers
 * stored, p50/p99 over N price crossings. Path: simulator -> ccxt.pro collector -> EventBatcher ->
 * in-process stream -> KinesisEventSource -> alerts consumer -> AlertEngine -> SignalService ->
 * PGlite (tests/support/alerts-pipeline.ts).
 *
 * Reference, same run, same trades: the crossing trade printed -> the same trade stored by the
 * timescale writer reading the same stream (its own copy: two consumer groups). Both are taken from
 * hooks at the moment of the store write (no polling), against the trade's print time (Date.now,
 * one process). The ratio alert / reference says what evaluating and publishing add to the path
 * every event already takes.
 *
 * Method: one price_cross rule (either way, no cooldown) at the opening mid; the market is stepped one
 * order at a time, STEP_MS apart, until N crossings printed; every crossing fires one signal.
 *
 *   npm run bench -- --filter=alert-latency     (ALERT_LATENCY_CROSSINGS=100 for more samples)
 */
import type { Signal } from '../layers/shared/src/domain/index.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import { startSimulatedExchange } from '../local/sim/server.js';
import { startAlertsPipeline } from '../tests/support/alerts-pipeline.js';
import { figuresOnly, formatMs, latencySummary, printTable, sleep } from './lib/latency.js';

const SYMBOL = 'BTC/USDT';
const CROSSINGS = Number(process.env.ALERT_LATENCY_CROSSINGS ?? 50);
const STEP_MS = 5;
const MAX_ORDERS = 20_000;

const sim = await startSimulatedExchange({ seed: 5, symbols: [{ symbol: SYMBOL, volatility: 0.0003 }], autoRun: false });
const top = sim.market.topOfBook(SYMBOL);
const level = Math.round(((top.bid.price + top.ask.price) / 2) * 100) / 100;
const pipeline = await startAlertsPipeline({
  sim,
  symbols: [SYMBOL],
  rules: [{ id: 'bench-level', kind: 'price_cross', level, direction: 'either', cooldownMs: 0, symbol: SYMBOL }],
  logger: silentLogger,
});
const signalAt = new Map<string, number>();
const tradeAt = new Map<string, number>();
pipeline.onSignalStored = (signals: readonly Signal[]) => {
  const at = Date.now();
  for (const s of signals) {
    const id = /\(trade (\d+),/.exec(s.rationale)?.[1];
    if (id) signalAt.set(id, at);
  }
};
pipeline.onStored = (events) => {
  const at = Date.now();
  for (const e of events) if (e.type === 'trade') tradeAt.set(e.id, at);
};

const crosses = (prev: number, price: number) => (prev < level && price >= level) || (prev > level && price <= level);
let crossings = 0;
try {
  process.stderr.write(`alert-latency: stepping the market until ${CROSSINGS} crossings of ${level}...\n`);
  for (let orders = 0; orders < MAX_ORDERS && crossings < CROSSINGS; orders++) {
    const before = sim.printedTrades(SYMBOL).at(-1)?.price;
    const printed = sim.market.step(1, SYMBOL);
    let prev = before;
    for (const t of printed) {
      if (prev !== undefined && crosses(prev, t.price)) crossings += 1;
      prev = t.price;
    }
    await sleep(STEP_MS);
  }
  await pipeline.settle();
  await sleep(200);
} finally {
  await pipeline.close();
  await sim.close();
}

const all = sim.printedTrades(SYMBOL);
const alert: number[] = [];
const reference: number[] = [];
const ratios: number[] = [];
let missing = 0;
for (let i = 1; i < all.length; i++) {
  const t = all[i]!;
  if (!crosses(all[i - 1]!.price, t.price)) continue;
  const s = signalAt.get(String(t.id));
  const w = tradeAt.get(String(t.id));
  if (s === undefined || w === undefined) {
    missing += 1;
    continue;
  }
  alert.push(s - t.ts);
  reference.push(w - t.ts);
  ratios.push((s - t.ts) / Math.max(1, w - t.ts));
}
if (alert.length === 0) throw new Error('alert-latency: no crossing produced a stored signal');
const a = latencySummary(alert);
const r = latencySummary(reference);
const q = latencySummary(ratios);
const row = (name: string, s: typeof a, extra = '') => [name, String(s.count), formatMs(s.p50), formatMs(s.p99), formatMs(s.max), extra];
printTable(
  'alert-latency - trade printed -> alert signal stored, embedded mode (ms)',
  ['path', 'count', 'p50', 'p99', 'max', ''],
  [
    row('trade printed -> signal stored (alerts consumer)', a, `p50 ratio to reference ${(a.p50 / r.p50).toFixed(2)}x, p99 ${(a.p99 / r.p99).toFixed(2)}x`),
    row('[reference] same trade printed -> trade stored (writer)', r),
    ['  per-crossing ratio alert / reference', String(q.count), q.p50.toFixed(2), q.p99.toFixed(2), q.max.toFixed(2), 'x (reference floored at 1 ms)'],
  ],
  [
    `${alert.length} crossings of ${level} (${missing} without both timings); one order every ~${STEP_MS} ms; the EventBatcher's 100 ms max delay is in both paths`,
    'both consumers read their own copy of the stream (two consumer groups), so neither waits for the other',
  ],
);

export default figuresOnly('alert-latency', 'trade printed -> alert signal stored: figures on stderr above');
