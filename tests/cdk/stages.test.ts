import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { MANAGED_RULE_GROUPS } from '../../cdk/lib/constructs/mcp-firewall.js';
import { AGENT_CLIENT_SCOPES, USER_CLIENT_SCOPES } from '../../cdk/lib/constructs/platform-identity.js';
import { LOCAL_RESOURCE_TYPES, LOCAL_STORE_URLS, LocalPlatformStack } from '../../cdk/lib/local-platform-stack.js';
import { CONTEXT_KEYS, definePlatform, defineStage } from '../../cdk/lib/platform-app.js';
import type { PlatformStack } from '../../cdk/lib/platform-stack.js';
import { repoPath } from '../../cdk/lib/repo-paths.js';
import { stageConfigFor } from '../../cdk/lib/stage-config.js';
import { ALL_SCOPES, SCOPES } from '../../layers/shared/src/mcp/scopes.js';

const cdkJson = JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> };
const DEPLOY_ENV = { CDK_DEFAULT_ACCOUNT: '111111111111', CDK_DEFAULT_REGION: 'eu-west-1' };
const EXCHANGE_KEYS_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:qicore/dev/exchange-keys-AbCdEf';

/** The stage's stack with bundling skipped (templates only); `bundle` runs esbuild as `cdk synth` does. */
function synth(context: Record<string, unknown>, options: { bundle?: boolean } = {}): { app: App; template: Template; stack: ReturnType<typeof defineStage> } {
  const app = new App({ context: { ...cdkJson.context, ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }), ...context } });
  const stack = defineStage(app, DEPLOY_ENV);
  return { app, stack, template: Template.fromStack(stack) };
}

type Resources = Record<string, { Type: string; Properties: Record<string, any> }>;
const resources = (t: Template) => (t.toJSON() as { Resources: Resources }).Resources;
const idsOf = (t: Template, type: string, prefix = '') => Object.keys(t.findResources(type)).filter((id) => id.startsWith(prefix));
const onlyId = (t: Template, type: string, prefix = '') => {
  const ids = idsOf(t, type, prefix);
  expect(ids, `${type} ${prefix}`).toHaveLength(1);
  return ids[0]!;
};
const lambdaEnv = (t: Template, prefix: string) =>
  (resources(t)[onlyId(t, 'AWS::Lambda::Function', prefix)]!.Properties['Environment']?.Variables ?? {}) as Record<string, unknown>;
type Container = { Name: string; Environment?: { Name: string; Value: unknown }[]; Secrets?: { Name: string; ValueFrom: unknown }[] };
const containers = (t: Template): Container[] =>
  Object.values(t.findResources('AWS::ECS::TaskDefinition')).flatMap((r) => r['Properties']['ContainerDefinitions'] as Container[]);
/** Security group ids a resource's VpcConfig or the service's network configuration names. */
const groupRef = (value: unknown) => (value as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];

let dev: Template;
let devStack: PlatformStack;
let prod: Template;
let staging: Template;
beforeAll(() => {
  const d = synth({ stage: 'dev', [CONTEXT_KEYS.exchangeKeysSecretArn]: EXCHANGE_KEYS_ARN });
  dev = d.template;
  devStack = d.stack as PlatformStack;
  prod = synth({ stage: 'prod' }).template;
  staging = synth({ stage: 'staging' }).template;
});

