import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import {
  formatScaled,
  padDecimals,
  resolveSymbolSpec,
  SimulatedMarket,
  UnknownSimSymbolError,
  type BookDelta,
  type MarketOptions,
  type PrintedTrade,
} from '../../local/sim/market.js';
import { parseSimArgs } from '../../local/sim/main.js';
import { Prng } from '../../local/sim/prng.js';

const markets: SimulatedMarket[] = [];
afterEach(() => {
  for (const m of markets.splice(0)) m.close();
});

function manual(options: MarketOptions = {}): SimulatedMarket {
  const m = new SimulatedMarket({ autoRun: false, ...options });
  markets.push(m);
  return m;
}

/** A clock the test moves by hand. */
function fakeClock(start: number): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

const shape = (t: PrintedTrade) => [t.id, t.aggId, t.priceString, t.amountString, t.side];

/** Reference OHLCV per minute from the raw record (no gap filling). */
function minuteBars(trades: readonly PrintedTrade[]): Map<number, { o: number; h: number; l: number; c: number; v: number; n: number }> {
  const bars = new Map<number, { o: number; h: number; l: number; c: number; v: number; n: number }>();
  for (const t of trades) {
    const m = Math.floor(t.ts / 60_000) * 60_000;
    const b = bars.get(m);
    if (!b) bars.set(m, { o: t.price, h: t.price, l: t.price, c: t.price, v: t.amount, n: 1 });
    else {
      b.h = Math.max(b.h, t.price);
      b.l = Math.min(b.l, t.price);
      b.c = t.price;
      b.v += t.amount;
      b.n++;
    }
  }
  return bars;
}

describe('prng', () => {
  it('is deterministic per seed and roughly uniform', () => {
    const a = new Prng(7);
    const b = new Prng(7);
    const c = new Prng(8);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });
});

describe('decimal formatting', () => {
  it('formats scaled integers exactly', () => {
    expect(formatScaled(6500001, 2, 8)).toBe('65000.01000000');
    expect(formatScaled(123456789n, 9, 8)).toBe('0.12345679');
    expect(formatScaled(-153, 2, 2)).toBe('-1.53');
    expect(formatScaled(0, 5, 5)).toBe('0.00000');
    expect(padDecimals('0.01', 8)).toBe('0.01000000');
    expect(padDecimals('9000', 8)).toBe('9000.00000000');
  });
});

