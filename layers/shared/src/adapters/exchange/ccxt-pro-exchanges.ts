import ccxt from 'ccxt';
import { ConfigError, PlatformError } from '../../domain/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { WatchingExchange } from '../../collector/market-collector.js';

/** An exchange ccxt.pro does not support. */
export class UnknownExchangeError extends ConfigError {}

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

/** Creates a ccxt.pro client: rate limits on, watch calls return only new updates. */
export function createProExchange(id: string, timeoutMs = 10_000): ProExchange {
  const classes = ccxt.pro as unknown as Record<string, unknown>;
  const Ctor = Object.hasOwn(classes, id) ? classes[id] : undefined;
  if (typeof Ctor !== 'function') {
    const known = Object.keys(classes).filter((k) => typeof classes[k] === 'function');
    throw new UnknownExchangeError(`ccxt.pro has no exchange '${id}'; it has ${known.length}, e.g. ${known.slice(0, 15).join(', ')}`);
  }
  return new (Ctor as new (config: object) => ProExchange)({
    enableRateLimit: true,
    timeout: timeoutMs,
    options: { newUpdates: true },
  });
}

/**
 * Connects every exchange (loadMarkets) in parallel and keeps the requested symbols each lists.
 * Unreachable or unknown exchanges are skipped with a warning; if none can be reached at all,
 * throws ExchangesUnreachableError whose message names the offline option.
 */
export async function connectExchanges(
  markets: ReadonlyMap<string, readonly string[]>,
  options: ExchangeConnectOptions,
): Promise<ConnectedExchange[]> {
  const { logger } = options;
  const attempts = await Promise.allSettled(
    [...markets].map(async ([id, wanted]) => {
      const exchange = createProExchange(id, options.timeoutMs);
      try {
        await options.configure?.(exchange);
        await exchange.loadMarkets();
      } catch (error) {
        await exchange.close().catch(() => undefined);
        throw error;
      }
      const listed = wanted.filter((s) => exchange.markets?.[s] !== undefined);
      const missing = wanted.filter((s) => exchange.markets?.[s] === undefined);
      if (missing.length > 0) logger.warn('symbols not listed by the exchange; skipped', { exchange: id, missing });
      return { exchange: exchange as ProExchange & WatchingExchange, symbols: listed, watchParams: WATCH_PARAMS[id] ?? {} };
    }),
  );
  const connected: ConnectedExchange[] = [];
  const failures: string[] = [];
  for (const [i, result] of attempts.entries()) {
    const id = [...markets.keys()][i]!;
    if (result.status === 'fulfilled') {
      if (result.value.symbols.length > 0) connected.push(result.value);
      else await result.value.exchange.close().catch(() => undefined);
      continue;
    }
    const error = result.reason as Error;
    if (error instanceof UnknownExchangeError) throw error;
    failures.push(`${id} (${error.name}: ${firstLine(error.message)})`);
    logger.warn('exchange unreachable; skipped', { exchange: id, error });
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
