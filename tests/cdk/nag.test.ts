import { readFileSync } from 'node:fs';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Queue } from 'aws-cdk-lib/aws-sqs';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { defineStage } from '../../cdk/lib/platform-app.js';
import { repoPath } from '../../cdk/lib/repo-paths.js';

// cdk-nag's AWS Solutions rules over every stage as `cdk deploy` builds it: an account and a region (the
// load balancer's access logs need one), bundling skipped (the rules read templates, not code).
const cdkJson = JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> };
const DEPLOY_ENV = { CDK_DEFAULT_ACCOUNT: '111111111111', CDK_DEFAULT_REGION: 'eu-west-1' };
const EXTERNAL_AUTH = {
  jwtIssuer: 'https://idp.qicore.test/',
  jwtAudience: 'qicore-mcp',
  jwksUrl: 'https://idp.qicore.test/.well-known/jwks.json',
};

function stackFor(context: Record<string, unknown>, env: NodeJS.ProcessEnv = DEPLOY_ENV): { app: App; stack: Stack } {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], ...context } });
  return { app, stack: defineStage(app, env) };
}

/** The findings AwsSolutionsChecks reports for `stack` that nothing acknowledges, as `rule at path` lines. */
function unacknowledged(app: App, stack: Stack): string[] {
  const report = new AwsSolutionsChecks(app).validateScope(stack);
  return report.violations.flatMap((v) =>
    v.violatingResources.map((r) => `${v.severity ?? ''} ${v.ruleName} at ${(r as { constructPath?: string }).constructPath ?? r.resourceLogicalId}`),
  );
}

const VARIANTS: Array<[string, Record<string, unknown>]> = [
  ['local', { stage: 'local' }],
  ['dev (Cognito, ElastiCache, agents)', { stage: 'dev' }],
  ['staging', { stage: 'staging' }],
  ['prod (Cognito)', { stage: 'prod' }],
  ['prod with an external issuer, certificate and exchange keys', {
    stage: 'prod',
    ...EXTERNAL_AUTH,
    mcpCertificateArn: 'arn:aws:acm:eu-west-1:111111111111:certificate/00000000-0000-0000-0000-000000000000',
    mcpDomain: 'mcp.example.com',
    exchangeKeysSecretArn: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:qicore/prod/exchange-keys-AbCdEf',
  }],
  ['dev on MSK with an external Redis', { stage: 'dev', stream: 'msk', redisUrl: 'redis://cache.internal:6379' }],
  ['dev with alert rules', {
    stage: 'dev',
    alertRules: JSON.stringify([{ id: 'btc', kind: 'price_cross', exchange: 'binance', symbol: 'BTC/USDT', level: 100_000, direction: 'up' }]),
  }],
];

describe('cdk-nag AwsSolutionsChecks', () => {
  it.each(VARIANTS)('leaves no unacknowledged finding in %s', (_name, context) => {
    const { app, stack } = stackFor(context);
    expect(unacknowledged(app, stack)).toEqual([]);
  });

  it('leaves none in an environment-agnostic synth either (no region: no access logs, acknowledged as such)', () => {
    const { app, stack } = stackFor({ stage: 'dev' }, {});
    expect(unacknowledged(app, stack)).toEqual([]);
  });

  it('reports what it is given: an unencrypted queue without a dead-letter queue fails it', () => {
    const app = new App({ context: cdkJson.context });
    const stack = new Stack(app, 'Bad');
    new Queue(stack, 'Plain', { enforceSSL: false });
    const found = unacknowledged(app, stack).join('\n');
    expect(found).toMatch(/AwsSolutions-SQS3 at Bad\/Plain/);
    expect(found).toMatch(/AwsSolutions-SQS4 at Bad\/Plain/);
  });

  it('gives every acknowledgement a reason a reviewer can check (a sentence, not a word)', () => {
    const reasons: Array<{ path: string; id: string; reason: string }> = [];
    for (const context of [{ stage: 'local' }, { stage: 'dev' }, { stage: 'prod', ...EXTERNAL_AUTH }]) {
      const { stack } = stackFor(context);
      for (const node of stack.node.findAll() as IConstruct[]) {
        for (const entry of node.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)) {
          // one entry an acknowledgement: { [rule id]: reason }
          for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) reasons.push({ path: node.node.path, id, reason });
        }
      }
    }
    expect(reasons.length).toBeGreaterThan(10);
    expect(reasons.filter((r) => r.reason.split(' ').length < 12)).toEqual([]);
  });
});
