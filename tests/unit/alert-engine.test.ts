import { describe, expect, it } from 'vitest';
import { AlertEngine, type AlertCounter, type AlertFiring } from '../../layers/shared/src/alerts/alert-engine.js';
import { parseAlertRules, type AlertRuleInput } from '../../layers/shared/src/alerts/alert-rules.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { Quote, Signal } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { T0, book, candle, ticker, trade } from '../fixtures/events.js';

/** Signals kept in an array (the engine publishes through the real SignalService). */
class ArraySignals {
  readonly rows: Signal[] = [];
  async writeSignals(signals: readonly Signal[]): Promise<number> {
    this.rows.push(...signals);
    return signals.length;
  }
  async readSignals(): Promise<readonly Signal[]> {
    return this.rows;
  }
}

function setup(rules: AlertRuleInput[], start = T0) {
  const clock = { t: start, now() { return this.t; } };
  const counters = new Counters<AlertCounter>();
  const store = new ArraySignals();
  const signals = new SignalService({ writer: store, reader: store, clock });
  const engine = new AlertEngine({ rules: parseAlertRules(rules), signals, clock, counters, logger: silentLogger });
  return { clock, counters, store, engine };
}

function quote(overrides: Partial<Quote> = {}): Quote {
  return { type: 'quote', exchange: 'binance', symbol: 'BTC/USDT', ts: T0, localTs: T0 + 5, bid: 100, bidSize: 1, ask: 100.1, askSize: 1, seq: 1, health: 'healthy', ...overrides };
}

const ids = (fs: readonly AlertFiring[]) => fs.map((f) => f.rule.id);

describe('alert rules config', () => {
  it('fills defaults, normalizes case and parses JSON text', () => {
    const [rule] = parseAlertRules('[{"id":"btc-70k","kind":"price_cross","level":70000,"symbol":"btc/usdt","exchange":"Binance"}]');
    expect(rule).toMatchObject({ id: 'btc-70k', kind: 'price_cross', level: 70000, direction: 'either', symbol: 'BTC/USDT', exchange: 'binance', cooldownMs: 300_000 });
    expect(parseAlertRules([{ id: 'any', kind: 'stale_feed', afterMs: 5000 }])[0]).toMatchObject({ exchange: '*', symbol: '*' });
    expect(parseAlertRules('')).toEqual([]);
  });

  it('refuses bad rules with a ConfigError naming the field', () => {
    expect(() => parseAlertRules([{ id: 'x', kind: 'price_cross', level: -1 }])).toThrow(ConfigError);
    expect(() => parseAlertRules([{ id: 'x', kind: 'price_cross', level: -1 }])).toThrow(/level/);
    expect(() => parseAlertRules([{ id: 'x', kind: 'volume_spike', factor: 0.5 }])).toThrow(/factor/);
    expect(() => parseAlertRules([{ id: 'x', kind: 'teleport' }])).toThrow(ConfigError);
    // a misspelt field is refused, not silently left at its default
    expect(() => parseAlertRules([{ id: 'v', kind: 'volume_spike', windows: 20 }])).toThrow(/Unrecognized key: "windows"/);
    expect(() => parseAlertRules('[{')).toThrow(/not JSON/);
    expect(() =>
      parseAlertRules([
        { id: 'dup', kind: 'stale_feed', afterMs: 5000 },
        { id: 'dup', kind: 'spread_blowout', maxBps: 5 },
      ]),
    ).toThrow(/duplicate rule id "dup"/);
  });
});

