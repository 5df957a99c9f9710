import { Annotations, type App } from 'aws-cdk-lib';
import { PlatformStack, STREAM_KINDS, type StreamKind } from './platform-stack.js';
import { InvalidPropsError } from './prop-checks.js';
import { DEFAULT_STAGE, stageConfigFor } from './stage-config.js';

/** Placeholders that let an unconfigured app synth; every token is rejected until real values are passed. */
const PLACEHOLDER_AUTH = {
  jwtIssuer: 'https://auth.example.com/',
  jwtAudience: 'qicore-mcp',
  jwksUrl: 'https://auth.example.com/.well-known/jwks.json',
} as const;

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
} as const;

/**
 * Adds the stage's stack, `Qicore-<stage>`, to `app`. The stage and deploy-specific settings come
 * from context; account and region from the CLI's CDK_DEFAULT_* (env-agnostic without them).
 */
export function definePlatform(app: App, env: NodeJS.ProcessEnv = process.env): PlatformStack {
  const context = (key: string): string | undefined => {
    const value: unknown = app.node.tryGetContext(key);
    return value === undefined || value === null || value === '' ? undefined : String(value);
  };
  const config = stageConfigFor(context(CONTEXT_KEYS.stage) ?? DEFAULT_STAGE);
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

  const stack = new PlatformStack(app, `Qicore-${config.name}`, {
    description: `qicore crypto market-data platform (${config.name})`,
    env: { account: env['CDK_DEFAULT_ACCOUNT'], region: env['CDK_DEFAULT_REGION'] },
    // With @aws-cdk/core:explicitStackTags, stack tags are set here; CloudFormation copies them to resources.
    tags: { project: 'qicore', stage: config.name },
    config,
    jwtIssuer: jwtIssuer ?? PLACEHOLDER_AUTH.jwtIssuer,
    jwtAudience: jwtAudience ?? PLACEHOLDER_AUTH.jwtAudience,
    jwksUrl: jwksUrl ?? PLACEHOLDER_AUTH.jwksUrl,
    ...(databaseSecretArn && { databaseSecretArn }),
    ...(clickhouseSecretArn && { clickhouseSecretArn }),
    streamKind: streamKind as StreamKind,
    ...(mcpCertificateArn && { mcpCertificateArn }),
    ...(mcpDomain && { mcpDomain }),
    ...(redisUrl && { redisUrl }),
    ...(alertRules && { alertRules }),
  });
  if (jwtIssuer === undefined || jwtAudience === undefined || jwksUrl === undefined) {
    Annotations.of(stack).addWarningV2(
      'qicore:platform:placeholder-auth',
      'MCP JWT settings are placeholders, so the server will reject every token: pass -c jwtIssuer=... -c jwtAudience=... -c jwksUrl=...',
    );
  }
  return stack;
}
