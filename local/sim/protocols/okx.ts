/**
 * OKX v5 protocol for the simulator: the public REST endpoints ccxt's okx calls and the public /
 * business WebSocket ccxt.pro's okx uses (`/ws/v5/public`, `/ws/v5/business`, `{op, args}`
 * subscriptions, text `ping` -> `pong`). Message shapes follow OKX's v5 docs: every REST answer is
 * `{code, msg, data}`, numbers are decimal strings without trailing zeros, timestamps are strings.
 *
 * Each spot symbol of the market is listed as SPOT (`BTC-USDT`) and, unless disabled, as a linear
 * SWAP (`BTC-USDT-SWAP`, ccxt `BTC/USDT:USDT`) that mirrors the spot prices, with a seeded
 * funding rate and open interest. Swaps have tickers, funding and open interest only: no books,
 * trades or candles.
 */
import type { WebSocket } from 'ws';
import { ConfigError } from '../../../layers/shared/src/domain/errors.js';
import { OKX_CHECKSUM_LEVELS, okxBookChecksum } from '../../../layers/shared/src/normalize/okx-book-checksum.js';
import { bucketStart, TIMEFRAME_MS, type Timeframe } from '../../../layers/shared/src/domain/timeframes.js';
import type { FrameKind, MarketFrame } from '../faults.js';
import { formatScaled, type BookDelta, type BookEntry, type Kline, type PrintedTrade, type SimulatedMarket, type SymbolSpec } from '../market.js';
import { hashString } from '../prng.js';
import { checkRateBudget, FixedWindowLimiter } from '../rate-limits.js';
import type { ProtocolContext, SimHttpRequest, SimHttpResponse, SimProtocol, SimProtocolFactory } from '../server.js';

export interface OkxProtocolOptions {
  /** period of `tickers` pushes, sent only when the ticker changed; OKX: at most every 100 ms */
  readonly tickerIntervalMs?: number;
  /** period of `books` incremental pushes and `books5` snapshots; OKX: 100 ms */
  readonly bookIntervalMs?: number;
  /** period of `candle*` pushes on the business socket; OKX: about 500 ms */
  readonly candleIntervalMs?: number;
  /** period of `funding-rate` pushes; OKX: 30-90 s */
  readonly fundingIntervalMs?: number;
  /** list a linear SWAP per spot symbol (default true) */
  readonly swaps?: boolean;
  /**
   * When the server enforces rate limits: OKX's requests per endpoint per 2 s, times `factor`, per
   * `windowMs` (default factor 1, window 2000 ms)
   */
  readonly rateLimits?: { readonly factor?: number; readonly windowMs?: number };
}

/** OKX's public REST rate limits: requests per 2 seconds per IP, by endpoint (v5 docs). */
const REQUESTS_PER_2S: Readonly<Record<string, number>> = {
  '/api/v5/public/time': 10,
  '/api/v5/system/status': 1,
  '/api/v5/public/instruments': 20,
  '/api/v5/market/ticker': 20,
  '/api/v5/market/tickers': 20,
  '/api/v5/market/books': 40,
  '/api/v5/market/books-full': 10,
  '/api/v5/market/candles': 40,
  '/api/v5/market/history-candles': 20,
  '/api/v5/market/trades': 100,
  '/api/v5/market/history-trades': 20,
  '/api/v5/public/funding-rate': 10,
  '/api/v5/public/open-interest': 20,
};

// The checksum algorithm is shared with the collector, which verifies it (one implementation).
export { OKX_CHECKSUM_LEVELS, okxBookChecksum } from '../../../layers/shared/src/normalize/okx-book-checksum.js';

// ---------------------------------------------------------------------------------------------
// formatting

/** OKX prints decimals without trailing zeros ("65000.1", "9"). */
export function okxDecimal(decimal: string): string {
  if (!decimal.includes('.')) return decimal;
  const trimmed = decimal.replace(/0+$/, '').replace(/\.$/, '');
  return trimmed === '-0' ? '0' : trimmed;
}

function parseDecimal(decimal: string): { units: bigint; decimals: number } {
  const negative = decimal.startsWith('-');
  const [int = '0', frac = ''] = (negative ? decimal.slice(1) : decimal).split('.');
  const units = BigInt(int + frac);
  return { units: negative ? -units : units, decimals: frac.length };
}

/** How many `step`s make `amount` (amounts are exact multiples of the step). */
function stepsOf(amount: string, step: string): bigint {
  const a = parseDecimal(amount);
  const s = parseDecimal(step);
  const d = Math.max(a.decimals, s.decimals);
  return (a.units * 10n ** BigInt(d - a.decimals)) / (s.units * 10n ** BigInt(d - s.decimals));
}

/** A swap contract is 1000 lot steps of the spot market (BTC 0.01, ETH 0.1, SOL 1: OKX's own sizes). */
const CONTRACT_STEPS = 1000n;
const CONTRACT_DECIMALS = 3; // one lot step = 0.001 contract

function contractValue(spec: SymbolSpec): string {
  const s = parseDecimal(spec.stepSize);
  return okxDecimal(formatScaled(s.units * CONTRACT_STEPS, s.decimals, s.decimals));
}

/** A base amount in contracts (exact: one lot step is 0.001 contract). */
function contractsOf(amount: string, spec: SymbolSpec): string {
  return okxDecimal(formatScaled(stepsOf(amount, spec.stepSize), CONTRACT_DECIMALS, CONTRACT_DECIMALS));
}

