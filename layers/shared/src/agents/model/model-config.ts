/**
 * Which language model the agents use, from the environment. With AGENT_MODEL_PROVIDER unset or
 * `none` every agent runs its deterministic rules; otherwise the model steps wrap them.
 */
import { createAmazonBedrock } from '@ai-sdk/amazon-bedrock';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import type { LanguageModel } from 'ai';
import { z } from 'zod';
import { ConfigError } from '../../domain/errors.js';
import { formatIssues } from '../../domain/issues.js';
import { getSecretString, type SecretsClient } from '../../config/secrets.js';

export const MODEL_PROVIDERS = ['none', 'openai-compatible', 'anthropic', 'bedrock'] as const;
export type ModelProvider = (typeof MODEL_PROVIDERS)[number];

/** The model variables as the environment spells them. */
export const AgentModelEnvSchema = z
  .object({
    AGENT_MODEL_PROVIDER: z.enum(MODEL_PROVIDERS, { message: `one of ${MODEL_PROVIDERS.join(', ')}` }).default('none'),
    /** model id as the provider names it (e.g. qwen2.5:7b, claude-sonnet-4-5, anthropic.claude-3-5-haiku-20241022-v1:0) */
    AGENT_MODEL: z.string().trim().min(1, 'a model id').max(200, 'at most 200 characters').optional(),
    /** openai-compatible: the server's base URL including /v1 (Ollama http://localhost:11434/v1, vLLM, LM Studio...) */
    AGENT_MODEL_BASE_URL: z.string().url('an http(s):// URL').regex(/^https?:\/\//, 'an http(s):// URL').optional(),
    /** Secrets Manager secret whose SecretString is the API key (AWS) */
    AGENT_MODEL_API_KEY_SECRET_ARN: z
      .string()
      .regex(/^arn:aws[a-z-]*:secretsmanager:/, 'a Secrets Manager secret ARN')
      .optional(),
    /** the API key itself (local runs) */
    AGENT_MODEL_API_KEY: z.string().min(1, 'not empty').optional(),
    /** bedrock: region of the model; AWS_REGION when unset */
    AGENT_MODEL_REGION: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'an AWS region such as us-east-1').optional(),
    AWS_REGION: z.string().optional(),
    /** model calls (steps) per agent step at most, tool round trips included */
    AGENT_MODEL_MAX_STEPS: z.coerce.number({ message: 'a whole number' }).int('a whole number').min(1, 'at least 1').max(50, 'at most 50').default(8),
    AGENT_MODEL_TEMPERATURE: z.coerce.number({ message: 'a number' }).min(0, 'at least 0').max(2, 'at most 2').default(0),
    /** output tokens per model call at most */
    AGENT_MODEL_MAX_OUTPUT_TOKENS: z.coerce.number({ message: 'a whole number' }).int('a whole number').min(16, 'at least 16').max(32_000, 'at most 32000').default(1_024),
  })
  .superRefine((e, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (e.AGENT_MODEL_PROVIDER === 'none') return;
    if (e.AGENT_MODEL === undefined) issue('AGENT_MODEL', `AGENT_MODEL_PROVIDER=${e.AGENT_MODEL_PROVIDER} needs a model id in AGENT_MODEL`);
    if (e.AGENT_MODEL_PROVIDER === 'openai-compatible' && e.AGENT_MODEL_BASE_URL === undefined) {
      issue('AGENT_MODEL_BASE_URL', 'AGENT_MODEL_PROVIDER=openai-compatible needs the server URL in AGENT_MODEL_BASE_URL (e.g. http://localhost:11434/v1)');
    }
    if (e.AGENT_MODEL_API_KEY !== undefined && e.AGENT_MODEL_API_KEY_SECRET_ARN !== undefined) {
      issue('AGENT_MODEL_API_KEY', 'set AGENT_MODEL_API_KEY_SECRET_ARN (AWS) or AGENT_MODEL_API_KEY (local), not both');
    }
    if (e.AGENT_MODEL_PROVIDER === 'anthropic' && e.AGENT_MODEL_API_KEY === undefined && e.AGENT_MODEL_API_KEY_SECRET_ARN === undefined) {
      issue('AGENT_MODEL_API_KEY_SECRET_ARN', 'AGENT_MODEL_PROVIDER=anthropic needs AGENT_MODEL_API_KEY_SECRET_ARN (AWS) or AGENT_MODEL_API_KEY (local)');
    }
    if (e.AGENT_MODEL_PROVIDER === 'bedrock' && e.AGENT_MODEL_REGION === undefined && e.AWS_REGION === undefined) {
      issue('AGENT_MODEL_REGION', 'AGENT_MODEL_PROVIDER=bedrock needs AGENT_MODEL_REGION or AWS_REGION');
    }
  });

