/**
 * Real ccxt / ccxt.pro okx clients against the simulated exchange's OKX v5 protocol over real
 * HTTP and WebSocket: no mocks, only the URLs differ (applyEndpointOverride).
 */
import zlib from 'node:zlib';
import ccxt, { type OrderBook, type Trade } from 'ccxt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { applyEndpointOverride, type OverrideMarketType } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { okxProtocol } from '../../local/sim/protocols/okx.js';
import { startSimulatedExchange, type SimulatedExchange, type SimulatedExchangeOptions } from '../../local/sim/server.js';

type ProOkx = InstanceType<typeof ccxt.pro.okx>;
type ProBinance = InstanceType<typeof ccxt.pro.binance>;
type RawMessage = Record<string, unknown>;

const BTC = 'BTC/USDT';
const BTC_SWAP = 'BTC/USDT:USDT';
const sims: SimulatedExchange[] = [];
const exchanges: (ProOkx | ProBinance)[] = [];

async function startSim(options: SimulatedExchangeOptions = {}): Promise<SimulatedExchange> {
  const sim = await startSimulatedExchange({
    seed: 42,
    autoRun: false,
    protocols: [okxProtocol({ tickerIntervalMs: 20, bookIntervalMs: 20, candleIntervalMs: 50, fundingIntervalMs: 50 })],
    ...options,
  });
  sims.push(sim);
  return sim;
}

/**
 * A ccxt.pro okx client pointed at `sim`, markets loaded. `onMessage` sees every decoded WS
 * message right after ccxt handled it (ccxt binds handleMessage when it opens a socket).
 */