/** `[px, sz, liquidated orders, orders]` as in OKX books; the simulator has one order per level. */
function bookLevel(e: BookEntry): [string, string, string, string] {
  return [okxDecimal(e.priceString), okxDecimal(e.amountString), '0', e.amount > 0 ? '1' : '0'];
}

// ---------------------------------------------------------------------------------------------
// bars

interface BarSpec {
  readonly tf: Timeframe;
  /** bars of 6h and longer without the `utc` suffix open at 00:00 UTC+8 */
  readonly offsetMs: number;
}

const HK_OFFSET_MS = 8 * 3_600_000;

/** OKX bar names the simulator serves (calendar months and 2D are not built). */
const BARS: Readonly<Record<string, BarSpec>> = {
  '1m': { tf: '1m', offsetMs: 0 },
  '3m': { tf: '3m', offsetMs: 0 },
  '5m': { tf: '5m', offsetMs: 0 },
  '15m': { tf: '15m', offsetMs: 0 },
  '30m': { tf: '30m', offsetMs: 0 },
  '1H': { tf: '1h', offsetMs: 0 },
  '2H': { tf: '2h', offsetMs: 0 },
  '4H': { tf: '4h', offsetMs: 0 },
  '6H': { tf: '6h', offsetMs: HK_OFFSET_MS },
  '12H': { tf: '12h', offsetMs: HK_OFFSET_MS },
  '1D': { tf: '1d', offsetMs: HK_OFFSET_MS },
  '1W': { tf: '1w', offsetMs: HK_OFFSET_MS },
  '6Hutc': { tf: '6h', offsetMs: 0 },
  '12Hutc': { tf: '12h', offsetMs: 0 },
  '1Dutc': { tf: '1d', offsetMs: 0 },
  '3Dutc': { tf: '3d', offsetMs: 0 },
  '1Wutc': { tf: '1w', offsetMs: 0 },
};

/** Open time of the OKX bar containing `ts`. */
function barStart(bar: BarSpec, ts: number): number {
  return bucketStart(ts + bar.offsetMs, bar.tf) - bar.offsetMs;
}

/** `market/candles` serves the latest 1440 bars; older ones come from `market/history-candles`. */
const RECENT_CANDLES = 1440;

// ---------------------------------------------------------------------------------------------
// REST plumbing

/** OKX's REST envelope for a success. */
function ok(data: readonly unknown[]): SimHttpResponse {
  return { status: 200, body: { code: '0', msg: '', data } };
}

/** OKX's REST envelope for an error (HTTP status as listed in OKX's error-code table). */
function okxError(status: number, code: string, msg: string, headers?: Record<string, string>): SimHttpResponse {
  return { status, body: { code, msg, data: [] }, ...(headers ? { headers } : {}) };
}

class BadParam extends Error {
  constructor(readonly response: SimHttpResponse) {
    super(JSON.stringify(response.body));
  }
}

const emptyParam = (name: string): BadParam => new BadParam(okxError(400, '50014', `Parameter ${name} can not be empty.`));
const badParam = (name: string): BadParam => new BadParam(okxError(400, '51000', `Parameter ${name} error`));
const noInstrument = (): BadParam => new BadParam(okxError(200, '51001', "Instrument ID or Spread ID doesn't exist."));

function optionalInt(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^\d{1,16}$/.test(raw)) throw badParam(name);
  return Number(raw);
}

function limitParam(query: URLSearchParams, fallback: number, max: number): number {
  const n = optionalInt(query, 'limit') ?? fallback;
  if (n < 1) throw badParam('limit');
  return Math.min(n, max);
}

// ---------------------------------------------------------------------------------------------
// protocol

interface Instrument {
  readonly instId: string;
  readonly instType: 'SPOT' | 'SWAP';
  /** market-model symbol (a swap mirrors its spot market) */
  readonly symbol: string;
  readonly spec: SymbolSpec;
}

interface Connection {
  readonly socket: WebSocket;
  readonly business: boolean;
  readonly connId: string;
  readonly streams: Set<string>;
  /** per spot instId, the seqId of the last `books` frame sent (snapshot or update) */
  readonly bookSeq: Map<string, number>;
}

/** Book changes since the last `books` push, coalesced to the latest absolute amount per level. */
interface PendingBook {
  last: number;
  readonly bids: Map<string, BookEntry>;
  readonly asks: Map<string, BookEntry>;
}

const PUBLIC_CHANNELS = new Set(['trades', 'tickers', 'books', 'books5', 'bbo-tbt', 'funding-rate']);
const SPOT_ONLY_CHANNELS = new Set(['trades', 'books', 'books5', 'bbo-tbt']);
const HOUR_MS = 3_600_000;
const FUNDING_PERIOD_MS = 8 * HOUR_MS;

const streamKey = (channel: string, instId: string): string => `${channel}:${instId}`;

class OkxProtocol implements SimProtocol {
  readonly id = 'okx';
  private readonly market: SimulatedMarket;
  private readonly faults: ProtocolContext['faults'];
  private readonly instruments = new Map<string, Instrument>();
  private readonly spotIdOf = new Map<string, string>();
  private readonly swapIdOf = new Map<string, string>();
  private readonly connections = new Set<Connection>();
  private readonly subscribers = new Map<string, Set<Connection>>();
  private readonly pendingBooks = new Map<string, PendingBook>();
  private readonly lastBooks5 = new Map<string, number>();
  private readonly lastBbo = new Map<string, string>();
  private readonly lastTicker = new Map<string, string>();
  private readonly candleOpenTimes = new Map<string, number>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly unsubscribeMarket: () => void;
  private connCounter = 0;
  private readonly limiter = new FixedWindowLimiter();
  private readonly rateFactor: number;
  private readonly rateWindowMs: number;

