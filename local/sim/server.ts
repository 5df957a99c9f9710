/**
 * The simulated exchange server: one node:http server plus a `ws` WebSocketServer on the same
 * port, with one or more exchange protocols mounted under `/<protocol id>` (`/binance`, `/okx`).
 * A protocol is a REST handler plus a WebSocket handler over the shared market model. Fault
 * injection (faults.ts) sits between them and the network so every protocol gets every fault:
 * REST requests pass the controller before reaching a protocol, and protocols hand every
 * market-data frame to `faults.deliver` instead of writing to the socket.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { ConfigError, PlatformError } from '../../layers/shared/src/domain/errors.js';
import { armScenarioFeeds } from './scenarios.js';
import { FaultController, type FaultHooks, type SimFaults } from './faults.js';
import { SimulatedMarket, type MarketOptions, type PrintedTrade } from './market.js';
import { binanceProtocol } from './protocols/binance.js';

export type {
  ChaosOptions,
  FaultHooks,
  FaultTarget,
  FrameFaultTarget,
  FrameKind,
  InjectedFault,
  InjectedFaultCounts,
  MalformedShape,
  MarketFrame,
  SimFaults,
} from './faults.js';

/** An HTTP request as a protocol sees it: path below the protocol's mount point. */
export interface SimHttpRequest {
  readonly method: string;
  /** e.g. `/api/v3/depth` for `GET /binance/api/v3/depth` */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: http.IncomingHttpHeaders;
}