/** Settings of a configured model; the key is resolved (never logged: see `describeModelConfig`). */
export interface ModelConfig {
  readonly provider: Exclude<ModelProvider, 'none'>;
  readonly model: string;
  readonly baseURL?: string;
  readonly apiKey?: string;
  readonly region?: string;
  readonly maxSteps: number;
  readonly temperature: number;
  readonly maxOutputTokens: number;
}

/** Validates the model variables; a bad one is a ConfigError naming it. Does not read the secret. */
export function parseModelEnv(env: Readonly<Record<string, string | undefined>>): z.infer<typeof AgentModelEnvSchema> {
  const parsed = AgentModelEnvSchema.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid agent model environment: ${formatIssues(parsed.error.issues)}`);
  return parsed.data;
}

/**
 * The model configuration, or null when no model is configured (rules only). The API key comes
 * from the secret when AGENT_MODEL_API_KEY_SECRET_ARN is set (cached getter), else AGENT_MODEL_API_KEY.
 */
export async function resolveModelConfig(
  env: Readonly<Record<string, string | undefined>>,
  options: { secretsClient?: SecretsClient } = {},
): Promise<ModelConfig | null> {
  const e = parseModelEnv(env);
  if (e.AGENT_MODEL_PROVIDER === 'none') return null;
  let apiKey = e.AGENT_MODEL_API_KEY;
  if (e.AGENT_MODEL_API_KEY_SECRET_ARN !== undefined) {
    apiKey = (await getSecretString(e.AGENT_MODEL_API_KEY_SECRET_ARN, options.secretsClient ? { client: options.secretsClient } : {})).trim();
    if (apiKey === '') throw new ConfigError(`secret AGENT_MODEL_API_KEY_SECRET_ARN (${e.AGENT_MODEL_API_KEY_SECRET_ARN}) is empty`);
  }
  const region = e.AGENT_MODEL_REGION ?? e.AWS_REGION;
  return {
    provider: e.AGENT_MODEL_PROVIDER,
    model: e.AGENT_MODEL!, // the refinement requires it with a provider
    ...(e.AGENT_MODEL_BASE_URL !== undefined && { baseURL: e.AGENT_MODEL_BASE_URL }),
    ...(apiKey !== undefined && { apiKey }),
    ...(e.AGENT_MODEL_PROVIDER === 'bedrock' && region !== undefined && { region }),
    maxSteps: e.AGENT_MODEL_MAX_STEPS,
    temperature: e.AGENT_MODEL_TEMPERATURE,
    maxOutputTokens: e.AGENT_MODEL_MAX_OUTPUT_TOKENS,
  };
}

/** The configuration for a log line: everything but the key. */
export function describeModelConfig(config: ModelConfig): Record<string, unknown> {
  const { apiKey, ...rest } = config;
  return { ...rest, apiKey: apiKey === undefined ? 'none' : 'set' };
}

/** The AI SDK model for the configured provider. Builds the client only; nothing is called. */
export function createLanguageModel(config: ModelConfig, options: { fetch?: typeof fetch } = {}): Exclude<LanguageModel, string> {
  const fetchOption = options.fetch ? { fetch: options.fetch } : {};
  switch (config.provider) {
    case 'openai-compatible': {
      if (config.baseURL === undefined) throw new ConfigError('AGENT_MODEL_BASE_URL is required for openai-compatible');
      const provider = createOpenAICompatible({
        name: 'agent-model',
        baseURL: config.baseURL,
        ...(config.apiKey !== undefined && { apiKey: config.apiKey }),
        // usage arrives on the last chunk only when asked for (the budget needs it)
        includeUsage: true,
        ...fetchOption,
      });
      return provider.chatModel(config.model);
    }
    case 'anthropic': {
      const provider = createAnthropic({
        ...(config.apiKey !== undefined && { apiKey: config.apiKey }),
        ...(config.baseURL !== undefined && { baseURL: config.baseURL }),
        ...fetchOption,
      });
      return provider.languageModel(config.model);
    }
    case 'bedrock': {
      // without a key the provider signs with the execution role's credentials (SigV4 from the environment)
      const provider = createAmazonBedrock({
        ...(config.region !== undefined && { region: config.region }),
        ...(config.apiKey !== undefined && { apiKey: config.apiKey }),
        ...(config.baseURL !== undefined && { baseURL: config.baseURL }),
        ...fetchOption,
      });
      return provider.languageModel(config.model);
    }
  }
}