  constructor(context: ProtocolContext, options: OkxProtocolOptions) {
    this.market = context.market;
    this.faults = context.faults;
    this.rateFactor = options.rateLimits?.factor ?? 1;
    this.rateWindowMs = options.rateLimits?.windowMs ?? 2000;
    checkRateBudget('okx rateLimits', this.rateFactor, this.rateWindowMs);
    const swaps = options.swaps ?? true;
    for (const symbol of this.market.symbols) {
      const spec = this.market.spec(symbol);
      const spotId = `${spec.base}-${spec.quote}`;
      this.instruments.set(spotId, { instId: spotId, instType: 'SPOT', symbol, spec });
      this.spotIdOf.set(symbol, spotId);
      if (swaps) {
        const swapId = `${spotId}-SWAP`;
        this.instruments.set(swapId, { instId: swapId, instType: 'SWAP', symbol, spec });
        this.swapIdOf.set(symbol, swapId);
      }
    }
    const periods = {
      tickerIntervalMs: options.tickerIntervalMs ?? 100,
      bookIntervalMs: options.bookIntervalMs ?? 100,
      candleIntervalMs: options.candleIntervalMs ?? 500,
      fundingIntervalMs: options.fundingIntervalMs ?? 1000,
    };
    for (const [name, ms] of Object.entries(periods)) {
      if (!(ms >= 10 && Number.isFinite(ms))) throw new ConfigError(`okx ${name} must be >= 10, got ${ms}`);
    }
    this.unsubscribeMarket = this.market.subscribe({
      trades: (symbol, trades) => this.onTrades(symbol, trades),
      book: (delta) => this.onBook(delta),
    });
    this.timers.push(setInterval(() => this.flushBooks(), periods.bookIntervalMs));
    this.timers.push(setInterval(() => this.pushTickers(), periods.tickerIntervalMs));
    this.timers.push(setInterval(() => this.pushCandles(), periods.candleIntervalMs));
    this.timers.push(setInterval(() => this.pushFunding(), periods.fundingIntervalMs));
  }

  endpoint(origin: { readonly http: string; readonly ws: string }): { rest: string; ws: string } {
    // ccxt appends `/api/v5/...` to the REST base and `/public` or `/business` to the ws base
    return { rest: origin.http, ws: `${origin.ws}/ws/v5` };
  }

  close(): void {
    this.unsubscribeMarket();
    for (const t of this.timers) clearInterval(t);
    for (const c of this.connections) c.socket.terminate();
    this.connections.clear();
    this.subscribers.clear();
  }

  activeStreams(): readonly string[] {
    return [...this.subscribers.entries()].filter(([, subs]) => subs.size > 0).map(([name]) => name);
  }

  // ---------------------------------------------------------------------------------------------
  // REST

  injectedFailure(status: number): SimHttpResponse {
    if (status === 429) return okxError(429, '50011', 'Too Many Requests');
    if (status === 500) return okxError(500, '50026', 'System error. Try again later');
    if (status === 503) return okxError(503, '50001', 'Service temporarily unavailable. Please try again later');
    if (status === 504) return okxError(504, '50004', 'API endpoint request timeout');
    // other 5xx come from the edge in front of the API: an HTML page, not a JSON error
    const title = `${status} Server Error`;
    return { status, body: null, html: `<html><head><title>${title}</title></head><body><center><h1>${title}</h1></center></body></html>` };
  }

  admit(request: SimHttpRequest): SimHttpResponse | undefined {
    const perWindow = REQUESTS_PER_2S[request.path];
    if (perWindow === undefined) return undefined; // unknown routes answer 404 anyway
    const budget = { key: request.path, limit: Math.max(1, Math.floor(perWindow * this.rateFactor)), windowMs: this.rateWindowMs };
    return this.limiter.take(budget, 1).ok ? undefined : okxError(429, '50011', 'Too Many Requests');
  }

  rateLimited(): number {
    return this.limiter.rejected;
  }

  handleHttp(request: SimHttpRequest): SimHttpResponse {
    const route = ROUTES[request.path];
    if (!route) return okxError(404, '50030', `No permission to use this API (simulator has no route ${request.method} ${request.path})`);
    if (request.method !== 'GET') return okxError(405, '50115', 'Invalid request method.');
    try {
      return ok(route(this, request.query));
    } catch (error) {
      if (error instanceof BadParam) return error.response;
      throw error;
    }
  }

  instrumentParam(query: URLSearchParams, type?: 'SPOT' | 'SWAP'): Instrument {
    const instId = query.get('instId');
    if (instId === null || instId === '') throw emptyParam('instId');
    const inst = this.instruments.get(instId);
    if (!inst) throw noInstrument();
    if (type === 'SPOT' && inst.instType !== 'SPOT') {
      throw new BadParam(okxError(400, '51000', 'Parameter instId error (the simulator serves books, trades and candles for SPOT only)'));
    }
    if (type === 'SWAP' && inst.instType !== 'SWAP') throw noInstrument();
    return inst;
  }

  instTypeParam(query: URLSearchParams): string {
    const instType = query.get('instType');
    if (instType === null || instType === '') throw emptyParam('instType');
    if (!['SPOT', 'MARGIN', 'SWAP', 'FUTURES', 'OPTION'].includes(instType)) throw badParam('instType');
    return instType;
  }

