import ccxt, { type Exchange } from 'ccxt';
import { ConfigError, PlatformError } from '../../domain/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { WatchingExchange } from '../../collector/market-collector.js';

/** An exchange ccxt.pro does not support. */
export class UnknownExchangeError extends ConfigError {}

/** A configured symbol the exchange does not list. */
export class UnlistedSymbolError extends ConfigError {}

/** No configured exchange could be reached. */
export class ExchangesUnreachableError extends PlatformError {}

export type ProExchange = InstanceType<typeof ccxt.pro.binance>;

export interface ExchangeConnectOptions {
  readonly logger: Logger;
  /** ms for each REST call, loadMarkets included */
  readonly timeoutMs?: number;
  /** point the client at a compatible endpoint (the simulator, a proxy); applied before loadMarkets */
  readonly configure?: (exchange: ProExchange) => Promise<void>;
}

export interface ConnectedExchange {
  readonly exchange: ProExchange & WatchingExchange;
  /** the requested symbols the exchange lists */
  readonly symbols: readonly string[];
  readonly watchParams: WatchParams;
}

/** Extra params per watch call, where an exchange's default stream lacks what the platform keeps. */
export interface WatchParams {
  readonly ticker?: Readonly<Record<string, unknown>>;
}

const WATCH_PARAMS: Readonly<Record<string, WatchParams>> = {
  // ccxt.pro's binance watchTicker defaults to @miniTicker, which has no bid/ask; @ticker has both.
  binance: { ticker: { name: 'ticker' } },
};

/** Exchange ids ccxt.pro supports (what MARKETS may name). */
export function proExchangeIds(): string[] {
  const classes = ccxt.pro as unknown as Record<string, unknown>;
  return Object.keys(classes)
    .filter((k) => typeof classes[k] === 'function' && /^[a-z][a-z0-9]*$/.test(k))
    .sort();
}

/**
 * ccxt.pro 4.5 delays each re-dial of a URL itself (1 s, doubling, up to 60 s, until a connection
 * lasted 30 s). The collector's watch loop already backs off with full jitter, and a feed kept deaf
 * for a minute by a flapping network costs more than a few reconnects: capped at 5 s here.
 */
const WS_RECONNECT_BACKOFF = { base: 500, factor: 2, max: 5_000, stableAfter: 30_000 } as const;

/** Creates a ccxt.pro client: rate limits on, watch calls return only new updates. */
export function createProExchange(id: string, timeoutMs = 10_000): ProExchange {
  const classes = ccxt.pro as unknown as Record<string, unknown>;
  const Ctor = Object.hasOwn(classes, id) ? classes[id] : undefined;
  if (typeof Ctor !== 'function') {
    const known = proExchangeIds();
    throw new UnknownExchangeError(`ccxt.pro has no exchange '${id}'; the ${known.length} it has: ${known.join(', ')}`);
  }
  const exchange = new (Ctor as new (config: object) => ProExchange)({
    enableRateLimit: true,
    timeout: timeoutMs,
    options: { newUpdates: true, ws: { backoff: WS_RECONNECT_BACKOFF } },
  });
  if (id === 'binance') allowKeylessHistoricalTrades(exchange);
  return exchange;
}

/**
 * Binance dropped the API-key requirement of `GET /api/v3/historicalTrades` in 2023 (binance-connector
 * 3.2.0: "api key is not required"), but ccxt 4.5's sign() still refuses the path without one. Trade
 * gaps are filled from that endpoint (raw trade ids, as the live `@trade` stream), so without a key
 * the request is signed as the public `trades` path it resembles and sent to `historicalTrades`.
 * With a key configured ccxt signs it itself. The call keeps ccxt's rate-limit cost of historicalTrades.
 */
export function allowKeylessHistoricalTrades(exchange: Pick<Exchange, 'sign' | 'apiKey'>): void {
  const sign = exchange.sign.bind(exchange);
  exchange.sign = (path, api, method, params, headers, body) => {
    if (path !== 'historicalTrades' || exchange.apiKey) return sign(path, api, method, params, headers, body);
    const signed = sign('trades', api, method, params, headers, body) as { url: string };
    return { ...signed, url: signed.url.replace(/\/trades(?=\?|$)/, '/historicalTrades') };
  };
}

/** Listed symbols to suggest for one that is not listed: same base or quote first. */
function suggestions(listed: readonly string[], wanted: string, max = 12): string[] {
  const [base, quote] = wanted.split(/[/:]/);
  const similar = listed.filter((s) => s.startsWith(`${base}/`) || s.split(/[/:]/)[1] === quote);
  return [...new Set([...similar.slice(0, max), ...listed.slice(0, max)])].slice(0, max);
}

/**
 * Connects every exchange (loadMarkets) in parallel. Configuration errors fail at once, before
 * anything runs: an exchange ccxt.pro does not have (UnknownExchangeError, listing the ids it has)
 * or a symbol a reachable exchange does not list (UnlistedSymbolError, listing symbols it does).
 * Unreachable exchanges are skipped with a warning; if none can be reached at all, throws
 * ExchangesUnreachableError whose message names the offline option.
 */
export async function connectExchanges(
  markets: ReadonlyMap<string, readonly string[]>,
  options: ExchangeConnectOptions,
): Promise<ConnectedExchange[]> {
  const { logger } = options;
  // every id is checked before any network call
  const clients = [...markets].map(([id, wanted]) => ({ id, wanted, exchange: createProExchange(id, options.timeoutMs) }));
  const attempts = await Promise.allSettled(
    clients.map(async ({ id, wanted, exchange }) => {
      await options.configure?.(exchange);
      await exchange.loadMarkets();
      return { exchange: exchange as ProExchange & WatchingExchange, symbols: [...wanted], watchParams: WATCH_PARAMS[id] ?? {} };
    }),
  );
  const connected: ConnectedExchange[] = [];
  const failures: string[] = [];
  const unlisted: string[] = [];
  for (const [i, result] of attempts.entries()) {
    const { id, wanted, exchange } = clients[i]!;
    if (result.status === 'fulfilled') {
      const listed = Object.keys(exchange.markets ?? {});
      const missing = wanted.filter((s) => exchange.markets?.[s] === undefined);
      for (const s of missing) {
        unlisted.push(`${id} does not list ${s}; it lists ${listed.length} symbols, e.g. ${suggestions(listed, s).join(', ')}`);
      }
      connected.push(result.value);
      continue;
    }
    await exchange.close().catch(() => undefined);
    const error = result.reason as Error;
    failures.push(`${id} (${error.name}: ${firstLine(error.message)})`);
    logger.warn('exchange unreachable; skipped', { exchange: id, error });
  }
  if (unlisted.length > 0) {
    await Promise.allSettled(connected.map((c) => c.exchange.close()));
    throw new UnlistedSymbolError(`symbols not listed:\n${unlisted.join('\n')}`);
  }
  if (connected.length === 0) {
    throw new ExchangesUnreachableError(
      `could not reach any exchange: ${failures.join('; ') || 'none of the requested symbols is listed'}.\n` +
        'No network? Run fully offline against the simulated exchange: npm start -- --source sim',
    );
  }
  return connected;
}

function firstLine(message: string): string {
  return (message.split('\n')[0] ?? '').slice(0, 200);
}
