import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InProcessMemory } from '../../layers/shared/src/adapters/memory/in-process-memory.js';
import { PostgresAgentStore } from '../../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { InProcessUpdates } from '../../layers/shared/src/adapters/updates/in-process-updates.js';
import { McpServerEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { ALL_SCOPES } from '../../layers/shared/src/mcp/scopes.js';
import { buildServer, type McpDeps } from '../../layers/shared/src/mcp/server.js';
import { parseToolsets, TOOLSETS, type ToolsetName } from '../../layers/shared/src/mcp/toolsets.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';

const ISSUER = 'qicore-toolsets';
const AUDIENCE = 'mcp';
const MARKET = [...TOOLSETS.market].sort();

/**
 * What one session is offered: the tools of the deployment's toolsets whose scopes its token
 * holds, prompts written over exactly those tools, and resources only with market:read.
 */
describe('toolsets, scopes and prompts per session', () => {
  let database: TestDatabase;
  let memory: InProcessMemory;
  let updates: InProcessUpdates;
  let deps: McpDeps;
  let secret: Uint8Array;
  const servers: McpHttpServer[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    const store = new PostgresMarketStore(database.db);
    memory = new InProcessMemory({ sweepIntervalMs: 0 });
    updates = new InProcessUpdates({ logger: silentLogger });
    deps = {
      query: new MarketQueryService(store, systemClock),
      ledger: new PostgresLedgerStore(database.db),
      signals: new SignalService({ writer: store, reader: new PostgresSignalReader(database.db), clock: systemClock, logger: silentLogger }),
      memory,
      agents: { store: new PostgresAgentStore(database.db) },
      updates,
      version: 'toolsets',
      logger: silentLogger,
    };
    secret = new Uint8Array(randomBytes(32));
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) await c.close();
    for (const s of servers) await s.close();
    await memory?.close();
    await updates?.close();
    await database?.dispose();
  });

  async function connect(scopes: string[], toolsets?: readonly ToolsetName[]): Promise<Client> {
    const http = await startMcpHttpServer({
      buildServer: (caller) => buildServer({ ...deps, ...(toolsets && { toolsets }) }, caller),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: ISSUER, audience: AUDIENCE }),
      logger: silentLogger,
    });
    servers.push(http);
    const token = await issueDevToken(secret, { subject: `agent-${scopes.join('+') || 'none'}`, scopes, issuer: ISSUER, audience: AUDIENCE });
    const client = new Client({ name: 'toolsets', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    clients.push(client);
    return client;
  }

  const toolNames = async (client: Client) => (await client.listTools()).tools.map((t) => t.name).sort();

  it('offers every tool to a token with every scope, each described', async () => {
    const client = await connect([...ALL_SCOPES]);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(Object.values(TOOLSETS).flat().sort());
    for (const tool of tools) {
      expect(tool.description?.length, tool.name).toBeGreaterThan(40);
      expect(tool.annotations?.title, tool.name).toBeTruthy();
    }
  });

  it('hides the tools whose scopes a token lacks', async () => {
    const reader = await connect(['market:read']);
    const names = await toolNames(reader);
    expect(names).toEqual([...MARKET, ...TOOLSETS.analysis, 'get_signals'].sort());
    expect(names).not.toContain('publish_signal');

    const recaller = await connect(['market:read', 'memory:read']);
    expect(await toolNames(recaller)).toContain('recall');
    expect(await toolNames(recaller)).not.toContain('remember');

    // the agent toolset: one scope per tool, admin and trading apart from reading
    expect(await toolNames(await connect(['agents:read']))).toEqual(['get_agent_controls', 'get_audit_log', 'get_paper_portfolio']);
    expect(await toolNames(await connect(['agents:write', 'paper:trade']))).toEqual(['place_paper_order', 'record_decision']);
    expect(await toolNames(await connect(['agents:admin']))).toEqual(['set_kill_switch']);
  });

  it('offers only the toolsets the operator enabled, whatever the token holds', async () => {
    const client = await connect([...ALL_SCOPES], ['market', 'memory']);
    expect(await toolNames(client)).toEqual([...MARKET, ...TOOLSETS.memory].sort());
    const agentsOnly = await connect([...ALL_SCOPES], ['agents']);
    expect(await toolNames(agentsOnly)).toEqual([...TOOLSETS.agents].sort());
  });

  it('writes prompts over the tools the session has, and no other', async () => {
    const full = await connect(['market:read', 'signals:write', 'memory:read', 'memory:write']);
    expect((await full.listPrompts()).prompts.map((p) => p.name).sort()).toEqual(['market_analysis', 'risk_review']);
    const analysis = await full.getPrompt({ name: 'market_analysis', arguments: { symbol: 'BTC/USDT', timeframe: '4h' } });
    const text = (analysis.messages[0]!.content as { text: string }).text;
    expect(text).toContain('timeframe 4h');
    for (const tool of ['get_data_health', 'get_candles', 'compute_indicators', 'detect_patterns', 'publish_signal']) expect(text).toContain(tool);

    const readOnly = await connect(['market:read'], ['market']);
    const plain = (await readOnly.getPrompt({ name: 'market_analysis', arguments: { symbol: 'BTC/USDT' } })).messages[0]!.content as { text: string };
    expect(plain.text).toContain('timeframe 1h');
    for (const tool of ['detect_patterns', 'publish_signal', 'get_signals', 'render_chart']) expect(plain.text).not.toContain(tool);

    const risk = await full.getPrompt({ name: 'risk_review', arguments: { symbol: 'ETH/USDT', direction: 'short', notional: '2500', exchange: 'okx' } });
    const riskText = (risk.messages[0]!.content as { text: string }).text;
    expect(riskText).toContain('short position of 2500');
    expect(riskText).toContain('get_order_book for ETH/USDT on okx');
    expect(riskText).toContain('remember');
    await expect(full.getPrompt({ name: 'risk_review', arguments: { symbol: 'ETH/USDT', direction: 'sideways' } })).rejects.toThrow(/direction/);
  });

  it('refuses resources to a token without market:read', async () => {
    const reader = await connect(['market:read']);
    expect((await reader.listResourceTemplates()).resourceTemplates.length).toBeGreaterThan(0);
    const memoryOnly = await connect(['memory:read']);
    expect(await toolNames(memoryOnly)).toEqual(['recall']);
    await expect(memoryOnly.listResourceTemplates()).rejects.toThrow(/403|insufficient_scope/);
  });

  it('reads the toolsets from MCP_TOOLSETS and names an unknown one', () => {
    expect(parseToolsets(undefined)).toEqual(Object.keys(TOOLSETS));
    expect(parseToolsets('all')).toEqual(Object.keys(TOOLSETS));
    expect(parseToolsets(' market , signals,market')).toEqual(['market', 'signals']);
    expect(() => parseToolsets('market,trading')).toThrow(ConfigError);
    expect(() => parseToolsets('market,trading')).toThrow(/unknown toolset trading; known: all, market, analysis, signals, memory, agents/);
    const base = { DATABASE_URL: 'postgres://x/y', JWT_ISSUER: 'i', JWT_AUDIENCE: 'a', JWT_HS256_SECRET: 'x'.repeat(32) };
    expect(parseEnv(McpServerEnvSchema, { ...base, MCP_TOOLSETS: 'market,analysis' }).MCP_TOOLSETS).toEqual(['market', 'analysis']);
    expect(() => parseEnv(McpServerEnvSchema, { ...base, MCP_TOOLSETS: 'nope' })).toThrow(/MCP_TOOLSETS: unknown toolset nope/);
  });
});
