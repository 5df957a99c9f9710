/**
 * A dedicated parser of Binance `@trade` / `@aggTrade` stream messages (already JSON.parse'd), for
 * the benchmark variants: the fields ccxt's binance.parseWsTrade reads for public trades, and
 * nothing else.
 *
 *   {"e":"trade","E":…,"s":"BTCUSDT","t":12345,"p":"65000.12000000","q":"0.00120000","T":…,"m":true,"M":true}
 *
 * `m` is "the buyer is the maker", so m=true means the taker sold (ccxt: side 'sell').
 * Anything malformed comes out as undefined/NaN fields, which normalizeTrade's validation rejects,
 * the same way it rejects a malformed ccxt trade.
 */
import type { CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';

interface BinanceTradeMessage {
  readonly s?: unknown;
  readonly t?: unknown;
  /** aggregate trade id (`@aggTrade`) */
  readonly a?: unknown;
  readonly p?: unknown;
  readonly q?: unknown;
  readonly T?: unknown;
  readonly m?: unknown;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'string' && v !== '' ? Number(v) : typeof v === 'number' ? v : undefined);

/** Binance market id -> ccxt unified symbol, for the markets of one socket (built from ccxt's markets once). */
export type SymbolById = ReadonlyMap<string, string>;

export function parseBinanceTrade(message: unknown, symbols: SymbolById): CcxtTradeLike {
  const m = message as BinanceTradeMessage;
  const id = typeof m.s === 'string' ? m.s : undefined;
  return {
    id: str(m.t) ?? str(m.a),
    symbol: id === undefined ? undefined : symbols.get(id),
    timestamp: typeof m.T === 'number' ? m.T : undefined,
    price: num(m.p),
    amount: num(m.q),
    side: m.m === true ? 'sell' : m.m === false ? 'buy' : undefined,
  };
}
