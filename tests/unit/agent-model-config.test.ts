import { describe, expect, it } from 'vitest';
import { agentStepsFromEnv } from '../../layers/shared/src/agents/model/agent-steps.js';
import { createLanguageModel, describeModelConfig, parseModelEnv, resolveModelConfig } from '../../layers/shared/src/agents/model/model-config.js';
import type { AnalystStep, ExecuteStep, MonitorStep, RiskStep } from '../../layers/shared/src/agents/contracts.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { fakeSecretsClient as secretsClient } from '../support/secrets-client.js';

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:agent-model-key-AbCdEf';
const KEY = 'sk-test-0123456789abcdef';
const OPENAI = { AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'qwen2.5:7b', AGENT_MODEL_BASE_URL: 'http://127.0.0.1:11434/v1' };

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('agent model configuration', () => {
  it('means rules only when AGENT_MODEL_PROVIDER is unset or none', async () => {
    expect(await resolveModelConfig({})).toBeNull();
    expect(await resolveModelConfig({ AGENT_MODEL_PROVIDER: 'none', AGENT_MODEL: 'ignored' })).toBeNull();
  });

  it('defaults to temperature 0, 8 steps and 1024 output tokens', async () => {
    expect(await resolveModelConfig(OPENAI)).toEqual({
      provider: 'openai-compatible',
      model: 'qwen2.5:7b',
      baseURL: 'http://127.0.0.1:11434/v1',
      maxSteps: 8,
      temperature: 0,
      maxOutputTokens: 1024,
    });
    const tuned = await resolveModelConfig({ ...OPENAI, AGENT_MODEL_MAX_STEPS: '3', AGENT_MODEL_TEMPERATURE: '0.2', AGENT_MODEL_API_KEY: KEY });
    expect(tuned).toMatchObject({ maxSteps: 3, temperature: 0.2, apiKey: KEY });
  });

  it.each([
    [{ AGENT_MODEL_PROVIDER: 'openai' }, 'AGENT_MODEL_PROVIDER'],
    [{ ...OPENAI, AGENT_MODEL: undefined }, 'AGENT_MODEL'],
    [{ ...OPENAI, AGENT_MODEL: '   ' }, 'AGENT_MODEL'],
    [{ ...OPENAI, AGENT_MODEL_BASE_URL: undefined }, 'AGENT_MODEL_BASE_URL'],
    [{ ...OPENAI, AGENT_MODEL_BASE_URL: 'localhost:11434' }, 'AGENT_MODEL_BASE_URL'],
    [{ ...OPENAI, AGENT_MODEL_BASE_URL: 'ftp://models.example/v1' }, 'AGENT_MODEL_BASE_URL'],
    [{ ...OPENAI, AGENT_MODEL_API_KEY_SECRET_ARN: 'agent-model-key' }, 'AGENT_MODEL_API_KEY_SECRET_ARN'],
    [{ ...OPENAI, AGENT_MODEL_API_KEY: '' }, 'AGENT_MODEL_API_KEY'],
    [{ ...OPENAI, AGENT_MODEL_API_KEY: KEY, AGENT_MODEL_API_KEY_SECRET_ARN: ARN }, 'AGENT_MODEL_API_KEY'],
    [{ ...OPENAI, AGENT_MODEL_MAX_STEPS: 'many' }, 'AGENT_MODEL_MAX_STEPS'],
    [{ ...OPENAI, AGENT_MODEL_MAX_STEPS: '0' }, 'AGENT_MODEL_MAX_STEPS'],
    [{ ...OPENAI, AGENT_MODEL_MAX_STEPS: '2.5' }, 'AGENT_MODEL_MAX_STEPS'],
    [{ ...OPENAI, AGENT_MODEL_TEMPERATURE: '-1' }, 'AGENT_MODEL_TEMPERATURE'],
    [{ ...OPENAI, AGENT_MODEL_MAX_OUTPUT_TOKENS: '1' }, 'AGENT_MODEL_MAX_OUTPUT_TOKENS'],
    [{ AGENT_MODEL_PROVIDER: 'anthropic', AGENT_MODEL: 'claude-sonnet-4-5' }, 'AGENT_MODEL_API_KEY_SECRET_ARN'],
    [{ AGENT_MODEL_PROVIDER: 'bedrock', AGENT_MODEL: 'anthropic.claude-3-5-haiku-20241022-v1:0' }, 'AGENT_MODEL_REGION'],
    [{ AGENT_MODEL_PROVIDER: 'bedrock', AGENT_MODEL: 'm', AGENT_MODEL_REGION: 'Frankfurt' }, 'AGENT_MODEL_REGION'],
  ] as [Record<string, string | undefined>, string][])('refuses %j naming %s', (env, variable) => {
    const error = configError(() => parseModelEnv(env));
    expect(error.message).toContain(`${variable}:`);
  });

  it('reads the key from Secrets Manager when a secret ARN is given, and never shows it', async () => {
    const client = secretsClient({ [ARN]: `${KEY}\n` });
    const config = await resolveModelConfig({ AGENT_MODEL_PROVIDER: 'anthropic', AGENT_MODEL: 'claude-sonnet-4-5', AGENT_MODEL_API_KEY_SECRET_ARN: ARN }, { secretsClient: client });
    expect(config?.apiKey).toBe(KEY);
    expect(client.calls).toEqual([ARN]);
    const described = JSON.stringify(describeModelConfig(config!));
    expect(described).not.toContain(KEY);
    expect(described).toContain('"apiKey":"set"');
  });

  it('names the secret, not its value, when it cannot be read', async () => {
    const missing = `${ARN}-missing`;
    const error = await resolveModelConfig(
      { AGENT_MODEL_PROVIDER: 'anthropic', AGENT_MODEL: 'claude-sonnet-4-5', AGENT_MODEL_API_KEY_SECRET_ARN: missing },
      { secretsClient: secretsClient({}) },
    ).then(
      () => { throw new Error('expected a rejection'); },
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(missing);
  });

  // Anthropic and Bedrock cannot be reached offline: these check the model is built from the
  // configuration (provider and model id) without any call.
  it('builds each provider\'s model from the configuration without calling it', async () => {
    const openai = createLanguageModel((await resolveModelConfig(OPENAI))!);
    expect([openai.provider, openai.modelId]).toEqual(['agent-model.chat', 'qwen2.5:7b']);
    const anthropic = createLanguageModel((await resolveModelConfig({ AGENT_MODEL_PROVIDER: 'anthropic', AGENT_MODEL: 'claude-sonnet-4-5', AGENT_MODEL_API_KEY: KEY }))!);
    expect([anthropic.provider, anthropic.modelId]).toEqual(['anthropic.messages', 'claude-sonnet-4-5']);
    const bedrockConfig = (await resolveModelConfig({ AGENT_MODEL_PROVIDER: 'bedrock', AGENT_MODEL: 'anthropic.claude-3-5-haiku-20241022-v1:0', AWS_REGION: 'eu-west-1' }))!;
    expect(bedrockConfig.region).toBe('eu-west-1');
    const bedrock = createLanguageModel(bedrockConfig);
    expect([bedrock.provider, bedrock.modelId]).toEqual(['amazon-bedrock', 'anthropic.claude-3-5-haiku-20241022-v1:0']);
  });

  it('gives the rules themselves without a model, and model steps wrapping them with one', async () => {
    const rules = {
      monitor: (async () => { throw new Error('not run'); }) as MonitorStep,
      analyst: (async () => { throw new Error('not run'); }) as AnalystStep,
      risk: (async () => []) as RiskStep,
      execute: (async () => []) as ExecuteStep,
    };
    const plain = await agentStepsFromEnv({}, rules);
    expect(plain.by).toBe('rules');
    expect(plain.analyst).toBe(rules.analyst);
    expect(plain.monitor).toBe(rules.monitor);
    expect(plain.risk).toBe(rules.risk);
    const withModel = await agentStepsFromEnv(OPENAI, rules);
    expect(withModel.by).toBe('model');
    expect(withModel.model).toEqual({ provider: 'openai-compatible', model: 'qwen2.5:7b' });
    expect(withModel.analyst).not.toBe(rules.analyst);
    expect(withModel.risk).not.toBe(rules.risk);
    // execution is never the model's
    expect(withModel.execute).toBe(rules.execute);
    await expect(agentStepsFromEnv({ AGENT_MODEL_PROVIDER: 'openai-compatible' }, rules)).rejects.toThrow(/AGENT_MODEL:/);
  });
});