describe('local stage (LocalStack free edition, cdklocal)', () => {
  let local: Template;
  beforeAll(() => {
    const { stack, template } = synth({ stage: 'local' });
    expect(stack).toBeInstanceOf(LocalPlatformStack);
    expect(stack.stackName).toBe('Qicore-local');
    local = template;
  });

  it('holds only what the free edition emulates: Kinesis, Lambda, Step Functions, Secrets Manager, SQS (and their IAM and logs)', () => {
    const types = new Set(Object.values(resources(local)).map((r) => r.Type));
    expect([...types].filter((type) => !LOCAL_RESOURCE_TYPES.includes(type))).toEqual([]);
    for (const needed of ['AWS::Kinesis::Stream', 'AWS::Lambda::Function', 'AWS::StepFunctions::StateMachine', 'AWS::SecretsManager::Secret', 'AWS::SQS::Queue']) {
      expect(types.has(needed), needed).toBe(true);
    }
  });

  it('runs both store writers on the stream (ClickHouse candles built by the writer: no refresher rule) and the four agent steps', () => {
    const streamId = onlyId(local, 'AWS::Kinesis::Stream');
    local.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    local.allResourcesProperties('AWS::Lambda::EventSourceMapping', { EventSourceArn: { 'Fn::GetAtt': [streamId, 'Arn'] } });
    expect(lambdaEnv(local, 'ClickHouseWriterFunction')['CLICKHOUSE_CANDLES']).toBeUndefined();
    expect(idsOf(local, 'AWS::Lambda::Function', 'Agents')).toHaveLength(4);
    // started by hand: no Scheduler in the free edition
    expect(lambdaEnv(local, 'AgentsMonitorFunction')).toMatchObject({
      MCP_URL: LOCAL_STORE_URLS.mcp,
      AGENT_TOKEN_SECRET_ARN: { Ref: onlyId(local, 'AWS::SecretsManager::Secret', 'AgentToken') },
    });
  });

  it('is built by defineStage only: the AWS stage builder refuses it', () => {
    expect(() => definePlatform(new App({ context: { stage: 'local' } }), {})).toThrow(/stage 'local' is LocalPlatformStack/);
  });

  it('names the stream as the compose collector expects it', () => {
    local.hasResourceProperties('AWS::Kinesis::Stream', { Name: LOCAL_STORE_URLS.streamName });
  });

  it('points the writers at the compose stores through secrets, by ARN', () => {
    expect(lambdaEnv(local, 'TimescaleWriterFunction')['DATABASE_SECRET_ARN']).toEqual({ Ref: onlyId(local, 'AWS::SecretsManager::Secret', 'DatabaseSecret') });
    local.hasResourceProperties('AWS::SecretsManager::Secret', { SecretString: LOCAL_STORE_URLS.database });
    local.hasResourceProperties('AWS::SecretsManager::Secret', { SecretString: LOCAL_STORE_URLS.clickhouse });
  });
});

