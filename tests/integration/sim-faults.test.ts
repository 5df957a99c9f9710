/**
 * Fault injection of the simulated exchange, seen by real clients: ccxt.pro binance and okx and
 * raw WebSocket clients. Every fault goes through the server's one delivery function, so each
 * one is exercised on both protocols; printedTrades stays the ground truth throughout.
 */
import ccxt, { type Trade } from 'ccxt';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { okxProtocol } from '../../local/sim/protocols/okx.js';
import { startSimulatedExchange, type InjectedFaultCounts, type SimulatedExchange } from '../../local/sim/server.js';

type ExchangeId = 'binance' | 'okx';
type ProClient = InstanceType<typeof ccxt.pro.binance> | InstanceType<typeof ccxt.pro.okx>;

const BTC = 'BTC/USDT';
const PROTOCOLS: readonly ExchangeId[] = ['binance', 'okx'];
const TRADE_STREAM: Record<ExchangeId, string> = { binance: 'btcusdt@trade', okx: 'trades:BTC-USDT' };
const sims: SimulatedExchange[] = [];
const clients: ProClient[] = [];
const feeds: RawFeed[] = [];

async function startSim(): Promise<SimulatedExchange> {
  const sim = await startSimulatedExchange({
    seed: 42,
    autoRun: false,
    symbols: [BTC],
    protocols: [binanceProtocol({ tickerIntervalMs: 50 }), okxProtocol({ tickerIntervalMs: 20, bookIntervalMs: 20 })],
  });
  sims.push(sim);
  return sim;
}

async function connect(sim: SimulatedExchange, id: ExchangeId, config: Record<string, unknown> = {}): Promise<ProClient> {
  const options = { enableRateLimit: false, options: { newUpdates: true }, ...config };
  const ex = id === 'okx' ? new ccxt.pro.okx(options) : new ccxt.pro.binance(options);
  clients.push(ex);
  await applyEndpointOverride(ex, sim.endpoints[id]!);
  await ex.loadMarkets();
  return ex;
}

function pump(sim: SimulatedExchange, everyMs = 5): () => void {
  const timer = setInterval(() => sim.market.step(1, BTC), everyMs);
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

async function until(what: string, condition: () => boolean, ms = 5_000): Promise<void> {
  await within(ms, what, async () => {
    while (!condition()) await new Promise((r) => setTimeout(r, 5));
  });
}

/** Starts `watchTrades` on `ex`, waits for the subscription, runs `during`, then collects `count` trades while printing. */
async function collectTrades(sim: SimulatedExchange, ex: ProClient, id: ExchangeId, count: number, during?: () => void): Promise<{ got: Trade[]; baseline: number }> {
  const first = ex.watchTrades(BTC);
  first.catch(() => undefined); // awaited below; a timeout must not leave it unhandled
  await sim.waitForStreams([TRADE_STREAM[id]], { protocolId: id });
  const baseline = sim.printedTrades(BTC).length;
  during?.();
  const stop = pump(sim);
  const got: Trade[] = [];
  try {
    await within(10_000, `${count} trades`, async () => {
      got.push(...(await first));
      while (got.length < count) got.push(...(await ex.watchTrades(BTC)));
    });
  } finally {
    stop();
  }
  return { got, baseline };
}

const ids = (trades: readonly { id?: string | number | undefined }[]): number[] => trades.map((t) => Number(t.id));

/** A raw WebSocket client that records every frame and (optionally) reconnects after drops. */
class RawFeed {
  readonly frames: string[] = [];
  pongs = 0;
  connects = 0;
  private socket: WebSocket | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly subscription: string,
    private readonly reconnect = false,
  ) {
    feeds.push(this);
  }

  async open(): Promise<void> {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.on('message', (data) => {
      const text = String(data);
      if (text === 'pong') this.pongs++;
      else this.frames.push(text);
    });
    socket.on('pong', () => this.pongs++);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.reconnect && !this.stopped) setTimeout(() => void this.open().catch(() => undefined), 10);
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    this.connects++;
    socket.send(this.subscription);
  }

  /** OKX answers a text `ping`; Binance a protocol-level ping. */
  ping(textPing: boolean): void {
    if (textPing) this.socket?.send('ping');
    else this.socket?.ping();
  }

  close(): void {
    this.stopped = true;
    this.socket?.terminate();
  }
}