describe('simulated market model', () => {
  it('prints the same trade sequence for the same seed and a different one for another seed', () => {
    const a = manual({ seed: 42 });
    const b = manual({ seed: 42 });
    const c = manual({ seed: 43 });
    a.step(200);
    b.step(200);
    c.step(200);
    for (const s of a.symbols) {
      expect(b.printedTrades(s).map(shape)).toEqual(a.printedTrades(s).map(shape));
      expect(c.printedTrades(s).map(shape)).not.toEqual(a.printedTrades(s).map(shape));
    }
  });

  it('does not depend on how the run is stepped or which other symbols are listed', () => {
    const whole = manual({ seed: 5 });
    whole.step(100);
    const parts = manual({ seed: 5 });
    for (let i = 0; i < 10; i++) parts.step(10);
    const btcOnly = manual({ seed: 5, symbols: ['BTC/USDT'] });
    btcOnly.step(100);
    expect(parts.printedTrades('BTC/USDT').map(shape)).toEqual(whole.printedTrades('BTC/USDT').map(shape));
    expect(btcOnly.printedTrades('BTC/USDT').map(shape)).toEqual(whole.printedTrades('BTC/USDT').map(shape));
  });

  it('uses realistic defaults and rejects bad configuration', () => {
    const m = manual();
    expect(m.symbols).toEqual(['BTC/USDT', 'ETH/USDT', 'SOL/USDT']);
    expect(m.spec('BTC/USDT')).toMatchObject({ tickSize: '0.01', stepSize: '0.00001', base: 'BTC', quote: 'USDT' });
    expect(resolveSymbolSpec('BTC/USDC').initialPrice).toBe(65000);
    expect(resolveSymbolSpec('FOO/BAR')).toMatchObject({ base: 'FOO', quote: 'BAR', tickSize: '0.01' });
    expect(() => manual({ symbols: ['BTCUSDT'] })).toThrow(ConfigError);
    expect(() => manual({ symbols: ['BTC/USDT:USDT'] })).toThrow(/spot/);
    expect(() => manual({ symbols: [{ symbol: 'X/Y', tickSize: '0.000000001' }] })).toThrow(/tickSize/);
    expect(() => manual({ seed: 1.5 })).toThrow(ConfigError);
    expect(() => manual({ tradesPerSecond: 0 })).toThrow(/tradesPerSecond/);
    expect(() => m.printedTrades('DOGE/BTC')).toThrow(UnknownSimSymbolError);
  });

  it('keeps a record with contiguous raw ids and aggregates over consecutive same-side same-price same-ms fills', () => {
    const m = manual({ seed: 3, symbols: ['ETH/USDT'] });
    m.step(300);
    const trades = m.printedTrades('ETH/USDT');
    const aggs = m.aggregateTrades('ETH/USDT');
    expect(trades.length).toBeGreaterThan(300);
    trades.forEach((t, i) => expect(t.id).toBe(trades[0]!.id + i));
    aggs.forEach((a, i) => expect(a.aggId).toBe(aggs[0]!.aggId + i));
    expect(aggs.length).toBeLessThan(trades.length); // some aggregates hold several raw trades
    let next = trades[0]!.id;
    for (const a of aggs) {
      expect(a.firstId).toBe(next);
      const members = trades.slice(a.firstId - trades[0]!.id, a.lastId - trades[0]!.id + 1);
      next = a.lastId + 1;
      for (const t of members) {
        expect(t).toMatchObject({ aggId: a.aggId, priceString: a.priceString, side: a.side, ts: a.ts });
      }
      // exact decimal sum of the member amounts
      const steps = members.reduce((s, t) => s + Math.round(t.amount * 1e4), 0);
      expect(Math.round(a.amount * 1e4)).toBe(steps);
    }
    expect(next).toBe(trades[trades.length - 1]!.id + 1);
    // amounts are multiples of the step size and at least minQty; prices multiples of the tick
    for (const t of trades) {
      expect(t.amountString).toMatch(/^\d+\.\d{4}$/);
      expect(t.priceString).toMatch(/^\d+\.\d{2}$/);
      expect(t.amount).toBeGreaterThanOrEqual(0.0001);
    }
  });

  it('emits contiguous book deltas that rebuild the book, and trades print at the touch', () => {
    const m = manual({ seed: 11, symbols: ['SOL/USDT'] });
    const start = m.book('SOL/USDT');
    const bids = new Map(start.bids.map((e) => [e.priceString, e.amountString]));
    const asks = new Map(start.asks.map((e) => [e.priceString, e.amountString]));
    let lastId = start.lastUpdateId;
    const deltas: BookDelta[] = [];
    const touchViolations: string[] = [];
    m.subscribe({
      book: (d) => {
        deltas.push(d);
        expect(d.firstUpdateId).toBe(lastId + 1);
        expect(d.lastUpdateId - d.firstUpdateId + 1).toBe(d.changes.length);
        lastId = d.lastUpdateId;
        for (const c of d.changes) {
          const side = c.side === 'bid' ? bids : asks;
          if (c.amount === 0) side.delete(c.priceString);
          else side.set(c.priceString, c.amountString);
        }
        const bestBid = Math.max(...[...bids.keys()].map(Number));
        const bestAsk = Math.min(...[...asks.keys()].map(Number));
        expect(bestBid).toBeLessThan(bestAsk);
      },
      trades: (_symbol, trades) => {
        // the replica holds the book after the re-quote and before this order's fills
        const first = trades[0]!;
        const touch = first.side === 'buy' ? Math.min(...[...asks.keys()].map(Number)) : Math.max(...[...bids.keys()].map(Number));
        if (first.price !== touch) touchViolations.push(`${first.id} ${first.side} ${first.price} vs ${touch}`);
        for (const t of trades) {
          if (t.side === 'buy') expect(t.price).toBeGreaterThanOrEqual(touch);
          else expect(t.price).toBeLessThanOrEqual(touch);
        }
      },
    });
    m.step(300);
    expect(touchViolations).toEqual([]);
    expect(deltas.length).toBeGreaterThan(300);
    const end = m.book('SOL/USDT');
    expect(end.lastUpdateId).toBe(lastId);
    expect(m.lastUpdateId('SOL/USDT')).toBe(lastId);
    expect(new Map(end.bids.map((e) => [e.priceString, e.amountString]))).toEqual(bids);
    expect(new Map(end.asks.map((e) => [e.priceString, e.amountString]))).toEqual(asks);
    expect(end.bids[0]!.price).toBeLessThan(end.asks[0]!.price);
    const top = m.topOfBook('SOL/USDT');
    expect(top.bid).toEqual(end.bids[0]);
    expect(top.ask).toEqual(end.asks[0]);
  });

  it('builds klines from the printed record, carrying the close over empty intervals', () => {
    const clock = fakeClock(Date.UTC(2025, 0, 6, 12, 0, 0));
    const m = manual({ seed: 9, symbols: ['BTC/USDT'], clock });
    for (let i = 0; i < 60; i++) {
      m.step(1);
      clock.advance(7_000);
    }
    clock.advance(3 * 60_000); // three empty minutes
    m.step(5);
    const trades = m.printedTrades('BTC/USDT');
    const ref = minuteBars(trades);
    const klines = m.klines('BTC/USDT', '1m', { limit: 1000 });
    const first = Math.floor(trades[0]!.ts / 60_000) * 60_000;
    expect(klines[0]!.openTime).toBe(first);
    let prevClose = 0;
    klines.forEach((k, i) => {
      expect(k.openTime).toBe(first + i * 60_000);
      expect(k.closeTime).toBe(k.openTime + 59_999);
      const r = ref.get(k.openTime);
      if (r) {
        expect([Number(k.open), Number(k.high), Number(k.low), Number(k.close), k.count]).toEqual([r.o, r.h, r.l, r.c, r.n]);
        expect(Number(k.volume)).toBeCloseTo(r.v, 8);
      } else {
        expect([Number(k.open), Number(k.high), Number(k.low), Number(k.close), Number(k.volume), k.count]).toEqual([
          prevClose, prevClose, prevClose, prevClose, 0, 0,
        ]);
      }
      prevClose = Number(k.close);
    });
    expect(klines.filter((k) => k.count === 0).length).toBeGreaterThanOrEqual(2);
    // Binance query rules: startTime → first `limit` from there; otherwise the last `limit`
    expect(m.klines('BTC/USDT', '1m', { limit: 2 }).map((k) => k.openTime)).toEqual(klines.slice(-2).map((k) => k.openTime));
    expect(m.klines('BTC/USDT', '1m', { startTime: first + 1, limit: 2 }).map((k) => k.openTime)).toEqual([first + 60_000, first + 120_000]);
    // 5m bars aggregate the 1m bars
    const five = m.klines('BTC/USDT', '5m');
    const volume5 = five.reduce((s, k) => s + Number(k.volume), 0);
    expect(volume5).toBeCloseTo(trades.reduce((s, t) => s + t.amount, 0), 8);
    expect(five.reduce((s, k) => s + k.count, 0)).toBe(trades.length);
  });

  it('keeps rolling 24h stats equal to a brute-force pass over the record', () => {
    const clock = fakeClock(Date.UTC(2025, 0, 6));
    const m = manual({ seed: 21, symbols: ['ETH/USDT'], clock });
    const check = (): void => {
      const now = clock.now();
      const window = m.printedTrades('ETH/USDT').filter((t) => t.ts >= now - 86_400_000);
      const st = m.stats24h('ETH/USDT');
      expect(st.count).toBe(window.length);
      expect(Number(st.high)).toBe(Math.max(...window.map((t) => t.price)));
      expect(Number(st.low)).toBe(Math.min(...window.map((t) => t.price)));
      expect(Number(st.open)).toBe(window[0]!.price);
      expect(Number(st.last)).toBe(window[window.length - 1]!.price);
      expect(Number(st.volume)).toBeCloseTo(window.reduce((s, t) => s + t.amount, 0), 8);
      expect(st.firstId).toBe(window[0]!.id);
    };
    for (let i = 0; i < 50; i++) {
      m.step(3);
      clock.advance(45 * 60_000);
      if (i > 35) check();
    }
    const before = m.stats24h('ETH/USDT');
    clock.advance(2 * 86_400_000);
    const empty = m.stats24h('ETH/USDT');
    expect(empty).toMatchObject({ count: 0, firstId: -1, volume: '0.0000', last: before.last, open: before.last });
  });

  it('runs on a timer at roughly the configured rate and stops', async () => {
    const m = new SimulatedMarket({ seed: 1, symbols: ['BTC/USDT'], tradesPerSecond: 100, tickMs: 10 });
    markets.push(m);
    expect(m.running).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    m.stop();
    const printed = m.aggregateTrades('BTC/USDT').length; // >= orders
    expect(printed).toBeGreaterThan(10);
    expect(printed).toBeLessThan(120);
    const count = m.printedTrades('BTC/USDT').length;
    await new Promise((r) => setTimeout(r, 50));
    expect(m.printedTrades('BTC/USDT').length).toBe(count);
  });

  it('printTrades prints at least the requested number of raw trades; warmup back-fills history', () => {
    const m = manual({ symbols: ['SOL/USDT'] });
    expect(m.printTrades(25, 'SOL/USDT').length).toBeGreaterThanOrEqual(25);
    const w = manual({ symbols: ['SOL/USDT'], warmup: { orders: 120, spanMs: 60 * 60_000 } });
    const trades = w.printedTrades('SOL/USDT');
    expect(trades[0]!.ts).toBeLessThan(Date.now() - 50 * 60_000);
    expect(w.klines('SOL/USDT', '1m').length).toBeGreaterThanOrEqual(59);
  });
});

