/**
 * Binance spot protocol for the simulator: the public REST endpoints ccxt's binance calls and the
 * market-stream WebSocket ccxt.pro's binance uses (SUBSCRIBE/UNSUBSCRIBE over `/ws`, combined
 * `/stream?streams=`). Message shapes follow Binance's spot docs; numbers are strings with 8
 * decimals like the real API.
 */
import type { WebSocket } from 'ws';
import { ConfigError } from '../../../layers/shared/src/domain/errors.js';
import { TIMEFRAME_MS, type Timeframe } from '../../../layers/shared/src/domain/timeframes.js';
import {
  padDecimals,
  type AggregateTrade,
  type BookDelta,
  type BookEntry,
  type Kline,
  type PrintedTrade,
  type SimulatedMarket,
  type Stats24h,
} from '../market.js';
import type { FrameKind } from '../faults.js';
import { checkRateBudget, FixedWindowLimiter, type RateBudget } from '../rate-limits.js';
import type { ProtocolContext, SimHttpRequest, SimHttpResponse, SimProtocol, SimProtocolFactory } from '../server.js';

export interface BinanceProtocolOptions {
  /** period of `@ticker`, `@miniTicker`, `!…@arr` and `@kline_*` pushes; Binance: 1000 ms */
  readonly tickerIntervalMs?: number;
  /** REQUEST_WEIGHT budget when the server enforces rate limits; Binance spot: 6000 per minute */
  readonly requestWeight?: { readonly limit: number; readonly windowMs: number };
}

const DEC = 8;
const WS_MARKET_DATA_TYPES = ['trade', 'aggTrade', 'ticker', 'miniTicker', 'bookTicker', 'avgPrice'] as const;

/** Binance kline intervals the simulator can build (fixed length; no 1s / 1M). */
const KLINE_INTERVALS: ReadonlySet<string> = new Set(Object.keys(TIMEFRAME_MS));

function isTimeframe(interval: string): interval is Timeframe {
  return KLINE_INTERVALS.has(interval);
}

/** `{code,msg}` body with an HTTP status, the way Binance reports REST errors. */
function apiError(status: number, code: number, msg: string, headers?: Record<string, string>): SimHttpResponse {
  return { status, body: { code, msg }, ...(headers ? { headers } : {}) };
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 502: 'Bad Gateway', 503: 'Service Temporarily Unavailable', 504: 'Gateway Time-out' };

class BadParam extends Error {
  constructor(readonly response: SimHttpResponse) {
    super(JSON.stringify(response.body));
  }
}

const pad = (decimal: string): string => padDecimals(decimal, DEC);
const level = (e: BookEntry): [string, string] => [pad(e.priceString), pad(e.amountString)];

/** Parsed market stream name. */
type StreamSpec =
  | { readonly kind: 'trade' | 'aggTrade' | 'ticker' | 'miniTicker' | 'bookTicker' | 'avgPrice'; readonly symbol: string }
  | { readonly kind: 'depth'; readonly symbol: string; readonly fast: boolean }
  | { readonly kind: 'partialDepth'; readonly symbol: string; readonly levels: number; readonly fast: boolean }
  | { readonly kind: 'kline'; readonly symbol: string; readonly interval: Timeframe }
  | { readonly kind: 'allTickers' | 'allMiniTickers' };

interface Connection {
  readonly socket: WebSocket;
  readonly streams: Set<string>;
  combined: boolean;
}

/** Pending diff for one symbol and one depth cadence: coalesced absolute amounts per level. */
interface PendingDiff {
  first: number;
  last: number;
  readonly bids: Map<string, BookEntry>;
  readonly asks: Map<string, BookEntry>;
}

class BinanceProtocol implements SimProtocol {
  readonly id = 'binance';
  private readonly market: SimulatedMarket;
  private readonly faults: ProtocolContext['faults'];
  private readonly idToSymbol = new Map<string, string>();
  private readonly symbolToId = new Map<string, string>();
  private readonly connections = new Set<Connection>();
  private readonly subscribers = new Map<string, Set<Connection>>();
  /** per symbol, the coalesced diff of the current interval */
  private readonly pendingFast = new Map<string, PendingDiff>();
  private readonly pendingSlow = new Map<string, PendingDiff>();
  private readonly lastBookTicker = new Map<string, string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly unsubscribeMarket: () => void;
  private readonly weightBudget: RateBudget;
  private readonly limiter = new FixedWindowLimiter();

