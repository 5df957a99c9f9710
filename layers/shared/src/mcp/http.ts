import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { InsufficientScopeError, InvalidTokenError, OAuthError, ServerError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import { metadataHandler } from '@modelcontextprotocol/sdk/server/auth/handlers/metadata.js';
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { MemoryStore, type Options as RateLimitOptions } from 'express-rate-limit';
import { createLogger, type Logger } from '../observability/logger.js';
import type { McpMetrics } from './metrics.js';
import { callerOf, type McpCaller } from './caller.js';
import { ALL_SCOPES, hasScope, missingToolScopes, SCOPES } from './scopes.js';
import { SessionIds, SessionTransport } from './session-transport.js';

export interface McpHttpOptions {
  /** default 127.0.0.1; loopback hosts get the SDK's Host-header (DNS rebinding) check */
  readonly host?: string;
  /** default 0: any free port */
  readonly port?: number;
  /** called once per session with the token's caller: a server is never shared between clients */
  readonly buildServer: (caller: McpCaller) => McpServer;
  readonly verifier: OAuthTokenVerifier;
  /** advertised in WWW-Authenticate on 401/403; set automatically when `authorizationServers` is given */
  readonly resourceMetadataUrl?: string;
  /**
   * Issuers of the tokens this server accepts. When given, the OAuth protected resource metadata
   * (RFC 9728, as the MCP authorization spec asks) is served at /.well-known/oauth-protected-resource/mcp.
   */
  readonly authorizationServers?: readonly string[];
  /** the endpoint's public URL (e.g. https://mcp.example.com/mcp) behind a load balancer; default: the listening URL */
  readonly publicUrl?: string;
  /** enforce each tool's scopes (scopes.ts) with 403 insufficient_scope; default true */
  readonly toolScopes?: boolean;
  /** browser origins allowed to call; any other Origin header gets 403. Loopback origins pass on a loopback server. */
  readonly allowedOrigins?: readonly string[];
  /** requests per principal per window; default 1200 per minute */
  readonly rateLimit?: { readonly limit: number; readonly windowMs: number };
  /** Prometheus metrics; served at /metrics when `exposeMetrics` */
  readonly metrics?: McpMetrics;
  readonly exposeMetrics?: boolean;
  /** scopes every token must carry; none by default */
  readonly requiredScopes?: readonly string[];
  /** Host header names accepted when binding beyond loopback, e.g. ['mcp.example.com'] */
  readonly allowedHosts?: readonly string[];
  /** open sessions at most; an initialize beyond it gets 503. Default 1000. */
  readonly maxSessions?: number;
  /** a session without requests for this long is closed. Default 30 minutes. */
  readonly sessionIdleMs?: number;
  /**
   * Shared by every server task behind one load balancer: session ids are signed with it, so a task
   * can continue a session another task opened (for the same token principal). Random per process
   * when omitted: sessions then live on the task that opened them.
   */
  readonly sessionSecret?: Uint8Array;
  readonly logger?: Logger;
}

export interface McpHttpServer {
  /** http://HOST:PORT/mcp */
  readonly url: string;
  /** closes every session's transport and server, then the HTTP server */
  close(): Promise<void>;
}

interface Session {
  readonly server: McpServer;
  readonly transport: SessionTransport;
  /** the principal that opened it; another token's holder cannot use it */
  readonly owner: string;
  lastSeen: number;
}

const MCP_PATH = '/mcp';
/** body-parser's default, kept from when the endpoint sat behind express.json() */
const MAX_BODY_BYTES = 100 * 1024;
/** Hosts a loopback server answers to (the SDK's localhost DNS-rebinding list) */
const LOOPBACK_HOSTNAMES = ['localhost', '127.0.0.1', '[::1]'];

/** Who a request to /mcp comes from, once its bearer token is verified. */
interface Principal {
  readonly auth: AuthInfo;
  /** ownerOf(auth): rate limits and sessions are per owner */
  readonly owner: string;
}

/**
 * Starts the MCP Streamable HTTP endpoint at `/mcp` behind bearer auth, one server+transport per session.
 *
 * `/mcp` is served straight on node:http: host, origin, token, rate limit, body and scopes are
 * checked by the plain steps below, in that order. Behind express (router, body-parser,
 * express-rate-limit) a ping cost the server 0.40 ms of CPU, 0.15 ms without it: the framework
 * was most of the floor of every tool call (bench/mcp-tools.bench.ts). The other routes (health,
 * metrics, OAuth metadata) are rare and stay on express, where the SDK's handlers are.
 */
export async function startMcpHttpServer(options: McpHttpOptions): Promise<McpHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const logger = options.logger ?? createLogger({ fields: { component: 'mcp-http' } });
  const maxSessions = options.maxSessions ?? 1000;
  const idleMs = options.sessionIdleMs ?? 30 * 60_000;
  const sessions = new Map<string, Session>();

  // DNS rebinding: the Host header must name this server (as the SDK's createMcpExpressApp checks)
  const allowedHostnames = options.allowedHosts ? [...options.allowedHosts] : ['127.0.0.1', 'localhost', '::1'].includes(host) ? LOOPBACK_HOSTNAMES : undefined;
  if (!allowedHostnames && (host === '0.0.0.0' || host === '::')) {
    logger.warn('mcp http binds all interfaces without Host validation; set allowedHosts to the public host names', { host });
  }

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', sessions: sessions.size });
  });
  const metrics = options.metrics;
  if (metrics && options.exposeMetrics) {
    app.get('/metrics', guarded(async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.type(contentType).send(body);
    }, logger));
  }

  // Resolved once listening (the port may be 0 until then).
  let resourceMetadataUrl = options.resourceMetadataUrl;
  let resourceUrl = options.publicUrl;
  if (options.authorizationServers?.length) {
    const metadata = () => ({
      resource: resourceUrl!,
      authorization_servers: [...options.authorizationServers!],
      scopes_supported: [...ALL_SCOPES],
      bearer_methods_supported: ['header'],
      resource_name: 'QiCore crypto market data',
    });
    // RFC 9728: the path-specific URL, and the bare one for clients that only try that
    const serve: RequestHandler = (req, res, next) => metadataHandler(metadata())(req, res, next);
    app.use(`/.well-known/oauth-protected-resource${MCP_PATH}`, serve);
    app.use('/.well-known/oauth-protected-resource', serve);
  }
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    logger.error('mcp http request failed', { error });
    if (res.headersSent) return void res.end();
    sendRpcError(res, 500, -32603, 'Internal server error');
  });

  /** WWW-Authenticate of a 401/403 (RFC 6750), pointing to the resource metadata when it is served. */
  const challenge = (error: string, description: string, scope: readonly string[]) =>
    `Bearer error="${error}", error_description="${description}"` +
    (scope.length > 0 ? `, scope="${scope.join(' ')}"` : '') +
    (resourceMetadataUrl ? `, resource_metadata="${resourceMetadataUrl}"` : '');

  const requiredScopes = options.requiredScopes ?? [];
  /** The bearer token's AuthInfo, or undefined with a 401/403/500 already sent (the SDK's requireBearerAuth, without express). */
  const authenticate = async (req: IncomingMessage, res: ServerResponse): Promise<AuthInfo | undefined> => {
    try {
      const header = req.headers.authorization;
      if (!header) throw new InvalidTokenError('Missing Authorization header');
      const [type, token] = header.split(' ');
      if (type!.toLowerCase() !== 'bearer' || !token) throw new InvalidTokenError("Invalid Authorization header format, expected 'Bearer TOKEN'");
      const auth = await options.verifier.verifyAccessToken(token);
      if (requiredScopes.length > 0 && !requiredScopes.every((scope) => auth.scopes.includes(scope))) throw new InsufficientScopeError('Insufficient scope');
      if (typeof auth.expiresAt !== 'number' || Number.isNaN(auth.expiresAt)) throw new InvalidTokenError('Token has no expiration time');
      if (auth.expiresAt < Date.now() / 1000) throw new InvalidTokenError('Token has expired');
      return auth;
    } catch (error) {
      const header = (e: OAuthError) => ({ 'WWW-Authenticate': challenge(e.errorCode, e.message, requiredScopes) });
      if (error instanceof InvalidTokenError) sendJson(res, 401, error.toResponseObject(), header(error));
      else if (error instanceof InsufficientScopeError) sendJson(res, 403, error.toResponseObject(), header(error));
      else if (error instanceof ServerError) sendJson(res, 500, error.toResponseObject());
      else if (error instanceof OAuthError) sendJson(res, 400, error.toResponseObject());
      else {
        logger.error('mcp token verification failed', { error });
        sendJson(res, 500, new ServerError('Internal Server Error').toResponseObject());
      }
      return undefined;
    }
  };

  // Browsers send Origin; a page on another site must not drive a user's local or hosted server.
  const loopbackServer = isLoopback(host);
  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  const originAllowed = (origin: string | undefined): boolean =>
    origin === undefined || allowedOrigins.has(origin) || (loopbackServer && isLoopbackOrigin(origin));

  // Requests per token principal in fixed windows (express-rate-limit's store, without its express middleware).
  const windowMs = options.rateLimit?.windowMs ?? 60_000;
  const limit = options.rateLimit?.limit ?? 1_200;
  const hits = new MemoryStore();
  hits.init({ windowMs } as RateLimitOptions);
  const policy = `${limit};w=${Math.ceil(windowMs / 1000)}`;
  /** false, with 429 sent, when the principal is over its limit; RateLimit headers (IETF draft 7) either way */
  const withinRateLimit = async (owner: string, res: ServerResponse): Promise<boolean> => {
    const { totalHits, resetTime } = await hits.increment(owner);
    const reset = Math.max(0, Math.ceil(((resetTime?.getTime() ?? Date.now() + windowMs) - Date.now()) / 1000));
    res.setHeader('RateLimit-Policy', policy);
    res.setHeader('RateLimit', `limit=${limit}, remaining=${Math.max(0, limit - totalHits)}, reset=${reset}`);
    if (totalHits <= limit) return true;
    res.setHeader('Retry-After', String(reset));
    sendRpcError(res, 429, -32000, 'Too many requests for this token; retry after the time in the RateLimit header');
    return false;
  };

  // Per-tool scopes: 403 insufficient_scope naming what is missing, as OAuth 2.0 (RFC 6750) asks.
  const enforceToolScopes = options.toolScopes ?? true;
  /** false, with 403 sent, when a message of the body calls a tool (or reads a resource) the token lacks the scope for */
  const toolScopesGranted = (auth: AuthInfo, body: unknown, res: ServerResponse): boolean => {
    if (!enforceToolScopes) return true;
    const granted = auth.scopes;
    const missing = new Set<string>();
    for (const message of Array.isArray(body) ? body : [body]) {
      const { method, params } = (message ?? {}) as { method?: unknown; params?: { name?: unknown } };
      if (method === 'tools/call' && typeof params?.name === 'string') {
        for (const scope of missingToolScopes(params.name, granted)) missing.add(scope);
      }
      // market resources are the same data as the read tools
      if (typeof method === 'string' && method.startsWith('resources/') && !hasScope(granted, SCOPES.marketRead)) missing.add(SCOPES.marketRead);
    }
    if (missing.size === 0) return true;
    const description = `this token lacks the scope ${[...missing].join(' ')}`;
    sendJson(res, 403, { error: 'insufficient_scope', error_description: description }, { 'WWW-Authenticate': challenge('insufficient_scope', description, [...missing]) });
    return false;
  };

  const sessionIds = new SessionIds(options.sessionSecret ?? new Uint8Array(randomBytes(32)));
  // Sessions a client ended with DELETE are not continued here again (other tasks do not know of it:
  // a client that ended a session does not reuse its id). Bounded: oldest forgotten first.
  const terminated = new BoundedSet(10_000);

  /** A new server and transport; `sessionId` continues an existing session instead of minting one. */
  const openSession = async ({ auth, owner }: Principal, sessionId?: string): Promise<{ server: McpServer; transport: SessionTransport }> => {
    const caller = callerOf({ authInfo: auth });
    const server = options.buildServer(enforceToolScopes ? caller : { ...caller, scopes: ALL_SCOPES });
    const transport = new SessionTransport({
      sessionIdGenerator: () => sessionId ?? sessionIds.mint(owner),
      onsessioninitialized: (id) => {
        sessions.set(id, { server, transport, owner, lastSeen: Date.now() });
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    return { server, transport };
  };

  /** The session a request names (continued here if another task opened it), or an error answer already sent. */
  const sessionOf = async (req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<Session | undefined> => {
    const id = headerOf(req, 'mcp-session-id');
    if (!id) {
      sendRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required; send initialize first');
      return undefined;
    }
    const { owner } = principal;
    let session = sessions.get(id);
    if (!session && !terminated.has(id) && sessionIds.ownedBy(id, owner)) {
      if (sessions.size >= maxSessions) {
        sendRpcError(res, 503, -32000, 'Too many open sessions; retry later');
        return undefined;
      }
      const { server, transport } = await openSession(principal, id);
      try {
        await transport.resume(headerOf(req, 'mcp-protocol-version'));
      } catch (error) {
        logger.warn('mcp session could not be resumed', { error });
        await server.close();
      }
      session = sessions.get(id);
      if (session) logger.info('mcp session resumed on this task');
    }
    // Another principal's session answers exactly like an unknown one: nothing to probe.
    if (!session || session.owner !== owner) {
      sendRpcError(res, 404, -32001, 'Session not found; start a new session with initialize');
      return undefined;
    }
    session.lastSeen = Date.now();
    return session;
  };

  const handlePost = async (req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void> => {
    const body = await readJsonBody(req, res);
    if (body === undefined || !toolScopesGranted(principal.auth, body, res)) return;
    if (headerOf(req, 'mcp-session-id') !== undefined) {
      const session = await sessionOf(req, res, principal);
      if (session) await session.transport.handleRequest(req, res, principal.auth, body);
      return;
    }
    if (!isInitializeRequest(body)) {
      sendRpcError(res, 400, -32000, 'Bad Request: no session; the first request must be initialize');
      return;
    }
    if (sessions.size >= maxSessions) {
      sendRpcError(res, 503, -32000, 'Too many open sessions; retry later');
      return;
    }
    const { server, transport } = await openSession(principal);
    await transport.handleRequest(req, res, principal.auth, body);
    // An initialize the transport refused opened no session: drop its server now.
    if (transport.sessionId === undefined) await server.close();
  };

  const handleSessionRequest = async (req: IncomingMessage, res: ServerResponse, principal: Principal): Promise<void> => {
    const session = await sessionOf(req, res, principal);
    if (!session) return;
    if (req.method === 'DELETE') terminated.add(headerOf(req, 'mcp-session-id')!);
    await session.transport.handleRequest(req, res, principal.auth);
  };

  /** `/mcp`: origin, token, rate limit, then the method's handler. */
  const handleMcp = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method;
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
      res.setHeader('Allow', 'GET, POST, DELETE');
      return sendRpcError(res, 405, -32000, 'Method not allowed');
    }
    if (!originAllowed(headerOf(req, 'origin'))) return sendRpcError(res, 403, -32000, 'Forbidden: this Origin may not call the MCP endpoint');
    const auth = await authenticate(req, res);
    if (!auth) return;
    const principal = { auth, owner: ownerOf(auth) };
    if (!(await withinRateLimit(principal.owner, res))) return;
    if (method === 'POST') await handlePost(req, res, principal);
    else await handleSessionRequest(req, res, principal);
  };

  const requestListener = (req: IncomingMessage, res: ServerResponse): void => {
    if (metrics) res.once('finish', () => metrics.httpResponse(res.statusCode));
    if (allowedHostnames && !hostAllowed(req, res, allowedHostnames)) return;
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    if ((query === -1 ? url : url.slice(0, query)) !== MCP_PATH) return void app(req, res);
    handleMcp(req, res).catch((error: unknown) => {
      logger.error('mcp http request failed', { error });
      if (!res.headersSent) sendRpcError(res, 500, -32603, 'Internal server error');
      else res.end();
    });
  };

  const sweep = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const session of sessions.values()) {
      if (session.lastSeen < cutoff) void session.server.close().catch((error) => logger.warn('closing idle session failed', { error }));
    }
  }, Math.min(idleMs, 60_000));
  sweep.unref();

  const httpServer = createServer(requestListener);
  await listen(httpServer, options.port ?? 0, host);
  const { port } = httpServer.address() as AddressInfo;
  const url = `http://${urlHost(host)}:${port}${MCP_PATH}`;
  resourceUrl ??= url;
  if (options.authorizationServers?.length) {
    resourceMetadataUrl ??= new URL(`/.well-known/oauth-protected-resource${MCP_PATH}`, resourceUrl).href;
  }

  return {
    url,
    async close() {
      clearInterval(sweep);
      hits.shutdown();
      // server.close() closes its transport, whose onclose removes the session.
      await Promise.allSettled([...sessions.values()].map((s) => s.server.close()));
      sessions.clear();
      await closeHttp(httpServer);
    },
  };
}