describe('AWS stages: network and secrets', () => {
  it('runs every store-reaching function in the private subnets with a security group that lets out only 443 and its store port', () => {
    const config = stageConfigFor('dev');
    expect(config.name).toBe('dev');
    const all = resources(dev);
    for (const [prefix, port] of [['TimescaleWriterFunction', 5432], ['ClickHouseWriterFunction', 8443], ['ClickHouseRefresherFunction', 8443]] as const) {
      const fn = all[onlyId(dev, 'AWS::Lambda::Function', prefix)]!;
      const vpcConfig = fn.Properties['VpcConfig'] as { SubnetIds: { Ref: string }[]; SecurityGroupIds: unknown[] };
      expect(vpcConfig.SubnetIds.every((s) => /privateSubnet/.test(s.Ref)), prefix).toBe(true);
      const sg = all[groupRef(vpcConfig.SecurityGroupIds[0])]!;
      const egress = (sg.Properties['SecurityGroupEgress'] as { FromPort: number; CidrIp?: string }[]).map((e) => e.FromPort).sort((a, b) => a - b);
      expect(egress, prefix).toEqual([443, port]);
    }
    // the agents reach only the MCP endpoint, but run in the private subnets like every other function
    for (const step of ['Monitor', 'Analyst', 'Risk', 'Execute']) {
      const vpcConfig = all[onlyId(dev, 'AWS::Lambda::Function', `Agents${step}Function`)]!.Properties['VpcConfig'] as { SubnetIds: { Ref: string }[] };
      expect(vpcConfig.SubnetIds.every((s) => /privateSubnet/.test(s.Ref)), step).toBe(true);
    }
  });

  it('opens the ports given by context (a managed TimescaleDB on its own port)', () => {
    const custom = synth({ stage: 'dev', [CONTEXT_KEYS.databasePort]: '31234' }).template;
    const all = resources(custom);
    const fn = all[onlyId(custom, 'AWS::Lambda::Function', 'TimescaleWriterFunction')]!;
    const sg = all[groupRef((fn.Properties['VpcConfig'] as { SecurityGroupIds: unknown[] }).SecurityGroupIds[0])]!;
    expect((sg.Properties['SecurityGroupEgress'] as { FromPort: number }[]).map((e) => e.FromPort).sort()).toEqual([31234, 443]);
    expect(() => synth({ stage: 'dev', [CONTEXT_KEYS.databasePort]: '70000' })).toThrow(/databasePort must be an integer from 1 to 65535/);
  });

  it('gives every function and task secret ARNs, never a connection string with credentials or a store URL as a value', () => {
    for (const t of [dev, prod, staging]) {
      for (const fn of Object.values(t.findResources('AWS::Lambda::Function'))) {
        const env = (fn['Properties']['Environment']?.Variables ?? {}) as Record<string, unknown>;
        for (const name of ['DATABASE_URL', 'CLICKHOUSE_URL', 'REDIS_URL']) expect(env[name], name).toBeUndefined();
        for (const [name, value] of Object.entries(env)) {
          if (name.endsWith('_SECRET_ARN')) expect(JSON.stringify(value), name).toMatch(/"Ref"|arn:aws/);
          expect(JSON.stringify(value), name).not.toMatch(/:\/\/[^/"]*:[^/"]*@/);
        }
      }
      for (const c of containers(t)) {
        const names = (c.Environment ?? []).map((e) => e.Name);
        for (const name of ['DATABASE_URL', 'CLICKHOUSE_URL', 'REDIS_URL', 'MCP_SESSION_SECRET']) expect(names, `${c.Name} ${name}`).not.toContain(name);
        for (const e of c.Environment ?? []) expect(JSON.stringify(e.Value), e.Name).not.toMatch(/:\/\/[^/"]*:[^/"]*@/);
      }
    }
    // the MCP server gets its stores and cache as ECS secrets: ARNs in the task definition
    const mcp = containers(dev).find((c) => c.Name === 'mcp-server')!;
    expect(mcp.Secrets!.map((s) => s.Name).sort()).toEqual(['CLICKHOUSE_URL', 'DATABASE_URL', 'MCP_SESSION_SECRET', 'REDIS_URL']);
    expect(mcp.Secrets!.find((s) => s.Name === 'REDIS_URL')!.ValueFrom).toEqual({ Ref: onlyId(dev, 'AWS::SecretsManager::Secret', 'MemoryCacheUrl') });
  });

  it("passes the exchange keys' secret to the collector by ARN and lets only its task role read it", () => {
    const collector = containers(dev).find((c) => c.Name === 'collector')!;
    expect(collector.Environment).toContainEqual({ Name: 'EXCHANGE_KEYS_SECRET_ARN', Value: EXCHANGE_KEYS_ARN });
    const readers = Object.entries(dev.findResources('AWS::IAM::Policy'))
      .filter(([, p]) => JSON.stringify(p['Properties']['PolicyDocument']).includes('exchange-keys'))
      .map(([id]) => id);
    expect(readers).toEqual([expect.stringMatching(/^CollectorServiceTaskDefTaskRole/)]);
    expect(containers(prod).find((c) => c.Name === 'collector')!.Environment!.map((e) => e.Name)).not.toContain('EXCHANGE_KEYS_SECRET_ARN');
  });

  it('logs rejected flows of the VPC', () => {
    dev.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT', LogDestinationType: 'cloud-watch-logs' });
  });
});

