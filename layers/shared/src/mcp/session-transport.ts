import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import {
  WebStandardStreamableHTTPServerTransport,
  type WebStandardStreamableHTTPServerTransportOptions,
} from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import { LATEST_PROTOCOL_VERSION, type JSONRPCMessage, type MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js';
import { PlatformError } from '../domain/errors.js';

/** A session could not be continued on this task. */
export class SessionResumeError extends PlatformError {}

/**
 * The SDK's Streamable HTTP transport for Node (the same delegation as its StreamableHTTPServerTransport),
 * plus `resume`: a session opened on another server task continues on this one. Behind a load
 * balancer without stickiness (MCP clients rarely keep cookies) any task can then serve any session;
 * the tools keep no per-session state, so nothing is lost.
 */
export class SessionTransport implements Transport {
  private readonly web: WebStandardStreamableHTTPServerTransport;

  constructor(options: WebStandardStreamableHTTPServerTransportOptions) {
    this.web = new WebStandardStreamableHTTPServerTransport(options);
  }

  get sessionId(): string | undefined {
    return this.web.sessionId;
  }
  set onclose(handler: (() => void) | undefined) {
    this.web.onclose = handler;
  }
  get onclose(): (() => void) | undefined {
    return this.web.onclose;
  }
  set onerror(handler: ((error: Error) => void) | undefined) {
    this.web.onerror = handler;
  }
  get onerror(): ((error: Error) => void) | undefined {
    return this.web.onerror;
  }
  set onmessage(handler: (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined) {
    this.web.onmessage = handler;
  }
  get onmessage(): (<T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void) | undefined {
    return this.web.onmessage;
  }

  start(): Promise<void> {
    return this.web.start();
  }
  close(): Promise<void> {
    return this.web.close();
  }
  send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    return this.web.send(message, options);
  }

  /** Answers one HTTP request of this session; `authInfo` is the verified token, `parsedBody` a POST's JSON. */
  async handleRequest(req: IncomingMessage, res: ServerResponse, authInfo: AuthInfo, parsedBody?: unknown): Promise<void> {
    const listener = getRequestListener(
      (request) => this.web.handleRequest(request, { authInfo, parsedBody }),
      { overrideGlobalObjects: false },
    );
    await listener(req, res);
  }

  /**
   * Initializes this transport and its server for the session id it was created with, as the client
   * did on the task that opened the session (the client's capabilities are not known here: the
   * tools do not use them).
   */
  async resume(protocolVersion: string | undefined): Promise<void> {
    const initialize = {
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: protocolVersion ?? LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'resumed-session', version: '0' } },
    };
    const response = await this.web.handleRequest(
      new Request('http://session.resume/mcp', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify(initialize),
      }),
    );
    const body = await response.text();
    if (!response.ok || body.includes('"error"')) throw new SessionResumeError(`session could not be resumed (HTTP ${response.status})`);
  }
}

/**
 * Session ids that carry proof of their owner: `<uuid>.<hmac(owner, uuid)>`. Any task holding the
 * same secret can check that a session id it has never seen was issued to the caller's principal.
 */
export class SessionIds {
  constructor(
    private readonly secret: Uint8Array,
    /** a session older than this is not continued elsewhere; default 24 h */
    private readonly maxAgeMs = 24 * 3600_000,
    private readonly now: () => number = Date.now,
  ) {}

  mint(owner: string): string {
    const id = `${randomUUID()}.${this.now().toString(36)}`;
    return `${id}.${this.mac(owner, id)}`;
  }

  /** true when `sessionId` was minted for `owner` with this secret, less than maxAgeMs ago */
  ownedBy(sessionId: string, owner: string): boolean {
    const dot = sessionId.lastIndexOf('.');
    if (dot <= 0) return false;
    const id = sessionId.slice(0, dot);
    const given = Buffer.from(sessionId.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.mac(owner, id), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false;
    const issued = Number.parseInt(id.slice(id.indexOf('.') + 1), 36);
    return Number.isFinite(issued) && this.now() - issued < this.maxAgeMs;
  }

  private mac(owner: string, id: string): string {
    return createHmac('sha256', this.secret).update(`${owner}\n${id}`).digest('base64url');
  }
}
