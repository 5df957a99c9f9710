/**
 * Real ccxt / ccxt.pro binance clients against the simulated exchange over real HTTP and
 * WebSocket: no mocks, only the URLs differ (applyEndpointOverride).
 */
import ccxt, { type OrderBook, type Trade } from 'ccxt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { applyEndpointOverride, UnsupportedEndpointOverrideError } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { startSimulatedExchange, type SimulatedExchange, type SimulatedExchangeOptions } from '../../local/sim/server.js';

type ProBinance = InstanceType<typeof ccxt.pro.binance>;

const BTC = 'BTC/USDT';
const sims: SimulatedExchange[] = [];
const exchanges: ProBinance[] = [];

async function startSim(options: SimulatedExchangeOptions = {}): Promise<SimulatedExchange> {
  const sim = await startSimulatedExchange({
    seed: 42,
    autoRun: false,
    protocols: [binanceProtocol({ tickerIntervalMs: 50 })],
    ...options,
  });
  sims.push(sim);
  return sim;
}

/** A ccxt.pro binance client pointed at `sim`, markets loaded. No rate limiter: tests stay fast. */
async function connect(sim: SimulatedExchange, config: Record<string, unknown> = {}): Promise<ProBinance> {
  const ex = new ccxt.pro.binance({ enableRateLimit: false, options: { newUpdates: true }, ...config });
  exchanges.push(ex);
  await applyEndpointOverride(ex, { rest: sim.httpUrl, ws: sim.wsUrl });
  await ex.loadMarkets();
  return ex;
}

/** Prints one order per `everyMs` until stopped, so pending watch calls always get a next message. */
function pump(sim: SimulatedExchange, everyMs = 10, symbol?: string): () => void {
  const timer = setInterval(() => sim.market.step(1, symbol), everyMs);
  return () => clearInterval(timer);
}

