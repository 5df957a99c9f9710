/**
 * Scripted market scenarios (local/sim/scenarios.ts) as a client sees them: real ccxt over HTTP
 * (fetchOHLCV, fetchTrades) and ccxt.pro over WebSocket against the simulator, in the synthetic
 * history a backfill pages through and in the live market after the start.
 */
import ccxt, { type Exchange, type OHLCV } from 'ccxt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { parseSimArgs } from '../../local/sim/main.js';
import { SimSymbolHaltedError } from '../../local/sim/market.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { armScenarioFeeds, parseScenario, SCENARIO_SCRIPTS, type ScenarioOptions } from '../../local/sim/scenarios.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';

const MIN = 60_000;
/** The simulator's start: a whole minute, so 1m bars line up with the scripted times. */
const T = Date.UTC(2026, 0, 5, 12, 0);
const BTC = 'BTC/USDT';
const ETH = 'ETH/USDT';
const SOL = 'SOL/USDT';
const BNB = 'BNB/USDT';
const SYMBOLS = [BTC, ETH, SOL, BNB];
const SCENARIOS: readonly ScenarioOptions[] = [
  { name: 'breakout', symbol: BTC },
  { name: 'crash', symbol: ETH },
  { name: 'stale_feed', symbol: SOL },
];

const sims: SimulatedExchange[] = [];
const exchanges: Exchange[] = [];