/**
 * The JSON body of a POST (at most MAX_BODY_BYTES, an object or an array, as express.json() took
 * them), or undefined with the error already sent: 415 for another media type, 413 when too
 * large, 400 when not JSON.
 */
async function readJsonBody(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const type = headerOf(req, 'content-type') ?? '';
  const [media, ...parameters] = type.split(';').map((part) => part.trim().toLowerCase());
  const charset = parameters.find((p) => p.startsWith('charset='))?.slice('charset='.length).replaceAll('"', '');
  if (media !== 'application/json' || (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8')) {
    sendRpcError(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    return undefined;
  }
  const encoding = headerOf(req, 'content-encoding')?.trim().toLowerCase();
  if (encoding && encoding !== 'identity') {
    sendRpcError(res, 415, -32000, `Unsupported Media Type: Content-Encoding ${encoding} is not accepted; send the JSON uncompressed`);
    return undefined;
  }
  const raw = Number(headerOf(req, 'content-length') ?? 0) > MAX_BODY_BYTES ? 'too_large' : await readBody(req, MAX_BODY_BYTES);
  if (raw === 'too_large') {
    // the rest of the body is not read: the connection closes after this answer
    res.setHeader('Connection', 'close');
    sendRpcError(res, 413, -32000, 'Request body too large');
    return undefined;
  }
  if (raw === 'aborted') return undefined;
  const text = raw.toString('utf8').trim();
  if (text === '') return {};
  // strict, as express.json(): a top-level object or array only
  if (text[0] === '{' || text[0] === '[') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // answered below
    }
  }
  sendRpcError(res, 400, -32700, 'Parse error: body is not valid JSON');
  return undefined;
}