describe('AWS stages: ElastiCache for memory and resource fan-out', () => {
  it('is a Valkey replication group in the private subnets, TLS required, encrypted at rest, with an AUTH token from Secrets Manager', () => {
    const tokenId = onlyId(dev, 'AWS::SecretsManager::Secret', 'MemoryCacheAuthToken');
    dev.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', {
      Engine: 'valkey',
      CacheNodeType: stageConfigFor('dev').cache.nodeType,
      NumCacheClusters: 1,
      TransitEncryptionEnabled: true,
      TransitEncryptionMode: 'required',
      AtRestEncryptionEnabled: true,
      AuthToken: { 'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: tokenId }, ':SecretString:::}}']] },
    });
    dev.hasResourceProperties('AWS::ElastiCache::SubnetGroup', { SubnetIds: Match.arrayWith([Match.objectLike({ Ref: Match.stringLikeRegexp('privateSubnet') })]) });
    // prod: a replica in the other AZ with failover
    prod.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { NumCacheClusters: 2, AutomaticFailoverEnabled: true, MultiAZEnabled: true });
    // the URL secret is made of references only: the token by dynamic reference, the host by attribute
    const url = resources(dev)[onlyId(dev, 'AWS::SecretsManager::Secret', 'MemoryCacheUrl')]!.Properties['SecretString'];
    expect(JSON.stringify(url)).toMatch(/rediss:\/\/:.*resolve:secretsmanager.*PrimaryEndPoint\.Address/);
  });

  it('admits only the MCP service and the TimescaleDB writer, on its port', () => {
    const all = resources(dev);
    const cacheSg = onlyId(dev, 'AWS::EC2::SecurityGroup', 'MemoryCacheSecurityGroup');
    const ingress = Object.values(all).filter((r) => r.Type === 'AWS::EC2::SecurityGroupIngress' && groupRef(r.Properties['GroupId']) === cacheSg);
    const sources = ingress.map((r) => groupRef(r.Properties['SourceSecurityGroupId'])).sort();
    // the MCP tasks' group (Service/Service/SecurityGroup, CDK drops the repeated id), not the load balancer's
    expect(sources).toEqual([expect.stringMatching(/^McpServiceSecurityGroup/), expect.stringMatching(/^TimescaleWriterFunctionSecurityGroup/)]);
    expect(ingress.every((r) => r.Properties['FromPort'] === 6379 && r.Properties['ToPort'] === 6379)).toBe(true);
    expect(all[cacheSg]!.Properties['SecurityGroupIngress']).toBeUndefined();
    // the writer learns where the cache is from its secret, at run time
    expect(lambdaEnv(dev, 'TimescaleWriterFunction')['REDIS_SECRET_ARN']).toEqual({ Ref: onlyId(dev, 'AWS::SecretsManager::Secret', 'MemoryCacheUrl') });
  });

  it('is not created when -c redisUrl names an external Redis', () => {
    const external = synth({ stage: 'dev', redisUrl: 'redis://cache.internal:6379' }).template;
    external.resourceCountIs('AWS::ElastiCache::ReplicationGroup', 0);
    expect(lambdaEnv(external, 'TimescaleWriterFunction')['REDIS_SECRET_ARN']).toBeUndefined();
  });
});