  /** Instruments of `instType` (none for types the simulator does not list), optionally one instId / family. */
  listed(query: URLSearchParams): Instrument[] {
    const instType = this.instTypeParam(query);
    const instId = query.get('instId');
    const family = query.get('instFamily') ?? query.get('uly');
    return [...this.instruments.values()].filter(
      (i) =>
        i.instType === instType &&
        (instId === null || instId === '' || i.instId === instId) &&
        (family === null || family === '' || i.instType !== 'SWAP' || i.instId === `${family}-SWAP`),
    );
  }

  instrumentList(query: URLSearchParams): unknown[] {
    return this.listed(query).map((i) => this.instrumentRow(i));
  }

  instrumentRow(i: Instrument): Record<string, string> {
    const spec = i.spec;
    const common = {
      alias: '',
      auctionEndTime: '',
      category: '1',
      contTdSwTime: '',
      expTime: '',
      instId: i.instId,
      instType: i.instType,
      listTime: '1548133413000',
      maxIcebergSz: '9999999999',
      maxLmtAmt: '20000000',
      maxMktAmt: '1000000',
      maxStopSz: '9999999999',
      maxTriggerSz: '9999999999',
      maxTwapSz: '9999999999',
      openType: '',
      optType: '',
      ruleType: 'normal',
      state: 'live',
      stk: '',
      tickSz: okxDecimal(spec.tickSize),
    };
    if (i.instType === 'SPOT') {
      return {
        ...common,
        baseCcy: spec.base,
        quoteCcy: spec.quote,
        settleCcy: '',
        ctMult: '',
        ctType: '',
        ctVal: '',
        ctValCcy: '',
        instFamily: '',
        uly: '',
        lever: '10',
        lotSz: okxDecimal(spec.stepSize),
        minSz: okxDecimal(spec.minQty),
        maxLmtSz: okxDecimal(spec.maxQty),
        maxMktSz: '1000000',
      };
    }
    const family = `${spec.base}-${spec.quote}`;
    return {
      ...common,
      baseCcy: '',
      quoteCcy: '',
      settleCcy: spec.quote,
      ctMult: '1',
      ctType: 'linear',
      ctVal: contractValue(spec),
      ctValCcy: spec.base,
      instFamily: family,
      uly: family,
      lever: '100',
      lotSz: '0.001',
      minSz: '0.001',
      maxLmtSz: '100000000',
      maxMktSz: '100000000',
    };
  }

  time(): unknown[] {
    return [{ ts: String(this.market.now()) }];
  }

  tickerRow(i: Instrument): Record<string, string> {
    const st = this.market.stats24h(i.symbol);
    const top = this.market.topOfBook(i.symbol);
    const now = this.market.now();
    const swap = i.instType === 'SWAP';
    const size = (amount: string): string => (swap ? contractsOf(amount, i.spec) : okxDecimal(amount));
    const dayOpen = (offsetMs: number): string => {
      const open = this.market.klineAt(i.symbol, '1d', barStart({ tf: '1d', offsetMs }, now))?.open ?? st.last;
      return okxDecimal(open);
    };
    return {
      instType: i.instType,
      instId: i.instId,
      last: okxDecimal(st.last),
      lastSz: size(st.lastQty),
      askPx: okxDecimal(top.ask.priceString),
      askSz: size(top.ask.amountString),
      bidPx: okxDecimal(top.bid.priceString),
      bidSz: size(top.bid.amountString),
      open24h: okxDecimal(st.open),
      high24h: okxDecimal(st.high),
      low24h: okxDecimal(st.low),
      // spot: vol24h in base, volCcy24h in quote; swap: vol24h in contracts, volCcy24h in base
      volCcy24h: swap ? okxDecimal(st.volume) : okxDecimal(st.quoteVolume),
      vol24h: size(st.volume),
      ts: String(now),
      sodUtc0: dayOpen(0),
      sodUtc8: dayOpen(HK_OFFSET_MS),
    };
  }

  ticker(query: URLSearchParams): unknown[] {
    return [this.tickerRow(this.instrumentParam(query))];
  }

  tickers(query: URLSearchParams): unknown[] {
    const instType = this.instTypeParam(query);
    return [...this.instruments.values()].filter((i) => i.instType === instType).map((i) => this.tickerRow(i));
  }

  books(query: URLSearchParams, max: number): unknown[] {
    const inst = this.instrumentParam(query, 'SPOT');
    const raw = query.get('sz');
    if (raw !== null && raw !== '' && !/^\d{1,6}$/.test(raw)) throw badParam('sz');
    const sz = Math.min(max, Math.max(1, raw === null || raw === '' ? 1 : Number(raw)));
    const book = this.market.book(inst.symbol, sz);
    return [{ asks: book.asks.map(bookLevel), bids: book.bids.map(bookLevel), ts: String(book.ts) }];
  }

