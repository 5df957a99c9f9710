import { z } from 'zod';

/** ccxt unified symbol: `BASE/QUOTE` for spot, `BASE/QUOTE:SETTLE` (optionally `-EXPIRY...`) for derivatives. */
export const UNIFIED_SYMBOL = /^[A-Z0-9.\-_]{1,20}\/[A-Z0-9.\-_]{1,20}(:[A-Z0-9.\-_]{1,20}(-[A-Z0-9.\-_]{1,30})?)?$/;

export const SymbolSchema = z
  .string()
  .regex(UNIFIED_SYMBOL, 'a ccxt unified symbol such as BTC/USDT or BTC/USDT:USDT');

/** ccxt exchange id: lowercase letters and digits, e.g. `binance`, `okx`, `kraken`. */
export const ExchangeIdSchema = z
  .string()
  .regex(/^[a-z][a-z0-9]{1,31}$/, 'a ccxt exchange id such as binance, okx or kraken');

export type Symbol = z.infer<typeof SymbolSchema>;
export type ExchangeId = z.infer<typeof ExchangeIdSchema>;

/**
 * Stream partition key: all events of one market land on one shard, in order (`exchange:symbol`).
 * Signals key by `signal:<symbol>`: their exchange is optional, and apart from the market's data a
 * burst of signals never delays its ticks, while the signals of one symbol stay in order.
 */
export function partitionKeyOf(event: { readonly type?: string; readonly exchange: string | null; readonly symbol: string }): string {
  if (event.type === 'signal' || event.exchange === null) return `signal:${event.symbol}`;
  return `${event.exchange}:${event.symbol}`;
}