describe('AWS stages: identity (Cognito)', () => {
  it("has a resource server with every scope of the platform's tools", () => {
    const server = resources(dev)[onlyId(dev, 'AWS::Cognito::UserPoolResourceServer')]!;
    expect(server.Properties['Identifier']).toBe('qicore');
    expect((server.Properties['Scopes'] as { ScopeName: string }[]).map((s) => s.ScopeName).sort()).toEqual([...ALL_SCOPES].sort());
    for (const scope of ['market:read', 'signals:write', 'memory:read', 'memory:write', 'agents:read', 'agents:write', 'agents:admin', 'paper:trade']) {
      expect(ALL_SCOPES).toContain(scope);
    }
  });

  it('gives agents a client-credentials client with a secret (kept in Secrets Manager), without the kill switch scope', () => {
    const agent = Object.values(dev.findResources('AWS::Cognito::UserPoolClient')).find((c) => c['Properties']['ClientName'] === 'qicore-agents')!;
    expect(agent['Properties']).toMatchObject({ GenerateSecret: true, AllowedOAuthFlows: ['client_credentials'], AllowedOAuthFlowsUserPoolClient: true });
    const scopes = JSON.stringify(agent['Properties']['AllowedOAuthScopes']);
    for (const s of AGENT_CLIENT_SCOPES) expect(scopes).toContain(`/${s}`);
    expect(scopes).not.toContain(SCOPES.agentsAdmin);
    // the agents read the secret by ARN and exchange it at the hosted domain's token endpoint
    const env = lambdaEnv(dev, 'AgentsMonitorFunction');
    expect(env['AGENT_CLIENT_SECRET_ARN']).toEqual({ Ref: onlyId(dev, 'AWS::SecretsManager::Secret', 'IdentityAgentClientSecret') });
    expect(JSON.stringify(env['AGENT_TOKEN_URL'])).toMatch(/amazoncognito\.com\/oauth2\/token/);
    expect(String(env['AGENT_SCOPES']).split(' ')).toEqual(AGENT_CLIENT_SCOPES.map((s) => `qicore/${s}`));
  });

  it('gives people a public authorization-code client (PKCE) with the callback URLs and domain prefix of the context', () => {
    const t = synth({ stage: 'dev', cognitoDomainPrefix: 'qicore-dev-test', cognitoCallbackUrls: 'https://app.example.com/cb, http://localhost:3000/cb' }).template;
    const user = Object.values(t.findResources('AWS::Cognito::UserPoolClient')).find((c) => c['Properties']['ClientName'] === 'qicore-people')!;
    expect(user['Properties']).toMatchObject({
      GenerateSecret: false,
      AllowedOAuthFlows: ['code'],
      CallbackURLs: ['https://app.example.com/cb', 'http://localhost:3000/cb'],
    });
    const scopes = JSON.stringify(user['Properties']['AllowedOAuthScopes']);
    for (const s of USER_CLIENT_SCOPES) expect(scopes).toContain(`/${s}`);
    expect(scopes).not.toContain(SCOPES.paperTrade);
    t.hasResourceProperties('AWS::Cognito::UserPoolDomain', { Domain: 'qicore-dev-test' });
    expect(() => synth({ stage: 'dev', cognitoCallbackUrls: 'http://app.example.com/cb' })).toThrow(/must be https, or http on localhost/);
    expect(() => synth({ stage: 'dev', cognitoDomainPrefix: 'my-cognito-app' })).toThrow(/reserves/);
  });

  it('admits people an administrator creates, with MFA, a strong password policy and threat protection', () => {
    dev.hasResourceProperties('AWS::Cognito::UserPool', {
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      MfaConfiguration: 'ON',
      UserPoolAddOns: { AdvancedSecurityMode: 'ENFORCED' },
      Policies: { PasswordPolicy: Match.objectLike({ MinimumLength: 12, RequireSymbols: true }) },
    });
  });
});

describe('AWS stages: the public endpoint', () => {
  it('puts a WAF web ACL with a per-IP rate rule and the AWS managed rule groups on the MCP load balancer', () => {
    const aclId = onlyId(dev, 'AWS::WAFv2::WebACL');
    const acl = resources(dev)[aclId]!.Properties;
    expect(acl['Scope']).toBe('REGIONAL');
    const rules = acl['Rules'] as { Name: string; Statement: Record<string, any> }[];
    expect(rules[0]!.Statement['RateBasedStatement']).toMatchObject({ Limit: stageConfigFor('dev').firewall.requestsPer5Minutes, AggregateKeyType: 'IP' });
    expect(rules.slice(1).map((r) => r.Statement['ManagedRuleGroupStatement'].Name)).toEqual([...MANAGED_RULE_GROUPS]);
    // agents' record_decision bodies exceed the common rule set's 8 KB: counted, not blocked
    const common = rules.find((r) => r.Statement['ManagedRuleGroupStatement']?.Name === 'AWSManagedRulesCommonRuleSet')!;
    expect(common.Statement['ManagedRuleGroupStatement'].RuleActionOverrides).toEqual([{ Name: 'SizeRestrictions_BODY', ActionToUse: { Count: {} } }]);
    dev.hasResourceProperties('AWS::WAFv2::WebACLAssociation', {
      ResourceArn: { Ref: onlyId(dev, 'AWS::ElasticLoadBalancingV2::LoadBalancer') },
      WebACLArn: { 'Fn::GetAtt': [aclId, 'Arn'] },
    });
    prod.hasResourceProperties('AWS::WAFv2::WebACL', {
      Rules: Match.arrayWith([Match.objectLike({ Statement: { RateBasedStatement: Match.objectLike({ Limit: stageConfigFor('prod').firewall.requestsPer5Minutes }) } })]),
    });
  });

  it('writes load balancer access logs to an encrypted, TLS-only bucket when the region is known', () => {
    const bucketId = onlyId(dev, 'AWS::S3::Bucket', 'McpServiceAccessLogs');
    dev.hasResourceProperties('AWS::S3::Bucket', { BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] } });
    dev.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'access_logs.s3.enabled', Value: 'true' }, { Key: 'access_logs.s3.bucket', Value: { Ref: bucketId } }]),
    });
  });
});