  /** `after` = open times before it, `before` = after it (both exclusive); newest first, like OKX. */
  candles(query: URLSearchParams, history: boolean): unknown[] {
    const inst = this.instrumentParam(query, 'SPOT');
    const barName = query.get('bar') ?? '1m';
    const bar = BARS[barName];
    if (!bar) throw badParam('bar');
    // OKX: at most 300 bars from market/candles, 100 from market/history-candles
    const limit = limitParam(query, 100, history ? 100 : 300);
    const after = optionalInt(query, 'after');
    const before = optionalInt(query, 'before');
    const firstTs = this.market.firstTradeTs(inst.symbol);
    if (firstTs === undefined) return [];
    const size = TIMEFRAME_MS[bar.tf];
    const now = this.market.now();
    const newest = barStart(bar, now);
    let lowest = barStart(bar, firstTs);
    if (!history) lowest = Math.max(lowest, newest - (RECENT_CANDLES - 1) * size);
    if (before !== undefined) lowest = Math.max(lowest, barStart(bar, before) + size);
    const highest = after !== undefined ? Math.min(newest, barStart(bar, after - 1)) : newest;
    const rows: unknown[] = [];
    for (let t = highest; t >= lowest && rows.length < limit; t -= size) {
      const k = this.market.klineAt(inst.symbol, bar.tf, t);
      if (k) rows.push(candleRow(k, t + size <= now));
    }
    return rows;
  }

  tradeRow(inst: Instrument, t: PrintedTrade): Record<string, string> {
    return {
      instId: inst.instId,
      side: t.side,
      sz: okxDecimal(t.amountString),
      px: okxDecimal(t.priceString),
      source: '0',
      tradeId: String(t.id),
      ts: String(t.ts),
    };
  }

  trades(query: URLSearchParams): unknown[] {
    const inst = this.instrumentParam(query, 'SPOT');
    const limit = limitParam(query, 100, 500);
    return [...this.market.recentTrades(inst.symbol, limit)].reverse().map((t) => this.tradeRow(inst, t));
  }

  /**
   * `type=1` (default) pages by tradeId, `type=2` by timestamp: `after` = older than, `before` =
   * newer than (both exclusive); newest first, at most 100. With `before` alone OKX returns the
   * latest trades, so a caller wanting the trades right after id X sends `before=X&after=X+limit+1`.
   */
  historyTrades(query: URLSearchParams): unknown[] {
    const inst = this.instrumentParam(query, 'SPOT');
    const type = query.get('type') ?? '1';
    if (type !== '1' && type !== '2') throw badParam('type');
    const limit = limitParam(query, 100, 100);
    const after = optionalInt(query, 'after');
    const before = optionalInt(query, 'before');
    // ids are contiguous (history then live trades), so both types become an id range
    const ids = this.market.tradeIds(inst.symbol);
    const idOf = (ts: number): number => this.market.tradeIdAtOrAfter(inst.symbol, ts);
    let hi = ids.next; // exclusive
    let lo = ids.first; // inclusive
    if (after !== undefined) hi = Math.min(hi, type === '1' ? after : idOf(after));
    if (before !== undefined) lo = Math.max(lo, type === '1' ? before + 1 : idOf(before + 1));
    const rows: unknown[] = [];
    for (let id = hi - 1; id >= lo && rows.length < limit; id--) rows.push(this.tradeRow(inst, this.market.tradeById(inst.symbol, id)!));
    return rows;
  }

  fundingRow(inst: Instrument): Record<string, string> {
    const now = this.market.now();
    const period = Math.floor(now / FUNDING_PERIOD_MS);
    const rate = this.fundingRate(inst.symbol, period);
    return {
      instType: 'SWAP',
      instId: inst.instId,
      method: 'current_period',
      formulaType: 'withRate',
      fundingRate: rate,
      nextFundingRate: '',
      fundingTime: String((period + 1) * FUNDING_PERIOD_MS),
      nextFundingTime: String((period + 2) * FUNDING_PERIOD_MS),
      minFundingRate: '-0.0075',
      maxFundingRate: '0.0075',
      interestRate: '0.0001',
      impactValue: '20000',
      premium: okxDecimal((Number(rate) - 0.0001).toFixed(10)),
      settState: 'settled',
      settFundingRate: this.fundingRate(inst.symbol, period - 1),
      ts: String(now),
    };
  }

  /** Seeded funding rate of one 8h period, in [-0.0001, 0.0003). */
  fundingRate(symbol: string, period: number): string {
    const u = hashString(`${symbol}:funding:${period}`, this.market.seed >>> 0) / 2 ** 32;
    return okxDecimal((-0.0001 + u * 0.0004).toFixed(10));
  }

  fundingRateRest(query: URLSearchParams): unknown[] {
    return [this.fundingRow(this.instrumentParam(query, 'SWAP'))];
  }

  /** Seeded open interest swinging ±25% over 6 hours around 20 000 median orders. */
  openInterestRow(inst: Instrument): Record<string, string> {
    const now = this.market.now();
    const spec = inst.spec;
    const phase = (hashString(`${inst.symbol}:oi`, this.market.seed >>> 0) / 2 ** 32) * 2 * Math.PI;
    const base = spec.medianQty * 20_000 * (1 + 0.25 * Math.sin((2 * Math.PI * now) / (6 * HOUR_MS) + phase));
    const step = parseDecimal(spec.stepSize);
    const steps = BigInt(Math.max(1, Math.round(base / Number(spec.stepSize))));
    const oiCcy = okxDecimal(formatScaled(steps * step.units, step.decimals, step.decimals));
    const last = Number(this.market.stats24h(inst.symbol).last);
    return {
      instType: 'SWAP',
      instId: inst.instId,
      oi: okxDecimal(formatScaled(steps, CONTRACT_DECIMALS, CONTRACT_DECIMALS)),
      oiCcy,
      oiUsd: okxDecimal((Number(oiCcy) * last).toFixed(2)),
      ts: String(now),
    };
  }

  openInterest(query: URLSearchParams): unknown[] {
    const instType = this.instTypeParam(query);
    if (instType === 'SPOT' || instType === 'MARGIN') throw badParam('instType'); // contracts only
    return this.listed(query).map((i) => this.openInterestRow(i));
  }

