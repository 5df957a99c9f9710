import { z } from 'zod';
import { getSecretString, type SecretsClient } from '../config/secrets.js';
import { parseMarkets } from '../config/markets.js';
import { ConfigError } from '../domain/errors.js';
import { TimeframeSchema, formatIssues, type Timeframe } from '../domain/index.js';
import { RiskLimitsSchema, RunBudgetSchema, type MarketRef, type RiskLimits, type RunBudget } from './contracts.js';
import { clientCredentialsToken, fixedToken, type TokenSource } from './mcp-agent-tools.js';

/** Scopes an agent's token needs: reads, signals, the audit log and paper orders. */
export const AGENT_SCOPES = ['market:read', 'signals:write', 'agents:read', 'agents:write', 'paper:trade'] as const;

/** How an agent gets its bearer token. */
export type AgentAuth =
  | { readonly kind: 'token'; readonly token: string }
  | { readonly kind: 'secret'; readonly secretArn: string }
  | { readonly kind: 'client_credentials'; readonly tokenUrl: string; readonly clientId: string; readonly clientSecretArn: string; readonly scopes: readonly string[] };

/** The configuration every agent step runs with (Lambda environment, or the local runner). */
export interface AgentConfig {
  readonly mcpUrl: string;
  readonly auth: AgentAuth;
  readonly limits: RiskLimits;
  readonly budget: RunBudget;
  /** AGENT_MARKETS: only these markets; all held when undefined */
  readonly markets?: readonly MarketRef[];
  /** AGENT_TIMEFRAME: candles the analyst and its strategies use (default 1h) */
  readonly timeframe: Timeframe;
  /** AGENT_MAX_PARALLEL: analysts at once in the local flow (default 4) */
  readonly maxParallel: number;
}

const url = (name: string) => z.url({ error: `${name} must be an http(s) URL` }).refine((u) => /^https?:\/\//.test(u), `${name} must be an http(s) URL`);

/** A JSON variable parsed with `schema`; a ConfigError names the variable and the bad field. */
export function jsonSetting<T>(name: string, text: string | undefined, schema: z.ZodType<T>): T {
  let value: unknown = {};
  if (text !== undefined && text.trim() !== '') {
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new ConfigError(`${name} is not JSON: ${(error as Error).message}`, { cause: error });
    }
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`${name}: ${formatIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** `binance:BTC/USDT,ETH/USDT;okx:BTC/USDT` -> market refs. */
export function parseMarketFilter(spec: string): MarketRef[] {
  try {
    return [...parseMarkets(spec)].flatMap(([exchange, symbols]) => symbols.map((symbol) => ({ exchange, symbol })));
  } catch (error) {
    throw new ConfigError(`AGENT_MARKETS: ${(error as Error).message}`, { cause: error });
  }
}

/** Reads the agent settings from the environment; a ConfigError names the first bad variable. */
export function parseAgentConfig(env: Readonly<Record<string, string | undefined>>): AgentConfig {
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const mcpUrl = get('MCP_URL');
  if (!mcpUrl) throw new ConfigError('MCP_URL is not set: the agents reach the platform only through its MCP endpoint');
  const checked = url('MCP_URL').safeParse(mcpUrl);
  if (!checked.success) throw new ConfigError(`MCP_URL: ${formatIssues(checked.error.issues)}`);
  const timeframe = TimeframeSchema.safeParse(get('AGENT_TIMEFRAME') ?? '1h');
  if (!timeframe.success) throw new ConfigError(`AGENT_TIMEFRAME must be a ccxt timeframe (1m, 5m, 1h, ...), got '${get('AGENT_TIMEFRAME')}'`);
  const parallel = Number(get('AGENT_MAX_PARALLEL') ?? 4);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new ConfigError(`AGENT_MAX_PARALLEL must be a whole number 1-64, got '${get('AGENT_MAX_PARALLEL')}'`);
  const markets = get('AGENT_MARKETS');
  return {
    mcpUrl,
    auth: authOf(get),
    limits: jsonSetting('AGENT_RISK_LIMITS', get('AGENT_RISK_LIMITS'), RiskLimitsSchema),
    budget: jsonSetting('AGENT_BUDGET', get('AGENT_BUDGET'), RunBudgetSchema),
    ...(markets !== undefined && { markets: parseMarketFilter(markets) }),
    timeframe: timeframe.data,
    maxParallel: parallel,
  };
}

function authOf(get: (name: string) => string | undefined): AgentAuth {
  const secretArn = get('AGENT_TOKEN_SECRET_ARN');
  const tokenUrl = get('AGENT_TOKEN_URL');
  const token = get('AGENT_TOKEN');
  const chosen = [secretArn && 'AGENT_TOKEN_SECRET_ARN', tokenUrl && 'AGENT_TOKEN_URL', token && 'AGENT_TOKEN'].filter(Boolean);
  if (chosen.length > 1) throw new ConfigError(`set one way to get the agent token, not ${chosen.join(' and ')}`);
  if (secretArn) return { kind: 'secret', secretArn };
  if (token) return { kind: 'token', token };
  if (tokenUrl) {
    const ok = url('AGENT_TOKEN_URL').safeParse(tokenUrl);
    if (!ok.success) throw new ConfigError(`AGENT_TOKEN_URL: ${formatIssues(ok.error.issues)}`);
    const clientId = get('AGENT_CLIENT_ID');
    const clientSecretArn = get('AGENT_CLIENT_SECRET_ARN');
    if (!clientId || !clientSecretArn) throw new ConfigError('AGENT_TOKEN_URL needs AGENT_CLIENT_ID and AGENT_CLIENT_SECRET_ARN (OAuth client credentials)');
    const scopes = (get('AGENT_SCOPES') ?? AGENT_SCOPES.join(' ')).split(/\s+/).filter(Boolean);
    return { kind: 'client_credentials', tokenUrl, clientId, clientSecretArn, scopes };
  }
  throw new ConfigError('no agent token: set AGENT_TOKEN_SECRET_ARN (a secret holding a bearer token), or AGENT_TOKEN_URL + AGENT_CLIENT_ID + AGENT_CLIENT_SECRET_ARN (OAuth client credentials)');
}

/** The token source of `auth`; secrets are read through the cached Secrets Manager getter. */
export async function tokenSourceOf(auth: AgentAuth, options: { secretsClient?: SecretsClient; fetch?: typeof fetch } = {}): Promise<TokenSource> {
  const secrets = options.secretsClient ? { client: options.secretsClient } : {};
  switch (auth.kind) {
    case 'token':
      return fixedToken(auth.token);
    case 'secret':
      return fixedToken((await getSecretString(auth.secretArn, secrets)).trim());
    case 'client_credentials':
      return clientCredentialsToken({
        tokenUrl: auth.tokenUrl,
        clientId: auth.clientId,
        clientSecret: (await getSecretString(auth.clientSecretArn, secrets)).trim(),
        scopes: auth.scopes,
        ...(options.fetch && { fetch: options.fetch }),
      });
  }
}
