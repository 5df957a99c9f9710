/** The steps a run uses: the rules, or the model variants wrapping them when a model is configured. */
import type { SecretsClient } from '../../config/secrets.js';
import type { AnalystStep, ExecuteStep, MonitorStep, RiskStep } from '../contracts.js';
import { createLanguageModel, resolveModelConfig, type ModelConfig } from './model-config.js';
import { modelAnalyst, modelMonitor, modelRiskReview } from './model-steps.js';

export interface AgentSteps {
  readonly monitor: MonitorStep;
  readonly analyst: AnalystStep;
  readonly risk: RiskStep;
  /** execution is never the model's: approved decisions are filled as the rules say */
  readonly execute: ExecuteStep;
  /** which path the steps take, for logs and the run summary (never the key) */
  readonly by: 'rules' | 'model';
  readonly model?: { provider: ModelConfig['provider']; model: string };
}

/**
 * The steps to run from the environment: the rules as given when AGENT_MODEL_PROVIDER is none or
 * unset, else the model variants falling back to them. Async: the API key may come from Secrets
 * Manager. A bad variable is a ConfigError naming it.
 */
export async function agentStepsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  rules: { monitor: MonitorStep; analyst: AnalystStep; risk: RiskStep; execute: ExecuteStep },
  options: { secretsClient?: SecretsClient; fetch?: typeof fetch } = {},
): Promise<AgentSteps> {
  const config = await resolveModelConfig(env, options.secretsClient ? { secretsClient: options.secretsClient } : {});
  if (config === null) return { ...rules, by: 'rules' };
  const model = createLanguageModel(config, options.fetch ? { fetch: options.fetch } : {});
  const stepOptions = { maxSteps: config.maxSteps, temperature: config.temperature, maxOutputTokens: config.maxOutputTokens };
  return {
    monitor: modelMonitor(model, rules.monitor, stepOptions),
    analyst: modelAnalyst(model, rules.analyst, stepOptions),
    risk: modelRiskReview(model, rules.risk, stepOptions),
    execute: rules.execute,
    by: 'model',
    model: { provider: config.provider, model: config.model },
  };
}
