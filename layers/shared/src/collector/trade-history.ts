/**
 * Where a trade feed's holes are filled from: the exchange's REST trade history, asked in the same
 * id space as its live trade stream. Getting that wrong is silent and fatal, so each exchange with
 * sequential ids has its own source here:
 *
 * - Binance: ccxt.pro's watchTrades streams `<symbol>@trade` (raw trade ids) while ccxt's default
 *   fetchTrades reads `/api/v3/aggTrades` (aggregate-trade ids, a different and smaller
 *   numbering). The fill reads raw trades: `/api/v3/historicalTrades?fromId=` through
 *   fetchTrades' `fetchTradesMethod: 'publicGetHistoricalTrades'`, forward from the first missing id.
 * - OKX: watchTrades streams `trades` (tradeId); the fill reads `/api/v5/market/history-trades`
 *   (fetchTrades `method: 'publicGetMarketHistoryTrades'`), paged backwards by tradeId with `after`.
 *
 * Any other exchange is filled by time: fetchTrades since the last trade seen, deduplicated by key.
 */
import { PlatformError } from '../domain/errors.js';
import type { CcxtTradeLike } from '../normalize/ccxt-normalizer.js';

/** What a fill needs of a ccxt exchange. */
export interface HistoryExchange {
  readonly id: string;
  fetchTrades(symbol: string, since?: number, limit?: number, params?: Record<string, unknown>): Promise<readonly CcxtTradeLike[]>;
}

/** Ids `fromId..toId` inclusive; `toId` null: up to the newest trade. */
export interface IdRange {
  readonly fromId: number;
  readonly toId: number | null;
}

/** One page of a fill and where the next one starts (null: the range is exhausted). */
export interface HistoryPage<C> {
  readonly trades: readonly CcxtTradeLike[];
  readonly next: C | null;
}

/** A REST source of trades in the live stream's id space. */
export interface TradeIdHistory<C = unknown> {
  /** e.g. `binance /api/v3/historicalTrades (raw trade ids)`, for logs and the ledger */
  readonly describe: string;
  /** Trades of `range` (possibly more), one page; `cursor` null for the first. */
  page(exchange: HistoryExchange, symbol: string, range: IdRange, cursor: C | null): Promise<HistoryPage<C>>;
}

/** A REST source of trades by time, for exchanges without sequential trade ids. */
export interface TradeTimeHistory {
  readonly describe: string;
  /** Trades at or after `since` (ms epoch), one page, oldest first. */
  page(exchange: HistoryExchange, symbol: string, since: number): Promise<readonly CcxtTradeLike[]>;
}

/** A fill got trades that cannot be in the range it asked for: the REST source numbers trades differently. */
export class IdSpaceMismatchError extends PlatformError {}

const BINANCE_PAGE = 1000;
const OKX_PAGE = 100;

function numericId(t: CcxtTradeLike): number | null {
  const id = t.id;
  return typeof id === 'string' && /^\d{1,15}$/.test(id) ? Number(id) : null;
}

/** Binance spot raw trades forward from an id (`GET /api/v3/historicalTrades?fromId=`, at most 1000 a page). */
export const binanceRawTrades: TradeIdHistory<{ fromId: number }> = {
  describe: 'binance /api/v3/historicalTrades?fromId= (raw trade ids, as <symbol>@trade)',
  async page(exchange, symbol, range, cursor) {
    const fromId = cursor?.fromId ?? range.fromId;
    const trades = await exchange.fetchTrades(symbol, undefined, BINANCE_PAGE, {
      fetchTradesMethod: 'publicGetHistoricalTrades',
      fromId,
    });
    let last = -1;
    for (const t of trades) last = Math.max(last, numericId(t) ?? -1);
    const done = trades.length < BINANCE_PAGE || last < fromId || (range.toId !== null && last >= range.toId);
    return { trades, next: done ? null : { fromId: last + 1 } };
  },
};

/** OKX trades backwards from the end of the range (`GET /api/v5/market/history-trades?type=1&after=`, 100 a page). */
export const okxHistoryTrades: TradeIdHistory<{ after: number }> = {
  describe: 'okx /api/v5/market/history-trades?after= (tradeId, as the trades channel)',
  async page(exchange, symbol, range, cursor) {
    const after = cursor?.after ?? (range.toId === null ? undefined : range.toId + 1);
    const trades = await exchange.fetchTrades(symbol, undefined, OKX_PAGE, {
      method: 'publicGetMarketHistoryTrades',
      type: '1',
      ...(after !== undefined && { after: String(after) }),
    });
    let first = Number.POSITIVE_INFINITY;
    for (const t of trades) first = Math.min(first, numericId(t) ?? Number.POSITIVE_INFINITY);
    const done = trades.length === 0 || first <= range.fromId || (after !== undefined && first >= after);
    return { trades, next: done ? null : { after: first } };
  },
};

/** Any exchange: fetchTrades since a time, oldest first (ccxt's default REST trades of the exchange). */
export const tradesSince: TradeTimeHistory = {
  describe: 'fetchTrades(since) (by time)',
  async page(exchange, symbol, since) {
    const trades = await exchange.fetchTrades(symbol, since, 1000);
    return [...trades].sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
  },
};

/** How an exchange's trade feed is kept complete. */
export type TradeCompleteness =
  | { readonly mode: 'id'; readonly history: TradeIdHistory }
  | { readonly mode: 'time'; readonly history: TradeTimeHistory };

/** Exchanges whose public trade ids are consecutive integers per market, with their same-id-space REST source. */
const SEQUENTIAL: Readonly<Record<string, TradeIdHistory>> = {
  binance: binanceRawTrades as TradeIdHistory,
  okx: okxHistoryTrades as TradeIdHistory,
};

/** The completeness strategy of an exchange: sequential ids where known, time otherwise. */
export function tradeCompletenessFor(exchangeId: string): TradeCompleteness {
  const history = Object.hasOwn(SEQUENTIAL, exchangeId) ? SEQUENTIAL[exchangeId] : undefined;
  return history ? { mode: 'id', history } : { mode: 'time', history: tradesSince };
}

/** The numeric id of a trade of a sequential feed, or null when it has none. */
export function sequentialId(t: { readonly id?: string | null | undefined }): number | null {
  return numericId(t as CcxtTradeLike);
}
