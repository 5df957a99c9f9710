// What the four agent Lambdas share: configuration parsed once per cold start (a bad variable
// fails it with a ConfigError naming it), the token source cached across invocations, and one MCP
// session per invocation, closed when the step is done.
import { parseAgentConfig, tokenSourceOf } from '../../layers/shared/src/agents/agent-config.js';
import { createAgentSteps, type AgentStepFunctions } from '../../layers/shared/src/agents/agent-steps.js';
import { connectHttpAgentTools, type TokenSource } from '../../layers/shared/src/agents/mcp-agent-tools.js';
import { agentStepsFromEnv, type AgentSteps } from '../../layers/shared/src/agents/model/agent-steps.js';
import { createRulesSteps } from '../../layers/shared/src/agents/rules/index.js';
import { createLogger, type Logger } from '../../layers/shared/src/observability/logger.js';

const config = parseAgentConfig(process.env);
const level = (process.env.LOG_LEVEL ?? 'info') as 'debug' | 'info' | 'warn' | 'error';
export const logger: Logger = createLogger({ level, fields: { fn: 'agents' } });

let tokens: Promise<TokenSource> | null = null;
let steps: Promise<AgentSteps> | null = null;

/** Runs one step entry point over a fresh MCP session. */
export async function withAgentSteps<T>(fn: (s: AgentStepFunctions) => Promise<T>): Promise<T> {
  tokens ??= tokenSourceOf(config.auth).catch((error: unknown) => {
    tokens = null;
    throw error;
  });
  steps ??= agentStepsFromEnv(process.env, createRulesSteps({ ...(config.markets && { markets: config.markets }), timeframe: config.timeframe })).catch(
    (error: unknown) => {
      steps = null;
      throw error;
    },
  );
  const tools = await connectHttpAgentTools({ url: config.mcpUrl, token: await tokens, name: 'qicore-agents' });
  try {
    return await fn(createAgentSteps({ tools, limits: config.limits, budget: config.budget, steps: await steps, logger }));
  } finally {
    await tools.close();
  }
}