describe('simulator CLI flags', () => {
  it('parses flags with defaults', () => {
    expect(parseSimArgs([])).toMatchObject({ port: 8090, seed: 42, tradesPerSecond: 2, symbols: ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'] });
    expect(parseSimArgs(['--port', '0', '--seed', '7', '--symbols', 'btc/usdt, ETH/USDT', '--tps', '0.5'])).toMatchObject({
      port: 0,
      seed: 7,
      symbols: ['BTC/USDT', 'ETH/USDT'],
      tradesPerSecond: 0.5,
    });
  });

  it('names the bad flag', () => {
    expect(() => parseSimArgs(['--prot', '1'])).toThrow(/--prot/);
    expect(() => parseSimArgs(['--port', '70000'])).toThrow(/--port must be at most 65535/);
    expect(() => parseSimArgs(['--seed', '1.5'])).toThrow(/--seed must be an integer/);
    expect(() => parseSimArgs(['--tps', '0'])).toThrow(/--tps/);
    expect(() => parseSimArgs(['--symbols', 'BTCUSDT'])).toThrow(/--symbols/);
    expect(() => parseSimArgs(['--symbols', 'BTC/USDT,BTC/USDT'])).toThrow(/twice/);
    expect(() => parseSimArgs(['--port'])).toThrow(ConfigError);
  });

  it('mounts binance and okx by default and parses --exchanges and --chaos', () => {
    expect(parseSimArgs([]).exchanges).toEqual(['binance', 'okx']);
    expect(parseSimArgs(['--exchanges', 'OKX']).exchanges).toEqual(['okx']);
    expect(parseSimArgs(['--exchanges', 'okx,binance']).exchanges).toEqual(['okx', 'binance']);
    expect(parseSimArgs([]).chaos).toBeUndefined();
    expect(parseSimArgs(['--chaos', 'tradeSkipRate=0.01, dropEveryMs=30000,stallEveryMs=5000,stallMs=500,malformedShapes=schema']).chaos).toEqual({
      tradeSkipRate: 0.01,
      dropEveryMs: 30000,
      stallEveryMs: 5000,
      stallMs: 500,
      malformedShapes: ['schema'],
    });
    expect(() => parseSimArgs(['--exchanges', 'kraken'])).toThrow(/--exchanges: unknown exchange "kraken"/);
    expect(() => parseSimArgs(['--exchanges', 'okx,okx'])).toThrow(/twice/);
    expect(() => parseSimArgs(['--chaos', 'skipEverything=1'])).toThrow(/--chaos: unknown key "skipEverything"/);
    expect(() => parseSimArgs(['--chaos', 'tradeSkipRate=2'])).toThrow(/tradeSkipRate must be a probability/);
    expect(() => parseSimArgs(['--chaos', 'stallMs=500'])).toThrow(/stallEveryMs and stallMs go together/);
    expect(() => parseSimArgs(['--chaos', 'malformedShapes=json'])).toThrow(ConfigError);
  });
});