  // ---------------------------------------------------------------------------------------------
  // WebSocket

  acceptsWsPath(path: string): boolean {
    return path === '/ws/v5/public' || path === '/ws/v5/business';
  }

  handleConnection(socket: WebSocket, path: string): void {
    const conn: Connection = {
      socket,
      business: path === '/ws/v5/business',
      connId: hashString(String(++this.connCounter), this.market.seed >>> 0)
        .toString(16)
        .padStart(8, '0'),
      streams: new Set(),
      bookSeq: new Map(),
    };
    this.connections.add(conn);
    socket.on('message', (data, isBinary) => {
      if (isBinary) return;
      this.onClientMessage(conn, data.toString());
    });
    socket.on('close', () => {
      for (const name of conn.streams) this.subscribers.get(name)?.delete(conn);
      this.connections.delete(conn);
    });
  }

  /** Control frames (acks, errors, pong) bypass the fault layer: a stalled feed still answers. */
  private reply(conn: Connection, payload: unknown): void {
    if (conn.socket.readyState === conn.socket.OPEN) conn.socket.send(typeof payload === 'string' ? payload : JSON.stringify(payload));
  }

  private onClientMessage(conn: Connection, text: string): void {
    if (text === 'ping') {
      this.reply(conn, 'pong');
      return;
    }
    const illegal = (): void => this.reply(conn, { event: 'error', code: '60012', msg: `Illegal request: ${text}`, connId: conn.connId });
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      illegal();
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      illegal();
      return;
    }
    const { op, args, id } = msg as { op?: unknown; args?: unknown; id?: unknown };
    if ((op !== 'subscribe' && op !== 'unsubscribe') || !Array.isArray(args) || args.length === 0) {
      illegal();
      return;
    }
    const echoId = typeof id === 'string' && id !== '' ? { id } : {};
    for (const arg of args as unknown[]) {
      const { channel, instId } = (typeof arg === 'object' && arg !== null ? arg : {}) as { channel?: unknown; instId?: unknown };
      if (typeof channel !== 'string' || typeof instId !== 'string') {
        illegal();
        return;
      }
      const inst = this.instruments.get(instId);
      if (!inst || !this.channelAllowed(conn, channel, inst)) {
        this.reply(conn, {
          ...echoId,
          event: 'error',
          code: '60018',
          msg: `Wrong URL or channel:${channel},instId:${instId} doesn't exist. Please use the correct URL, channel and parameters referring to API document.`,
          connId: conn.connId,
        });
        continue;
      }
      const key = streamKey(channel, instId);
      if (op === 'subscribe') {
        conn.streams.add(key);
        let subs = this.subscribers.get(key);
        if (!subs) {
          subs = new Set();
          this.subscribers.set(key, subs);
        }
        subs.add(conn);
        this.reply(conn, { ...echoId, event: 'subscribe', arg: { channel, instId }, connId: conn.connId });
        this.pushInitial(conn, channel, inst);
      } else {
        conn.streams.delete(key);
        this.subscribers.get(key)?.delete(conn);
        if (channel === 'books') conn.bookSeq.delete(instId);
        this.reply(conn, { ...echoId, event: 'unsubscribe', arg: { channel, instId }, connId: conn.connId });
      }
    }
  }

  private channelAllowed(conn: Connection, channel: string, inst: Instrument): boolean {
    if (conn.business) return inst.instType === 'SPOT' && channel.startsWith('candle') && BARS[channel.slice('candle'.length)] !== undefined;
    if (!PUBLIC_CHANNELS.has(channel)) return false;
    if (SPOT_ONLY_CHANNELS.has(channel)) return inst.instType === 'SPOT';
    if (channel === 'funding-rate') return inst.instType === 'SWAP';
    return true;
  }

  /** What OKX pushes right after a subscription: the book snapshot, the current ticker, candle or funding rate. */
  private pushInitial(conn: Connection, channel: string, inst: Instrument): void {
    const symbol = inst.symbol;
    switch (channel) {
      case 'books': {
        const book = this.market.book(symbol, 400);
        const top = this.market.book(symbol, OKX_CHECKSUM_LEVELS);
        conn.bookSeq.set(inst.instId, book.lastUpdateId);
        const item = {
          asks: book.asks.map(bookLevel),
          bids: book.bids.map(bookLevel),
          ts: String(book.ts),
          checksum: checksumOf(top.bids, top.asks),
          prevSeqId: -1,
          seqId: book.lastUpdateId,
        };
        this.send(conn, 'bookSnapshot', symbol, { arg: { channel, instId: inst.instId }, action: 'snapshot', data: [item] }, String(book.lastUpdateId), {
          badChecksum: () => JSON.stringify({ arg: { channel, instId: inst.instId }, action: 'snapshot', data: [{ ...item, checksum: corrupt(item.checksum) }] }),
        });
        return;
      }
      case 'books5':
        this.send(conn, 'bookSnapshot', symbol, this.books5Message(inst));
        return;
      case 'bbo-tbt':
        this.send(conn, 'bookSnapshot', symbol, this.bboMessage(inst));
        return;
      case 'tickers':
        this.send(conn, 'ticker', symbol, { arg: { channel, instId: inst.instId }, data: [this.tickerRow(inst)] });
        return;
      case 'funding-rate':
        this.send(conn, 'funding', symbol, { arg: { channel, instId: inst.instId }, data: [this.fundingRow(inst)] });
        return;
      default:
        if (channel.startsWith('candle')) {
          const msg = this.candleMessage(channel, inst);
          if (msg) this.send(conn, 'candle', symbol, msg);
        }
    }
  }

  /** One frame to one connection through the fault layer. */
  private send(
    conn: Connection,
    kind: FrameKind,
    symbol: string,
    payload: unknown,
    ref?: string,
    variants: Pick<MarketFrame, 'schemaBreak' | 'badChecksum'> = {},
  ): void {
    this.faults.deliver(conn.socket, { kind, symbol, text: JSON.stringify(payload), ...(ref !== undefined ? { ref } : {}), ...variants });
  }

  /** One payload to every subscriber of a stream (serialised once). */
  private publish(key: string, kind: FrameKind, symbol: string, payload: unknown, ref?: string, broken?: () => unknown): void {
    const subs = this.subscribers.get(key);
    if (!subs || subs.size === 0) return;
    const text = JSON.stringify(payload);
    const frame: MarketFrame = {
      kind,
      symbol,
      text,
      ...(ref !== undefined ? { ref } : {}),
      ...(broken ? { schemaBreak: () => JSON.stringify(broken()) } : {}),
    };
    for (const conn of subs) this.faults.deliver(conn.socket, frame);
  }

  private hasSubscribers(key: string): boolean {
    return (this.subscribers.get(key)?.size ?? 0) > 0;
  }

  private onTrades(symbol: string, trades: readonly PrintedTrade[]): void {
    const instId = this.spotIdOf.get(symbol)!;
    const key = streamKey('trades', instId);
    if (!this.hasSubscribers(key)) return;
    const inst = this.instruments.get(instId)!;
    for (const t of trades) {
      // one message per trade, tradeId +1 per trade per instrument: the REST id space
      const row = { ...this.tradeRow(inst, t), count: '1' };
      const payload = { arg: { channel: 'trades', instId }, data: [row] };
      this.publish(key, 'trade', symbol, payload, String(t.id), () => ({ ...payload, data: [{ ...row, px: 'abc' }] }));
    }
  }

  private onBook(delta: BookDelta): void {
    const symbol = delta.symbol;
    const instId = this.spotIdOf.get(symbol)!;
    if (this.hasSubscribers(streamKey('books', instId))) {
      let p = this.pendingBooks.get(symbol);
      if (!p) {
        p = { last: delta.lastUpdateId, bids: new Map(), asks: new Map() };
        this.pendingBooks.set(symbol, p);
      }
      p.last = delta.lastUpdateId;
      for (const c of delta.changes) (c.side === 'bid' ? p.bids : p.asks).set(c.priceString, c);
    }
    // bbo-tbt is tick by tick: every change of the touch
    const bboKey = streamKey('bbo-tbt', instId);
    if (this.hasSubscribers(bboKey)) {
      const top = this.market.topOfBook(symbol);
      const touch = `${top.bid.priceString}/${top.bid.amountString}/${top.ask.priceString}/${top.ask.amountString}`;
      if (this.lastBbo.get(symbol) !== touch) {
        this.lastBbo.set(symbol, touch);
        this.publish(bboKey, 'bookSnapshot', symbol, this.bboMessage(this.instruments.get(instId)!), String(top.lastUpdateId));
      }
    }
  }

  private bboMessage(inst: Instrument): unknown {
    const top = this.market.topOfBook(inst.symbol);
    return {
      arg: { channel: 'bbo-tbt', instId: inst.instId },
      data: [{ asks: [bookLevel(top.ask)], bids: [bookLevel(top.bid)], ts: String(this.market.now()), seqId: top.lastUpdateId }],
    };
  }

  private books5Message(inst: Instrument): unknown {
    const book = this.market.book(inst.symbol, 5);
    return {
      arg: { channel: 'books5', instId: inst.instId },
      data: [{ asks: book.asks.map(bookLevel), bids: book.bids.map(bookLevel), instId: inst.instId, ts: String(book.ts), seqId: book.lastUpdateId }],
    };
  }

  /**
   * Every book interval: one `update` per `books` subscriber with the changes since its last
   * frame, `prevSeqId` = that frame's `seqId`, and the checksum of the resulting top 25. The
   * subscriber's seqId advances even if the fault layer withholds the frame: a visible gap.
   */
  private flushBooks(): void {
    for (const [symbol, p] of this.pendingBooks) {
      this.pendingBooks.delete(symbol);
      const instId = this.spotIdOf.get(symbol)!;
      const key = streamKey('books', instId);
      const subs = this.subscribers.get(key);
      if (!subs || subs.size === 0) continue;
      const top = this.market.book(symbol, OKX_CHECKSUM_LEVELS);
      const checksum = checksumOf(top.bids, top.asks);
      const asks = [...p.asks.values()].sort((a, b) => a.price - b.price).map(bookLevel);
      const bids = [...p.bids.values()].sort((a, b) => b.price - a.price).map(bookLevel);
      const ts = String(this.market.now());
      for (const conn of subs) {
        const prevSeqId = conn.bookSeq.get(instId);
        if (prevSeqId === undefined || prevSeqId >= p.last) continue; // its snapshot already has these changes
        conn.bookSeq.set(instId, p.last);
        const message = (sum: number): string =>
          JSON.stringify({ arg: { channel: 'books', instId }, action: 'update', data: [{ asks, bids, ts, checksum: sum, prevSeqId, seqId: p.last }] });
        this.faults.deliver(conn.socket, {
          kind: 'bookDelta',
          symbol,
          text: message(checksum),
          ref: String(p.last),
          badChecksum: () => message(corrupt(checksum)),
        });
      }
    }
    for (const [spotId, inst] of this.instruments) {
      if (inst.instType !== 'SPOT') continue;
      const key = streamKey('books5', spotId);
      if (!this.hasSubscribers(key)) continue;
      const seq = this.market.lastUpdateId(inst.symbol);
      if (this.lastBooks5.get(spotId) === seq) continue;
      this.lastBooks5.set(spotId, seq);
      this.publish(key, 'bookSnapshot', inst.symbol, this.books5Message(inst), String(seq));
    }
  }

  /** Tickers are pushed when they changed since the last push (ts aside). */
  private pushTickers(): void {
    for (const inst of this.instruments.values()) {
      const key = streamKey('tickers', inst.instId);
      if (!this.hasSubscribers(key)) continue;
      const row = this.tickerRow(inst);
      const { ts: _ts, ...content } = row;
      const fingerprint = JSON.stringify(content);
      if (this.lastTicker.get(inst.instId) === fingerprint) continue;
      this.lastTicker.set(inst.instId, fingerprint);
      const payload = { arg: { channel: 'tickers', instId: inst.instId }, data: [row] };
      this.publish(key, 'ticker', inst.symbol, payload, undefined, () => ({ ...payload, data: [{ ...row, last: 'abc' }] }));
    }
  }

  private candleMessage(channel: string, inst: Instrument, openTime?: number): unknown {
    const bar = BARS[channel.slice('candle'.length)]!;
    const now = this.market.now();
    const t = openTime ?? barStart(bar, now);
    const k = this.market.klineAt(inst.symbol, bar.tf, t);
    if (!k) return undefined;
    return { arg: { channel, instId: inst.instId }, data: [candleRow(k, t + TIMEFRAME_MS[bar.tf] <= now)] };
  }

  /** The current bar of every subscribed candle channel; a bar that just closed gets one final `confirm: "1"` push. */
  private pushCandles(): void {
    const now = this.market.now();
    for (const [key, subs] of this.subscribers) {
      if (subs.size === 0 || !key.startsWith('candle')) continue;
      const [channel = '', instId = ''] = key.split(':');
      const inst = this.instruments.get(instId)!;
      const bar = BARS[channel.slice('candle'.length)]!;
      const current = barStart(bar, now);
      const previous = this.candleOpenTimes.get(key);
      if (previous !== undefined && previous < current) {
        const closed = this.candleMessage(channel, inst, previous);
        if (closed) this.publish(key, 'candle', inst.symbol, closed);
      }
      this.candleOpenTimes.set(key, current);
      const msg = this.candleMessage(channel, inst);
      if (msg) this.publish(key, 'candle', inst.symbol, msg);
    }
  }

  private pushFunding(): void {
    for (const inst of this.instruments.values()) {
      if (inst.instType !== 'SWAP') continue;
      const key = streamKey('funding-rate', inst.instId);
      if (!this.hasSubscribers(key)) continue;
      this.publish(key, 'funding', inst.symbol, { arg: { channel: 'funding-rate', instId: inst.instId }, data: [this.fundingRow(inst)] });
    }
  }
}

