import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { PlatformError } from '../domain/errors.js';
import type { AgentToolInfo, AgentToolResult, AgentTools } from './contracts.js';

/**
 * The MCP tools as an agent sees them, over the SDK's Client: streamable HTTP with a bearer token
 * (a deployment), or an in-memory transport linked to a server (tests, the embedded bench).
 */

/** The MCP server could not be reached or broke the protocol: not a tool's answer, so it is thrown. */
export class McpTransportError extends PlatformError {}

/** The token endpoint refused or could not be reached; never carries the client secret. */
export class TokenRequestError extends PlatformError {}

/** Where the bearer token comes from; `token()` is asked before every request. */
export interface TokenSource {
  token(): Promise<string>;
}

/** A token that never changes (a dev token, or one read from Secrets Manager). */
export function fixedToken(token: string): TokenSource {
  return { token: async () => token };
}

export interface ClientCredentialsOptions {
  /** OAuth2 token endpoint, e.g. https://<domain>.auth.<region>.amazoncognito.com/oauth2/token */
  readonly tokenUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes?: readonly string[];
  /** renew this long before the token expires (ms); default 60 s */
  readonly refreshMarginMs?: number;
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
}

/** OAuth2 client credentials (Cognito's machine-to-machine flow), the token cached until shortly before it expires. */
export function clientCredentialsToken(options: ClientCredentialsOptions): TokenSource {
  const now = options.now ?? Date.now;
  const doFetch = options.fetch ?? fetch;
  const margin = options.refreshMarginMs ?? 60_000;
  let cached: { token: string; expires: number } | null = null;
  let pending: Promise<string> | null = null;
  const request = async (): Promise<string> => {
    const body = new URLSearchParams({ grant_type: 'client_credentials' });
    if (options.scopes?.length) body.set('scope', options.scopes.join(' '));
    const basic = Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`).toString('base64');
    let response: Response;
    try {
      response = await doFetch(options.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
        body,
      });
    } catch (error) {
      throw new TokenRequestError(`token endpoint ${options.tokenUrl} unreachable: ${(error as Error).message}`, { cause: error });
    }
    const json = (await response.json().catch(() => null)) as { access_token?: unknown; expires_in?: unknown; error?: unknown } | null;
    if (!response.ok || typeof json?.access_token !== 'string') {
      // the endpoint's error code only: the body could echo what was sent
      const code = typeof json?.error === 'string' ? json.error.slice(0, 64) : 'no access_token';
      throw new TokenRequestError(`token endpoint ${options.tokenUrl} answered ${response.status} (${code}) for client ${options.clientId}`);
    }
    const lifetimeS = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 3600;
    cached = { token: json.access_token, expires: now() + lifetimeS * 1000 };
    return json.access_token;
  };
  return {
    token: async () => {
      if (cached && cached.expires - margin > now()) return cached.token;
      // concurrent callers share one request
      pending ??= request().finally(() => {
        pending = null;
      });
      return pending;
    },
  };
}

class SdkAgentTools implements AgentTools {
  constructor(
    private readonly client: Client,
    private readonly onClose: () => Promise<void> = async () => undefined,
    /** run onClose before closing the client (an HTTP session is ended while the transport is open) */
    private readonly closeFirst = false,
  ) {}

  async list(): Promise<readonly AgentToolInfo[]> {
    const out: AgentToolInfo[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.guard('tools/list', () => this.client.listTools(cursor === undefined ? {} : { cursor }));
      for (const t of page.tools) out.push({ name: t.name, description: t.description ?? '', inputSchema: t.inputSchema as Record<string, unknown> });
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  }

  async call(name: string, args: Readonly<Record<string, unknown>>): Promise<AgentToolResult> {
    let result: Awaited<ReturnType<Client['callTool']>>;
    try {
      result = await this.client.callTool({ name, arguments: { ...args } });
    } catch (error) {
      // an unknown tool or arguments the server refuses come back as JSON-RPC errors: the agent can
      // recover from those like from a tool error; a broken connection it cannot
      const code = (error as { code?: unknown }).code;
      if (typeof code === 'number' && (code === -32602 || code === -32601)) {
        return { isError: true, text: (error as Error).message };
      }
      throw new McpTransportError(`MCP call ${name} failed: ${(error as Error).message}`, { cause: error });
    }
    const content = Array.isArray(result.content) ? (result.content as { type: string; text?: string }[]) : [];
    const text = content.flatMap((c) => (c.type === 'text' && typeof c.text === 'string' ? [c.text] : [])).join('\n');
    if (result.isError === true) return { isError: true, text };
    return { isError: false, structured: result.structuredContent, text };
  }

  async close(): Promise<void> {
    if (this.closeFirst) await this.onClose();
    await this.client.close().catch(() => undefined);
    if (!this.closeFirst) await this.onClose();
  }

  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw new McpTransportError(`MCP ${what} failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

export interface HttpAgentToolsOptions {
  /** the MCP endpoint, e.g. https://mcp.example.com/mcp */
  readonly url: string;
  readonly token: TokenSource;
  /** client name the server sees in initialize */
  readonly name?: string;
}

/**
 * The fetch an agent's MCP transport uses: the bearer token asked of `token` on every request, and
 * an AbortSignal per request. The transport hands every request the same signal, and undici leaves
 * a listener on it per request until GC: thousands on a busy agent (MaxListenersExceededWarning).
 * AbortSignal.any gives each request a signal that follows the transport's without a listener on it.
 */
export function agentFetch(token: TokenSource): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${await token.token()}`);
    return fetch(input, { ...init, headers, ...(init?.signal && { signal: AbortSignal.any([init.signal]) }) });
  };
}

/** Connects to an MCP server over streamable HTTP; the bearer token is asked of `token` on every request. */
export async function connectHttpAgentTools(options: HttpAgentToolsOptions): Promise<AgentTools> {
  const client = new Client({ name: options.name ?? 'qicore-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(options.url), { fetch: agentFetch(options.token) });
  try {
    await client.connect(transport);
  } catch (error) {
    if (error instanceof TokenRequestError || (error as Error).cause instanceof TokenRequestError) throw error;
    throw new McpTransportError(`cannot connect to MCP server ${options.url}: ${(error as Error).message}`, { cause: error });
  }
  // ending the session frees it on the server at once rather than at its idle timeout
  return new SdkAgentTools(client, async () => void (await transport.terminateSession().catch(() => undefined)), true);
}

/** Connects to `server` in memory (same process): the SDK's whole client path without a socket. */
export async function connectInMemoryAgentTools(server: McpServer, name = 'qicore-agent'): Promise<AgentTools> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(clientSide);
  return new SdkAgentTools(client, () => server.close());
}