async function connect(
  sim: SimulatedExchange,
  opts: { config?: Record<string, unknown>; marketTypes?: OverrideMarketType[]; onMessage?: (message: unknown) => void } = {},
): Promise<ProOkx> {
  const ex = new ccxt.pro.okx({ enableRateLimit: false, options: { newUpdates: true }, ...opts.config });
  exchanges.push(ex);
  if (opts.onMessage) {
    const handle = ex.handleMessage.bind(ex);
    const onMessage = opts.onMessage;
    ex.handleMessage = (client: Parameters<ProOkx['handleMessage']>[0], message: unknown) => {
      handle(client, message);
      onMessage(message);
    };
  }
  await applyEndpointOverride(ex, { ...sim.endpoints['okx']!, ...(opts.marketTypes ? { marketTypes: opts.marketTypes } : {}) });
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

/** CRC32 of ccxt's book as OKX defines it, computed here independently of the simulator's code. */
function checksumOfCcxtBook(book: OrderBook): number {
  const str = (n: number | undefined): string => {
    const s = String(n);
    if (/e/i.test(s)) throw new Error(`cannot format ${s} as OKX does`);
    return s;
  };
  const parts: string[] = [];
  for (let i = 0; i < 25; i++) {
    const bid = book.bids[i];
    if (bid) parts.push(`${str(bid[0])}:${str(bid[1])}`);
    const ask = book.asks[i];
    if (ask) parts.push(`${str(ask[0])}:${str(ask[1])}`);
  }
  return zlib.crc32(parts.join(':')) | 0;
}

afterEach(async () => {
  await Promise.all(exchanges.splice(0).map((ex) => ex.close().catch(() => undefined)));
});

afterAll(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

describe('simulated okx over REST (ccxt)', () => {
  let sim: SimulatedExchange;
  beforeAll(async () => {
    sim = await startSim();
    sim.market.step(150);
  });

  it('loadMarkets lists SPOT instruments only unless swaps are asked for', async () => {
    const spotOnly = await connect(sim);
    expect(Object.keys(spotOnly.markets ?? {}).sort()).toEqual(['BTC/USDT', 'ETH/USDT', 'SOL/USDT']);
    const btc = spotOnly.market(BTC);
    expect(btc).toMatchObject({ id: 'BTC-USDT', spot: true, active: true, base: 'BTC', quote: 'USDT' });
    expect(btc.precision).toMatchObject({ price: 0.01, amount: 0.00001 });
    expect(btc.limits.amount?.min).toBe(0.00001);

    const both = await connect(sim, { marketTypes: ['spot', 'swap'] });
    expect(Object.keys(both.markets ?? {}).sort()).toEqual(['BTC/USDT', 'BTC/USDT:USDT', 'ETH/USDT', 'ETH/USDT:USDT', 'SOL/USDT', 'SOL/USDT:USDT']);
    expect(both.market(BTC_SWAP)).toMatchObject({ id: 'BTC-USDT-SWAP', swap: true, linear: true, settle: 'USDT', contractSize: 0.01 });
    expect(both.market('SOL/USDT:USDT').contractSize).toBe(1);
    expect(await both.fetchTime()).toBeGreaterThanOrEqual(sim.printedTrades(BTC).at(-1)!.ts); // public/time is the model clock
  });

  it('fetchTicker, fetchTickers and fetchOrderBook agree with the model', async () => {
    const ex = await connect(sim);
    const printed = sim.printedTrades(BTC);
    const top = sim.market.topOfBook(BTC);
    const ticker = await ex.fetchTicker(BTC);
    expect(ticker.last).toBe(printed.at(-1)!.price);
    expect(ticker.bid).toBe(top.bid.price);
    expect(ticker.ask).toBe(top.ask.price);
    expect(ticker.bidVolume).toBe(top.bid.amount);
    expect(ticker.high).toBe(Math.max(...printed.map((t) => t.price)));
    expect(ticker.low).toBe(Math.min(...printed.map((t) => t.price)));
    expect(ticker.open).toBe(printed[0]!.price);
    expect(ticker.baseVolume).toBeCloseTo(printed.reduce((s, t) => s + t.amount, 0), 8);
    expect(ticker.quoteVolume).toBeCloseTo(printed.reduce((s, t) => s + t.price * t.amount, 0), 4);

    const tickers = await ex.fetchTickers();
    expect(Object.keys(tickers).sort()).toEqual(['BTC/USDT', 'ETH/USDT', 'SOL/USDT']);
    expect(tickers['ETH/USDT']!.last).toBe(sim.printedTrades('ETH/USDT').at(-1)!.price);

    // ccxt's okx keeps a third column (OKX's liquidated-orders count, 0 here)
    const priceAmount = (side: readonly (readonly (number | undefined)[])[]) => side.map((l) => [l[0], l[1]]);
    const book = await ex.fetchOrderBook(BTC, 20);
    const model = sim.market.book(BTC, 20);
    expect(priceAmount(book.bids)).toEqual(levels(model.bids));
    expect(priceAmount(book.asks)).toEqual(levels(model.asks));
    const deep = await ex.fetchOrderBook(BTC, 1000); // > 400: ccxt switches to books-full
    expect(priceAmount(deep.bids)).toEqual(levels(sim.market.book(BTC).bids));
  });

  it('fetchTrades returns the latest printed trades, newest first on the wire', async () => {
    const ex = await connect(sim);
    const printed = sim.printedTrades(BTC);
    const latest = await ex.fetchTrades(BTC, undefined, 100);
    expect(latest.map(tradeView)).toEqual(printed.slice(-100).map(printedView));
    const raw = (await ex.publicGetMarketTrades({ instId: 'BTC-USDT', limit: 3 })) as { data: { tradeId: string }[] };
    expect(raw.data.map((t) => Number(t.tradeId))).toEqual(printed.slice(-3).map((t) => t.id).reverse());
  });

  it('history-trades pages by tradeId in the same id space: forward with before+after, backward with after', async () => {
    const ex = await connect(sim);
    const printed = sim.printedTrades(BTC);
    const method = 'publicGetMarketHistoryTrades';
    // the trades right after id X: before=X (exclusive) and after=X+limit+1 (exclusive)
    const collected: Trade[] = [];
    let cursor = printed[0]!.id - 1;
    for (;;) {
      const page = await ex.fetchTrades(BTC, undefined, 100, { method, type: 1, before: cursor, after: cursor + 101 });
      if (page.length === 0) break;
      collected.push(...page);
      cursor = Number(page.at(-1)!.id);
    }
    expect(collected.map(tradeView)).toEqual(printed.map(printedView));
    // `after` alone pages back in time from an id
    const older = await ex.fetchTrades(BTC, undefined, 20, { method, after: printed[50]!.id });
    expect(older.map(tradeView)).toEqual(printed.slice(30, 50).map(printedView));
    // `before` alone answers the latest trades, like OKX (not the ones right after it)
    const latest = await ex.fetchTrades(BTC, undefined, 5, { method, before: printed[10]!.id });
    expect(latest.map((t) => t.id)).toEqual(printed.slice(-5).map((t) => String(t.id)));
    // type=2 pages by timestamp
    const ts = printed[40]!.ts;
    const byTime = (await ex.publicGetMarketHistoryTrades({ instId: 'BTC-USDT', type: 2, after: ts, limit: 100 })) as { data: { ts: string }[] };
    expect(byTime.data.every((t) => Number(t.ts) < ts)).toBe(true);
    expect(byTime.data.length).toBe(printed.filter((t) => t.ts < ts).length);
  });

  it('answers errors in OKX format: bad instrument, bad bar, unknown route, injected 429 and 5xx', async () => {
    const ex = await connect(sim);
    await expect(ex.publicGetMarketTicker({ instId: 'NOPE-USDT' })).rejects.toBeInstanceOf(ccxt.BadSymbol);
    await expect(ex.publicGetMarketCandles({ instId: 'BTC-USDT', bar: '7m' })).rejects.toBeInstanceOf(ccxt.BadRequest);
    await expect(ex.publicGetMarketBooks({})).rejects.toBeInstanceOf(ccxt.BadRequest);
    const missing = await fetch(`${sim.endpoints['okx']!.rest}/api/v5/market/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: '50030' });

    sim.faults.failNextRest(1, 429);
    const limited = await fetch(`${sim.endpoints['okx']!.rest}/api/v5/market/ticker?instId=BTC-USDT`);
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ code: '50011', msg: 'Too Many Requests' });
    sim.faults.failNextRest(1, 429);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.RateLimitExceeded); // by OKX code 50011
    sim.faults.failNextRest(1, 500);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.ExchangeNotAvailable); // 50026
    sim.faults.failNextRest(1, 503);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(ccxt.OnMaintenance); // 50001
    expect((await ex.fetchTicker(BTC)).last).toBe(sim.printedTrades(BTC).at(-1)!.price);
  });

  it('swaps: fetchTicker, fetchFundingRate and fetchOpenInterest work with ccxt', async () => {
    const ex = await connect(sim, { marketTypes: ['spot', 'swap'] });
    const spot = await ex.fetchTicker(BTC);
    const swap = await ex.fetchTicker(BTC_SWAP);
    expect(swap.symbol).toBe(BTC_SWAP);
    expect(swap.last).toBe(spot.last);
    expect(swap.bid).toBe(spot.bid);
    // sizes are in contracts of 0.01 BTC
    expect(swap.bidVolume).toBeCloseTo(spot.bidVolume! / 0.01, 6);

    const funding = await ex.fetchFundingRate(BTC_SWAP);
    expect(funding.symbol).toBe(BTC_SWAP);
    expect(funding.interval).toBe('8h');
    expect(Math.abs(funding.fundingRate!)).toBeLessThan(0.001);
    expect(funding.fundingTimestamp! % (8 * 3_600_000)).toBe(0);
    expect(funding.fundingTimestamp!).toBeGreaterThan(sim.market.now());
    expect((await ex.fetchFundingRate(BTC_SWAP)).fundingRate).toBe(funding.fundingRate); // seeded, stable within the period

    const oi = await ex.fetchOpenInterest(BTC_SWAP);
    expect(oi.symbol).toBe(BTC_SWAP);
    expect(oi.openInterestAmount! * 0.01).toBeCloseTo(oi.baseVolume!, 8);
    expect(oi.openInterestValue).toBeGreaterThan(0);
    const all = (await ex.publicGetPublicOpenInterest({ instType: 'SWAP' })) as { data: { instId: string }[] };
    expect(all.data.map((d) => d.instId).sort()).toEqual(['BTC-USDT-SWAP', 'ETH-USDT-SWAP', 'SOL-USDT-SWAP']);
    await expect(ex.publicGetPublicOpenInterest({ instType: 'SPOT' })).rejects.toBeInstanceOf(ccxt.BadRequest);
    await expect(ex.fetchOrderBook(BTC_SWAP)).rejects.toBeInstanceOf(ccxt.BadRequest); // swaps have no books here
  });
});

describe('simulated okx OHLCV (ccxt)', () => {
  it('fetchOHLCV (candles and history-candles) equals candles computed from the printed record', async () => {
    let now = Date.now() - 20 * 60_000;
    const sim = await startSim({ symbols: [BTC], clock: { now: () => now } });
    for (let i = 0; i < 200; i++) {
      sim.market.step(1);
      now += 5_000; // 200 orders over ~17 minutes
    }
    const ex = await connect(sim);
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
    const candles = await ex.fetchOHLCV(BTC, '1m');
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
    // since + limit (ccxt sends before=since-1, after=since+limit bars)
    expect(await ex.fetchOHLCV(BTC, '1m', candles[2]![0], 3)).toEqual(candles.slice(2, 5));
    expect(await ex.fetchOHLCV(BTC, '1m', undefined, undefined, { type: 'HistoryCandles' })).toEqual(candles);

    // daily bars: ccxt asks for 1Dutc (UTC midnight); OKX's plain 1D opens at 00:00 UTC+8
    const [daily] = (await ex.fetchOHLCV(BTC, '1d')).slice(-1);
    expect(daily![0]! % 86_400_000).toBe(0);
    expect(daily![4]).toBe(printed.at(-1)!.price);
    const hk = (await ex.publicGetMarketCandles({ instId: 'BTC-USDT', bar: '1D' })) as { data: string[][] };
    expect((Number(hk.data[0]![0]) + 8 * 3_600_000) % 86_400_000).toBe(0);
    expect(hk.data[0]![8]).toBe('0'); // the current bar is not confirmed yet
  });
});

describe('simulated okx over WebSocket (ccxt.pro)', () => {
  it('watchTrades delivers every printed trade exactly once, in order, with sequential tradeIds', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    const first = ex.watchTrades(BTC);
    await sim.waitForStreams(['trades:BTC-USDT'], { protocolId: 'okx' });
    const baseline = sim.printedTrades(BTC).length;
    const stop = pump(sim, 5, BTC);
    const got: Trade[] = [];
    try {
      await within(10_000, 'collect trades', async () => {
        got.push(...(await first));
        while (got.length < 150) got.push(...(await ex.watchTrades(BTC)));
      });
    } finally {
      stop();
    }
    const printed = sim.printedTrades(BTC).slice(baseline, baseline + got.length);
    expect(got.map(tradeView)).toEqual(printed.map(printedView));
    expect(got.every((t, i) => i === 0 || Number(t.id) === Number(got[i - 1]!.id) + 1)).toBe(true);
  });

  it('watchTicker reports the last printed trade and the touch', async () => {
    const sim = await startSim();
    const ex = await connect(sim);
    sim.market.step(20);
    const lastPrinted = (): number => sim.printedTrades(BTC).at(-1)!.price;
    let ticker = await within(5_000, 'ticker', () => ex.watchTicker(BTC));
    expect(ticker.last).toBe(lastPrinted());
    expect(ticker.bid).toBe(sim.market.topOfBook(BTC).bid.price);
    sim.market.step(5);
    await within(5_000, 'ticker update', async () => {
      while (ticker.last !== lastPrinted()) ticker = await ex.watchTicker(BTC);
    });
    expect(ticker.high).toBe(Math.max(...sim.printedTrades(BTC).map((t) => t.price)));
    expect(ticker.baseVolume).toBeCloseTo(sim.printedTrades(BTC).reduce((s, t) => s + t.amount, 0), 8);
  });

  it("watchOrderBook (books: snapshot, then seqId-chained updates) equals the model, and every checksum matches the test's CRC32 of ccxt's book", async () => {
    const sim = await startSim();
    const checks: { checksum: number; computed: number; action: string }[] = [];
    const ex: ProOkx = await connect(sim, {
      onMessage: (message) => {
        const m = message as RawMessage;
        if ((m['arg'] as RawMessage | undefined)?.['channel'] !== 'books' || m['action'] === undefined) return;
        const book = ex.orderbooks[BTC];
        const item = (m['data'] as RawMessage[])[0]!;
        if (book) checks.push({ checksum: item['checksum'] as number, computed: checksumOfCcxtBook(book), action: String(m['action']) });
      },
    });
    const stop = pump(sim, 5);
    let book: OrderBook;
    try {
      book = await within(5_000, 'first book', () => ex.watchOrderBook(BTC));
      const start = book.nonce!;
      const updates = (): number => checks.filter((c) => c.action === 'update').length;
      await within(10_000, 'book updates', async () => {
        while (book.nonce! < start + 200 || updates() < 20) book = await ex.watchOrderBook(BTC);
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
    expect(checks[0]!.action).toBe('snapshot');
    expect(checks.filter((c) => c.checksum !== c.computed)).toEqual([]);
  });

  it('a skipped seqId makes watchOrderBook reject with InvalidNonce; the next call resubscribes and resyncs', async () => {
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
      sim.faults.skipDepthUpdate(BTC, 1, { protocol: 'okx' });
      const error = await within(5_000, 'gap detected', async () => {
        for (;;) {
          try {
            book = await ex.watchOrderBook(BTC);
          } catch (e) {
            return e;
          }
        }
      });
      expect(error).toBeInstanceOf(ccxt.InvalidNonce);
      expect(sim.faults.injected().bookGaps).toBe(1);
      // ccxt dropped its book; watching again subscribes again and gets a fresh snapshot (a
      // rejection that arrived while no watch was pending is replayed once first: retry)
      const restarted = await within(5_000, 'resync', async () => {
        for (;;) {
          try {
            return await ex.watchOrderBook(BTC);
          } catch (e) {
            expect(e).toBeInstanceOf(ccxt.InvalidNonce);
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
    expect(book.bids).toEqual(levels(sim.market.book(BTC).bids));
    expect(book.asks).toEqual(levels(sim.market.book(BTC).asks));
  });

  it('a corrupted checksum reaches the client (ccxt does not check it; the test does)', async () => {
    const sim = await startSim();
    const seen: { checksum: number; computed: number }[] = [];
    const ex: ProOkx = await connect(sim, {
      onMessage: (message) => {
        const m = message as RawMessage;
        const book = ex.orderbooks[BTC];
        if ((m['arg'] as RawMessage | undefined)?.['channel'] !== 'books' || m['action'] !== 'update' || !book) return;
        seen.push({ checksum: (m['data'] as RawMessage[])[0]!['checksum'] as number, computed: checksumOfCcxtBook(book) });
      },
    });
    const stop = pump(sim, 5, BTC);
    try {
      let book = await within(5_000, 'first book', () => ex.watchOrderBook(BTC));
      await within(5_000, 'clean updates', async () => {
        while (seen.length < 3) book = await ex.watchOrderBook(BTC);
      });
      const clean = seen.length;
      sim.faults.corruptChecksums(1, { protocol: 'okx', symbol: BTC });
      await within(5_000, 'more updates', async () => {
        while (seen.length < clean + 3) book = await ex.watchOrderBook(BTC);
      });
    } finally {
      stop();
    }
    const bad = seen.filter((s) => s.checksum !== s.computed);
    expect(bad).toHaveLength(1);
    expect(sim.faults.injected().badChecksums).toBe(1);
  });

  it('swaps: watchTicker and watchFundingRate; candles on the business socket', async () => {
    const sim = await startSim();
    sim.market.step(10);
    const ex = await connect(sim, { marketTypes: ['spot', 'swap'] });
    const swapTicker = await within(5_000, 'swap ticker', () => ex.watchTicker(BTC_SWAP));
    expect(swapTicker.last).toBe(sim.printedTrades(BTC).at(-1)!.price);
    const funding = await within(5_000, 'funding', () => ex.watchFundingRate(BTC_SWAP));
    expect(funding.fundingRate).toBe((await ex.fetchFundingRate(BTC_SWAP)).fundingRate);
    const candles = await within(5_000, 'candles', () => ex.watchOHLCV(BTC, '1m'));
    expect(candles.at(-1)![4]).toBe(sim.printedTrades(BTC).at(-1)!.price);
    expect(sim.activeStreams('okx')).toEqual(expect.arrayContaining(['tickers:BTC-USDT-SWAP', 'funding-rate:BTC-USDT-SWAP', 'candle1m:BTC-USDT']));
  });

  it('speaks the raw OKX protocol: event acks, 60018 errors, unsubscribe, text ping/pong', async () => {
    const sim = await startSim();
    const messages: (RawMessage | string)[] = [];
    const socket = new WebSocket(`${sim.endpoints['okx']!.ws}/public`);
    socket.on('message', (data) => {
      const text = String(data);
      messages.push(text === 'pong' ? text : (JSON.parse(text) as RawMessage));
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const next = async (match: (m: RawMessage | string) => boolean): Promise<RawMessage | string> =>
      within(3_000, 'raw message', async () => {
        for (;;) {
          const i = messages.findIndex(match);
          if (i >= 0) return messages.splice(i, 1)[0]!;
          await new Promise((r) => setTimeout(r, 5));
        }
      });
    const obj = (m: RawMessage | string): RawMessage => (typeof m === 'string' ? {} : m);
    try {
      socket.send('ping');
      expect(await next((m) => m === 'pong')).toBe('pong');
      socket.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'trades', instId: 'NOPE-USDT' }] }));
      expect(await next((m) => obj(m)['event'] === 'error')).toMatchObject({ event: 'error', code: '60018' });
      socket.send(JSON.stringify({ op: 'subscribe', args: [{ channel: 'candle1m', instId: 'BTC-USDT' }] })); // business only
      expect(await next((m) => obj(m)['event'] === 'error')).toMatchObject({ code: '60018' });
      socket.send('{not json');
      expect(await next((m) => obj(m)['event'] === 'error')).toMatchObject({ code: '60012' });
      socket.send(JSON.stringify({ id: 'a1', op: 'subscribe', args: [{ channel: 'trades', instId: 'BTC-USDT' }, { channel: 'books', instId: 'ETH-USDT' }] }));
      expect(await next((m) => obj(m)['event'] === 'subscribe')).toMatchObject({ id: 'a1', arg: { channel: 'trades', instId: 'BTC-USDT' } });
      expect(await next((m) => obj(m)['event'] === 'subscribe')).toMatchObject({ arg: { channel: 'books', instId: 'ETH-USDT' } });
      const snapshot = obj(await next((m) => obj(m)['action'] === 'snapshot'));
      expect((snapshot['data'] as RawMessage[])[0]).toMatchObject({ prevSeqId: -1, seqId: sim.market.lastUpdateId('ETH/USDT') });
      sim.market.step(1);
      const trade = obj(await next((m) => (obj(m)['arg'] as RawMessage | undefined)?.['channel'] === 'trades'));
      const printed = sim.printedTrades(BTC)[0]!;
      expect((trade['data'] as RawMessage[])[0]).toMatchObject({ instId: 'BTC-USDT', tradeId: String(printed.id), side: printed.side, ts: String(printed.ts) });
      const update = obj(await next((m) => obj(m)['action'] === 'update'));
      expect((update['data'] as RawMessage[])[0]!['prevSeqId']).toBe((snapshot['data'] as RawMessage[])[0]!['seqId']);
      socket.send(JSON.stringify({ op: 'unsubscribe', args: [{ channel: 'trades', instId: 'BTC-USDT' }] }));
      expect(await next((m) => obj(m)['event'] === 'unsubscribe')).toMatchObject({ arg: { channel: 'trades', instId: 'BTC-USDT' } });
      expect(sim.activeStreams('okx')).toEqual(['books:ETH-USDT']);
    } finally {
      socket.terminate();
    }
  });
});

describe('two real ccxt.pro clients, binance and okx, on one simulator', () => {
  it('both receive the same printed trades, each in its own protocol', async () => {
    const sim = await startSim({ protocols: [binanceProtocol(), okxProtocol()], symbols: [BTC] });
    const okx = await connect(sim);
    const binance = new ccxt.pro.binance({ enableRateLimit: false, options: { newUpdates: true } });
    exchanges.push(binance);
    await applyEndpointOverride(binance, sim.endpoints['binance']!);
    await binance.loadMarkets();
    const firstOkx = okx.watchTrades(BTC);
    const firstBinance = binance.watchTrades(BTC);
    await sim.waitForStreams(['trades:BTC-USDT'], { protocolId: 'okx' });
    await sim.waitForStreams(['btcusdt@trade'], { protocolId: 'binance' });
    const baseline = sim.printedTrades(BTC).length;
    const stop = pump(sim, 5, BTC);
    const collect = async (client: ProOkx | ProBinance, first: Promise<Trade[]>): Promise<Trade[]> => {
      const got = [...(await first)];
      while (got.length < 60) got.push(...(await client.watchTrades(BTC)));
      return got.slice(0, 60);
    };
    try {
      const [fromOkx, fromBinance] = await within(10_000, 'both feeds', () => Promise.all([collect(okx, firstOkx), collect(binance, firstBinance)]));
      const want = sim.printedTrades(BTC).slice(baseline, baseline + 60).map(printedView);
      expect(fromOkx.map(tradeView)).toEqual(want);
      expect(fromBinance.map(tradeView)).toEqual(want);
    } finally {
      stop();
    }
  });
});
