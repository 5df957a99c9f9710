import { randomBytes } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { metadataHandler } from '@modelcontextprotocol/sdk/server/auth/handlers/metadata.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { rateLimit } from 'express-rate-limit';
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

/** Starts the MCP Streamable HTTP endpoint at `/mcp` behind bearer auth, one server+transport per session. */
export async function startMcpHttpServer(options: McpHttpOptions): Promise<McpHttpServer> {
  const host = options.host ?? '127.0.0.1';
  const logger = options.logger ?? createLogger({ fields: { component: 'mcp-http' } });
  const maxSessions = options.maxSessions ?? 1000;
  const idleMs = options.sessionIdleMs ?? 30 * 60_000;
  const sessions = new Map<string, Session>();

  // Host-header validation, then express.json() (body-parser default limit: 100kb).
  const app = createMcpExpressApp({ host, ...(options.allowedHosts && { allowedHosts: [...options.allowedHosts] }) });
  app.disable('x-powered-by');

  const metrics = options.metrics;
  if (metrics) {
    app.use((_req, res, next) => {
      res.once('finish', () => metrics.httpResponse(res.statusCode));
      next();
    });
  }

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', sessions: sessions.size });
  });
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

  const bearer = (): RequestHandler =>
    requireBearerAuth({
      verifier: options.verifier,
      ...(options.requiredScopes && { requiredScopes: [...options.requiredScopes] }),
      ...(resourceMetadataUrl && { resourceMetadataUrl }),
    });
  let bearerAuth: RequestHandler | undefined;
  const auth: RequestHandler = (req, res, next) => (bearerAuth ??= bearer())(req, res, next);

  // Browsers send Origin; a page on another site must not drive a user's local or hosted server.
  const loopbackServer = isLoopback(host);
  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  const checkOrigin: RequestHandler = (req, res, next) => {
    const origin = req.header('origin');
    if (origin === undefined || allowedOrigins.has(origin) || (loopbackServer && isLoopbackOrigin(origin))) return next();
    rpcError(res, 403, -32000, 'Forbidden: this Origin may not call the MCP endpoint');
  };

  const perPrincipal = rateLimit({
    windowMs: options.rateLimit?.windowMs ?? 60_000,
    limit: options.rateLimit?.limit ?? 1_200,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    keyGenerator: (req) => ownerOf(req.auth),
    // its start-up checks are about keying by client IP (proxies, X-Forwarded-For); this keys by token
    validate: false,
    handler: (_req, res) => rpcError(res, 429, -32000, 'Too many requests for this token; retry after the time in the RateLimit header'),
  });

  // Per-tool scopes: 403 insufficient_scope naming what is missing, as OAuth 2.0 (RFC 6750) asks.
  const enforceToolScopes = options.toolScopes ?? true;
  const checkToolScopes: RequestHandler = (req, res, next) => {
    if (!enforceToolScopes) return next();
    const granted = req.auth?.scopes ?? [];
    const missing = new Set<string>();
    for (const message of Array.isArray(req.body) ? req.body : [req.body]) {
      const { method, params } = (message ?? {}) as { method?: unknown; params?: { name?: unknown } };
      if (method === 'tools/call' && typeof params?.name === 'string') {
        for (const scope of missingToolScopes(params.name, granted)) missing.add(scope);
      }
      // market resources are the same data as the read tools
      if (typeof method === 'string' && method.startsWith('resources/') && !hasScope(granted, SCOPES.marketRead)) missing.add(SCOPES.marketRead);
    }
    if (missing.size === 0) return next();
    const scope = [...missing].join(' ');
    const description = `this token lacks the scope ${scope}`;
    res.set(
      'WWW-Authenticate',
      `Bearer error="insufficient_scope", error_description="${description}", scope="${scope}"` +
        (resourceMetadataUrl ? `, resource_metadata="${resourceMetadataUrl}"` : ''),
    );
    res.status(403).json({ error: 'insufficient_scope', error_description: description });
  };

  const sessionIds = new SessionIds(options.sessionSecret ?? new Uint8Array(randomBytes(32)));
  // Sessions a client ended with DELETE are not continued here again (other tasks do not know of it:
  // a client that ended a session does not reuse its id). Bounded: oldest forgotten first.
  const terminated = new BoundedSet(10_000);

  /** A new server and transport; `sessionId` continues an existing session instead of minting one. */
  const openSession = async (auth: AuthInfo | undefined, sessionId?: string): Promise<{ server: McpServer; transport: SessionTransport }> => {
    const owner = ownerOf(auth);
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
  const sessionOf = async (req: Request, res: Response): Promise<Session | undefined> => {
    const id = req.header('mcp-session-id');
    if (!id) {
      rpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required; send initialize first');
      return undefined;
    }
    const owner = ownerOf(req.auth);
    let session = sessions.get(id);
    if (!session && !terminated.has(id) && sessionIds.ownedBy(id, owner)) {
      if (sessions.size >= maxSessions) {
        rpcError(res, 503, -32000, 'Too many open sessions; retry later');
        return undefined;
      }
      const { server, transport } = await openSession(req.auth, id);
      try {
        await transport.resume(req.header('mcp-protocol-version'));
      } catch (error) {
        logger.warn('mcp session could not be resumed', { error });
        await server.close();
      }
      session = sessions.get(id);
      if (session) logger.info('mcp session resumed on this task');
    }
    // Another principal's session answers exactly like an unknown one: nothing to probe.
    if (!session || session.owner !== owner) {
      rpcError(res, 404, -32001, 'Session not found; start a new session with initialize');
      return undefined;
    }
    session.lastSeen = Date.now();
    return session;
  };

  const handlePost: RequestHandler = async (req, res) => {
    if (req.header('mcp-session-id') !== undefined) {
      const session = await sessionOf(req, res);
      if (session) await session.transport.handleRequest(req, res, req.body);
      return;
    }
    if (!isInitializeRequest(req.body)) {
      rpcError(res, 400, -32000, 'Bad Request: no session; the first request must be initialize');
      return;
    }
    if (sessions.size >= maxSessions) {
      rpcError(res, 503, -32000, 'Too many open sessions; retry later');
      return;
    }
    const { server, transport } = await openSession(req.auth);
    await transport.handleRequest(req, res, req.body);
    // An initialize the transport refused opened no session: drop its server now.
    if (transport.sessionId === undefined) await server.close();
  };

  const handleSessionRequest: RequestHandler = async (req, res) => {
    const session = await sessionOf(req, res);
    if (!session) return;
    if (req.method === 'DELETE') terminated.add(req.header('mcp-session-id')!);
    await session.transport.handleRequest(req, res);
  };

  app.post(MCP_PATH, checkOrigin, auth, perPrincipal, checkToolScopes, guarded(handlePost, logger));
  app.get(MCP_PATH, checkOrigin, auth, perPrincipal, guarded(handleSessionRequest, logger));
  app.delete(MCP_PATH, checkOrigin, auth, perPrincipal, guarded(handleSessionRequest, logger));
  app.all(MCP_PATH, (_req, res) => {
    res.set('Allow', 'GET, POST, DELETE');
    rpcError(res, 405, -32000, 'Method not allowed');
  });
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  // Last: body-parser failures (too large, bad JSON) and anything thrown, as JSON without stack traces.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const { status, type } = httpErrorOf(error);
    if (status >= 500) logger.error('mcp http request failed', { error });
    if (res.headersSent) return void res.end();
    if (status === 413) rpcError(res, 413, -32000, 'Request body too large');
    else if (type === 'entity.parse.failed') rpcError(res, 400, -32700, 'Parse error: body is not valid JSON');
    else if (status >= 500) rpcError(res, 500, -32603, 'Internal server error');
    else rpcError(res, status, -32600, 'Bad request');
  });

  const sweep = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const session of sessions.values()) {
      if (session.lastSeen < cutoff) void session.server.close().catch((error) => logger.warn('closing idle session failed', { error }));
    }
  }, Math.min(idleMs, 60_000));
  sweep.unref();

  const httpServer = createServer(app);
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
      // server.close() closes its transport, whose onclose removes the session.
      await Promise.allSettled([...sessions.values()].map((s) => s.server.close()));
      sessions.clear();
      await closeHttp(httpServer);
    },
  };
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
function ownerOf(auth: AuthInfo | undefined): string {
  return JSON.stringify([auth?.clientId ?? null, auth?.extra?.['subject'] ?? null]);
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

function rpcError(res: Response, status: number, code: number, message: string): void {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

/** Status and body-parser `type` of an error passed to express, 500 when it names none. */
function httpErrorOf(error: unknown): { status: number; type: unknown } {
  const { status, type } = (error ?? {}) as { status?: unknown; type?: unknown };
  return { status: typeof status === 'number' && status >= 400 && status < 600 ? status : 500, type };
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