function rawFeed(sim: SimulatedExchange, id: ExchangeId, reconnect = false): RawFeed {
  if (id === 'binance') {
    return new RawFeed(sim.endpoints['binance']!.ws, JSON.stringify({ method: 'SUBSCRIBE', params: ['btcusdt@trade', 'btcusdt@depth@100ms'], id: 1 }), reconnect);
  }
  return new RawFeed(
    `${sim.endpoints['okx']!.ws}/public`,
    JSON.stringify({ op: 'subscribe', args: [{ channel: 'trades', instId: 'BTC-USDT' }, { channel: 'books', instId: 'BTC-USDT' }] }),
    reconnect,
  );
}

interface RawTrade {
  readonly id: number;
  readonly price: string;
  readonly amount: string;
  readonly side: string;
}

interface Classified {
  readonly trades: RawTrade[];
  /** frames that are not JSON */
  readonly unparseable: string[];
}

/** Sorts a raw feed's frames into trades (in arrival order) and unparseable frames. */
function classify(id: ExchangeId, frames: readonly string[]): Classified {
  const trades: RawTrade[] = [];
  const unparseable: string[] = [];
  for (const text of frames) {
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(text) as Record<string, unknown>;
    } catch {
      unparseable.push(text);
      continue;
    }
    if (id === 'binance' && m['e'] === 'trade') {
      trades.push({ id: Number(m['t']), price: String(m['p']), amount: String(m['q']), side: m['m'] ? 'sell' : 'buy' });
    }
    if (id === 'okx' && (m['arg'] as Record<string, unknown> | undefined)?.['channel'] === 'trades' && Array.isArray(m['data'])) {
      for (const d of m['data'] as Record<string, string>[]) trades.push({ id: Number(d['tradeId']), price: d['px']!, amount: d['sz']!, side: d['side']! });
    }
  }
  return { trades, unparseable };
}

/** A well-formed trade frame carries exactly a printed trade. */
function matchesPrinted(trade: RawTrade, printed: ReadonlyMap<number, PrintedTrade>): boolean {
  const p = printed.get(trade.id);
  return p !== undefined && Number(trade.price) === p.price && Number(trade.amount) === p.amount && trade.side === p.side;
}

/** The trades REST serves for `id`, by its own id-paging scheme: the whole record. */
async function restHistory(sim: SimulatedExchange, id: ExchangeId): Promise<number[]> {
  const ex = await connect(sim, id);
  if (id === 'binance') return ids(await ex.fetchTrades(BTC, undefined, 1000, { fetchTradesMethod: 'publicGetTrades' }));
  const out: number[] = [];
  let cursor = sim.printedTrades(BTC)[0]!.id - 1;
  for (;;) {
    const page = await ex.fetchTrades(BTC, undefined, 100, { method: 'publicGetMarketHistoryTrades', before: cursor, after: cursor + 101 });
    if (page.length === 0) return out;
    out.push(...ids(page));
    cursor = out.at(-1)!;
  }
}

afterEach(async () => {
  for (const f of feeds.splice(0)) f.close();
  await Promise.all(clients.splice(0).map((ex) => ex.close().catch(() => undefined)));
});