describe('AWS stages: agents and observability', () => {
  it("schedules the agent run at the stage's rate against the MCP endpoint", () => {
    for (const [t, stage] of [[dev, 'dev'], [prod, 'prod']] as const) {
      t.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
      t.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: stageConfigFor(stage).agents.schedule, State: 'ENABLED' });
    }
    expect(JSON.stringify(lambdaEnv(dev, 'AgentsMonitorFunction')['MCP_URL'])).toMatch(/\/mcp/);
  });

  it('watches the stream, consumers, failure queues, collector shards, MCP endpoint and agent runs', () => {
    dev.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const alarms = JSON.stringify(dev.findResources('AWS::CloudWatch::Alarm'));
    for (const id of [
      onlyId(dev, 'AWS::Kinesis::Stream'),
      onlyId(dev, 'AWS::SQS::Queue', 'TimescaleWriterFailedBatches'),
      onlyId(dev, 'AWS::Lambda::Function', 'ClickHouseWriterFunction'),
      onlyId(dev, 'AWS::StepFunctions::StateMachine'),
    ]) {
      expect(alarms, id).toContain(id);
    }
    expect(devStack.observability.alarms.size).toBeGreaterThan(5);
  });
});

describe('AWS stages: sizes', () => {
  it('sizes staging between dev and prod', () => {
    const shards = (t: Template) => resources(t)[onlyId(t, 'AWS::Kinesis::Stream')]!.Properties['ShardCount'] as number;
    expect(shards(staging)).toBeGreaterThan(shards(dev));
    expect(shards(staging)).toBeLessThan(shards(prod));
    staging.hasResourceProperties('AWS::ElastiCache::ReplicationGroup', { NumCacheClusters: 1 });
  });
});

describe('Lambda packaging', () => {
  it('bundles each function with its dependencies but imports the runtime AWS SDK, and uses no layer', () => {
    // the smallest stack with real bundles: esbuild runs here as in `cdk synth`
    const { app, stack } = synth({ stage: 'local' }, { bundle: true });
    const assembly = app.synth();
    const manifest = JSON.parse(readFileSync(join(assembly.directory, `${stack.artifactId}.assets.json`), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
    };
    const bundles = Object.values(manifest.files)
      .filter((f) => f.source.packaging === 'zip')
      .map((f) => join(assembly.directory, f.source.path, 'index.mjs'))
      .filter((p) => existsSync(p));
    expect(bundles).toHaveLength(6);
    for (const bundle of bundles) {
      const code = readFileSync(bundle, 'utf8');
      // every SDK client is imported from the runtime, never compiled in
      expect(code).toMatch(/from\s*"@aws-sdk\/client-[a-z-]+"/);
      expect(code).not.toMatch(/node_modules\/@aws-sdk\//);
      expect(statSync(bundle).size).toBeLessThan(3_000_000);
    }
    Template.fromStack(stack).resourceCountIs('AWS::Lambda::LayerVersion', 0);
  });
});