describe('price_cross', () => {
  it('fires once at the crossing trade, with its exchange time, and not on the first print', async () => {
    const { engine, store, counters } = setup([{ id: 'btc-100', kind: 'price_cross', level: 100, direction: 'up' }]);
    expect(engine.evaluate(trade({ price: 100.5, ts: T0 }))).toEqual([]); // first print: no previous side
    expect(engine.evaluate(trade({ price: 99, ts: T0 + 1 }))).toEqual([]); // down: this rule watches up only
    const fired = engine.evaluate(trade({ id: '7', price: 100.2, ts: T0 + 2 }));
    expect(ids(fired)).toEqual(['btc-100']);
    expect(fired[0]!.triggerTs).toBe(T0 + 2);
    expect(fired[0]!.signal).toMatchObject({ direction: 'long', exchange: 'binance', symbol: 'BTC/USDT', horizon: '15m', confidence: 0.6, strength: 0.7 }); // 20 bps beyond: 0.5 + 20/100
    expect(fired[0]!.signal.rationale).toContain('level 100');
    expect(fired[0]!.signal.rationale).toContain(`exchange ts ${T0 + 2}`);
    expect(engine.evaluate(trade({ price: 101, ts: T0 + 3 }))).toEqual([]); // still above: no crossing
    expect(await engine.publish(fired[0]!)).toBe(true);
    expect(store.rows).toHaveLength(1);
    expect(store.rows[0]).toMatchObject({ publisher: 'alerts', direction: 'long' });
    expect(counters.get('fired.btc-100')).toBe(1);
    expect(counters.get('published.btc-100')).toBe(1);
  });

  it('respects the cooldown on exchange time, per market', () => {
    const { engine } = setup([{ id: 'x', kind: 'price_cross', level: 100, cooldownMs: 60_000 }]);
    const at = (price: number, ts: number, symbol = 'BTC/USDT') => ids(engine.evaluate(trade({ price, ts, symbol })));
    at(99, T0);
    expect(at(101, T0 + 1_000)).toEqual(['x']);
    expect(at(99, T0 + 2_000)).toEqual([]); // crossed down inside the cooldown
    expect(at(99, T0 + 2_000, 'ETH/USDT')).toEqual([]);
    expect(at(101, T0 + 3_000, 'ETH/USDT')).toEqual(['x']); // another market has its own cooldown
    expect(at(101, T0 + 30_000)).toEqual([]); // crossed up again, still inside the cooldown
    expect(at(101, T0 + 61_000)).toEqual([]); // cooled down, but no crossing
    expect(at(99, T0 + 61_001)).toEqual(['x']); // cooled down: the down-cross fires (direction either)
  });

  it('a down rule fires short; an exact touch counts as crossing', () => {
    const { engine } = setup([{ id: 'd', kind: 'price_cross', level: 100, direction: 'down', symbol: 'BTC/USDT' }]);
    engine.evaluate(trade({ price: 100.4 }));
    const [f] = engine.evaluate(trade({ price: 100, ts: T0 + 1 }));
    expect(f!.signal.direction).toBe('short');
    expect(engine.evaluate(trade({ symbol: 'ETH/USDT', price: 101 }))).toEqual([]);
    expect(engine.evaluate(trade({ symbol: 'ETH/USDT', price: 99, ts: T0 + 1 }))).toEqual([]); // rule is for BTC/USDT only
  });
});

describe('volume_spike', () => {
  // 1 s windows aligned on T0 (a whole second); trailing mean of 3 windows; threshold 2x
  const rule: AlertRuleInput = { id: 'vol', kind: 'volume_spike', windowMs: 1_000, trailingWindows: 3, factor: 2, cooldownMs: 0 };

  it('fires when the window volume exceeds factor x the trailing mean (by hand: windows 1, 2, 3 -> mean 2, threshold 4)', () => {
    const { engine } = setup([rule]);
    const t = (amount: number, ts: number, side: 'buy' | 'sell' = 'buy') => ids(engine.evaluate(trade({ amount, ts, side })));
    expect(t(1, T0)).toEqual([]);
    expect(t(2, T0 + 1_000)).toEqual([]);
    expect(t(3, T0 + 2_000)).toEqual([]);
    // current window T0+3s: 1.5 + 2.5 = 4 is not above 4
    expect(t(1.5, T0 + 3_000)).toEqual([]);
    expect(t(2.5, T0 + 3_100, 'sell')).toEqual([]);
    // + 0.5 = 4.5 > 4: fires; sells 3 of 4.5 -> buy share 33% -> short
    const [f] = engine.evaluate(trade({ amount: 0.5, ts: T0 + 3_200, side: 'sell' }));
    expect(f!.rule.id).toBe('vol');
    expect(f!.signal).toMatchObject({ direction: 'short', strength: 0.5625, confidence: 0.6333, horizon: '5m' });
    expect(f!.signal.rationale).toMatch(/traded 4\.5 in the 1000 ms window.*2\.25x the mean 2 of the 3 windows/);
    // once per window
    expect(t(10, T0 + 3_300)).toEqual([]);
  });

  it('needs full trailing windows, counts skipped windows as empty and re-arms in a new window', () => {
    const { engine } = setup([rule]);
    const t = (amount: number, ts: number) => ids(engine.evaluate(trade({ amount, ts })));
    expect(t(1, T0)).toEqual([]);
    expect(t(100, T0 + 1_000)).toEqual([]); // one trailing window only: not warm
    // windows so far: [1, 100]; jump to T0+5s: closes 100, then 3 empty windows (capped at the ring) -> trailing [0, 0, 0]
    expect(t(1, T0 + 5_000)).toEqual([]); // mean 0: nothing to compare with
    // trailing [0, 0, 1] -> mean 1/3; 0.5 is not above 2/3, + 0.2 = 0.7 is
    expect(t(0.5, T0 + 6_000)).toEqual([]);
    expect(t(0.2, T0 + 6_500)).toEqual(['vol']);
  });

  it('fires again in a later window once cooled down', () => {
    const { engine } = setup([{ ...rule, cooldownMs: 2_500 }]);
    const t = (amount: number, ts: number) => ids(engine.evaluate(trade({ amount, ts })));
    for (let i = 0; i < 3; i++) t(1, T0 + i * 1_000);
    expect(t(3, T0 + 3_000)).toEqual(['vol']); // 3 > 2 x 1
    expect(t(10, T0 + 4_000)).toEqual([]); // new window, but inside the 2.5 s cooldown
    expect(t(50, T0 + 6_000)).toEqual(['vol']); // trailing [3, 10, 0] mean 4.33; 50 > 8.67
  });
});

