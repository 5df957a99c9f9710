/**
 * The exchange side of a backfill: a ccxt REST client with its rate limiter on, checked against
 * the exchange's markets, and for each exchange how its history is paged.
 *
 * Trades must land in the id space of the live trade stream, or a backfilled trade and the same
 * trade collected live are two rows. ccxt's default binance fetchTrades reads `/api/v3/aggTrades`
 * (aggregate ids, another numbering) while the collector's `<symbol>@trade` stream carries raw
 * ids, so trades are paged by raw id:
 * - Binance: `GET /api/v3/historicalTrades?fromId=` (fetchTrades `fetchTradesMethod:
 *   'publicGetHistoricalTrades'`), the first id at a time from aggTrades' `f` (first raw id).
 * - OKX: `GET /api/v5/market/history-trades` (fetchTrades `method: 'publicGetMarketHistoryTrades'`),
 *   forward by tradeId with `type=1&before=X&after=X+101`, the first id at a time by `type=2`.
 */
import ccxt, { type Exchange } from 'ccxt';
import { allowKeylessHistoricalTrades } from '../../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride, type EndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { ConfigError, PlatformError } from '../../layers/shared/src/domain/errors.js';
import type { CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';

/** An exchange id ccxt does not have. */
export class UnknownBackfillExchangeError extends ConfigError {}

/** A symbol the exchange does not list. */
export class UnlistedBackfillSymbolError extends ConfigError {}

/** What was asked cannot be backfilled from this exchange (no OHLCV endpoint, no raw-id trade history). */
export class UnsupportedBackfillError extends ConfigError {}

/** A trade page that cannot come from the raw-id history asked for: another numbering (e.g. aggregate ids). */
export class IdSpaceMismatchError extends PlatformError {}

/** Exchange ids ccxt (REST) has, sorted. */
export function ccxtExchangeIds(): string[] {
  return [...(ccxt.exchanges as string[])].sort();
}

/** A ccxt REST client with the rate limiter on; throws UnknownBackfillExchangeError listing ccxt's ids. */
export function createBackfillExchange(id: string, timeoutMs = 20_000): Exchange {
  const classes = ccxt as unknown as Record<string, unknown>;
  const Ctor = ccxtExchangeIds().includes(id) ? classes[id] : undefined;
  if (typeof Ctor !== 'function') {
    const known = ccxtExchangeIds();
    throw new UnknownBackfillExchangeError(`ccxt has no exchange '${id}'; the ${known.length} it has: ${known.join(', ')}`);
  }
  const exchange = new (Ctor as new (config: object) => Exchange)({ enableRateLimit: true, timeout: timeoutMs });
  if (id === 'binance') allowKeylessHistoricalTrades(exchange);
  return exchange;
}

/** Listed symbols to suggest for one that is not listed: same base or quote first. */
function suggestions(listed: readonly string[], wanted: string, max = 20): string[] {
  const [base, quote] = wanted.split(/[/:]/);
  const similar = listed.filter((s) => s.startsWith(`${base}/`) || s.split(/[/:]/)[1] === quote);
  return [...new Set([...similar, ...listed])].slice(0, max);
}

export interface ConnectOptions {
  /** point the client at a compatible endpoint (the simulator) before loading markets */
  readonly endpoint?: EndpointOverride;
  readonly timeoutMs?: number;
}

/**
 * Creates the client, loads the markets and checks every symbol: an unlisted one fails with
 * UnlistedBackfillSymbolError naming symbols the exchange does list.
 */
export async function connectBackfillExchange(id: string, symbols: readonly string[], options: ConnectOptions = {}): Promise<Exchange> {
  const exchange = createBackfillExchange(id, options.timeoutMs);
  try {
    if (options.endpoint) await applyEndpointOverride(exchange, options.endpoint);
    await exchange.loadMarkets();
    const listed = Object.keys(exchange.markets ?? {}).sort();
    const missing = symbols.filter((s) => exchange.markets?.[s] === undefined);
    if (missing.length > 0) {
      throw new UnlistedBackfillSymbolError(
        missing
          .map((s) => `${id} does not list ${s}; of its ${listed.length} symbols, e.g.: ${suggestions(listed, s).join(', ')}`)
          .join('\n'),
      );
    }
    return exchange;
  } catch (error) {
    await exchange.close().catch(() => undefined);
    throw error;
  }
}

/** How candles are paged: windows of `pageSize` bars, oldest first. */
export interface CandleRecipe {
  readonly pageSize: number;
}

/** Bars per OHLCV request: the exchange's maximum (OKX: 100, history-candles' cap; ccxt says 300, which market/candles allows). */
export function candleRecipe(exchange: Exchange): CandleRecipe {
  if (!exchange.has['fetchOHLCV']) {
    throw new UnsupportedBackfillError(`${exchange.id} has no OHLCV endpoint in ccxt: candles cannot be backfilled from it`);
  }
  if (exchange.id === 'okx') return { pageSize: 100 };
  const features = (exchange as unknown as { features?: { spot?: { fetchOHLCV?: { limit?: unknown } } } }).features;
  const limit = features?.spot?.fetchOHLCV?.limit;
  return { pageSize: typeof limit === 'number' && limit > 0 ? limit : 500 };
}

/** Trades by raw id, forward, in the live stream's id space. */
export interface TradeIdRecipe {
  readonly describe: string;
  readonly pageSize: number;
  /** Id of the first trade at or after `ts`, or null when there is none before `until`. */
  firstIdAtOrAfter(exchange: Exchange, symbol: string, ts: number, until: number): Promise<number | null>;
  /** Up to pageSize trades with ids from `fromId` on, ascending by id. */
  page(exchange: Exchange, symbol: string, fromId: number): Promise<CcxtTradeLike[]>;
}

/** The trade id as a number (the raw-id histories number trades with integers). */
export function numericTradeId(t: CcxtTradeLike): number {
  const id = t.id;
  if (typeof id !== 'string' || !/^\d{1,15}$/.test(id)) throw new IdSpaceMismatchError(`trade id ${String(id)} is not a sequential integer id`);
  return Number(id);
}

const byId = (trades: readonly CcxtTradeLike[]): CcxtTradeLike[] => [...trades].sort((a, b) => numericTradeId(a) - numericTradeId(b));

const binanceRawTrades: TradeIdRecipe = {
  describe: 'binance /api/v3/historicalTrades?fromId= (raw trade ids, as <symbol>@trade)',
  pageSize: 1000,
  async firstIdAtOrAfter(exchange, symbol, ts) {
    // the first aggregate trade at or after ts; `f` is its first raw trade id
    const rows = (await exchange.publicGetAggTrades({ symbol: exchange.marketId(symbol), startTime: ts, limit: 1 })) as { f?: unknown }[];
    const f = rows[0]?.f;
    if (f === undefined) return null;
    if (typeof f !== 'number' || !Number.isInteger(f)) throw new IdSpaceMismatchError(`binance aggTrades f=${String(f)} is not a raw trade id`);
    return f;
  },
  async page(exchange, symbol, fromId) {
    return byId(await exchange.fetchTrades(symbol, undefined, 1000, { fetchTradesMethod: 'publicGetHistoricalTrades', fromId }));
  },
};

const OKX_HISTORY = 'publicGetMarketHistoryTrades';

const okxHistoryTrades: TradeIdRecipe = {
  describe: 'okx /api/v5/market/history-trades (tradeId, as the trades channel)',
  pageSize: 100,
  async firstIdAtOrAfter(exchange, symbol, ts, until) {
    // the newest trade before ts: the next id is the first at or after it
    const [before] = await exchange.fetchTrades(symbol, undefined, 1, { method: OKX_HISTORY, type: '2', after: String(ts) });
    if (before) return numericTradeId(before) + 1;
    // nothing older (the history starts later): find the oldest trade from ts on, in windows that
    // hold fewer than a page (type=2 answers the newest of a window)
    let from = ts;
    let width = 3_600_000;
    while (from < until) {
      const to = Math.min(until, from + width);
      const rows = await exchange.fetchTrades(symbol, undefined, 100, { method: OKX_HISTORY, type: '2', before: String(from - 1), after: String(to) });
      if (rows.length === 0) {
        from = to;
        width *= 2;
      } else if (rows.length >= 100 && width > 1) {
        width = Math.floor(width / 2);
      } else {
        return Math.min(...rows.map(numericTradeId));
      }
    }
    return null;
  },
  async page(exchange, symbol, fromId) {
    // ids strictly between `before` and `after`: exactly the next 100 trades (ids are contiguous)
    const rows = await exchange.fetchTrades(symbol, undefined, 100, {
      method: OKX_HISTORY,
      type: '1',
      before: String(fromId - 1),
      after: String(fromId + 100),
    });
    return byId(rows);
  },
};

const TRADE_RECIPES: Readonly<Record<string, TradeIdRecipe>> = { binance: binanceRawTrades, okx: okxHistoryTrades };

/** Exchanges whose trades can be backfilled in the live stream's id space. */
export const TRADE_BACKFILL_EXCHANGES: readonly string[] = Object.keys(TRADE_RECIPES);

/** The raw-id trade history of an exchange; UnsupportedBackfillError for the others. */
export function tradeRecipe(exchangeId: string): TradeIdRecipe {
  const recipe = Object.hasOwn(TRADE_RECIPES, exchangeId) ? TRADE_RECIPES[exchangeId] : undefined;
  if (!recipe) {
    throw new UnsupportedBackfillError(
      `trades can be backfilled from ${TRADE_BACKFILL_EXCHANGES.join(' and ')} only (paged by raw trade id, the id space the ` +
        `collector stores); ${exchangeId}: use --what candles`,
    );
  }
  return recipe;
}
