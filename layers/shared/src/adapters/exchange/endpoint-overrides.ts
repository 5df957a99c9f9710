import type { Exchange } from 'ccxt';
import { ConfigError, PlatformError } from '../../domain/errors.js';

/** Base URLs of a compatible endpoint: the simulator, a proxy or a testnet. */
export interface EndpointOverride {
  /** REST origin (plus any mount path) below which the exchange's own paths live, e.g. `http://127.0.0.1:8090/binance` */
  readonly rest: string;
  /** WebSocket market-stream base, e.g. `ws://127.0.0.1:8090/binance/ws` */
  readonly ws: string;
}

/** The exchange has no endpoint-override recipe yet. */
export class UnsupportedEndpointOverrideError extends PlatformError {
  constructor(readonly exchangeId: string) {
    super(
      `cannot point ${exchangeId} at a custom endpoint: endpoint overrides exist only for ${ENDPOINT_OVERRIDE_EXCHANGES.join(', ')}`,
    );
  }
}

type Overrider = (exchange: Exchange, rest: string, ws: string) => void;

function dict(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

const OVERRIDERS: Readonly<Record<string, Overrider>> = {
  binance(exchange, rest, ws) {
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
 * loadMarkets to spot. Call before loadMarkets. Loads ccxt's plain-HTTP agent, which ccxt.pro
 * requires before it opens any `ws://` URL.
 */
export async function applyEndpointOverride(exchange: Exchange, endpoint: EndpointOverride): Promise<void> {
  const override = Object.hasOwn(OVERRIDERS, exchange.id) ? OVERRIDERS[exchange.id] : undefined;
  if (!override) throw new UnsupportedEndpointOverrideError(exchange.id);
  const rest = checkUrl(endpoint.rest, ['http:', 'https:'], 'REST');
  const ws = checkUrl(endpoint.ws, ['ws:', 'wss:'], 'WebSocket');
  override(exchange, rest, ws);
  await ensureHttpProxyAgent(exchange, ws);
}

/** Loads ccxt's `http` agent when `wsUrl` is plain `ws://` (ccxt.pro throws NotSupported otherwise). */
export async function ensureHttpProxyAgent(exchange: Exchange, wsUrl: string): Promise<void> {
  if (wsUrl.startsWith('ws://')) await exchange.loadHttpProxyAgent();
}
