import { ConfigError } from '../domain/errors.js';
import { ExchangeIdSchema, SymbolSchema } from '../domain/index.js';

/** `exchange:SYM,SYM;exchange:SYM` -> map; every id and symbol validated. */
export function parseMarkets(spec: string): Map<string, string[]> {
  const markets = new Map<string, string[]>();
  for (const part of spec.split(';').map((s) => s.trim()).filter(Boolean)) {
    const colon = part.indexOf(':');
    if (colon < 0) throw new ConfigError(`markets: '${part}' should look like exchange:BASE/QUOTE,BASE/QUOTE`);
    const exchange = part.slice(0, colon).trim();
    if (!ExchangeIdSchema.safeParse(exchange).success) throw new ConfigError(`markets: '${exchange}' is not a ccxt exchange id`);
    const symbols = part
      .slice(colon + 1)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (symbols.length === 0) throw new ConfigError(`markets: no symbols for ${exchange}`);
    for (const s of symbols) {
      if (!SymbolSchema.safeParse(s).success) {
        throw new ConfigError(`markets: '${s}' is not a ccxt unified symbol (e.g. BTC/USDT)`);
      }
    }
    markets.set(exchange, [...new Set([...(markets.get(exchange) ?? []), ...symbols])]);
  }
  if (markets.size === 0) throw new ConfigError('markets: no markets given');
  return markets;
}
