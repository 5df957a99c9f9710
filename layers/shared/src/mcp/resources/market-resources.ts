import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  ErrorCode,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type ReadResourceResult,
  type Resource,
} from '@modelcontextprotocol/sdk/types.js';
import { ValidationError } from '../../domain/errors.js';
import { ExchangeIdSchema, SymbolSchema, TimeframeSchema, type Ticker, type Timeframe } from '../../domain/index.js';
import { createLogger, type Logger } from '../../observability/logger.js';
import type { Channel, LedgerReader } from '../../ports/index.js';
import type { MarketUpdate, MarketUpdates } from '../../ports/market-updates.js';
import { UnknownMarketError, type CandlePageItem, type MarketQueryService } from '../../query/market-query.js';
import { callerOf } from '../caller.js';
import { hasScope, SCOPES } from '../scopes.js';
import { freshnessOut, iso } from '../tools/schemas.js';

export interface MarketResourcesDeps {
  readonly query: MarketQueryService;
  /** where new data is announced; without it the resources are readable but not subscribable */
  readonly updates?: MarketUpdates | undefined;
  /** the completeness ledger: gap reasons in the candles resource, as get_candles gives them */
  readonly ledger?: LedgerReader | undefined;
  readonly logger?: Logger | undefined;
  /** tuning for tests; defaults below */
  readonly limits?: Partial<MarketResourceLimits>;
}

export interface MarketResourceLimits {
  /** subscriptions one session may hold */
  readonly maxSubscriptions: number;
  /** at most one notifications/resources/updated per URI this often; updates in between are coalesced */
  readonly notifyIntervalMs: number;
  /** markets resources/list walks at most (two resources each) */
  readonly maxListedMarkets: number;
  /** candles in a candles resource: the latest ones */
  readonly candles: number;
}

export const DEFAULT_MARKET_RESOURCE_LIMITS: MarketResourceLimits = {
  maxSubscriptions: 64,
  notifyIntervalMs: 250,
  maxListedMarkets: 100,
  candles: 100,
};

/** A URI that is not one of this server's market resources. */
export class InvalidMarketUriError extends ValidationError {}

export type MarketResource =
  | { readonly kind: 'ticker'; readonly exchange: string; readonly symbol: string }
  | { readonly kind: 'candles'; readonly exchange: string; readonly symbol: string; readonly timeframe: Timeframe };