async function within<T>(ms: number, what: string, body: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      body(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const tradeView = (t: Trade) => ({ id: t.id, timestamp: t.timestamp, price: t.price, amount: t.amount, side: t.side, symbol: t.symbol });
const printedView = (t: PrintedTrade) => ({ id: String(t.id), timestamp: t.ts, price: t.price, amount: t.amount, side: t.side, symbol: t.symbol });
const levels = (side: readonly { price: number; amount: number }[]) => side.map((e) => [e.price, e.amount]);

afterEach(async () => {
  await Promise.all(exchanges.splice(0).map((ex) => ex.close().catch(() => undefined)));
});

afterAll(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

describe('simulated binance over REST (ccxt)', () => {
  let sim: SimulatedExchange;
  beforeAll(async () => {
    sim = await startSim();
    sim.market.step(150);
  });

  it('loadMarkets sees the spot symbols with Binance precision and limits', async () => {
    const ex = await connect(sim);
    expect(Object.keys(ex.markets ?? {}).sort()).toEqual(['BTC/USDT', 'ETH/USDT', 'SOL/USDT']);
    const btc = ex.market(BTC);
    expect(btc).toMatchObject({ id: 'BTCUSDT', spot: true, active: true, base: 'BTC', quote: 'USDT' });
    expect(btc.precision).toMatchObject({ price: 0.01, amount: 0.00001 });
    expect(btc.limits.amount).toMatchObject({ min: 0.00001, max: 9000 });
    expect(btc.limits.cost?.min).toBe(5);
    expect(ex.market('ETH/USDT').precision).toMatchObject({ price: 0.01, amount: 0.0001 });
    expect(ex.market('SOL/USDT').precision).toMatchObject({ price: 0.01, amount: 0.001 });
  });

  it('fetchTrades in the raw-trade id space equals the printed record', async () => {
    const ex = await connect(sim);
    const printed = sim.printedTrades(BTC);
    const trades = await ex.fetchTrades(BTC, undefined, 1000, { fetchTradesMethod: 'publicGetTrades' });
    expect(trades.map(tradeView)).toEqual(printed.map(printedView));
    // historicalTrades pages by raw id (ccxt insists on an API key header for it)
    ex.apiKey = 'sim-key';
    const page = await ex.fetchTrades(BTC, undefined, 10, { fetchTradesMethod: 'publicGetHistoricalTrades', fromId: printed[20]!.id });
    expect(page.map(tradeView)).toEqual(printed.slice(20, 30).map(printedView));
  });

  it("fetchTrades' default (aggTrades) returns aggregate ids, which differ from raw ids", async () => {
    const ex = await connect(sim);
    const aggs = sim.market.aggregateTrades(BTC);
    const trades = await ex.fetchTrades(BTC, undefined, 1000);
    expect(trades.map((t) => [t.id, t.price, t.amount, t.side, t.timestamp])).toEqual(
      aggs.map((a) => [String(a.aggId), a.price, a.amount, a.side, a.ts]),
    );
    expect(aggs.length).toBeLessThan(sim.printedTrades(BTC).length);
    const since = aggs[10]!.ts;
    const fromSince = await ex.fetchTrades(BTC, since, 5);
    expect(fromSince[0]!.timestamp).toBeGreaterThanOrEqual(since);
    const byId = await ex.fetchTrades(BTC, undefined, 3, { fromId: aggs[5]!.aggId });
    expect(byId.map((t) => t.id)).toEqual(aggs.slice(5, 8).map((a) => String(a.aggId)));
  });

  it('fetchOrderBook and fetchTicker agree with the model', async () => {
    const ex = await connect(sim);
    const book = await ex.fetchOrderBook(BTC, 20);
    const model = sim.market.book(BTC, 20);
    expect(book.nonce).toBe(model.lastUpdateId);
    expect(book.bids).toEqual(levels(model.bids));
    expect(book.asks).toEqual(levels(model.asks));
    expect(book.bids[0]![0]!).toBeLessThan(book.asks[0]![0]!);

    const ticker = await ex.fetchTicker(BTC);
    const printed = sim.printedTrades(BTC);
    const top = sim.market.topOfBook(BTC);
    expect(ticker.last).toBe(printed[printed.length - 1]!.price);
    expect(ticker.bid).toBe(top.bid.price);
    expect(ticker.ask).toBe(top.ask.price);
    expect(ticker.high).toBe(Math.max(...printed.map((t) => t.price)));
    expect(ticker.low).toBe(Math.min(...printed.map((t) => t.price)));
    expect(ticker.open).toBe(printed[0]!.price);
    expect(ticker.baseVolume).toBeCloseTo(printed.reduce((s, t) => s + t.amount, 0), 8);
  });

  it('rejects bad requests the Binance way', async () => {
    const ex = await connect(sim);
    await expect(ex.publicGetDepth({ symbol: 'NOPEUSDT' })).rejects.toBeInstanceOf(ccxt.BadSymbol);
    await expect(ex.publicGetKlines({ symbol: 'BTCUSDT', interval: '7m' })).rejects.toBeInstanceOf(ccxt.BadRequest);
    const res = await fetch(`${sim.httpUrl}/api/v3/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: -1020 });
    const outside = await fetch(`${sim.origin}/kraken/0/public/Time`);
    expect(outside.status).toBe(404);
    expect(await (await fetch(`${sim.httpUrl}/api/v3/ping`)).json()).toEqual({});
  });

  it('fails the next REST calls on request (429 / 5xx) and recovers', async () => {
    const ex = await connect(sim);
    sim.faults.failNextRest(1, 429);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.DDoSProtection); // ccxt maps HTTP 429 to DDoSProtection
    // a gateway 5xx page maps to ExchangeNotAvailable (a NetworkError: retryable)
    sim.faults.failNextRest(1, 503);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.ExchangeNotAvailable);
    // Binance's own JSON 500 {code:-1001} maps by code to OperationFailed (NetworkError's parent)
    sim.faults.failNextRest(2, 500);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.OperationFailed);
    await expect(ex.fetchOrderBook(BTC)).rejects.toBeInstanceOf(ccxt.OperationFailed);
    expect((await ex.fetchTicker(BTC)).last).toBe(sim.printedTrades(BTC).at(-1)!.price);
  });

  it('point-in-time guards: unsupported exchanges and bad URLs are named errors', async () => {
    await expect(applyEndpointOverride(new ccxt.pro.kraken(), { rest: sim.httpUrl, ws: sim.wsUrl })).rejects.toBeInstanceOf(
      UnsupportedEndpointOverrideError,
    );
    await expect(applyEndpointOverride(new ccxt.pro.binance(), { rest: sim.httpUrl, ws: sim.wsUrl, marketTypes: ['swap'] })).rejects.toBeInstanceOf(
      ConfigError,
    );
    await expect(applyEndpointOverride(new ccxt.pro.binance(), { rest: 'ftp://x', ws: sim.wsUrl })).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('simulated binance OHLCV (ccxt)', () => {
  it('fetchOHLCV 1m equals candles computed from the printed record', async () => {
    let now = Date.now() - 20 * 60_000;
    const sim = await startSim({ symbols: [BTC], clock: { now: () => now } });
    for (let i = 0; i < 200; i++) {
      sim.market.step(1);
      now += 5_000; // 200 orders over ~17 minutes
    }
    const ex = await connect(sim);
    const candles = await ex.fetchOHLCV(BTC, '1m');
    const printed = sim.printedTrades(BTC);
    const expected = new Map<number, number[]>();
    for (const t of printed) {
      const m = Math.floor(t.ts / 60_000) * 60_000;
      const c = expected.get(m);
      if (!c) expected.set(m, [m, t.price, t.price, t.price, t.price, t.amount]);
      else {
        c[2] = Math.max(c[2]!, t.price);
        c[3] = Math.min(c[3]!, t.price);
        c[4] = t.price;
        c[5] = c[5]! + t.amount;
      }
    }
    // one candle per minute from the first trade's to the current one; minutes without trades
    // carry the previous close with zero volume (as Binance does)
    const firstMinute = Math.floor(printed[0]!.ts / 60_000) * 60_000;
    expect(candles.length).toBeGreaterThanOrEqual(expected.size);
    let prevClose = 0;
    candles.forEach((candle, i) => {
      expect(candle[0]).toBe(firstMinute + i * 60_000);
      const want = expected.get(candle[0]!) ?? [candle[0]!, prevClose, prevClose, prevClose, prevClose, 0];
      expect(candle.slice(0, 5)).toEqual(want.slice(0, 5));
      expect(candle[5]).toBeCloseTo(want[5]!, 8);
      prevClose = candle[4]!;
    });
    expect(candles.filter((c) => expected.has(c[0]!)).length).toBe(expected.size);
    const last3 = await ex.fetchOHLCV(BTC, '1m', candles[2]![0], 3);
    expect(last3).toEqual(candles.slice(2, 5));
  });
});

describe('simulated binance over WebSocket (ccxt.pro)', () => {
  it('watchTrades delivers every printed trade exactly once, in order, with raw trade ids', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const first = ex.watchTrades(BTC);
    await sim.waitForStreams(['btcusdt@trade']);
    const baseline = sim.printedTrades(BTC).length;
    const stop = pump(sim, 5, BTC);
    const target = 150;
    const got: Trade[] = [];
    try {
      await within(10_000, 'collect trades', async () => {
        got.push(...(await first));
        while (got.length < target) got.push(...(await ex.watchTrades(BTC)));
      });
    } finally {
      stop();
    }
    const printed = sim.printedTrades(BTC).slice(baseline, baseline + got.length);
    expect(got.length).toBeGreaterThanOrEqual(target);
    expect(got.map(tradeView)).toEqual(printed.map(printedView));
    expect(new Set(got.map((t) => t.id)).size).toBe(got.length);
    // raw ids, not aggregate ids
    expect(got.some((t, i) => t.id !== String(printed[i]!.aggId))).toBe(true);
  });

  it('watchOrderBook syncs from the REST snapshot and tracks the model exactly', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const stop = pump(sim, 5);
    let book: OrderBook;
    try {
      book = await within(5_000, 'first book', () => ex.watchOrderBook(BTC));
      const start = book.nonce!;
      await within(5_000, 'book updates', async () => {
        while (book.nonce! < start + 200) book = await ex.watchOrderBook(BTC);
      });
    } finally {
      stop();
    }
    const target = sim.market.lastUpdateId(BTC);
    await within(5_000, 'book catches up', async () => {
      while (book.nonce! < target) book = await ex.watchOrderBook(BTC);
    });
    expect(book.nonce).toBe(target);
    const model = sim.market.book(BTC);
    expect(book.bids).toEqual(levels(model.bids));
    expect(book.asks).toEqual(levels(model.asks));
    expect(book.bids[0]![0]).toBe(sim.market.topOfBook(BTC).bid.price);
    expect(book.asks[0]![0]).toBe(sim.market.topOfBook(BTC).ask.price);
  });

  it('watchTicker reports the last printed trade; watchBidsAsks and watchOHLCV follow the model', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    sim.market.step(20);
    const lastPrinted = (): number => sim.printedTrades(BTC).at(-1)!.price;
    // tickers and klines are pushed on a timer (50 ms here, 1 s on Binance), changed or not
    let ticker = await within(5_000, 'ticker', () => ex.watchTicker(BTC));
    expect(ticker.last).toBe(lastPrinted());
    sim.market.step(5);
    await within(5_000, 'ticker update', async () => {
      while (ticker.last !== lastPrinted()) ticker = await ex.watchTicker(BTC);
    });
    expect(ticker.high).toBe(Math.max(...sim.printedTrades(BTC).map((t) => t.price)));
    expect(ticker.baseVolume).toBeCloseTo(sim.printedTrades(BTC).reduce((s, t) => s + t.amount, 0), 8);

    let candles = await within(5_000, 'kline', () => ex.watchOHLCV(BTC, '1m'));
    await within(5_000, 'kline update', async () => {
      while (candles.at(-1)![4] !== lastPrinted()) candles = await ex.watchOHLCV(BTC, '1m');
    });
    expect(candles.at(-1)![0]).toBe(Math.floor(sim.printedTrades(BTC).at(-1)!.ts / 60_000) * 60_000);

    // bookTicker is pushed on every change of the touch; check each push against the model at its update id
    const topAt = new Map<number, { bid: number; ask: number }>();
    const off = sim.market.subscribe({
      book: (d) => {
        if (d.symbol !== BTC) return;
        const top = sim.market.topOfBook(BTC);
        topAt.set(d.lastUpdateId, { bid: top.bid.price, ask: top.ask.price });
      },
    });
    const stop = pump(sim, 10, BTC);
    try {
      for (let i = 0; i < 10; i++) {
        const quote = (await within(5_000, 'bookTicker', () => ex.watchBidsAsks([BTC])))[BTC]!;
        const u = Number((quote.info as Record<string, unknown>)['u']);
        expect(topAt.get(u), `push with u=${u}`).toEqual({ bid: quote.bid, ask: quote.ask });
      }
    } finally {
      stop();
      off();
    }
  });

  it('a skipped depth update id makes watchOrderBook reject with ChecksumError, and the next call resyncs', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    let book: OrderBook;
    const stop = pump(sim, 5, BTC);
    try {
      book = await within(5_000, 'first book', () => ex.watchOrderBook(BTC));
      const synced = book.nonce!;
      await within(5_000, 'live updates', async () => {
        while (book.nonce! <= synced) book = await ex.watchOrderBook(BTC);
      });
      sim.faults.skipDepthUpdate(BTC);
      const error = await within(5_000, 'gap detected', async () => {
        for (;;) {
          try {
            book = await ex.watchOrderBook(BTC);
          } catch (e) {
            return e;
          }
        }
      });
      expect(error).toBeInstanceOf(ccxt.ChecksumError);
      // ccxt dropped its book and subscription; calling again re-subscribes and fetches a new REST
      // snapshot. If the gap arrived while no watch was pending, ccxt keeps the rejected future and
      // the next calls reject with the same error until the new snapshot resolves: retry until it does.
      const restarted = await within(5_000, 'resync', async () => {
        for (;;) {
          try {
            return await ex.watchOrderBook(BTC);
          } catch (e) {
            expect(e).toBe(error);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      });
      expect(restarted.nonce).toBeGreaterThan(book.nonce!);
      book = restarted;
    } finally {
      stop();
    }
    sim.market.step(1, BTC);
    const target = sim.market.lastUpdateId(BTC);
    await within(5_000, 'catch up after resync', async () => {
      while (book.nonce! < target) book = await ex.watchOrderBook(BTC);
    });
    expect(book.nonce).toBe(target);
    expect(book.bids).toEqual(levels(sim.market.book(BTC).bids));
    expect(book.asks).toEqual(levels(sim.market.book(BTC).asks));
  });

  it('dropping all connections rejects the pending watch with NetworkError; the next watch reconnects', async () => {
    const sim = await startSim();
    // ccxt.pro waits `ws.backoff.base` (default 1000 ms, doubling) before re-dialling a dropped URL
    const ex = await connect(sim, { options: { newUpdates: true, ws: { backoff: { base: 100 } } } });
    const pending = ex.watchTrades(BTC).then(
      () => undefined,
      (error: unknown) => error,
    );
    await sim.waitForStreams(['btcusdt@trade']);
    expect(sim.connectionCount()).toBe(1);
    expect(await sim.faults.dropConnections()).toBe(1);
    expect(sim.connectionCount()).toBe(0);
    expect(sim.activeStreams()).toEqual([]);
    expect(await within(5_000, 'rejection', () => pending)).toBeInstanceOf(ccxt.NetworkError);

    const again = ex.watchTrades(BTC);
    await sim.waitForStreams(['btcusdt@trade']);
    expect(sim.connectionCount()).toBe(1);
    const baseline = sim.printedTrades(BTC).length;
    const stop = pump(sim, 10, BTC);
    try {
      const got = await within(5_000, 'trades after reconnect', () => again);
      expect(got[0]!.id).toBe(String(sim.printedTrades(BTC)[baseline]!.id));
    } finally {
      stop();
    }
  });

  it('watchTrades with name aggTrade uses the aggregate id space', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const first = ex.watchTrades(BTC, undefined, undefined, { name: 'aggTrade' });
    await sim.waitForStreams(['btcusdt@aggTrade']);
    const baseline = sim.market.aggregateTrades(BTC).length;
    const stop = pump(sim, 10, BTC);
    const got: Trade[] = [];
    try {
      await within(5_000, 'aggTrades', async () => {
        got.push(...(await first));
        while (got.length < 20) got.push(...(await ex.watchTrades(BTC, undefined, undefined, { name: 'aggTrade' })));
      });
    } finally {
      stop();
    }
    const aggs = sim.market.aggregateTrades(BTC).slice(baseline, baseline + got.length);
    expect(got.map((t) => [t.id, t.price, t.amount, t.side])).toEqual(aggs.map((a) => [String(a.aggId), a.price, a.amount, a.side]));
  });

  it('a paused stream drops messages; after resume delivery continues with later trades only', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const first = ex.watchTrades(BTC);
    await sim.waitForStreams(['btcusdt@trade']);
    sim.faults.pauseStreams(BTC);
    sim.market.step(5, BTC);
    const missed = sim.printedTrades(BTC).length;
    sim.faults.resumeStreams(BTC);
    sim.market.step(1, BTC);
    const got = await within(5_000, 'trades after resume', () => first);
    expect(got[0]!.id).toBe(String(sim.printedTrades(BTC)[missed]!.id));
  });

  it('speaks the raw Binance stream protocol: SUBSCRIBE errors, LIST_SUBSCRIPTIONS, combined and partial-depth streams', async () => {
    const sim = await startSim();
    const messages: unknown[] = [];
    const socket = new WebSocket(`${sim.wsUrl.replace(/\/ws$/, '/stream')}?streams=btcusdt@trade/btcusdt@depth5@100ms`);
    socket.on('message', (data) => messages.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const next = async (match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> =>
      within(3_000, 'raw message', async () => {
        for (;;) {
          const i = messages.findIndex((m) => match(m as Record<string, unknown>));
          if (i >= 0) return messages.splice(i, 1)[0] as Record<string, unknown>;
          await new Promise((r) => setTimeout(r, 5));
        }
      });
    try {
      socket.send(JSON.stringify({ method: 'SUBSCRIBE', params: ['btcusdt@nonsense'], id: 1 }));
      expect(await next((m) => m['id'] === 1)).toMatchObject({ error: { code: 2 }, id: 1 });
      socket.send(JSON.stringify({ method: 'SUBSCRIBE', params: ['ethusdt@aggTrade'], id: 2 }));
      expect(await next((m) => m['id'] === 2)).toEqual({ result: null, id: 2 });
      socket.send(JSON.stringify({ method: 'LIST_SUBSCRIPTIONS', id: 3 }));
      expect(((await next((m) => m['id'] === 3))['result'] as string[]).sort()).toEqual([
        'btcusdt@depth5@100ms',
        'btcusdt@trade',
        'ethusdt@aggTrade',
      ]);
      sim.market.step(1);
      const trade = await next((m) => m['stream'] === 'btcusdt@trade');
      expect(trade['data']).toMatchObject({ e: 'trade', s: 'BTCUSDT', t: sim.printedTrades(BTC)[0]!.id });
      const agg = await next((m) => m['stream'] === 'ethusdt@aggTrade');
      expect(agg['data']).toMatchObject({ e: 'aggTrade', s: 'ETHUSDT', a: sim.market.aggregateTrades('ETH/USDT')[0]!.aggId });
      const partial = (await next((m) => m['stream'] === 'btcusdt@depth5@100ms'))['data'] as { lastUpdateId: number; bids: unknown[] };
      expect(partial.bids).toHaveLength(5);
      expect(partial.lastUpdateId).toBe(sim.market.lastUpdateId(BTC));
      socket.send(JSON.stringify({ method: 'UNSUBSCRIBE', params: ['btcusdt@trade'], id: 4 }));
      expect(await next((m) => m['id'] === 4)).toEqual({ result: null, id: 4 });
      expect(sim.activeStreams()).not.toContain('btcusdt@trade');
      socket.send(JSON.stringify({ method: 'FOO', id: 5 }));
      expect(await next((m) => m['id'] === 5)).toMatchObject({ error: { code: 2 } });
    } finally {
      socket.terminate();
    }
  });

  it('serves the same trade sequence to two runs with the same seed', async () => {
    const a = await startSim({ seed: 7, symbols: [BTC] });
    const b = await startSim({ seed: 7, symbols: [BTC] });
    a.market.step(40);
    b.market.step(40);
    const [ea, eb] = [await connect(a), await connect(b)];
    const opts = { fetchTradesMethod: 'publicGetTrades' };
    const shape = (t: Trade) => [t.id, t.price, t.amount, t.side];
    const [ta, tb] = [await ea.fetchTrades(BTC, undefined, 1000, opts), await eb.fetchTrades(BTC, undefined, 1000, opts)];
    expect(ta.map(shape)).toEqual(tb.map(shape));
    expect(ta.length).toBe(a.printedTrades(BTC).length);
  });
});