function checksumOf(bids: readonly BookEntry[], asks: readonly BookEntry[]): number {
  const pair = (e: BookEntry): [string, string] => [okxDecimal(e.priceString), okxDecimal(e.amountString)];
  return okxBookChecksum(bids.map(pair), asks.map(pair));
}

/** A different, still plausible, signed 32-bit checksum. */
function corrupt(checksum: number): number {
  return (checksum ^ 0x5a5a5a5a) | 0;
}

/** `[ts, o, h, l, c, vol (base), volCcy (quote), volCcyQuote, confirm]` for a SPOT bar. */
function candleRow(k: Kline, closed: boolean): string[] {
  return [
    String(k.openTime),
    okxDecimal(k.open),
    okxDecimal(k.high),
    okxDecimal(k.low),
    okxDecimal(k.close),
    okxDecimal(k.volume),
    okxDecimal(k.quoteVolume),
    okxDecimal(k.quoteVolume),
    closed ? '1' : '0',
  ];
}

type Route = (p: OkxProtocol, query: URLSearchParams) => unknown[];

/** Public v5 routes (paths below the mount point) ccxt's okx uses for market data. */
const ROUTES: Readonly<Record<string, Route>> = {
  '/api/v5/public/time': (p) => p.time(),
  '/api/v5/system/status': () => [],
  '/api/v5/public/instruments': (p, q) => p.instrumentList(q),
  '/api/v5/market/ticker': (p, q) => p.ticker(q),
  '/api/v5/market/tickers': (p, q) => p.tickers(q),
  '/api/v5/market/books': (p, q) => p.books(q, 400),
  '/api/v5/market/books-full': (p, q) => p.books(q, 5000),
  '/api/v5/market/candles': (p, q) => p.candles(q, false),
  '/api/v5/market/history-candles': (p, q) => p.candles(q, true),
  '/api/v5/market/trades': (p, q) => p.trades(q),
  '/api/v5/market/history-trades': (p, q) => p.historyTrades(q),
  '/api/v5/public/funding-rate': (p, q) => p.fundingRateRest(q),
  '/api/v5/public/open-interest': (p, q) => p.openInterest(q),
};

/** Factory for the OKX v5 protocol, mounted at `/okx`. */
export function okxProtocol(options: OkxProtocolOptions = {}): SimProtocolFactory {
  return (context) => new OkxProtocol(context, options);
}
