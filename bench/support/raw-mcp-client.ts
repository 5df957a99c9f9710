/**
 * A minimal MCP client for load generation: JSON-RPC over Streamable HTTP on one keep-alive
 * connection, with a bearer token and its own session (initialize, then notifications/initialized),
 * answers read from the SSE or JSON response. It checks the JSON-RPC envelope and isError, and
 * nothing else: the SDK's Client also parses SSE through web streams and validates every
 * structuredContent against the tool's JSON schema, which on a 2-core machine takes about a core
 * of the CPU the server under test would use. What it measures is the server's latency.
 */
import { Agent, request } from 'node:http';

interface RpcAnswer {
  readonly result?: { readonly isError?: boolean; readonly [key: string]: unknown };
  readonly error?: { readonly code: number; readonly message: string };
}

export class RawMcpClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private sessionId: string | undefined;
  private nextId = 1;

  private constructor(
    private readonly url: URL,
    private readonly token: string,
  ) {}

  static async connect(url: string, token: string): Promise<RawMcpClient> {
    const client = new RawMcpClient(new URL(url), token);
    await client.rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench-raw', version: '0' } });
    await client.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    return client;
  }

  ping(): Promise<unknown> {
    return this.rpc('ping', {});
  }

  async callTool(params: { name: string; arguments: Record<string, unknown> }): Promise<{ isError?: boolean }> {
    return (await this.rpc('tools/call', params)) as { isError?: boolean };
  }

  close(): void {
    this.agent.destroy();
  }

  private async rpc(method: string, params: unknown): Promise<RpcAnswer['result']> {
    const id = this.nextId++;
    const { body, contentType } = await this.post({ jsonrpc: '2.0', id, method, params });
    // SSE: the answer is the data of the one `message` event
    const json = contentType.startsWith('text/event-stream') ? body.slice(body.indexOf('data: ') + 6, body.lastIndexOf('\n\n')) : body;
    const answer = JSON.parse(json) as RpcAnswer;
    if (answer.error) throw new Error(`${method} failed: ${answer.error.code} ${answer.error.message}`);
    return answer.result;
  }

  private post(message: unknown): Promise<{ body: string; contentType: string }> {
    const payload = JSON.stringify(message);
    return new Promise((resolve, reject) => {
      const req = request(
        this.url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            authorization: `Bearer ${this.token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'content-length': Buffer.byteLength(payload),
            'mcp-protocol-version': '2025-06-18',
            ...(this.sessionId && { 'mcp-session-id': this.sessionId }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 0) >= 400) return reject(new Error(`HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
            const session = res.headers['mcp-session-id'];
            if (typeof session === 'string') this.sessionId = session;
            resolve({ body, contentType: String(res.headers['content-type'] ?? '') });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}