export interface SimHttpResponse {
  readonly status: number;
  /** serialised as JSON unless `html` is given */
  readonly body: unknown;
  /** raw HTML body instead of JSON (e.g. a gateway error page) */
  readonly html?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** The base URLs a ccxt client is pointed at for one protocol (see applyEndpointOverride). */
export interface SimEndpoint {
  /** REST base, e.g. `http://127.0.0.1:8090/binance` (ccxt appends `/api/v3`) */
  readonly rest: string;
  /** WebSocket base, e.g. `ws://127.0.0.1:8090/binance/ws` (ccxt.pro appends `/<stream index>`) */
  readonly ws: string;
}

export interface ProtocolContext {
  readonly market: SimulatedMarket;
  readonly faults: FaultHooks;
}

/** One exchange's wire protocol over the shared market, mounted under `/<id>`. */
export interface SimProtocol {
  /** lowercase ccxt-style id, also the mount path segment */
  readonly id: string;
  handleHttp(request: SimHttpRequest): SimHttpResponse | Promise<SimHttpResponse>;
  /** the response for an injected REST failure, in this exchange's error format */
  injectedFailure(status: number): SimHttpResponse;
  /**
   * Charges the request to this exchange's REST rate limits; the 429 answer (in its format) when
   * over budget. Called only when the server enforces rate limits.
   */
  admit?(request: SimHttpRequest): SimHttpResponse | undefined;
  /** requests answered 429 by the rate limits so far */
  rateLimited?(): number;
  /** whether this protocol serves WebSocket connections on `path` (below the mount point) */
  acceptsWsPath(path: string): boolean;
  handleConnection(socket: WebSocket, path: string, query: URLSearchParams): void;
  /** client base URLs given the server's http/ws origins */
  endpoint(origin: { readonly http: string; readonly ws: string }): SimEndpoint;
  /** stream names with at least one subscriber (for tests to wait on) */
  activeStreams(): readonly string[];
  close(): void;
}

export type SimProtocolFactory = (context: ProtocolContext) => SimProtocol;

export interface SimulatedExchangeOptions extends MarketOptions {
  /** default 127.0.0.1 */
  readonly host?: string;
  /** default 0 (a free port) */
  readonly port?: number;
  /** default `[binanceProtocol()]`; the first one provides `httpUrl` / `wsUrl` */
  readonly protocols?: readonly SimProtocolFactory[];
  /** one line per HTTP request / WS connection, for debugging */
  readonly log?: (line: string) => void;
  /** answer 429 (in the exchange's format) to REST clients over the exchange's rate limits (default off) */
  readonly enforceRateLimits?: boolean;
}

export interface SimulatedExchange {
  /** REST base of the first protocol, e.g. `http://127.0.0.1:8090/binance` */
  readonly httpUrl: string;
  /** WebSocket base of the first protocol, e.g. `ws://127.0.0.1:8090/binance/ws` */
  readonly wsUrl: string;
  /** `http://host:port` */
  readonly origin: string;
  readonly port: number;
  /** base URLs per protocol id */
  readonly endpoints: Readonly<Record<string, SimEndpoint>>;
  readonly market: SimulatedMarket;
  readonly faults: SimFaults;
  /** Every raw trade printed for `symbol`. */
  printedTrades(symbol: string): readonly PrintedTrade[];
  /** Subscribed stream names of one protocol (default: the first). */
  activeStreams(protocolId?: string): readonly string[];
  /** Resolves once all `streams` have a subscriber; rejects after `timeoutMs`. */
  waitForStreams(streams: readonly string[], options?: { protocolId?: string; timeoutMs?: number }): Promise<void>;
  /** Open WebSocket connections. */
  connectionCount(): number;
  /** REST requests answered 429 by the rate limits (of one protocol; default all). */
  rateLimited(protocolId?: string): number;
  /** Stops the market timers, terminates sockets and closes the server. */
  close(): Promise<void>;
}

/** The simulator did not reach an expected state in time (e.g. a subscription never arrived). */
export class SimTimeoutError extends PlatformError {}

function sendJson(res: http.ServerResponse, response: SimHttpResponse): void {
  const body = response.html ?? JSON.stringify(response.body);
  res.writeHead(response.status, {
    'content-type': response.html === undefined ? 'application/json;charset=UTF-8' : 'text/html',
    'content-length': Buffer.byteLength(body),
    ...response.headers,
  });
  res.end(body);
}

/** Splits `/binance/api/v3/depth` into the protocol mounted at `/binance` and `/api/v3/depth`. */
function route(protocols: ReadonlyMap<string, SimProtocol>, pathname: string): { protocol: SimProtocol; path: string } | undefined {
  const match = /^\/([^/]+)(\/.*)?$/.exec(pathname);
  const protocol = match ? protocols.get(match[1]!) : undefined;
  if (!protocol || !match) return undefined;
  return { protocol, path: match[2] ?? '/' };
}

/** Starts the simulator on 127.0.0.1 (port 0 = any free port) and resolves once it listens. */
export async function startSimulatedExchange(options: SimulatedExchangeOptions = {}): Promise<SimulatedExchange> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`port must be an integer in 0..65535, got ${port}`);
  const log = options.log;
  const market = new SimulatedMarket(options);
  /** open sockets and the protocol serving each */
  const sockets = new Map<WebSocket, string>();
  const faults = new FaultController(
    sockets,
    async (protocol) => {
      const open = [...sockets].filter(([, id]) => protocol === undefined || id === protocol).map(([s]) => s);
      const closed = open.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())));
      for (const s of open) s.terminate();
      await Promise.all(closed);
      return open.length;
    },
    market.seed,
  );
  const protocols = new Map<string, SimProtocol>();
  for (const factory of options.protocols ?? [binanceProtocol()]) {
    const p = factory({ market, faults });
    if (protocols.has(p.id)) throw new ConfigError(`protocol ${p.id} is mounted twice`);
    protocols.set(p.id, p);
  }
  const first = protocols.values().next().value;
  if (!first) {
    market.close();
    throw new ConfigError('the simulator needs at least one protocol');
  }
  // a scenario that stops a symbol's feed withholds its frames (tickers too) from then on
  const disarmScenarios = armScenarioFeeds({ market, faults });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const routed = route(protocols, url.pathname);
    log?.(`${req.method ?? 'GET'} ${url.pathname}${url.search}`);
    if (!routed) {
      sendJson(res, { status: 404, body: { error: `no simulated exchange is mounted at ${url.pathname}`, mounted: [...protocols.keys()] } });
      return;
    }
    const request: SimHttpRequest = { method: req.method ?? 'GET', path: routed.path, query: url.searchParams, headers: req.headers };
    const failure = faults.takeRestFailure(routed.protocol.id);
    if (failure !== undefined) {
      sendJson(res, routed.protocol.injectedFailure(failure));
      return;
    }
    const limited = options.enforceRateLimits ? routed.protocol.admit?.(request) : undefined;
    if (limited) {
      log?.(`rate limited: ${req.method ?? 'GET'} ${url.pathname}`);
      sendJson(res, limited);
      return;
    }
    Promise.resolve()
      .then(() => routed.protocol.handleHttp(request))
      .then(
        (response) => sendJson(res, response),
        (error: unknown) => {
          // a handler bug must not hang the client: answer 500 in the protocol's format
          log?.(`handler error: ${error instanceof Error ? error.stack : String(error)}`);
          sendJson(res, routed.protocol.injectedFailure(500));
        },
      );
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const routed = route(protocols, url.pathname);
    if (!routed || !routed.protocol.acceptsWsPath(routed.path)) {
      socket.write('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.set(ws, routed.protocol.id);
      log?.(`WS open ${url.pathname}${url.search}`);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => ws.terminate());
      routed.protocol.handleConnection(ws, routed.path, url.searchParams);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostForUrl = host.includes(':') ? `[${host}]` : host;
  const origin = `http://${hostForUrl}:${address.port}`;
  const wsOrigin = `ws://${hostForUrl}:${address.port}`;
  const endpoints: Record<string, SimEndpoint> = {};
  for (const p of protocols.values()) endpoints[p.id] = p.endpoint({ http: `${origin}/${p.id}`, ws: `${wsOrigin}/${p.id}` });
  const primary = endpoints[first.id]!;

  const protocolOf = (id: string | undefined): SimProtocol => {
    const p = id === undefined ? first : protocols.get(id);
    if (!p) throw new ConfigError(`no protocol ${id} is mounted`);
    return p;
  };

  let closed: Promise<void> | undefined;
  return {
    httpUrl: primary.rest,
    wsUrl: primary.ws,
    origin,
    port: address.port,
    endpoints,
    market,
    faults,
    printedTrades: (symbol) => market.printedTrades(symbol),
    activeStreams: (protocolId) => protocolOf(protocolId).activeStreams(),
    async waitForStreams(streams, opts = {}) {
      const protocol = protocolOf(opts.protocolId);
      const deadline = Date.now() + (opts.timeoutMs ?? 5000);
      for (;;) {
        const active = new Set(protocol.activeStreams());
        const missing = streams.filter((s) => !active.has(s));
        if (missing.length === 0) return;
        if (Date.now() > deadline) throw new SimTimeoutError(`streams never subscribed: ${missing.join(', ')}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    connectionCount: () => sockets.size,
    rateLimited: (protocolId) =>
      (protocolId === undefined ? [...protocols.values()] : [protocolOf(protocolId)]).reduce((n, p) => n + (p.rateLimited?.() ?? 0), 0),
    close() {
      closed ??= (async () => {
        disarmScenarios();
        market.close();
        faults.close();
        for (const p of protocols.values()) p.close();
        for (const s of sockets.keys()) s.terminate();
        wss.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closed;
    },
  };
}
