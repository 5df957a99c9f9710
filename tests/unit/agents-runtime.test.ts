/** The agent runtime's configuration, token sources and audit input bounds. */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAgentConfig, tokenSourceOf } from '../../layers/shared/src/agents/agent-config.js';
import { newRunId, summarizeRun } from '../../layers/shared/src/agents/agent-steps.js';
import { clientCredentialsToken, TokenRequestError } from '../../layers/shared/src/agents/mcp-agent-tools.js';
import { boundedInputs } from '../../layers/shared/src/agents/run-context.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { parseDuration, parseLocalOptions } from '../../local/cli-options.js';

const BASE = { MCP_URL: 'https://mcp.example.com/mcp', AGENT_TOKEN_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:1:secret:agent' };

describe('agent configuration', () => {
  it('reads the defaults, limits and budget from the environment', () => {
    const c = parseAgentConfig({
      ...BASE,
      AGENT_RISK_LIMITS: '{"maxPositionNotional": 500, "backtestDays": 3}',
      AGENT_BUDGET: '{"maxToolCalls": 40}',
      AGENT_MARKETS: 'binance:BTC/USDT,ETH/USDT;okx:SOL/USDT',
      AGENT_TIMEFRAME: '15m',
    });
    expect(c.auth).toEqual({ kind: 'secret', secretArn: BASE.AGENT_TOKEN_SECRET_ARN });
    expect(c.limits).toMatchObject({ maxPositionNotional: 500, backtestDays: 3, maxDailyNotional: 10_000, account: 'default' });
    expect(c.budget).toEqual({ maxToolCalls: 40, maxModelTokens: 50_000, maxWallMs: 120_000 });
    expect(c.markets).toEqual([
      { exchange: 'binance', symbol: 'BTC/USDT' },
      { exchange: 'binance', symbol: 'ETH/USDT' },
      { exchange: 'okx', symbol: 'SOL/USDT' },
    ]);
    expect(c.timeframe).toBe('15m');
    expect(c.maxParallel).toBe(4);
  });

  it('takes OAuth client credentials with the agent scopes by default', () => {
    const c = parseAgentConfig({
      MCP_URL: BASE.MCP_URL,
      AGENT_TOKEN_URL: 'https://auth.example.com/oauth2/token',
      AGENT_CLIENT_ID: 'agents',
      AGENT_CLIENT_SECRET_ARN: 'arn:secret',
    });
    expect(c.auth).toEqual({
      kind: 'client_credentials',
      tokenUrl: 'https://auth.example.com/oauth2/token',
      clientId: 'agents',
      clientSecretArn: 'arn:secret',
      scopes: ['market:read', 'signals:write', 'agents:read', 'agents:write', 'paper:trade'],
    });
  });

  it.each([
    [{ AGENT_TOKEN_SECRET_ARN: 'x' }, /MCP_URL is not set/],
    [{ ...BASE, MCP_URL: 'ftp://x' }, /MCP_URL/],
    [{ MCP_URL: BASE.MCP_URL }, /no agent token/],
    [{ ...BASE, AGENT_TOKEN: 'abc' }, /not AGENT_TOKEN_SECRET_ARN and AGENT_TOKEN/],
    [{ MCP_URL: BASE.MCP_URL, AGENT_TOKEN_URL: 'https://a/token' }, /AGENT_CLIENT_ID and AGENT_CLIENT_SECRET_ARN/],
    [{ ...BASE, AGENT_RISK_LIMITS: '{"maxConcentration": 2}' }, /AGENT_RISK_LIMITS: maxConcentration/],
    [{ ...BASE, AGENT_RISK_LIMITS: '{"typo": 1}' }, /AGENT_RISK_LIMITS/],
    [{ ...BASE, AGENT_BUDGET: 'not json' }, /AGENT_BUDGET is not JSON/],
    [{ ...BASE, AGENT_MARKETS: 'binance' }, /AGENT_MARKETS/],
    [{ ...BASE, AGENT_TIMEFRAME: '7m' }, /AGENT_TIMEFRAME/],
    [{ ...BASE, AGENT_MAX_PARALLEL: '0' }, /AGENT_MAX_PARALLEL/],
  ])('refuses %o with a ConfigError naming the variable', (env, message) => {
    expect(() => parseAgentConfig(env)).toThrow(ConfigError);
    expect(() => parseAgentConfig(env)).toThrow(message);
  });

  it('reads the bearer token from its secret', async () => {
    const client = { send: async () => ({ SecretString: '  tok-123\n' }) };
    const source = await tokenSourceOf({ kind: 'secret', secretArn: 'arn:agent-token-test' }, { secretsClient: client });
    expect(await source.token()).toBe('tok-123');
  });
});

describe('OAuth client credentials token', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    server = undefined;
  });

  async function tokenEndpoint(answer: (req: IncomingMessage, body: string, n: number) => { status: number; json: unknown }): Promise<{ url: string; requests: () => number }> {
    let n = 0;
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        n += 1;
        const a = answer(req, body, n);
        res.writeHead(a.status, { 'content-type': 'application/json' }).end(JSON.stringify(a.json));
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/oauth2/token`, requests: () => n };
  }

  it('asks the endpoint once and reuses the token until shortly before it expires', async () => {
    let seen: { auth?: string | undefined; body?: string } = {};
    const endpoint = await tokenEndpoint((req, body, n) => {
      seen = { auth: req.headers.authorization, body };
      return { status: 200, json: { access_token: `t${n}`, expires_in: 3600, token_type: 'Bearer' } };
    });
    let now = 1_000_000;
    const source = clientCredentialsToken({ tokenUrl: endpoint.url, clientId: 'agents', clientSecret: 's3cret', scopes: ['market:read', 'paper:trade'], now: () => now });
    expect(await Promise.all([source.token(), source.token()])).toEqual(['t1', 't1']);
    expect(endpoint.requests()).toBe(1);
    expect(seen.auth).toBe(`Basic ${Buffer.from('agents:s3cret').toString('base64')}`);
    expect(new URLSearchParams(seen.body)).toEqual(new URLSearchParams({ grant_type: 'client_credentials', scope: 'market:read paper:trade' }));
    now += 3_600_000 - 120_000;
    expect(await source.token()).toBe('t1');
    now += 90_000; // within the 60 s refresh margin
    expect(await source.token()).toBe('t2');
    expect(endpoint.requests()).toBe(2);
  });

  it('throws a TokenRequestError with the error code, never the secret', async () => {
    const endpoint = await tokenEndpoint(() => ({ status: 400, json: { error: 'invalid_client' } }));
    const source = clientCredentialsToken({ tokenUrl: endpoint.url, clientId: 'agents', clientSecret: 'do-not-leak' });
    const error = await source.token().catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(TokenRequestError);
    expect((error as Error).message).toContain('400 (invalid_client)');
    expect((error as Error).message).not.toContain('do-not-leak');
  });
});

describe('audit inputs', () => {
  it('keeps small results whole and cuts big ones to a prefix within the entry bounds', () => {
    const big = { candles: Array.from({ length: 500 }, (_, i) => ({ ts: i, close: 100 + i })) };
    const small = { killSwitch: { engaged: false } };
    const [a, b] = boundedInputs(
      [
        { tool: 'get_candles', args: { limit: 500 }, isError: false, result: big, ms: 3 },
        { tool: 'get_agent_controls', args: {}, isError: false, result: small, ms: 1 },
      ],
      4_000,
    );
    expect(a!.result).toMatchObject({ truncated: true, chars: JSON.stringify(big).length });
    expect((a!.result as { head: string }).head).toHaveLength(4_000);
    expect(b!.result).toEqual(small);
  });

  it('stays under the server element cap however many mid-size results there are', () => {
    const mid = Array.from({ length: 60 }, (_, i) => i);
    const calls = Array.from({ length: 100 }, () => ({ tool: 't', args: { a: 1 }, isError: false, result: mid, ms: 1 }));
    const out = boundedInputs(calls, 4_000);
    const count = (v: unknown): number => 1 + (Array.isArray(v) ? v.reduce((n: number, x) => n + count(x), 0) : v && typeof v === 'object' ? Object.values(v).reduce((n: number, x) => n + count(x), 0) : 0);
    expect(count(out)).toBeLessThan(4096);
    expect(out[0]!.result).toEqual(mid);
    expect(out[99]!.result).toMatchObject({ truncated: true });
  });
});

describe('run ids and summaries', () => {
  it('makes sortable, distinct run ids', () => {
    const a = newRunId(Date.UTC(2026, 10, 24, 11, 30, 5));
    expect(a).toMatch(/^run-20261124T113005Z-[0-9a-f]{8}$/);
    expect(newRunId(Date.UTC(2026, 10, 24, 11, 30, 5))).not.toBe(a);
  });

  it('counts verdicts and fills', () => {
    const s = summarizeRun('r', 'completed', { observations: 3, decisions: [], executions: [] }, 'done');
    expect(s).toEqual({ runId: 'r', status: 'completed', observations: 3, proposals: 0, decisions: { approve: 0, resize: 0, reject: 0 }, executions: 0, detail: 'done' });
  });
});

describe('local runner flags', () => {
  it('runs no agents by default, every 5 minutes on 1m candles when asked', () => {
    expect(parseLocalOptions([], {})).toMatchObject({ agents: false, agentsEveryMs: 300_000, agentsTimeframe: '1m' });
    expect(parseLocalOptions(['--agents', '--agents-every', '30s', '--agents-timeframe', '5m'], {})).toMatchObject({ agents: true, agentsEveryMs: 30_000, agentsTimeframe: '5m' });
    expect(parseLocalOptions([], { AGENTS: 'true', AGENTS_EVERY: '1h', AGENT_TIMEFRAME: '15m' })).toMatchObject({ agents: true, agentsEveryMs: 3_600_000, agentsTimeframe: '15m' });
  });

  it('refuses bad durations, timeframes, and agents without HTTP', () => {
    expect([parseDuration('--agents-every', '90'), parseDuration('--agents-every', '1.5m'), parseDuration('--agents-every', '2500ms')]).toEqual([90_000, 90_000, 2_500]);
    expect(() => parseDuration('--agents-every', '5 minutes')).toThrow(/--agents-every must be a duration/);
    expect(() => parseDuration('--agents-every', '100ms')).toThrow(ConfigError);
    expect(() => parseLocalOptions(['--agents', '--agents-timeframe', '7m'], {})).toThrow(/--agents-timeframe/);
    expect(() => parseLocalOptions(['--agents', '--stdio'], {})).toThrow(/--agents needs the MCP server on HTTP/);
  });
});
