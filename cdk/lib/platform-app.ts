import type { App, Stack } from 'aws-cdk-lib';
import { LocalPlatformStack } from './local-platform-stack.js';
import { PlatformStack, STREAM_KINDS, type StreamKind } from './platform-stack.js';
import { InvalidPropsError } from './prop-checks.js';
import { DEFAULT_STAGE, LOCAL_STAGE, stageConfigFor } from './stage-config.js';

/** Context keys the app reads (`-c key=value`). */
export const CONTEXT_KEYS = {
  stage: 'stage',
  stream: 'stream',
  jwtIssuer: 'jwtIssuer',
  jwtAudience: 'jwtAudience',
  jwksUrl: 'jwksUrl',
  databaseSecretArn: 'databaseSecretArn',
  clickhouseSecretArn: 'clickhouseSecretArn',
  mcpCertificateArn: 'mcpCertificateArn',
  mcpDomain: 'mcpDomain',
  redisUrl: 'redisUrl',
  alertRules: 'alertRules',
  cognitoDomainPrefix: 'cognitoDomainPrefix',
  cognitoCallbackUrls: 'cognitoCallbackUrls',
  exchangeKeysSecretArn: 'exchangeKeysSecretArn',
  databasePort: 'databasePort',
  clickhousePort: 'clickhousePort',
  alarmEmails: 'alarmEmails',
} as const;

/** Adds the stack of `-c stage`: the LocalStack stage's, or an AWS stage's (see definePlatform). */
export function defineStage(app: App, env: NodeJS.ProcessEnv = process.env): Stack {
  if (app.node.tryGetContext(CONTEXT_KEYS.stage) === LOCAL_STAGE) return defineLocalPlatform(app, env);
  return definePlatform(app, env);
}

/**
 * Adds `Qicore-local`, for LocalStack (`cdklocal`): account and region are the ones cdklocal sets.
 * No other context applies to it.
 */
export function defineLocalPlatform(app: App, env: NodeJS.ProcessEnv = process.env): LocalPlatformStack {
  return new LocalPlatformStack(app, `Qicore-${LOCAL_STAGE}`, {
    description: 'qicore crypto market-data platform (local: LocalStack)',
    env: { account: env['CDK_DEFAULT_ACCOUNT'], region: env['CDK_DEFAULT_REGION'] },
    tags: { project: 'qicore', stage: LOCAL_STAGE },
  });
}

/**
 * Adds the stage's stack, `Qicore-<stage>`, to `app`. The stage and deploy-specific settings come
 * from context; account and region from the CLI's CDK_DEFAULT_* (env-agnostic without them).
 */
export function definePlatform(app: App, env: NodeJS.ProcessEnv = process.env): PlatformStack {
  const context = (key: string): string | undefined => {
    const value: unknown = app.node.tryGetContext(key);
    return value === undefined || value === null || value === '' ? undefined : String(value);
  };
  const stage = context(CONTEXT_KEYS.stage) ?? DEFAULT_STAGE;
  if (stage === LOCAL_STAGE) throw new InvalidPropsError(`stage '${LOCAL_STAGE}' is LocalPlatformStack: use defineStage or defineLocalPlatform`);
  const config = stageConfigFor(stage);
  const jwtIssuer = context(CONTEXT_KEYS.jwtIssuer);
  const jwtAudience = context(CONTEXT_KEYS.jwtAudience);
  const jwksUrl = context(CONTEXT_KEYS.jwksUrl);
  const databaseSecretArn = context(CONTEXT_KEYS.databaseSecretArn);
  const clickhouseSecretArn = context(CONTEXT_KEYS.clickhouseSecretArn);
  const streamKind = context(CONTEXT_KEYS.stream) ?? 'kinesis';
  if (!(STREAM_KINDS as readonly string[]).includes(streamKind)) {
    throw new InvalidPropsError(`unknown stream '${streamKind}': accepted are ${STREAM_KINDS.join(', ')} (pass -c stream=<kind>)`);
  }
  const mcpCertificateArn = context(CONTEXT_KEYS.mcpCertificateArn);
  const mcpDomain = context(CONTEXT_KEYS.mcpDomain);
  const redisUrl = context(CONTEXT_KEYS.redisUrl);
  const alertRules = context(CONTEXT_KEYS.alertRules);
  const cognitoDomainPrefix = context(CONTEXT_KEYS.cognitoDomainPrefix);
  const cognitoCallbackUrls = context(CONTEXT_KEYS.cognitoCallbackUrls)?.split(',').map((u) => u.trim()).filter(Boolean);
  const exchangeKeysSecretArn = context(CONTEXT_KEYS.exchangeKeysSecretArn);
  const alarmEmails = context(CONTEXT_KEYS.alarmEmails)?.split(',').map((a) => a.trim()).filter(Boolean);
  const port = (key: 'databasePort' | 'clickhousePort'): number | undefined => {
    const value = context(CONTEXT_KEYS[key]);
    return value === undefined ? undefined : Number(value);
  };
  const databasePort = port('databasePort');
  const clickhousePort = port('clickhousePort');

  const stack = new PlatformStack(app, `Qicore-${config.name}`, {
    description: `qicore crypto market-data platform (${config.name})`,
    env: { account: env['CDK_DEFAULT_ACCOUNT'], region: env['CDK_DEFAULT_REGION'] },
    // With @aws-cdk/core:explicitStackTags, stack tags are set here; CloudFormation copies them to resources.
    tags: { project: 'qicore', stage: config.name },
    config,
    // all three: an external OIDC issuer; none: the stack's Cognito user pool (a partial set is refused)
    ...(jwtIssuer && { jwtIssuer }),
    ...(jwtAudience && { jwtAudience }),
    ...(jwksUrl && { jwksUrl }),
    ...(cognitoDomainPrefix && { cognitoDomainPrefix }),
    ...(cognitoCallbackUrls && { cognitoCallbackUrls }),
    ...(exchangeKeysSecretArn && { exchangeKeysSecretArn }),
    ...(alarmEmails && { alarmEmails }),
    ...(databasePort !== undefined && { databasePort }),
    ...(clickhousePort !== undefined && { clickhousePort }),
    ...(databaseSecretArn && { databaseSecretArn }),
    ...(clickhouseSecretArn && { clickhouseSecretArn }),
    streamKind: streamKind as StreamKind,
    ...(mcpCertificateArn && { mcpCertificateArn }),
    ...(mcpDomain && { mcpDomain }),
    ...(redisUrl && { redisUrl }),
    ...(alertRules && { alertRules }),
  });
  return stack;
}