  constructor(context: ProtocolContext, options: BinanceProtocolOptions) {
    this.market = context.market;
    this.faults = context.faults;
    const weight = options.requestWeight ?? { limit: 6000, windowMs: 60_000 };
    checkRateBudget('binance requestWeight', weight.limit, weight.windowMs);
    this.weightBudget = { key: 'REQUEST_WEIGHT', ...weight };
    for (const symbol of this.market.symbols) {
      const spec = this.market.spec(symbol);
      const id = `${spec.base}${spec.quote}`;
      this.idToSymbol.set(id, symbol);
      this.symbolToId.set(symbol, id);
    }
    const tickerMs = options.tickerIntervalMs ?? 1000;
    if (!(tickerMs >= 10)) throw new ConfigError(`tickerIntervalMs must be >= 10, got ${tickerMs}`);
    this.unsubscribeMarket = this.market.subscribe({
      trades: (symbol, trades, aggs) => this.onTrades(symbol, trades, aggs),
      book: (delta) => this.onBook(delta),
    });
    this.timers.push(setInterval(() => this.flushDepth(this.pendingFast, true), 100));
    this.timers.push(setInterval(() => this.flushDepth(this.pendingSlow, false), 1000));
    this.timers.push(setInterval(() => this.pushPeriodic(), tickerMs));
  }

  endpoint(origin: { readonly http: string; readonly ws: string }): { rest: string; ws: string } {
    return { rest: origin.http, ws: `${origin.ws}/ws` };
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
    if (status === 429) {
      return apiError(429, -1003, 'Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.', {
        'retry-after': '1',
      });
    }
    if (status === 500) return apiError(500, -1001, 'Internal error; unable to process your request. Please try again.');
    // other 5xx come from the edge in front of the API: an HTML page, not a JSON error
    const title = `${status} ${STATUS_TEXT[status] ?? 'Server Error'}`;
    return { status, body: null, html: `<html><head><title>${title}</title></head><body><center><h1>${title}</h1></center></body></html>` };
  }

