// `npm start`: the whole platform on one laptop, embedded, no cloud and no Docker.
import { AGENT_SCOPES, jsonSetting, parseMarketFilter } from '../layers/shared/src/agents/agent-config.js';
import { runAgentCycle, type AgentCycleResult } from '../layers/shared/src/agents/agent-flow.js';
import { RiskLimitsSchema, RunBudgetSchema } from '../layers/shared/src/agents/contracts.js';
import { connectHttpAgentTools, fixedToken } from '../layers/shared/src/agents/mcp-agent-tools.js';
import { agentStepsFromEnv } from '../layers/shared/src/agents/model/agent-steps.js';
import { createRulesSteps } from '../layers/shared/src/agents/rules/index.js';
import { ConfigError } from '../layers/shared/src/domain/errors.js';
import { DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER, issueDevToken, loadOrCreateDevSecret } from '../layers/shared/src/mcp/auth.js';
import type { Logger } from '../layers/shared/src/observability/logger.js';
import { ExchangesUnreachableError } from '../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { createLogger } from '../layers/shared/src/observability/logger.js';
import { USAGE, parseLocalOptions, type LocalOptions } from './cli-options.js';
import { startLocalPlatform, type StatusFigures } from './platform.js';

async function main(): Promise<number> {
  let options;
  try {
    options = parseLocalOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  // In stdio mode stdout carries MCP frames: everything for people goes to stderr.
  const say = (line: string) => (options.stdio ? process.stderr : process.stdout).write(`${line}\n`);
  const logger = createLogger({ level: options.logLevel });
  const markets = [...options.markets].map(([ex, syms]) => `${ex}: ${syms.join(', ')}`).join('; ');
  say(`qicore: starting (${options.source === 'sim' ? 'simulated exchange, offline' : 'live exchanges'}) - ${markets}`);
  if (options.simHistoryHours > 0) say(`qicore: storing ${options.simHistoryHours} h of the simulator's history (1m candles) first...`);

  let platform;
  try {
    platform = await startLocalPlatform({ ...options, logger });
  } catch (error) {
    if (error instanceof ExchangesUnreachableError || error instanceof ConfigError) {
      process.stderr.write(`qicore: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const where = options.databaseUrl ? `PostgreSQL at ${redactUrl(options.databaseUrl)}` : `PGlite in ${options.dataDir}`;
  say(`qicore: store: ${where} (${platform.migrations.path} schema)`);
  if (platform.sim) say(`qicore: simulated exchange at ${platform.sim.httpUrl} (seed ${options.simSeed})`);
  if (platform.mcpUrl) {
    say(`\nMCP endpoint:  ${platform.mcpUrl}`);
    say(`Bearer token:  ${platform.devToken}`);
    say('(development token, valid 7 days, signed with the secret in the data folder; shown here only)\n');
  } else {
    say('qicore: MCP on stdio');
  }

  let last = { at: Date.now(), messages: 0 };
  const timer =
    options.statusInterval > 0
      ? setInterval(() => {
          const s = platform.status();
          const now = Date.now();
          const rate = ((s.messages - last.messages) * 1000) / Math.max(1, now - last.at);
          last = { at: now, messages: s.messages };
          say(statusLine(s, rate));
        }, options.statusInterval * 1000)
      : null;

  let agents: AgentSchedule | null = null;
  if (options.agents && platform.mcpUrl) {
    try {
      agents = await startAgentSchedule(options, platform.mcpUrl, logger, say);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`qicore: ${error.message}\n`);
      await platform.stop();
      return 2;
    }
  }

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (options.stdio) process.stdin.once('close', resolve);
  });
  if (timer) clearInterval(timer);
  await agents?.stop();
  say('qicore: stopping (flushing the stream to the store)...');
  await platform.stop();
  say('qicore: stopped');
  return 0;
}

interface AgentSchedule {
  stop(): Promise<void>;
}

/**
 * `--agents`: the agent flow every `--agents-every`, as an MCP client of the embedded server over
 * HTTP, with a token minted here from the data folder's dev secret carrying only the agents'
 * scopes. Runs never overlap: a run still going when the next is due makes that one skip.
 */
async function startAgentSchedule(options: LocalOptions, mcpUrl: string, logger: Logger, say: (line: string) => void): Promise<AgentSchedule> {
  const limits = jsonSetting('AGENT_RISK_LIMITS', process.env.AGENT_RISK_LIMITS, RiskLimitsSchema);
  const budget = jsonSetting('AGENT_BUDGET', process.env.AGENT_BUDGET, RunBudgetSchema);
  const marketsSpec = process.env.AGENT_MARKETS?.trim();
  const rules = createRulesSteps({ ...(marketsSpec && { markets: parseMarketFilter(marketsSpec) }), timeframe: options.agentsTimeframe });
  const steps = await agentStepsFromEnv(process.env, rules);
  const secret = await loadOrCreateDevSecret(options.dataDir);
  const token = await issueDevToken(secret, {
    subject: 'local-agents',
    scopes: [...AGENT_SCOPES],
    ttlSeconds: 7 * 24 * 3600,
    issuer: DEV_TOKEN_ISSUER,
    audience: DEV_TOKEN_AUDIENCE,
  });
  const agentLogger = logger.child({ fn: 'agents' });
  let running: Promise<void> | null = null;
  const cycle = async () => {
    // a fresh session per run: the server closes idle sessions, and runs may be an hour apart
    const tools = await connectHttpAgentTools({ url: mcpUrl, token: fixedToken(token), name: 'qicore-local-agents' });
    try {
      say(agentLine(await runAgentCycle({ tools, limits, budget, steps, logger: agentLogger })));
    } finally {
      await tools.close();
    }
  };
  const tick = () => {
    if (running) {
      agentLogger.warn('agent run skipped: the previous one is still going');
      return;
    }
    running = cycle()
      .catch((error: unknown) => say(`[${clockTime()}] agents: run failed: ${(error as Error).message}`))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, options.agentsEveryMs);
  const every = options.agentsEveryMs >= 60_000 ? `${options.agentsEveryMs / 60_000} min` : `${options.agentsEveryMs / 1000} s`;
  say(`qicore: agents every ${every} (${steps.by === 'model' ? `model ${steps.model?.provider}:${steps.model?.model}` : 'rules'}, ${options.agentsTimeframe} candles, paper account '${limits.account}')`);
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

function agentLine(r: AgentCycleResult): string {
  const s = r.summary;
  const markets = r.report ? `${r.report.markets.length} markets (${r.report.excluded.length} excluded), ${s.observations} observations, ` : '';
  return (
    `[${clockTime()}] agents ${s.runId}: ${s.status} - ${markets}${s.proposals} proposals, ` +
    `approve ${s.decisions.approve} / resize ${s.decisions.resize} / reject ${s.decisions.reject}, ${s.executions} paper fills` +
    (s.status === 'completed' ? '' : ` (${s.detail})`)
  );
}

const clockTime = () => new Date().toISOString().slice(11, 19);

/** The URL without its password, for the console. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

function statusLine(s: StatusFigures, rate: number): string {
  const lag = s.lagMs === null ? '-' : `${s.lagMs}ms`;
  const problems = [s.deadLettered && `${s.deadLettered} dead-lettered`, s.rejected && `${s.rejected} rejected`]
    .filter(Boolean)
    .join(', ');
  return (
    `[${new Date().toISOString().slice(11, 19)}] feeds ${s.feedsLive}/${s.feedsTotal} live | ` +
    `${rate.toFixed(1)} msg/s | ${s.rowsStored} rows stored | lag ${lag} | ` +
    `stream backlog ${s.backlog + s.pendingPublish}${problems ? ` | ${problems}` : ''}`
  );
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`qicore: failed to start: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