afterEach(async () => {
  await Promise.all(exchanges.splice(0).map((ex) => ex.close().catch(() => undefined)));
});
afterAll(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

/** A clock the test moves by hand. */
function manualClock(start: number): { now: () => number; set: (t: number) => void } {
  let t = start;
  return { now: () => t, set: (next) => (t = next) };
}

async function startSim(options: { scenarios?: readonly ScenarioOptions[]; history?: boolean; clock: { now: () => number } }): Promise<SimulatedExchange> {
  const sim = await startSimulatedExchange({
    seed: 42,
    symbols: SYMBOLS,
    autoRun: false,
    protocols: [binanceProtocol({ tickerIntervalMs: 20 })],
    ...(options.history === false ? {} : { history: { tradeIntervalMs: 10_000 } }),
    ...(options.scenarios ? { scenarios: options.scenarios } : {}),
    clock: options.clock,
  });
  sims.push(sim);
  return sim;
}

async function connect(sim: SimulatedExchange): Promise<Exchange> {
  const ex = new ccxt.binance({ enableRateLimit: false });
  exchanges.push(ex);
  await applyEndpointOverride(ex, { rest: sim.httpUrl, ws: sim.wsUrl });
  await ex.loadMarkets();
  return ex;
}

/** 1m bars of [from, to) by open time, over HTTP. */
async function minuteBars(ex: Exchange, symbol: string, from: number, to: number): Promise<Map<number, OHLCV>> {
  const bars = await ex.fetchOHLCV(symbol, '1m', from, Math.round((to - from) / MIN));
  return new Map(bars.filter((b) => b[0]! < to).map((b) => [b[0]!, b]));
}

const close = (bars: Map<number, OHLCV>, openTime: number): number => {
  const bar = bars.get(openTime);
  if (!bar) throw new Error(`no bar at ${new Date(openTime).toISOString()}`);
  return bar[4]!;
};
const volumeOf = (bars: Map<number, OHLCV>, from: number, to: number): number[] =>
  [...bars.values()].filter((b) => b[0]! >= from && b[0]! < to).map((b) => b[5]!);
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('scenarios in the synthetic history (what a backfill sees)', () => {
  it('breakout: a quiet range, then closes rising by the scripted amount on rising volume', async () => {
    const sim = await startSim({ scenarios: SCENARIOS, clock: manualClock(T) });
    const ex = await connect(sim);
    const script = SCENARIO_SCRIPTS.breakout;
    const start = T - script.durationMs;
    const bars = await minuteBars(ex, BTC, start - 3 * 60 * MIN, T);

    // the last bar before the move closes at the range; the last bar of the move +4% above it
    const before = close(bars, start - MIN);
    const after = close(bars, T - MIN);
    expect(after / before).toBeGreaterThan(1 + (script.movePct - 0.5) / 100);
    expect(after / before).toBeLessThan(1 + (script.movePct + 0.5) / 100);
    // sustained: every 5-minute close of the move above the one before
    const fives = Array.from({ length: script.durationMs / (5 * MIN) }, (_, i) => close(bars, start + (i + 1) * 5 * MIN - MIN));
    for (let i = 1; i < fives.length; i++) expect(fives[i], `close ${i * 5 + 5} min into the move`).toBeGreaterThan(fives[i - 1]!);
    // quiet: the three hours before it stay within half a percent
    const range = [...bars.values()].filter((b) => b[0]! < start);
    const high = Math.max(...range.map((b) => b[2]!));
    const low = Math.min(...range.map((b) => b[3]!));
    expect(high / low).toBeLessThan(1.005);
    // volume rises through the move: its last third trades more than its first, both more than the range
    const third = script.durationMs / 3;
    const quietVolume = mean(volumeOf(bars, start - 3 * 60 * MIN, start));
    const firstThird = mean(volumeOf(bars, start, start + third));
    const lastThird = mean(volumeOf(bars, T - third, T));
    expect(lastThird).toBeGreaterThan(firstThird);
    expect(lastThird).toBeGreaterThan(2 * quietVolume);
  });

  it('crash: a sharp scripted fall with a volume spike, and the price stays down', async () => {
    const sim = await startSim({ scenarios: SCENARIOS, clock: manualClock(T) });
    const ex = await connect(sim);
    const script = SCENARIO_SCRIPTS.crash;
    const start = T - script.durationMs;
    const bars = await minuteBars(ex, ETH, start - 60 * MIN, T);

    const before = close(bars, start - MIN);
    const bottom = close(bars, start + script.moveMs - MIN);
    expect(bottom / before).toBeGreaterThan(1 + (script.movePct - 0.5) / 100);
    expect(bottom / before).toBeLessThan(1 + (script.movePct + 0.5) / 100);
    expect(close(bars, T - MIN) / before).toBeLessThan(1 + (script.movePct + 0.5) / 100);
    const quietVolume = mean(volumeOf(bars, start - 60 * MIN, start));
    expect(mean(volumeOf(bars, start, start + script.moveMs))).toBeGreaterThan(3 * quietVolume);
  });

  it('stale_feed: the symbol has no trades since the feed stopped, the others trade on', async () => {
    const sim = await startSim({ scenarios: SCENARIOS, clock: manualClock(T) });
    const ex = await connect(sim);
    const stoppedAt = T - SCENARIO_SCRIPTS.stale_feed.durationMs;

    const sol = await ex.fetchTrades(SOL, undefined, 50);
    expect(sol.length).toBe(50);
    expect(sol.at(-1)!.timestamp!).toBeLessThan(stoppedAt);
    expect(sol.at(-1)!.timestamp!).toBeGreaterThan(stoppedAt - 10_000);
    for (const symbol of [BTC, BNB]) expect((await ex.fetchTrades(symbol, undefined, 5)).at(-1)!.timestamp!, symbol).toBeGreaterThan(T - 10_000);
    const bars = await minuteBars(ex, SOL, stoppedAt, T);
    expect(bars.size).toBe(30);
    expect([...bars.values()].every((b) => b[5] === 0)).toBe(true);
  });

  it('a symbol without a scenario is exactly what it is without any scenario', async () => {
    const plain = await connect(await startSim({ clock: manualClock(T) }));
    const scripted = await connect(await startSim({ scenarios: SCENARIOS, clock: manualClock(T) }));
    const since = T - 2 * 60 * MIN;
    expect(await scripted.fetchOHLCV(BNB, '1m', since, 120)).toEqual(await plain.fetchOHLCV(BNB, '1m', since, 120));
    expect(await scripted.fetchTrades(BNB, undefined, 100)).toEqual(await plain.fetchTrades(BNB, undefined, 100));
    // and the scripted one moved: the same seed without the breakout ends elsewhere
    const last = async (ex: Exchange) => (await ex.fetchOHLCV(BTC, '1m', T - MIN, 1))[0]![4];
    expect(await last(scripted)).not.toBe(await last(plain));
  });

  it('the same seed and scenarios give the same history', async () => {
    const a = await connect(await startSim({ scenarios: SCENARIOS, clock: manualClock(T) }));
    const b = await connect(await startSim({ scenarios: SCENARIOS, clock: manualClock(T) }));
    for (const symbol of [BTC, ETH]) expect(await a.fetchOHLCV(symbol, '1m', T - 60 * MIN, 60), symbol).toEqual(await b.fetchOHLCV(symbol, '1m', T - 60 * MIN, 60));
  });
});

describe('scenarios in the live market', () => {
  it('after the start the breakout holds its level and the stale symbol prints nothing, over REST and WebSocket', async () => {
    const clock = manualClock(T);
    const sim = await startSim({ scenarios: SCENARIOS, clock });
    const disarm = armScenarioFeeds(sim);
    const ex = await connect(sim);
    const lastHistory = (await ex.fetchTrades(BTC, undefined, 1))[0]!;
    const solBefore = await ex.fetchTrades(SOL, undefined, 20);

    for (let i = 1; i <= 60; i++) {
      clock.set(T + i * 1000);
      sim.market.step(1);
    }
    const btc = await ex.fetchTrades(BTC, undefined, 100);
    expect(btc.at(-1)!.timestamp!).toBeGreaterThanOrEqual(T);
    for (const t of btc.filter((x) => x.timestamp! >= T)) expect(Math.abs(t.price! / lastHistory.price! - 1)).toBeLessThan(0.003);
    expect(await ex.fetchTrades(SOL, undefined, 20)).toEqual(solBefore);
    expect(sim.printedTrades(SOL)).toHaveLength(0);
    expect(sim.printedTrades(BNB).length).toBeGreaterThan(0);
    expect(() => sim.market.printTrades(1, SOL)).toThrow(SimSymbolHaltedError);

    // tickers go out for BTC while every SOL frame is withheld
    const pro = new ccxt.pro.binance({ enableRateLimit: false });
    exchanges.push(pro);
    await applyEndpointOverride(pro, { rest: sim.httpUrl, ws: sim.wsUrl });
    await pro.loadMarkets();
    const withheld = sim.faults.injected().stalledFrames;
    void pro.watchTicker(SOL).catch(() => undefined);
    await sim.waitForStreams(['solusdt@miniTicker']);
    for (let i = 0; i < 3; i++) expect((await pro.watchTicker(BTC)).symbol).toBe(BTC);
    expect(sim.faults.injected().stalledFrames).toBeGreaterThan(withheld);
    disarm();
  });

  it('without history a crash plays live from the start', async () => {
    const clock = manualClock(T);
    const sim = await startSim({ scenarios: [{ name: 'crash', symbol: ETH }], history: false, clock });
    const script = SCENARIO_SCRIPTS.crash;
    const [placed] = sim.market.placedScenarios();
    expect(placed).toMatchObject({ name: 'crash', symbol: ETH, startsAt: T, endsAt: T + script.durationMs });
    // four orders a minute for the crash's length and ten minutes more
    for (let t = T + 15_000; t < T + script.durationMs + 10 * MIN; t += 15_000) {
      clock.set(t);
      sim.market.step(1, ETH);
    }
    const ex = await connect(sim);
    const bars = await minuteBars(ex, ETH, T, T + script.durationMs);
    const first = bars.get(T)![1]!;
    const bottom = close(bars, T + script.moveMs - MIN);
    expect(bottom / first).toBeGreaterThan(1 + (script.movePct - 1) / 100);
    expect(bottom / first).toBeLessThan(1 + (script.movePct + 1) / 100);
    expect(mean(volumeOf(bars, T, T + script.moveMs))).toBeGreaterThan(2 * mean(volumeOf(bars, T + script.durationMs - 3 * MIN, T + script.durationMs)));
  });
});

describe('scenario options', () => {
  it('parses NAME:SYMBOL and the --scenario flag, refusing unknown names, unlisted symbols and two on one symbol', () => {
    expect(parseScenario('breakout:btc/usdt')).toEqual({ name: 'breakout', symbol: BTC });
    expect(() => parseScenario('moon:BTC/USDT')).toThrow(ConfigError);
    expect(() => parseScenario('crash')).toThrow(/needs a symbol/);
    expect(parseSimArgs(['--scenario', 'crash:ETH/USDT', '--scenario', 'stale_feed:SOL/USDT']).scenarios).toEqual([
      { name: 'crash', symbol: ETH },
      { name: 'stale_feed', symbol: SOL },
    ]);
    expect(parseSimArgs([]).scenarios).toEqual([]);
    expect(() => parseSimArgs(['--scenario', 'crash:DOGE/USDT'])).toThrow(/not in --symbols/);
    expect(() => parseSimArgs(['--scenario', 'crash:ETH/USDT', '--scenario', 'breakout:ETH/USDT'])).toThrow(/one scenario per symbol/);
  });

  it('startSimulatedExchange refuses a scenario on a symbol it does not list', async () => {
    await expect(startSimulatedExchange({ symbols: [BTC], autoRun: false, scenarios: [{ name: 'crash', symbol: ETH }] })).rejects.toThrow(ConfigError);
  });
});