afterAll(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

describe.each(PROTOCOLS)('faults seen by a ccxt.pro %s client', (id) => {
  it('a skipped trade frame leaves a trade-id gap that REST fills', async () => {
    const sim = await startSim();
    const ex = await connect(sim, id);
    const { got } = await collectTrades(sim, ex, id, 30, () => sim.faults.skipTrades(1, { protocol: id, symbol: BTC }));
    const seen = ids(got);
    const missing = seen.slice(1).flatMap((x, i) => (x === seen[i]! + 1 ? [] : Array.from({ length: x - seen[i]! - 1 }, (_, k) => seen[i]! + 1 + k)));
    const skipped = sim.faults.injectedLog().filter((f) => f.fault === 'skipTrade');
    const first = seen[0]!;
    // the first trade printed after arming was withheld: either the stream starts one id later, or a hole in the middle
    const withheld = missing.length === 1 ? missing[0]! : first - 1;
    expect(skipped.map((f) => Number(f.ref))).toEqual([withheld]);
    expect(missing.length).toBeLessThanOrEqual(1);
    expect(sim.faults.injected().skippedTrades).toBe(1);
    // the trade stays in the record and in REST answers
    const printed = sim.printedTrades(BTC).find((t) => t.id === withheld)!;
    expect(printed).toBeDefined();
    if (id === 'binance') ex.apiKey = 'sim-key'; // ccxt insists on a key header for historicalTrades
    const filled =
      id === 'binance'
        ? await ex.fetchTrades(BTC, undefined, 1, { fetchTradesMethod: 'publicGetHistoricalTrades', fromId: withheld })
        : await ex.fetchTrades(BTC, undefined, 1, { method: 'publicGetMarketHistoryTrades', before: withheld - 1, after: withheld + 1 });
    expect(filled.map((t) => [Number(t.id), t.price, t.amount, t.side])).toEqual([[printed.id, printed.price, printed.amount, printed.side]]);
  });

  it('a duplicated frame is seen twice', async () => {
    const sim = await startSim();
    const ex = await connect(sim, id);
    const { got, baseline } = await collectTrades(sim, ex, id, 20, () => sim.faults.duplicateFrames(1, { protocol: id, kind: 'trade' }));
    const seen = ids(got);
    const twice = seen.filter((x, i) => seen.indexOf(x) !== i);
    expect(twice).toEqual([sim.printedTrades(BTC)[baseline]!.id]);
    expect(seen[0]).toBe(seen[1]);
    expect([...new Set(seen)]).toEqual(sim.printedTrades(BTC).slice(baseline, baseline + new Set(seen).size).map((t) => t.id));
    expect(sim.faults.injected().duplicated).toBe(1);
  });

  it('reordered frames arrive swapped', async () => {
    const sim = await startSim();
    const ex = await connect(sim, id);
    const { got, baseline } = await collectTrades(sim, ex, id, 20, () => sim.faults.reorderFrames(1, { protocol: id, kind: 'trade' }));
    const seen = ids(got);
    const expected = sim.printedTrades(BTC).slice(baseline, baseline + seen.length).map((t) => t.id);
    expect(seen.slice(0, 2)).toEqual([expected[1], expected[0]]);
    expect(seen.slice(2)).toEqual(expected.slice(2));
    expect(sim.faults.injected().reordered).toBe(1);
  });

  it('a silent stall keeps the socket open and pings answered; delivery resumes with later trades', async () => {
    const sim = await startSim();
    const ex = await connect(sim, id);
    const pending = ex.watchTrades(BTC);
    pending.catch(() => undefined); // awaited below; a failed assertion must not leave it unhandled
    await sim.waitForStreams([TRADE_STREAM[id]], { protocolId: id });
    const feed = rawFeed(sim, id); // a second connection, to ping
    await feed.open();
    await until('both connected', () => sim.connectionCount() === 2);
    sim.faults.pauseStreams(); // the stall: from now on no market data
    sim.market.step(5, BTC);
    const stalled = sim.printedTrades(BTC).length;
    feed.ping(id === 'okx');
    await until('pong during the stall', () => feed.pongs === 1);
    expect(classify(id, feed.frames).trades).toEqual([]);
    expect(sim.connectionCount()).toBe(2);
    expect(sim.faults.injected().stalledFrames).toBeGreaterThan(0);
    sim.faults.resumeStreams();
    sim.market.step(1, BTC);
    const got = await within(5_000, 'trades after the stall', () => pending);
    // the trades printed during the stall never arrive on the stream; REST still has them
    expect(Number(got[0]!.id)).toBe(sim.printedTrades(BTC)[stalled]!.id);
  });

  it('stall(ms) withholds market data for a while, then delivery resumes by itself', async () => {
    const sim = await startSim();
    const feed = rawFeed(sim, id);
    await feed.open();
    await sim.waitForStreams([TRADE_STREAM[id]], { protocolId: id });
    sim.faults.stall(150);
    sim.market.step(3, BTC);
    const during = sim.printedTrades(BTC).length;
    feed.ping(id === 'okx');
    await until('pong during the stall', () => feed.pongs === 1);
    const stop = pump(sim);
    try {
      await until('trades flow again', () => classify(id, feed.frames).trades.length > 0);
    } finally {
      stop();
    }
    const trades = classify(id, feed.frames).trades;
    expect(trades[0]!.id).toBeGreaterThan(sim.printedTrades(BTC)[during - 1]!.id);
    expect(sim.faults.injected()).toMatchObject({ stalls: 1 });
  });

  it('REST 429 comes in the exchange format', async () => {
    const sim = await startSim();
    const ex = await connect(sim, id);
    const url = id === 'binance' ? `${sim.endpoints['binance']!.rest}/api/v3/time` : `${sim.endpoints['okx']!.rest}/api/v5/public/time`;
    sim.faults.failNextRest(1, 429);
    const res = await fetch(url);
    expect(res.status).toBe(429);
    if (id === 'binance') {
      expect(await res.json()).toMatchObject({ code: -1003 });
      expect(res.headers.get('retry-after')).toBe('1');
    } else {
      expect(await res.json()).toEqual({ code: '50011', msg: 'Too Many Requests', data: [] });
    }
    sim.faults.failNextRest(1, 429);
    await expect(ex.fetchTicker(BTC)).rejects.toBeInstanceOf(id === 'okx' ? ccxt.RateLimitExceeded : ccxt.DDoSProtection);
    expect(sim.faults.injected().rest429s).toBe(2);
  });

  it('malformed frames are extra frames: not JSON, and JSON that breaks the schema; the real trades still arrive', async () => {
    const sim = await startSim();
    const feed = rawFeed(sim, id);
    await feed.open();
    await sim.waitForStreams([TRADE_STREAM[id]], { protocolId: id });
    const baseline = sim.printedTrades(BTC).length;
    sim.faults.malformedFrames(1, { protocol: id, kind: 'trade', shape: 'text' });
    sim.faults.malformedFrames(1, { protocol: id, kind: 'trade', shape: 'schema' });
    sim.market.step(3, BTC);
    const printed = sim.printedTrades(BTC).slice(baseline);
    await until('all trades', () => classify(id, feed.frames).trades.filter((t) => t.price !== 'abc').length >= printed.length);
    const { trades, unparseable } = classify(id, feed.frames);
    expect(unparseable).toHaveLength(1);
    expect(() => JSON.parse(unparseable[0]!)).toThrow(SyntaxError);
    const broken = trades.filter((t) => t.price === 'abc');
    expect(broken.map((t) => t.id)).toEqual([printed[1]!.id]); // the second trade's frame got a broken twin
    const valid = trades.filter((t) => t.price !== 'abc');
    expect(valid.map((t) => t.id)).toEqual(printed.map((t) => t.id));
    expect(sim.faults.injected().malformed).toBe(2);
  });
});

describe('what ccxt.pro itself does with a malformed frame', () => {
  it('okx: a non-JSON frame is logged and skipped; a trade priced "abc" rejects the pending watch', async () => {
    const sim = await startSim();
    const ex = await connect(sim, 'okx');
    const pending = ex.watchTrades(BTC);
    await sim.waitForStreams([TRADE_STREAM.okx], { protocolId: 'okx' });
    sim.faults.malformedFrames(1, { protocol: 'okx', kind: 'trade', shape: 'text' });
    sim.market.step(1, BTC);
    expect(Number((await within(5_000, 'trade after garbage', () => pending))[0]!.id)).toBe(sim.printedTrades(BTC)[0]!.id);
    sim.faults.malformedFrames(1, { protocol: 'okx', kind: 'trade', shape: 'schema' });
    const next = ex.watchTrades(BTC);
    sim.market.step(1, BTC);
    await expect(within(5_000, 'schema break', () => next)).rejects.toThrow(/abc/);
  });

  it('binance: a trade priced "abc" rejects the pending watch', async () => {
    // (a non-JSON frame makes ccxt.pro binance's handleMessage throw a TypeError, which rejects every
    // pending future of the client: not exercised here, it can surface as an unhandled rejection)
    const sim = await startSim();
    const ex = await connect(sim, 'binance');
    const pending = ex.watchTrades(BTC);
    await sim.waitForStreams([TRADE_STREAM.binance], { protocolId: 'binance' });
    sim.faults.malformedFrames(1, { protocol: 'binance', kind: 'trade', shape: 'schema' });
    sim.market.step(1, BTC);
    await expect(within(5_000, 'schema break', () => pending)).rejects.toThrow(/abc/);
  });
});

describe('fault controls', () => {
  it('dropConnections can target one protocol', async () => {
    const sim = await startSim();
    const okx = await connect(sim, 'okx', { options: { newUpdates: true, ws: { backoff: { base: 100 } } } });
    const binance = await connect(sim, 'binance');
    const okxPending = okx.watchTrades(BTC).then(
      () => undefined,
      (error: unknown) => error,
    );
    const binancePending = binance.watchTrades(BTC);
    await sim.waitForStreams([TRADE_STREAM.okx], { protocolId: 'okx' });
    await sim.waitForStreams([TRADE_STREAM.binance], { protocolId: 'binance' });
    expect(sim.connectionCount()).toBe(2);
    expect(await sim.faults.dropConnections({ protocol: 'okx' })).toBe(1);
    expect(await within(5_000, 'okx rejection', () => okxPending)).toBeInstanceOf(ccxt.NetworkError);
    expect(sim.connectionCount()).toBe(1);
    sim.market.step(1, BTC);
    expect(Number((await within(5_000, 'binance unaffected', () => binancePending))[0]!.id)).toBe(sim.printedTrades(BTC)[0]!.id);
    expect(sim.faults.injected().droppedConnections).toBe(1);
  });

  it('rejects out-of-range settings with ConfigError', async () => {
    const sim = await startSim();
    expect(() => sim.faults.chaos({ tradeSkipRate: 1.5 })).toThrow(ConfigError);
    expect(() => sim.faults.chaos({ stallEveryMs: 100 })).toThrow(/go together/);
    expect(() => sim.faults.chaos({ stallEveryMs: 100, stallMs: 100 })).toThrow(/shorter/);
    expect(() => sim.faults.chaos({ restErrorRate: 0.6, rest429Rate: 0.6 })).toThrow(ConfigError);
    expect(() => sim.faults.skipTrades(-1)).toThrow(ConfigError);
    expect(() => sim.faults.stall(0)).toThrow(ConfigError);
    expect(() => sim.faults.failNextRest(1, 404)).toThrow(ConfigError);
  });
});

describe('chaos mode: every fault at once, switchable', () => {
  it('injects every kind of fault on both protocols; every well-formed trade is a printed one; REST keeps the whole record; calm() stops it', async () => {
    const sim = await startSim();
    const feeds = { binance: rawFeed(sim, 'binance', true), okx: rawFeed(sim, 'okx', true) };
    await Promise.all([feeds.binance.open(), feeds.okx.open()]);
    await sim.waitForStreams([TRADE_STREAM.binance, 'btcusdt@depth@100ms'], { protocolId: 'binance' });
    await sim.waitForStreams([TRADE_STREAM.okx, 'books:BTC-USDT'], { protocolId: 'okx' });
    sim.faults.chaos({
      seed: 7,
      tradeSkipRate: 0.1,
      bookGapRate: 0.1,
      duplicateRate: 0.1,
      reorderRate: 0.1,
      malformedRate: 0.1,
      badChecksumRate: 0.3,
      stallEveryMs: 200,
      stallMs: 40,
      dropEveryMs: 300,
      restErrorRate: 0.2,
      rest429Rate: 0.2,
    });
    const stop = pump(sim, 3);
    const restStatuses: number[] = [];
    const allInjected = (c: InjectedFaultCounts): boolean => Object.values(c).every((n) => n > 0);
    try {
      await within(20_000, 'every fault injected', async () => {
        while (!allInjected(sim.faults.injected())) {
          const res = await fetch(`${sim.endpoints['okx']!.rest}/api/v5/public/time`);
          restStatuses.push(res.status);
          await res.arrayBuffer();
          await new Promise((r) => setTimeout(r, 2));
        }
      });
    } finally {
      stop();
      sim.faults.calm();
    }
    expect(restStatuses).toEqual(expect.arrayContaining([200, 429]));
    expect(restStatuses.some((s) => s >= 500)).toBe(true);
    // dropped by chaos, reconnected by the feeds
    await until('feeds reconnected', () => feeds.binance.connects > 1 && feeds.okx.connects > 1);

    // faults never invent data: every well-formed trade frame is exactly a printed trade
    const printed = new Map(sim.printedTrades(BTC).map((t) => [t.id, t]));
    for (const id of PROTOCOLS) {
      const { trades, unparseable } = classify(id, feeds[id].frames);
      const wellFormed = trades.filter((t) => t.price !== 'abc');
      expect(wellFormed.length).toBeGreaterThan(0);
      expect(wellFormed.filter((t) => !matchesPrinted(t, printed))).toEqual([]);
      expect(trades.length - wellFormed.length + unparseable.length).toBeGreaterThan(0);
    }
    const skipped = sim.faults.injectedLog().filter((f) => f.fault === 'skipTrade');
    expect(skipped.length).toBeGreaterThan(0);
    expect(skipped.every((f) => printed.has(Number(f.ref)))).toBe(true);

    // the record is intact and REST serves all of it (no REST faults after calm)
    const record = sim.printedTrades(BTC).map((t) => t.id);
    expect(record.every((x, i) => i === 0 || x === record[i - 1]! + 1)).toBe(true);
    expect(await restHistory(sim, 'okx')).toEqual(record);
    expect(await restHistory(sim, 'binance')).toEqual(record.slice(-1000));

    // calm: no more faults; after the reconnects settle, a fresh feed sees every new trade exactly once, in order
    const before = sim.faults.injected();
    for (const f of Object.values(feeds)) f.close();
    const clean = rawFeed(sim, 'okx');
    await clean.open();
    await sim.waitForStreams([TRADE_STREAM.okx], { protocolId: 'okx' });
    const baseline = sim.printedTrades(BTC).length;
    sim.market.step(20, BTC);
    const fresh = sim.printedTrades(BTC).slice(baseline).map((t) => t.id);
    await until('clean delivery', () => classify('okx', clean.frames).trades.length >= fresh.length);
    expect(classify('okx', clean.frames).trades.map((t) => t.id)).toEqual(fresh);
    expect(sim.faults.injected()).toEqual(before);
  });
});