describe('spread_blowout', () => {
  it('fires once when the spread goes above the threshold, re-arms when it comes back', () => {
    const { engine } = setup([{ id: 'wide', kind: 'spread_blowout', maxBps: 50, cooldownMs: 0 }]);
    const q = (bid: number, ask: number, ts = T0) => engine.evaluate(quote({ bid, ask, ts }));
    expect(q(100, 100.1)).toEqual([]); // ~10 bps
    const [f] = q(100, 101, T0 + 1); // 1 / 100.5 = 99.5 bps
    expect(f!.signal).toMatchObject({ direction: 'flat', strength: 0.995, confidence: 0.8, horizon: '1m' });
    expect(f!.signal.rationale).toContain('spread 99.5 bps, above 50 bps');
    expect(f!.triggerTs).toBe(T0 + 1);
    expect(q(100, 102, T0 + 2)).toEqual([]); // still blown out: no repeat
    expect(q(100, 100.2, T0 + 3)).toEqual([]);
    expect(ids(q(100, 101, T0 + 4))).toEqual(['wide']);
  });

  it('reads tickers and books too; ignores one-sided tops', () => {
    const { engine } = setup([{ id: 'wide', kind: 'spread_blowout', maxBps: 50, cooldownMs: 0 }]);
    expect(ids(engine.evaluate(ticker({ bid: 99, ask: 101 })))).toEqual(['wide']);
    const e2 = setup([{ id: 'wide', kind: 'spread_blowout', maxBps: 50 }]).engine;
    expect(e2.evaluate(ticker({ bid: null, ask: 101 }))).toEqual([]);
    const [f] = e2.evaluate(book({ bids: [[90, 1]], asks: [[110, 1]], health: 'resyncing' }));
    expect(f!.signal.confidence).toBe(0.5);
  });
});

describe('stale_feed', () => {
  it('fires on a timer once a market is silent for afterMs, once per silence (fake clock)', () => {
    const { engine, clock } = setup([{ id: 'quiet', kind: 'stale_feed', afterMs: 10_000, cooldownMs: 0 }]);
    engine.evaluate(trade({ ts: T0 - 100, localTs: T0 }));
    clock.t = T0 + 9_999;
    expect(engine.checkStale()).toEqual([]);
    clock.t = T0 + 10_000;
    const [f] = engine.checkStale();
    expect(f!.signal).toMatchObject({ direction: 'flat', strength: 0.5, horizon: '1m' });
    expect(f!.triggerTs).toBe(T0 - 100);
    expect(f!.signal.rationale).toContain('for 10000 ms (threshold 10000 ms)');
    clock.t = T0 + 20_000;
    expect(engine.checkStale()).toEqual([]); // same silence
    engine.evaluate(trade({ ts: T0 + 20_000, localTs: T0 + 20_000 }));
    clock.t = T0 + 30_000;
    expect(ids(engine.checkStale())).toEqual(['quiet']);
  });

  it('watches a market named by the rule from the start, even if it never sends', () => {
    const { engine, clock } = setup([{ id: 'eth', kind: 'stale_feed', afterMs: 5_000, exchange: 'okx', symbol: 'ETH/USDT' }]);
    clock.t = T0 + 5_000;
    const [f] = engine.checkStale();
    expect(f).toMatchObject({ exchange: 'okx', symbol: 'ETH/USDT', triggerTs: null });
    expect(f!.signal.rationale).toContain('none since the alerts consumer started');
  });
});

describe('bounded state and other events', () => {
  it('ignores non-market events, counts markets over the limit', () => {
    const clock = { now: () => T0 };
    const counters = new Counters<AlertCounter>();
    const store = new ArraySignals();
    const engine = new AlertEngine({
      rules: parseAlertRules([{ id: 'x', kind: 'price_cross', level: 100 }]),
      signals: new SignalService({ writer: store, reader: store, clock }),
      clock,
      counters,
      logger: silentLogger,
      maxMarkets: 2,
    });
    for (const symbol of ['A/USDT', 'B/USDT', 'C/USDT', 'D/USDT']) engine.evaluate(trade({ symbol }));
    engine.evaluate(candle());
    expect(engine.marketCount).toBe(2);
    expect(counters.get('markets_over_limit')).toBe(3);
    expect(counters.get('events')).toBe(5);
  });
});