const SCHEME = 'market://';
const TICKER_TEMPLATE = `${SCHEME}{exchange}/{symbol}/ticker`;
const CANDLES_TEMPLATE = `${SCHEME}{exchange}/{symbol}/candles/{timeframe}`;
const URI_SHAPE = /^market:\/\/([^/?#]+)\/([^/?#]+)\/(?:(ticker)|candles\/([^/?#]+))$/;
const JSON_MIME = 'application/json';

const ENCODING =
  'The symbol is the ccxt unified symbol percent-encoded as one path segment (RFC 6570 simple expansion, ' +
  "i.e. encodeURIComponent): 'BTC/USDT' -> 'BTC%2FUSDT', the perpetual 'BTC/USDT:USDT' -> 'BTC%2FUSDT%3AUSDT'. " +
  "Exchange ids are ccxt ids (binance, okx). Example: market://binance/BTC%2FUSDT/ticker.";
const SUBSCRIBE_HINT =
  'Subscribe (resources/subscribe) to be sent notifications/resources/updated whenever new data of the market is stored, then read it again.';

/** The URI of a market resource: `market://binance/BTC%2FUSDT/ticker`, `market://okx/BTC%2FUSDT%3AUSDT/candles/1m`. */
export function marketResourceUri(resource: MarketResource): string {
  const base = `${SCHEME}${encodeURIComponent(resource.exchange)}/${encodeURIComponent(resource.symbol)}`;
  return resource.kind === 'ticker' ? `${base}/ticker` : `${base}/candles/${resource.timeframe}`;
}

/** Parses a market resource URI (case-normalized like the tools); throws InvalidMarketUriError saying the expected form. */
export function parseMarketResourceUri(uri: string): MarketResource {
  const shown = uri.length > 200 ? `${uri.slice(0, 200)}...` : uri;
  const m = URI_SHAPE.exec(uri);
  if (!m) {
    throw new InvalidMarketUriError(
      `'${shown}' is not a market resource URI. Expected market://{exchange}/{symbol}/ticker or ` +
        `market://{exchange}/{symbol}/candles/{timeframe}. ${ENCODING}`,
    );
  }
  const [, rawExchange = '', rawSymbol = '', ticker, rawTimeframe] = m;
  let exchange: string;
  let symbol: string;
  try {
    exchange = decodeURIComponent(rawExchange).trim().toLowerCase();
    symbol = decodeURIComponent(rawSymbol).trim().toUpperCase();
  } catch {
    throw new InvalidMarketUriError(`'${shown}' holds a malformed percent-encoding. ${ENCODING}`);
  }
  if (!ExchangeIdSchema.safeParse(exchange).success) {
    throw new InvalidMarketUriError(`'${exchange.slice(0, 40)}' in '${shown}' is not a ccxt exchange id (such as binance or okx).`);
  }
  if (!SymbolSchema.safeParse(symbol).success) {
    throw new InvalidMarketUriError(
      `'${symbol.slice(0, 60)}' in '${shown}' is not a ccxt unified symbol. ` +
        (symbol.includes('/') ? '' : 'Was the / percent-encoded? ') +
        ENCODING,
    );
  }
  if (ticker) return { kind: 'ticker', exchange, symbol };
  const timeframe = TimeframeSchema.safeParse(rawTimeframe);
  if (!timeframe.success) {
    throw new InvalidMarketUriError(`'${String(rawTimeframe).slice(0, 20)}' in '${shown}' is not a timeframe: use one of ${TimeframeSchema.options.join(' ')}.`);
  }
  return { kind: 'candles', exchange, symbol, timeframe: timeframe.data };
}

/** The stored channels whose new data changes a resource: candles are built from trades as well. */
function channelsOf(resource: MarketResource): ReadonlySet<Channel> {
  return resource.kind === 'ticker' ? new Set<Channel>(['tickers']) : new Set<Channel>(['trades', 'candles']);
}

const marketKey = (exchange: string, symbol: string) => `${exchange}\u0000${symbol}`;

const fallbackLogger = createLogger({ fields: { component: 'mcp-resources' } });

/**
 * Registers the market resources (a market's latest ticker, and its latest candles per timeframe)
 * on one session's server and, when `updates` is given, resources/subscribe and unsubscribe: a
 * subscribed URI gets notifications/resources/updated as new data of its market is stored.
 * Call before the server connects (capabilities are fixed then).
 */
export function registerMarketResources(server: McpServer, deps: MarketResourcesDeps): void {
  const limits = { ...DEFAULT_MARKET_RESOURCE_LIMITS, ...deps.limits };
  const logger = deps.logger ?? fallbackLogger;

  server.registerResource(
    'market_ticker',
    new ResourceTemplate(TICKER_TEMPLATE, { list: async (extra) => listResources('ticker', deps, limits, logger, extra) }),
    {
      title: 'Latest ticker of a market',
      description:
        "JSON: the latest stored ticker of one market (best bid/ask with sizes, last, 24h open/high/low/volume/change, ms epoch ts) " +
        `and freshness {asOf, newestTs, ageMs}, as the get_ticker tool answers. ${ENCODING} ${SUBSCRIBE_HINT}`,
      mimeType: JSON_MIME,
    },
    (uri, _variables, extra) => read(uri.href, deps, limits, logger, extra),
  );
  server.registerResource(
    'market_candles',
    new ResourceTemplate(CANDLES_TEMPLATE, { list: async (extra) => listResources('candles', deps, limits, logger, extra) }),
    {
      title: 'Latest candles of a market',
      description:
        `JSON: the latest ${limits.candles} OHLCV candles of one market in one timeframe (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w), ` +
        'oldest first, each marked closed or still forming, with gaps (buckets without data and why) and freshness, as get_candles answers. ' +
        `${ENCODING} Example: market://binance/BTC%2FUSDT/candles/1m. ${SUBSCRIBE_HINT}`,
      mimeType: JSON_MIME,
    },
    (uri, _variables, extra) => read(uri.href, deps, limits, logger, extra),
  );

  if (deps.updates) registerSubscriptions(server, deps.updates, deps, limits, logger);
}

type Extra = Parameters<Parameters<McpServer['registerResource']>[3]>[2];

/** Refuses a caller whose token lacks market:read (the tools are refused with 403 at the HTTP layer; resources here). */
function requireMarketRead(extra: Extra | undefined): void {
  const caller = callerOf(extra);
  if (caller.authenticated && !hasScope(caller.scopes, SCOPES.marketRead)) {
    throw new McpError(ErrorCode.InvalidRequest, `This token lacks the scope ${SCOPES.marketRead}, which market resources need.`);
  }
}

async function read(
  uri: string,
  deps: MarketResourcesDeps,
  limits: MarketResourceLimits,
  logger: Logger,
  extra: Extra,
): Promise<ReadResourceResult> {
  requireMarketRead(extra);
  const resource = parseOrRefuse(uri);
  try {
    const body = resource.kind === 'ticker' ? await tickerBody(resource, deps) : await candlesBody(resource, deps, limits);
    return { contents: [{ uri, mimeType: JSON_MIME, text: JSON.stringify(body) }] };
  } catch (error) {
    throw protocolError(error, 'reading the resource', logger);
  }
}

async function tickerBody(r: MarketResource & { kind: 'ticker' }, deps: MarketResourcesDeps): Promise<Record<string, unknown>> {
  const { ticker, freshness } = await deps.query.getTicker(r.exchange, r.symbol);
  return { exchange: r.exchange, symbol: r.symbol, ticker: ticker && tickerOut(ticker), freshness: freshnessOut(freshness) };
}

async function candlesBody(
  r: MarketResource & { kind: 'candles' },
  deps: MarketResourcesDeps,
  limits: MarketResourceLimits,
): Promise<Record<string, unknown>> {
  const page = await deps.query.getCandles({ exchange: r.exchange, symbol: r.symbol, timeframe: r.timeframe, limit: limits.candles }, deps.ledger);
  return {
    exchange: r.exchange,
    symbol: r.symbol,
    timeframe: r.timeframe,
    candles: page.candles.map(candleOut),
    count: page.candles.length,
    window: { ...page.window, fromIso: iso(page.window.from), toIso: iso(page.window.to) },
    gaps: page.gaps.map((g) => ({ ...g, fromIso: iso(g.from), toIso: iso(g.to) })),
    gapsOmitted: page.gapsOmitted,
    missingBuckets: page.missingBuckets,
    ledger: page.ledger,
    freshness: freshnessOut(page.freshness),
  };
}

function tickerOut({ type: _type, exchange: _exchange, symbol: _symbol, ...t }: Ticker): Record<string, unknown> {
  return { ...t, tsIso: iso(t.ts) };
}

function candleOut(c: CandlePageItem): Record<string, unknown> {
  return {
    ts: c.ts,
    tsIso: iso(c.ts),
    open: c.open,
    high: c.high,
    low: c.low,
    close: c.close,
    volume: c.volume,
    trades: c.trades,
    closed: c.closed,
    source: c.source,
    missingMinutes: c.missingMinutes,
    feedGap: c.feedGap,
  };
}

/** Concrete resources of the markets held: a ticker per market with tickers, 1m candles per market with trades or candles. */
async function listResources(
  kind: MarketResource['kind'],
  deps: MarketResourcesDeps,
  limits: MarketResourceLimits,
  logger: Logger,
  extra: Extra,
): Promise<{ resources: Resource[] }> {
  requireMarketRead(extra);
  try {
    const { markets } = await deps.query.listMarkets({ limit: limits.maxListedMarkets });
    const resources: Resource[] = [];
    for (const m of markets) {
      if (kind === 'ticker' && m.channels.tickers) {
        resources.push({ uri: marketResourceUri({ kind, exchange: m.exchange, symbol: m.symbol }), name: `${m.exchange} ${m.symbol} ticker` });
      }
      if (kind === 'candles' && (m.channels.trades || m.channels.candles)) {
        const uri = marketResourceUri({ kind, exchange: m.exchange, symbol: m.symbol, timeframe: '1m' });
        resources.push({ uri, name: `${m.exchange} ${m.symbol} 1m candles` });
      }
    }
    return { resources };
  } catch (error) {
    throw protocolError(error, 'listing resources', logger);
  }
}

function parseOrRefuse(uri: string): MarketResource {
  try {
    return parseMarketResourceUri(uri);
  } catch (error) {
    if (error instanceof InvalidMarketUriError) throw new McpError(ErrorCode.InvalidParams, error.message);
    throw error;
  }
}

/** Failures as protocol errors: an unknown market says what is known; anything unexpected is logged, never echoed. */
function protocolError(error: unknown, doing: string, logger: Logger): McpError {
  if (error instanceof McpError) return error;
  if (error instanceof UnknownMarketError) {
    const shown = error.known.slice(0, 20);
    const what = error.kind === 'symbol' ? 'symbols on this exchange' : 'exchanges';
    const known = shown.length === 0 ? `The store holds no ${what} yet.` : `Known ${what}: ${shown.join(', ')}${error.known.length > shown.length ? ', ...' : ''}.`;
    return new McpError(
      ErrorCode.InvalidParams,
      `Unknown market: ${error.message}. ${known} List the resources (resources/list) or call list_markets for valid markets.`,
    );
  }
  if (error instanceof ValidationError) return new McpError(ErrorCode.InvalidParams, error.message);
  logger.error('mcp resource failed', { doing, error, stack: error instanceof Error ? error.stack : undefined });
  return new McpError(ErrorCode.InternalError, `Internal error while ${doing}; retry shortly. If it keeps failing, the market data store may be unavailable.`);
}

interface Subscription {
  readonly resource: MarketResource;
  readonly channels: ReadonlySet<Channel>;
  lastSent: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * resources/subscribe and resources/unsubscribe for one session. The hub is listened to while the
 * session holds a subscription; each subscribed URI is notified at most once per notifyIntervalMs
 * (a burst of updates becomes one notification now and one at the end of the interval).
 */
function registerSubscriptions(
  server: McpServer,
  updates: MarketUpdates,
  deps: MarketResourcesDeps,
  limits: MarketResourceLimits,
  logger: Logger,
): void {
  const protocol = server.server;
  protocol.registerCapabilities({ resources: { subscribe: true } });
  const byUri = new Map<string, Subscription>();
  const byMarket = new Map<string, Set<string>>();
  let stopListening: (() => void) | null = null;
  let closed = false;

  const send = (uri: string) => {
    const sub = byUri.get(uri);
    if (!sub || closed) return;
    sub.lastSent = Date.now();
    protocol.sendResourceUpdated({ uri }).catch((error: unknown) => logger.debug('resource update not sent', { error }));
  };

  const notify = (uri: string) => {
    const sub = byUri.get(uri);
    if (!sub || sub.timer) return;
    const wait = sub.lastSent + limits.notifyIntervalMs - Date.now();
    if (wait <= 0) return send(uri);
    sub.timer = setTimeout(() => {
      sub.timer = undefined;
      send(uri);
    }, wait);
    sub.timer.unref();
  };

  const onUpdates = (batch: readonly MarketUpdate[]) => {
    for (const u of batch) {
      const uris = byMarket.get(marketKey(u.exchange, u.symbol));
      if (!uris) continue;
      for (const uri of uris) if (byUri.get(uri)?.channels.has(u.channel)) notify(uri);
    }
  };

  const remove = (uri: string) => {
    const sub = byUri.get(uri);
    if (!sub) return;
    clearTimeout(sub.timer);
    byUri.delete(uri);
    const key = marketKey(sub.resource.exchange, sub.resource.symbol);
    const uris = byMarket.get(key);
    uris?.delete(uri);
    if (uris?.size === 0) byMarket.delete(key);
    if (byUri.size === 0 && stopListening) {
      stopListening();
      stopListening = null;
    }
  };

  protocol.setRequestHandler(SubscribeRequestSchema, async (request, extra) => {
    requireMarketRead(extra);
    const { uri } = request.params;
    const resource = parseOrRefuse(uri);
    if (byUri.has(uri)) return {};
    if (byUri.size >= limits.maxSubscriptions) {
      throw new McpError(
        ErrorCode.InvalidRequest,
        `This session holds ${byUri.size} subscriptions, the most allowed; unsubscribe (resources/unsubscribe) from one first.`,
      );
    }
    try {
      // refuses a market the store does not hold, saying which it does
      await deps.query.getTicker(resource.exchange, resource.symbol);
    } catch (error) {
      throw protocolError(error, 'subscribing', logger);
    }
    if (closed || byUri.has(uri)) return {};
    byUri.set(uri, { resource, channels: channelsOf(resource), lastSent: 0, timer: undefined });
    const key = marketKey(resource.exchange, resource.symbol);
    byMarket.set(key, (byMarket.get(key) ?? new Set()).add(uri));
    stopListening ??= updates.subscribe(onUpdates);
    return {};
  });

  protocol.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    remove(request.params.uri);
    return {};
  });

  // The session ended (client DELETE, idle sweep, shutdown): stop listening to the hub.
  const previous = protocol.onclose;
  protocol.onclose = () => {
    closed = true;
    for (const uri of [...byUri.keys()]) remove(uri);
    previous?.();
  };
}