/** The body's bytes; 'too_large' as soon as more than `max` arrived (reading stops), 'aborted' when the client went away. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too_large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= max) return void chunks.push(chunk);
      req.off('data', onData);
      req.pause();
      resolve('too_large');
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    // a client gone mid-body (reset, timeout) is nobody's error here: nothing is answered
    req.once('close', () => resolve('aborted'));
    req.once('error', () => resolve('aborted'));
  });
}

/** false, with 403 sent, when the Host header names another host (the SDK's hostHeaderValidation, without express) */
function hostAllowed(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const header = req.headers.host;
  if (!header) {
    sendRpcError(res, 403, -32000, 'Missing Host header');
    return false;
  }
  let hostname: string;
  try {
    hostname = new URL(`http://${header}`).hostname;
  } catch {
    sendRpcError(res, 403, -32000, `Invalid Host header: ${header}`);
    return false;
  }
  if (allowed.includes(hostname)) return true;
  sendRpcError(res, 403, -32000, `Invalid Host: ${hostname}`);
  return false;
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Insertion-ordered set that forgets its oldest entries beyond `max`. */
class BoundedSet {
  private readonly items = new Set<string>();
  constructor(private readonly max: number) {}
  add(item: string): void {
    this.items.add(item);
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value!);
  }
  has(item: string): boolean {
    return this.items.has(item);
  }
}

/** Sessions are bound to the token's principal: client id plus subject. */
function ownerOf(auth: AuthInfo): string {
  return JSON.stringify([auth.clientId ?? null, auth.extra?.['subject'] ?? null]);
}

/** Express 5 forwards rejections to the error middleware; this also covers a throw after headers went out. */
function guarded(handler: RequestHandler, logger: Logger): RequestHandler {
  return async (req, res, next) => {
    try {
      await handler(req, res, next);
    } catch (error) {
      if (!res.headersSent) return next(error);
      logger.error('mcp http request failed after response started', { error });
      res.end();
    }
  };
}

function sendRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

function isLoopbackOrigin(origin: string): boolean {
  try {
    return isLoopback(new URL(origin).hostname);
  } catch {
    return false;
  }
}

function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: HttpServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Stops accepting, lets in-flight requests finish briefly, then drops what is left. */
function closeHttp(server: HttpServer): Promise<void> {
  return new Promise((resolve, reject) => {
    const force = setTimeout(() => server.closeAllConnections(), 2_000);
    force.unref();
    server.close((error) => {
      clearTimeout(force);
      if (error) reject(error);
      else resolve();
    });
    server.closeIdleConnections();
  });
}
