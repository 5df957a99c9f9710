import type { Exchange } from 'ccxt';
import { ConfigError, PlatformError } from '../../domain/errors.js';

/** Market types loadMarkets may list through an overridden endpoint. */
export type OverrideMarketType = 'spot' | 'swap';

/** Base URLs of a compatible endpoint: the simulator, a proxy or a testnet. */
export interface EndpointOverride {
  /** REST origin (plus any mount path) below which the exchange's own paths live, e.g. `http://127.0.0.1:8090/binance` */
  readonly rest: string;
  /**
   * WebSocket base: binance `ws://127.0.0.1:8090/binance/ws` (ccxt.pro appends `/<stream index>`),
   * okx `ws://127.0.0.1:8090/okx/ws/v5` (ccxt.pro appends `/public` or `/business`)
   */
  readonly ws: string;
  /** market types loadMarkets fetches (ccxt `options.fetchMarkets.types`); default `['spot']` */
  readonly marketTypes?: readonly OverrideMarketType[];
}

/** The exchange has no endpoint-override recipe yet. */
export class UnsupportedEndpointOverrideError extends PlatformError {
  constructor(readonly exchangeId: string) {
    super(
      `cannot point ${exchangeId} at a custom endpoint: endpoint overrides exist only for ${ENDPOINT_OVERRIDE_EXCHANGES.join(', ')}`,
    );
  }
}

type Overrider = (exchange: Exchange, rest: string, ws: string, marketTypes: readonly OverrideMarketType[]) => void;

function dict(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

const OVERRIDERS: Readonly<Record<string, Overrider>> = {
  binance(exchange, rest, ws, marketTypes) {
    if (marketTypes.some((t) => t !== 'spot')) {
      throw new ConfigError(`the binance endpoint override serves spot markets only, got marketTypes ${marketTypes.join(', ')}`);
    }
    const api = exchange.urls.api as Record<string, unknown>;
    // every REST base ccxt's binance uses for public spot calls (v1 serves a few legacy paths,
    // sapi system/status is fetchStatus); contract/option bases are untouched: spot markets only
    api['public'] = `${rest}/api/v3`;
    api['private'] = `${rest}/api/v3`;
    api['v1'] = `${rest}/api/v1`;
    api['sapi'] = `${rest}/sapi/v1`;
    api['sapiV2'] = `${rest}/sapi/v2`;
    api['sapiV3'] = `${rest}/sapi/v3`;
    api['sapiV4'] = `${rest}/sapi/v4`;
    // ccxt.pro appends `/<stream index>` to urls.api.ws.spot
    api['ws'] = { ...dict(api['ws']), spot: ws, margin: ws };
    const options = exchange.options as Record<string, unknown>;
    // ccxt 4.5: options.fetchMarkets is a dict with `types` (a bare array is the legacy form)
    options['fetchMarkets'] = { ...dict(options['fetchMarkets']), types: ['spot'] };
    // with API keys set, loadMarkets would also call sapi margin/currency endpoints the endpoint may not serve
    options['fetchMargins'] = false;
    options['fetchCurrencies'] = false;
  },
  okx(exchange, rest, ws, marketTypes) {
    const api = exchange.urls.api as Record<string, unknown>;
    // ccxt's okx signs and requests `${urls.api.rest}/api/v5/<path>`; ccxt.pro's getUrl appends
    // `/public`, `/business` or `/private` to urls.api.ws (a string, not a dict, for okx)
    api['rest'] = rest;
    api['ws'] = ws;
    const options = exchange.options as Record<string, unknown>;
    // okx.js fetchMarkets reads options.fetchMarkets.types (default spot, future, swap, option)
    options['fetchMarkets'] = { ...dict(options['fetchMarkets']), types: [...marketTypes] };
    // with API keys set, loadMarkets would call the private asset/currencies endpoint
    (exchange.has as Record<string, unknown>)['fetchCurrencies'] = false;
  },
};

/** Exchange ids applyEndpointOverride supports. */
export const ENDPOINT_OVERRIDE_EXCHANGES: readonly string[] = Object.keys(OVERRIDERS);

function checkUrl(value: string, protocols: readonly string[], what: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch (cause) {
    throw new ConfigError(`${what} endpoint "${value}" is not a URL`, { cause });
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(`${what} endpoint "${value}" must use ${protocols.map((p) => p.replace(':', '://')).join(' or ')}`);
  }
  return value.replace(/\/+$/, '');
}

/**
 * Points a ccxt.pro exchange at a compatible endpoint (REST + WebSocket) and restricts
 * loadMarkets to `endpoint.marketTypes` (spot by default). Call before loadMarkets. Loads ccxt's
 * plain-HTTP agent (`exchange.loadHttpProxyAgent()`), which ccxt.pro requires before it opens any
 * `ws://` URL: callers that set the URLs themselves must await it too.
 */
export async function applyEndpointOverride(exchange: Exchange, endpoint: EndpointOverride): Promise<void> {
  const override = Object.hasOwn(OVERRIDERS, exchange.id) ? OVERRIDERS[exchange.id] : undefined;
  if (!override) throw new UnsupportedEndpointOverrideError(exchange.id);
  const rest = checkUrl(endpoint.rest, ['http:', 'https:'], 'REST');
  const ws = checkUrl(endpoint.ws, ['ws:', 'wss:'], 'WebSocket');
  const marketTypes = endpoint.marketTypes ?? ['spot'];
  if (marketTypes.length === 0) throw new ConfigError('endpoint override marketTypes must list at least one market type');
  override(exchange, rest, ws, marketTypes);
  await ensureHttpProxyAgent(exchange, ws);
}

/** Loads ccxt's `http` agent when `wsUrl` is plain `ws://` (ccxt.pro throws NotSupported otherwise). */
export async function ensureHttpProxyAgent(exchange: Exchange, wsUrl: string): Promise<void> {
  if (wsUrl.startsWith('ws://')) await exchange.loadHttpProxyAgent();
}