  admit(request: SimHttpRequest): SimHttpResponse | undefined {
    const decision = this.limiter.take(this.weightBudget, requestWeight(request.path, request.query));
    if (decision.ok) return undefined;
    const { limit, windowMs } = this.weightBudget;
    const per = windowMs === 60_000 ? '1 MINUTE' : `${windowMs} MILLISECONDS`;
    return apiError(
      429,
      -1003,
      `Too much request weight used; current limit is ${limit} request weight per ${per}. Please use WebSocket Streams for live updates to avoid polling the API.`,
      { 'retry-after': String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000))) },
    );
  }

  rateLimited(): number {
    return this.limiter.rejected;
  }

  notFound(request: SimHttpRequest): SimHttpResponse {
    return apiError(404, -1020, `This operation is not supported. (simulator has no route ${request.method} ${request.path})`);
  }

  handleHttp(request: SimHttpRequest): SimHttpResponse {
    const route = ROUTES[request.path];
    if (!route) return this.notFound(request);
    if (request.method !== 'GET') return apiError(405, -1020, `This operation is not supported. (${request.method} ${request.path})`);
    try {
      return { status: 200, body: route(this, request.query) };
    } catch (error) {
      if (error instanceof BadParam) return error.response;
      throw error;
    }
  }

  /** Unified symbol for a Binance id, or a -1121 error. */
  symbolParam(query: URLSearchParams, required: true): string;
  symbolParam(query: URLSearchParams, required: false): string | undefined;
  symbolParam(query: URLSearchParams, required: boolean): string | undefined {
    const id = query.get('symbol');
    if (id === null || id === '') {
      if (required) throw new BadParam(apiError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."));
      return undefined;
    }
    const symbol = this.idToSymbol.get(id.toUpperCase());
    if (!symbol) throw new BadParam(apiError(400, -1121, 'Invalid symbol.'));
    return symbol;
  }

  /** `symbol=` → [one], `symbols=["A","B"]` → many, neither → all listed symbols. */
  symbolsParam(query: URLSearchParams): { symbols: string[]; single: boolean } {
    const one = this.symbolParam(query, false);
    if (one) return { symbols: [one], single: true };
    const many = query.get('symbols');
    if (many === null) return { symbols: [...this.market.symbols], single: false };
    let ids: unknown;
    try {
      ids = JSON.parse(many);
    } catch {
      throw new BadParam(apiError(400, -1100, "Illegal characters found in parameter 'symbols'; legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'."));
    }
    if (!Array.isArray(ids) || ids.some((x) => typeof x !== 'string')) {
      throw new BadParam(apiError(400, -1100, "Illegal characters found in parameter 'symbols'."));
    }
    const symbols = (ids as string[]).map((id) => {
      const s = this.idToSymbol.get(id.toUpperCase());
      if (!s) throw new BadParam(apiError(400, -1121, 'Invalid symbol.'));
      return s;
    });
    return { symbols, single: false };
  }

  serverTime(): number {
    return this.market.now();
  }

  marketId(symbol: string): string {
    return this.symbolToId.get(symbol)!;
  }

  exchangeInfo(query: URLSearchParams): unknown {
    const { symbols } = this.symbolsParam(query);
    return {
      timezone: 'UTC',
      serverTime: this.market.now(),
      rateLimits: [
        { rateLimitType: 'REQUEST_WEIGHT', interval: 'MINUTE', intervalNum: 1, limit: 6000 },
        { rateLimitType: 'ORDERS', interval: 'SECOND', intervalNum: 10, limit: 100 },
        { rateLimitType: 'ORDERS', interval: 'DAY', intervalNum: 1, limit: 200000 },
        { rateLimitType: 'RAW_REQUESTS', interval: 'MINUTE', intervalNum: 5, limit: 61000 },
      ],
      exchangeFilters: [],
      symbols: symbols.map((symbol) => {
        const spec = this.market.spec(symbol);
        const maxPrice = 10 ** Math.ceil(Math.log10(spec.initialPrice * 100));
        return {
          symbol: this.marketId(symbol),
          status: 'TRADING',
          baseAsset: spec.base,
          baseAssetPrecision: 8,
          quoteAsset: spec.quote,
          quotePrecision: 8,
          quoteAssetPrecision: 8,
          baseCommissionPrecision: 8,
          quoteCommissionPrecision: 8,
          orderTypes: ['LIMIT', 'LIMIT_MAKER', 'MARKET', 'STOP_LOSS', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT', 'TAKE_PROFIT_LIMIT'],
          icebergAllowed: true,
          ocoAllowed: true,
          otoAllowed: true,
          quoteOrderQtyMarketAllowed: true,
          allowTrailingStop: true,
          cancelReplaceAllowed: true,
          amendAllowed: true,
          isSpotTradingAllowed: true,
          isMarginTradingAllowed: false,
          filters: [
            { filterType: 'PRICE_FILTER', minPrice: pad(spec.tickSize), maxPrice: pad(String(maxPrice)), tickSize: pad(spec.tickSize) },
            { filterType: 'LOT_SIZE', minQty: pad(spec.minQty), maxQty: pad(spec.maxQty), stepSize: pad(spec.stepSize) },
            { filterType: 'ICEBERG_PARTS', limit: 10 },
            { filterType: 'MARKET_LOT_SIZE', minQty: pad('0'), maxQty: pad(spec.maxQty), stepSize: pad('0') },
            { filterType: 'TRAILING_DELTA', minTrailingAboveDelta: 10, maxTrailingAboveDelta: 2000, minTrailingBelowDelta: 10, maxTrailingBelowDelta: 2000 },
            { filterType: 'PERCENT_PRICE_BY_SIDE', bidMultiplierUp: '5', bidMultiplierDown: '0.2', askMultiplierUp: '5', askMultiplierDown: '0.2', avgPriceMins: 5 },
            { filterType: 'NOTIONAL', minNotional: pad(spec.minNotional), applyMinToMarket: true, maxNotional: pad('9000000'), applyMaxToMarket: false, avgPriceMins: 5 },
            { filterType: 'MAX_NUM_ORDERS', maxNumOrders: 200 },
            { filterType: 'MAX_NUM_ALGO_ORDERS', maxNumAlgoOrders: 5 },
          ],
          permissions: [],
          permissionSets: [['SPOT']],
          defaultSelfTradePreventionMode: 'EXPIRE_MAKER',
          allowedSelfTradePreventionModes: ['EXPIRE_TAKER', 'EXPIRE_MAKER', 'EXPIRE_BOTH'],
        };
      }),
    };
  }

  depth(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const limit = Math.min(5000, intParam(query, 'limit', 100, 1));
    const book = this.market.book(symbol, limit);
    return { lastUpdateId: book.lastUpdateId, bids: book.bids.map(level), asks: book.asks.map(level) };
  }

  rawTrades(trades: readonly PrintedTrade[]): unknown[] {
    return trades.map((t) => ({
      id: t.id,
      price: pad(t.priceString),
      qty: pad(t.amountString),
      quoteQty: pad(t.quoteString),
      time: t.ts,
      isBuyerMaker: t.side === 'sell',
      isBestMatch: true,
    }));
  }

  trades(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const limit = Math.min(1000, intParam(query, 'limit', 500, 1));
    return this.rawTrades(this.market.recentTrades(symbol, limit));
  }

  historicalTrades(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const limit = Math.min(1000, intParam(query, 'limit', 500, 1));
    const fromId = optionalInt(query, 'fromId', 0);
    return this.rawTrades(fromId === undefined ? this.market.recentTrades(symbol, limit) : this.market.tradesFromId(symbol, fromId, limit));
  }

  aggTrades(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const limit = Math.min(1000, intParam(query, 'limit', 500, 1));
    const fromId = optionalInt(query, 'fromId', 0);
    const startTime = optionalInt(query, 'startTime', 0);
    const endTime = optionalInt(query, 'endTime', 0);
    if (startTime !== undefined && endTime !== undefined && endTime < startTime) {
      throw new BadParam(apiError(400, -1128, 'Combination of optional parameters invalid.'));
    }
    const aggs = this.market.queryAggregateTrades(symbol, {
      limit,
      ...(fromId !== undefined ? { fromId } : {}),
      ...(startTime !== undefined ? { startTime } : {}),
      ...(endTime !== undefined ? { endTime } : {}),
    });
    return aggs.map(aggPayload);
  }

  klines(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const interval = query.get('interval');
    if (interval === null || interval === '') {
      throw new BadParam(apiError(400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."));
    }
    if (!isTimeframe(interval)) throw new BadParam(apiError(400, -1120, 'Invalid interval.'));
    const limit = Math.min(1000, intParam(query, 'limit', 500, 1));
    const startTime = optionalInt(query, 'startTime', 0);
    const endTime = optionalInt(query, 'endTime', 0);
    const klines = this.market.klines(symbol, interval, {
      limit,
      ...(startTime !== undefined ? { startTime } : {}),
      ...(endTime !== undefined ? { endTime } : {}),
    });
    return klines.map((k) => [
      k.openTime,
      pad(k.open),
      pad(k.high),
      pad(k.low),
      pad(k.close),
      pad(k.volume),
      k.closeTime,
      pad(k.quoteVolume),
      k.count,
      pad(k.takerBuyVolume),
      pad(k.takerBuyQuoteVolume),
      '0',
    ]);
  }

  ticker24hr(query: URLSearchParams): unknown {
    const { symbols, single } = this.symbolsParam(query);
    const type = query.get('type') ?? 'FULL';
    if (type !== 'FULL' && type !== 'MINI') throw new BadParam(apiError(400, -1130, "Data sent for parameter 'type' is not valid."));
    const rows = symbols.map((s) => (type === 'MINI' ? this.miniTickerRow(s) : this.fullTickerRow(s)));
    return single ? rows[0] : rows;
  }

  fullTickerRow(symbol: string): Record<string, unknown> {
    const st = this.market.stats24h(symbol);
    const top = this.market.topOfBook(symbol);
    return {
      symbol: this.marketId(symbol),
      priceChange: pad(st.change),
      priceChangePercent: st.changePct,
      weightedAvgPrice: pad(st.weightedAvg),
      prevClosePrice: pad(st.prevClose),
      lastPrice: pad(st.last),
      lastQty: pad(st.lastQty),
      bidPrice: pad(top.bid.priceString),
      bidQty: pad(top.bid.amountString),
      askPrice: pad(top.ask.priceString),
      askQty: pad(top.ask.amountString),
      openPrice: pad(st.open),
      highPrice: pad(st.high),
      lowPrice: pad(st.low),
      volume: pad(st.volume),
      quoteVolume: pad(st.quoteVolume),
      openTime: st.openTime,
      closeTime: st.closeTime,
      firstId: st.firstId,
      lastId: st.lastId,
      count: st.count,
    };
  }

  miniTickerRow(symbol: string): Record<string, unknown> {
    const st = this.market.stats24h(symbol);
    return {
      symbol: this.marketId(symbol),
      openPrice: pad(st.open),
      highPrice: pad(st.high),
      lowPrice: pad(st.low),
      lastPrice: pad(st.last),
      volume: pad(st.volume),
      quoteVolume: pad(st.quoteVolume),
      openTime: st.openTime,
      closeTime: st.closeTime,
      firstId: st.firstId,
      lastId: st.lastId,
      count: st.count,
    };
  }

  tickerPrice(query: URLSearchParams): unknown {
    const { symbols, single } = this.symbolsParam(query);
    const rows = symbols.map((s) => ({ symbol: this.marketId(s), price: pad(this.market.stats24h(s).last) }));
    return single ? rows[0] : rows;
  }

  bookTicker(query: URLSearchParams): unknown {
    const { symbols, single } = this.symbolsParam(query);
    const rows = symbols.map((s) => {
      const top = this.market.topOfBook(s);
      return {
        symbol: this.marketId(s),
        bidPrice: pad(top.bid.priceString),
        bidQty: pad(top.bid.amountString),
        askPrice: pad(top.ask.priceString),
        askQty: pad(top.ask.amountString),
      };
    });
    return single ? rows[0] : rows;
  }

  avgPrice(query: URLSearchParams): unknown {
    const symbol = this.symbolParam(query, true);
    const now = this.market.now();
    const recent = this.market.tradesBetween(symbol, now - 5 * 60_000, now, Number.MAX_SAFE_INTEGER);
    const last = recent[recent.length - 1];
    if (!last) return { mins: 5, price: pad(this.market.stats24h(symbol).last), closeTime: now };
    let quote = 0;
    let volume = 0;
    for (const t of recent) {
      quote += t.price * t.amount;
      volume += t.amount;
    }
    return { mins: 5, price: (quote / volume).toFixed(DEC), closeTime: last.ts };
  }

  // ---------------------------------------------------------------------------------------------
  // WebSocket

  acceptsWsPath(path: string): boolean {
    return path === '/ws' || path.startsWith('/ws/') || path === '/stream';
  }

  handleConnection(socket: WebSocket, path: string, query: URLSearchParams): void {
    const conn: Connection = { socket, streams: new Set(), combined: path === '/stream' };
    this.connections.add(conn);
    // `/ws/<stream>[/<stream>…]` and `/stream?streams=a/b` subscribe at connect; ccxt's `/ws/<n>` index is ignored
    const initial = path === '/stream' ? (query.get('streams') ?? '').split('/') : path.split('/').slice(2);
    for (const name of initial) if (name && this.parseStream(name)) this.addStream(conn, name);
    socket.on('message', (data, isBinary) => {
      if (isBinary) return;
      this.onClientMessage(conn, data.toString());
    });
    socket.on('close', () => {
      for (const name of conn.streams) this.subscribers.get(name)?.delete(conn);
      this.connections.delete(conn);
    });
  }

  private reply(conn: Connection, payload: unknown): void {
    if (conn.socket.readyState === conn.socket.OPEN) conn.socket.send(JSON.stringify(payload));
  }

  private onClientMessage(conn: Connection, text: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.reply(conn, { error: { code: 3, msg: 'Invalid JSON: expected value at line 1 column 1' }, id: null });
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.reply(conn, { error: { code: 2, msg: 'Invalid request: request must be a JSON object' }, id: null });
      return;
    }
    const { method, params, id } = msg as { method?: unknown; params?: unknown; id?: unknown };
    const replyId = typeof id === 'number' || typeof id === 'string' ? id : null;
    if (replyId === null || (typeof replyId === 'number' && (!Number.isInteger(replyId) || replyId < 0))) {
      this.reply(conn, { error: { code: 2, msg: 'Invalid request: request ID must be an unsigned integer' }, id: null });
      return;
    }
    const fail = (msgText: string, code = 2): void => this.reply(conn, { error: { code, msg: msgText }, id: replyId });
    switch (method) {
      case 'SUBSCRIBE':
      case 'UNSUBSCRIBE': {
        if (!Array.isArray(params) || params.some((p) => typeof p !== 'string')) {
          fail('Invalid request: params must be an array of stream names');
          return;
        }
        const names = params as string[];
        const invalid = names.find((n) => !this.parseStream(n));
        if (invalid !== undefined) {
          fail(`Invalid request: invalid stream name "${invalid}"`);
          return;
        }
        for (const name of names) {
          if (method === 'SUBSCRIBE') this.addStream(conn, name);
          else this.removeStream(conn, name);
        }
        this.reply(conn, { result: null, id: replyId });
        return;
      }
      case 'LIST_SUBSCRIPTIONS':
        this.reply(conn, { result: [...conn.streams], id: replyId });
        return;
      case 'SET_PROPERTY': {
        if (Array.isArray(params) && params[0] === 'combined' && typeof params[1] === 'boolean') {
          conn.combined = params[1];
          this.reply(conn, { result: null, id: replyId });
        } else fail('Invalid request: unknown property', 0);
        return;
      }
      case 'GET_PROPERTY':
        if (Array.isArray(params) && params[0] === 'combined') this.reply(conn, { result: conn.combined, id: replyId });
        else fail('Invalid request: unknown property', 0);
        return;
      default:
        fail(
          `Invalid request: unknown variant ${JSON.stringify(method)}, expected one of SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY`,
        );
    }
  }

  private addStream(conn: Connection, name: string): void {
    conn.streams.add(name);
    let subs = this.subscribers.get(name);
    if (!subs) {
      subs = new Set();
      this.subscribers.set(name, subs);
    }
    subs.add(conn);
  }

  private removeStream(conn: Connection, name: string): void {
    conn.streams.delete(name);
    this.subscribers.get(name)?.delete(conn);
  }

  /** Parses a Binance stream name; unknown symbols are accepted (no data), like Binance. */
  parseStream(name: string): StreamSpec | undefined {
    if (name === '!ticker@arr') return { kind: 'allTickers' };
    if (name === '!miniTicker@arr') return { kind: 'allMiniTickers' };
    const m = /^([a-z0-9]+)@(.+)$/.exec(name);
    if (!m) return undefined;
    const symbol = this.idToSymbol.get(m[1]!.toUpperCase()) ?? `?${m[1]}`;
    const type = m[2]!;
    if ((WS_MARKET_DATA_TYPES as readonly string[]).includes(type)) {
      return { kind: type as (typeof WS_MARKET_DATA_TYPES)[number], symbol };
    }
    const depth = /^depth(5|10|20)?(@100ms|@1000ms)?$/.exec(type);
    if (depth) {
      const fast = depth[2] === '@100ms';
      return depth[1] ? { kind: 'partialDepth', symbol, levels: Number(depth[1]), fast } : { kind: 'depth', symbol, fast };
    }
    const kline = /^kline_(\w+)$/.exec(type);
    if (kline && isTimeframe(kline[1]!)) return { kind: 'kline', symbol, interval: kline[1] };
    return undefined;
  }

  private streamName(symbol: string, suffix: string): string {
    return `${this.marketId(symbol).toLowerCase()}@${suffix}`;
  }

  /**
   * Sends one payload to every subscriber of `stream` (raw or `{stream,data}` per connection),
   * through the fault layer. `broken` builds a schema-breaking variant for malformed-frame faults.
   */
  private publish(stream: string, payload: unknown, kind: FrameKind, symbol: string, ref?: string, broken?: () => unknown): void {
    const subs = this.subscribers.get(stream);
    if (!subs || subs.size === 0) return;
    let raw: string | undefined;
    let wrapped: string | undefined;
    for (const conn of subs) {
      const combined = conn.combined;
      const text = combined ? (wrapped ??= JSON.stringify({ stream, data: payload })) : (raw ??= JSON.stringify(payload));
      this.faults.deliver(conn.socket, {
        kind,
        symbol,
        text,
        ...(ref !== undefined ? { ref } : {}),
        ...(broken ? { schemaBreak: () => JSON.stringify(combined ? { stream, data: broken() } : broken()) } : {}),
      });
    }
  }

  private hasSubscribers(stream: string): boolean {
    return (this.subscribers.get(stream)?.size ?? 0) > 0;
  }

  private onTrades(symbol: string, trades: readonly PrintedTrade[], aggs: readonly AggregateTrade[]): void {
    const id = this.marketId(symbol);
    const now = this.market.now();
    const tradeStream = this.streamName(symbol, 'trade');
    if (this.hasSubscribers(tradeStream)) {
      for (const t of trades) {
        const payload = { e: 'trade', E: now, s: id, t: t.id, p: pad(t.priceString), q: pad(t.amountString), T: t.ts, m: t.side === 'sell', M: true };
        this.publish(tradeStream, payload, 'trade', symbol, String(t.id), () => ({ ...payload, p: 'abc' }));
      }
    }
    const aggStream = this.streamName(symbol, 'aggTrade');
    if (this.hasSubscribers(aggStream)) {
      for (const a of aggs) {
        const payload = { e: 'aggTrade', E: now, s: id, ...aggPayload(a) };
        this.publish(aggStream, payload, 'trade', symbol, String(a.aggId), () => ({ ...payload, p: 'abc' }));
      }
    }
  }

  private onBook(delta: BookDelta): void {
    const symbol = delta.symbol;
    for (const pending of [this.pendingFast, this.pendingSlow]) {
      let p = pending.get(symbol);
      if (!p) {
        p = { first: delta.firstUpdateId, last: delta.lastUpdateId, bids: new Map(), asks: new Map() };
        pending.set(symbol, p);
      }
      p.last = delta.lastUpdateId;
      for (const c of delta.changes) (c.side === 'bid' ? p.bids : p.asks).set(c.priceString, c);
    }
    const stream = this.streamName(symbol, 'bookTicker');
    if (this.hasSubscribers(stream)) {
      const top = this.market.topOfBook(symbol);
      const key = `${top.bid.priceString}/${top.bid.amountString}/${top.ask.priceString}/${top.ask.amountString}`;
      if (this.lastBookTicker.get(symbol) !== key) {
        this.lastBookTicker.set(symbol, key);
        const payload = {
          u: top.lastUpdateId,
          s: this.marketId(symbol),
          b: pad(top.bid.priceString),
          B: pad(top.bid.amountString),
          a: pad(top.ask.priceString),
          A: pad(top.ask.amountString),
        };
        this.publish(stream, payload, 'ticker', symbol, String(top.lastUpdateId));
      }
    }
  }

  private flushDepth(pending: Map<string, PendingDiff>, fast: boolean): void {
    const now = this.market.now();
    for (const symbol of this.market.symbols) {
      const p = pending.get(symbol);
      pending.delete(symbol);
      if (p) {
        const stream = this.streamName(symbol, fast ? 'depth@100ms' : 'depth');
        const payload = {
          e: 'depthUpdate',
          E: now,
          s: this.marketId(symbol),
          U: p.first,
          u: p.last,
          b: [...p.bids.values()].map(level),
          a: [...p.asks.values()].map(level),
        };
        // a withheld frame (fault layer) leaves a U..u gap the client detects
        this.publish(stream, payload, 'bookDelta', symbol, `${p.first}-${p.last}`);
        if (!fast) this.publish(this.streamName(symbol, 'depth@1000ms'), payload, 'bookDelta', symbol, `${p.first}-${p.last}`);
      }
      // partial book streams push the top N every interval, changed or not
      for (const levels of [5, 10, 20]) {
        const stream = this.streamName(symbol, `depth${levels}${fast ? '@100ms' : ''}`);
        const streams = fast ? [stream] : [stream, this.streamName(symbol, `depth${levels}@1000ms`)];
        if (!streams.some((s) => this.hasSubscribers(s))) continue;
        const book = this.market.book(symbol, levels);
        const payload = { lastUpdateId: book.lastUpdateId, bids: book.bids.map(level), asks: book.asks.map(level) };
        for (const s of streams) this.publish(s, payload, 'bookSnapshot', symbol, String(book.lastUpdateId));
      }
    }
  }

  private pushPeriodic(): void {
    const now = this.market.now();
    const allFull: unknown[] = [];
    const allMini: unknown[] = [];
    const wantAllFull = this.hasSubscribers('!ticker@arr');
    const wantAllMini = this.hasSubscribers('!miniTicker@arr');
    for (const symbol of this.market.symbols) {
      const tickerStream = this.streamName(symbol, 'ticker');
      const miniStream = this.streamName(symbol, 'miniTicker');
      const full = this.hasSubscribers(tickerStream) || wantAllFull;
      const mini = this.hasSubscribers(miniStream) || wantAllMini;
      if (full || mini) {
        const st = this.market.stats24h(symbol);
        if (full) {
          const payload = this.tickerEvent(symbol, st, now);
          this.publish(tickerStream, payload, 'ticker', symbol);
          if (wantAllFull) allFull.push(payload);
        }
        if (mini) {
          const payload = miniTickerEvent(this.marketId(symbol), st, now);
          this.publish(miniStream, payload, 'ticker', symbol);
          if (wantAllMini) allMini.push(payload);
        }
      }
      const avgStream = this.streamName(symbol, 'avgPrice');
      if (this.hasSubscribers(avgStream)) {
        const avg = this.avgPrice(new URLSearchParams({ symbol: this.marketId(symbol) })) as { price: string; closeTime: number };
        this.publish(avgStream, { e: 'avgPrice', E: now, s: this.marketId(symbol), i: '5m', w: avg.price, T: avg.closeTime }, 'ticker', symbol);
      }
      for (const interval of KLINE_INTERVALS) {
        const stream = this.streamName(symbol, `kline_${interval}`);
        if (this.hasSubscribers(stream)) this.pushKline(stream, symbol, interval as Timeframe, now);
      }
    }
    if (allFull.length > 0) this.publish('!ticker@arr', allFull, 'ticker', '');
    if (allMini.length > 0) this.publish('!miniTicker@arr', allMini, 'ticker', '');
  }

  private readonly klineOpenTimes = new Map<string, number>();

  private pushKline(stream: string, symbol: string, interval: Timeframe, now: number): void {
    const size = TIMEFRAME_MS[interval];
    const current = this.market.kline(symbol, interval, now);
    const previousOpen = this.klineOpenTimes.get(stream);
    // the interval that just ended gets one final `x: true` event, as on Binance
    if (previousOpen !== undefined && current && previousOpen < current.openTime) {
      const closed = this.market.kline(symbol, interval, previousOpen);
      if (closed) this.publish(stream, this.klineEvent(symbol, interval, closed, now, true), 'candle', symbol);
    }
    if (!current) return;
    this.klineOpenTimes.set(stream, current.openTime);
    this.publish(stream, this.klineEvent(symbol, interval, current, now, current.openTime + size <= now), 'candle', symbol);
  }

  private klineEvent(symbol: string, interval: Timeframe, k: Kline, now: number, closed: boolean): unknown {
    const id = this.marketId(symbol);
    return {
      e: 'kline',
      E: now,
      s: id,
      k: {
        t: k.openTime,
        T: k.closeTime,
        s: id,
        i: interval,
        f: k.firstId,
        L: k.lastId,
        o: pad(k.open),
        c: pad(k.close),
        h: pad(k.high),
        l: pad(k.low),
        v: pad(k.volume),
        n: k.count,
        x: closed,
        q: pad(k.quoteVolume),
        V: pad(k.takerBuyVolume),
        Q: pad(k.takerBuyQuoteVolume),
        B: '0',
      },
    };
  }

  private tickerEvent(symbol: string, st: Stats24h, now: number): unknown {
    const top = this.market.topOfBook(symbol);
    return {
      e: '24hrTicker',
      E: now,
      s: this.marketId(symbol),
      p: pad(st.change),
      P: st.changePct,
      w: pad(st.weightedAvg),
      x: pad(st.prevClose),
      c: pad(st.last),
      Q: pad(st.lastQty),
      b: pad(top.bid.priceString),
      B: pad(top.bid.amountString),
      a: pad(top.ask.priceString),
      A: pad(top.ask.amountString),
      o: pad(st.open),
      h: pad(st.high),
      l: pad(st.low),
      v: pad(st.volume),
      q: pad(st.quoteVolume),
      O: st.openTime,
      C: st.closeTime,
      F: st.firstId,
      L: st.lastId,
      n: st.count,
    };
  }
}

function miniTickerEvent(id: string, st: Stats24h, now: number): unknown {
  return { e: '24hrMiniTicker', E: now, s: id, c: pad(st.last), o: pad(st.open), h: pad(st.high), l: pad(st.low), v: pad(st.volume), q: pad(st.quoteVolume) };
}

function aggPayload(a: AggregateTrade): Record<string, unknown> {
  return { a: a.aggId, p: pad(a.priceString), q: pad(a.amountString), f: a.firstId, l: a.lastId, T: a.ts, m: a.side === 'sell', M: true };
}

function optionalInt(query: URLSearchParams, name: string, min: number): number | undefined {
  const raw = query.get(name);
  if (raw === null || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw) || Number(raw) < min) {
    throw new BadParam(apiError(400, -1100, `Illegal characters found in parameter '${name}'; legal range is '^[0-9]{1,20}$'.`));
  }
  return Number(raw);
}

function intParam(query: URLSearchParams, name: string, fallback: number, min: number): number {
  return optionalInt(query, name, min) ?? fallback;
}

/**
 * REQUEST_WEIGHT of a request, as ccxt's binance cost table counts it (weight = cost / 0.2), so a
 * ccxt client with its rate limiter on stays within the budget.
 */
function requestWeight(path: string, query: URLSearchParams): number {
  const all = !query.has('symbol') && !query.has('symbols');
  switch (path) {
    case '/api/v3/exchangeInfo':
      return 20;
    case '/api/v3/depth': {
      const limit = Number(query.get('limit') ?? 100);
      return limit <= 100 ? 5 : limit <= 500 ? 25 : limit <= 1000 ? 50 : 250;
    }
    case '/api/v3/trades':
    case '/api/v3/historicalTrades':
      return 10;
    case '/api/v3/ticker/24hr':
      return all ? 80 : 2;
    case '/api/v3/ticker/price':
    case '/api/v3/ticker/bookTicker':
      return all ? 4 : 2;
    case '/api/v3/ping':
    case '/api/v3/time':
    case '/sapi/v1/system/status':
      return 1;
    default:
      return 2; // klines, uiKlines, aggTrades, avgPrice
  }
}

type Route = (p: BinanceProtocol, query: URLSearchParams) => unknown;

/** Public spot routes (paths below the mount point) ccxt's binance uses, plus cheap extras. */
const ROUTES: Readonly<Record<string, Route>> = {
  '/api/v3/ping': () => ({}),
  '/api/v3/time': (p) => ({ serverTime: p.serverTime() }),
  '/api/v3/exchangeInfo': (p, q) => p.exchangeInfo(q),
  '/api/v3/depth': (p, q) => p.depth(q),
  '/api/v3/trades': (p, q) => p.trades(q),
  '/api/v3/historicalTrades': (p, q) => p.historicalTrades(q),
  '/api/v3/aggTrades': (p, q) => p.aggTrades(q),
  '/api/v3/klines': (p, q) => p.klines(q),
  '/api/v3/uiKlines': (p, q) => p.klines(q),
  '/api/v3/avgPrice': (p, q) => p.avgPrice(q),
  '/api/v3/ticker/24hr': (p, q) => p.ticker24hr(q),
  '/api/v3/ticker/price': (p, q) => p.tickerPrice(q),
  '/api/v3/ticker/bookTicker': (p, q) => p.bookTicker(q),
  '/sapi/v1/system/status': () => ({ status: 0, msg: 'normal' }),
};

/** Factory for the Binance spot protocol, mounted at `/binance`. */
export function binanceProtocol(options: BinanceProtocolOptions = {}): SimProtocolFactory {
  return (context) => new BinanceProtocol(context, options);
}
