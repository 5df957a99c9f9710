import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { Vpc } from 'aws-cdk-lib/aws-ec2';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { Stream, StreamMode } from 'aws-cdk-lib/aws-kinesis';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseRefresher, CLICKHOUSE_REFRESHER_ENTRY } from '../../cdk/lib/constructs/clickhouse-refresher.js';
import {
  COLLECTOR_COMMAND,
  COLLECTOR_JOURNAL_DIR,
  CollectorService,
  MAX_COLLECTOR_SHARDS,
  type CollectorServiceProps,
} from '../../cdk/lib/constructs/collector-service.js';
import { MarketStream } from '../../cdk/lib/constructs/market-stream.js';
import { MarketTopic } from '../../cdk/lib/constructs/market-topic.js';
import { McpService, type McpServiceProps } from '../../cdk/lib/constructs/mcp-service.js';
import { TimescaleWriter, type StoreWriterOptions } from '../../cdk/lib/constructs/store-writer.js';
import { definePlatform } from '../../cdk/lib/platform-app.js';
import { PlatformStack } from '../../cdk/lib/platform-stack.js';
import { InvalidPropsError } from '../../cdk/lib/prop-checks.js';
import { repoPath } from '../../cdk/lib/repo-paths.js';
import { stageConfigFor, UnknownStageError } from '../../cdk/lib/stage-config.js';
import { CollectorEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { ClickHouseRefresherEnvSchema } from '../../layers/shared/src/consumers/clickhouse-refresher.js';
import { ClickHouseWriterEnvSchema } from '../../layers/shared/src/consumers/clickhouse-writer.js';
import { parseMarkets } from '../../layers/shared/src/config/markets.js';
import { formatMarkets, parseShard, shardMarkets, shardSizes } from '../../layers/shared/src/config/shards.js';

// The feature flags of cdk.json, so the tests synthesize what `cdk synth` does.
const cdkJson = JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> };

/**
 * An app with the flags of cdk.json that skips bundling (`aws:cdk:bundling-stacks`): these tests read templates,
 * and esbuild made each stack cost seconds. tests/cdk/stages.test.ts checks real bundles.
 */
function appWith(context: Record<string, unknown>): App {
  return new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [], ...context } });
}

const PROD_AUTH = {
  jwtIssuer: 'https://idp.qicore.test/',
  jwtAudience: 'qicore-mcp-prod',
  jwksUrl: 'https://idp.qicore.test/.well-known/jwks.json',
};
const PROD_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:qicore/prod/database-AbCdEf';
const PROD_CLICKHOUSE_SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:qicore/prod/clickhouse-AbCdEf';
const PROD_CERT_ARN = 'arn:aws:acm:eu-west-1:111111111111:certificate/00000000-0000-0000-0000-000000000000';

const devConfig = stageConfigFor('dev');
const prodConfig = stageConfigFor('prod');

type ContainerEnv = { Name: string; Value: unknown }[];

/** Environment of each collector container (one a shard), as the template gives it. */
function collectorEnvs(template: Template): ContainerEnv[] {
  const defs = Object.values(template.findResources('AWS::ECS::TaskDefinition')).flatMap(
    (r) => (r['Properties'] as { ContainerDefinitions: { Name: string; Environment: ContainerEnv }[] }).ContainerDefinitions,
  );
  return defs.filter((d) => d.Name === 'collector').map((d) => d.Environment);
}

/** Environment of the collector's container, where there is one shard. */
function collectorEnv(template: Template): ContainerEnv {
  const envs = collectorEnvs(template);
  expect(envs).toHaveLength(1);
  return envs[0]!;
}

/** The string value of `name` in a container environment. */
function envValue(env: ContainerEnv, name: string): string {
  const value = env.find((e) => e.Name === name)?.Value;
  expect(typeof value, name).toBe('string');
  return value as string;
}

/**
 * That environment as the task would see it, deploy-time values stood in for by plausible ones, so the
 * runtime's own schema can say whether the CDK side gives it what it needs.
 */
function asDeployed(env: ContainerEnv, tokens: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    env.map(({ Name, Value }) => {
      if (typeof Value === 'string') return [Name, Value];
      const standIn = tokens[Name];
      if (standIn === undefined) throw new Error(`${Name} is a deploy-time value (${JSON.stringify(Value)}) with no stand-in`);
      return [Name, standIn];
    }),
  );
}

/** Logical id of the only resource of `type` in `template` (whose id starts with `prefix`, when given). */
function onlyId(template: Template, type: string, prefix = ''): string {
  const ids = Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
  expect(ids, `${type} resources ${prefix}`).toHaveLength(1);
  return ids[0]!;
}

// NodejsFunction runs esbuild in its constructor: both stages are built once for the whole file.
let devApp: App;
let devStack: PlatformStack;
let dev: Template;
let prodStack: PlatformStack;
let prod: Template;

beforeAll(() => {
  devApp = appWith({ stage: 'dev' });
  devStack = definePlatform(devApp, {});
  dev = Template.fromStack(devStack);
  prodStack = definePlatform(
    appWith({
      stage: 'prod',
      ...PROD_AUTH,
      databaseSecretArn: PROD_SECRET_ARN,
      clickhouseSecretArn: PROD_CLICKHOUSE_SECRET_ARN,
      mcpCertificateArn: PROD_CERT_ARN,
      mcpDomain: 'mcp.example.com',
    }),
    {},
  );
  prod = Template.fromStack(prodStack);
});

describe('PlatformStack: market stream', () => {
  it('is a KMS-encrypted Kinesis stream sized by the stage', () => {
    dev.resourceCountIs('AWS::Kinesis::Stream', 1);
    dev.hasResourceProperties('AWS::Kinesis::Stream', {
      ShardCount: devConfig.stream.shardCount,
      RetentionPeriodHours: devConfig.stream.retentionPeriod.toHours(),
      StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
      StreamModeDetails: { StreamMode: 'PROVISIONED' },
    });
  });
});

describe('PlatformStack: timescale writer', () => {
  it('is a Node 20 ARM64 function bundled as ESM that gets the database secret ARN', () => {
    const secretId = onlyId(dev, 'AWS::SecretsManager::Secret', 'DatabaseSecret');
    dev.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: devConfig.writer.memorySize,
      Timeout: devConfig.writer.timeout.toSeconds(),
      Environment: {
        Variables: {
          DATABASE_SECRET_ARN: { Ref: secretId },
          LOG_LEVEL: 'info',
          NODE_OPTIONS: '--enable-source-maps',
        },
      },
    });
  });

  it('consumes the stream with bisection, partial batch failures and a failure queue, sized by the stage', () => {
    const streamId = onlyId(dev, 'AWS::Kinesis::Stream');
    const queueId = onlyId(dev, 'AWS::SQS::Queue', 'TimescaleWriterFailedBatches');
    dev.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    dev.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [streamId, 'Arn'] },
      BisectBatchOnFunctionError: true,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: devConfig.writer.batchSize,
      MaximumBatchingWindowInSeconds: devConfig.writer.maxBatchingWindow.toSeconds(),
      ParallelizationFactor: devConfig.writer.parallelizationFactor,
      MaximumRetryAttempts: devConfig.writer.retryAttempts,
      StartingPosition: 'TRIM_HORIZON',
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
    prod.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: prodConfig.writer.batchSize,
      MaximumBatchingWindowInSeconds: prodConfig.writer.maxBatchingWindow.toSeconds(),
      ParallelizationFactor: prodConfig.writer.parallelizationFactor,
    });
    dev.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 24 * 3600 });
  });

  it("lets the function's role read the stream and the secret and send to the failure queue", () => {
    const streamId = onlyId(dev, 'AWS::Kinesis::Stream');
    const secretId = onlyId(dev, 'AWS::SecretsManager::Secret', 'DatabaseSecret');
    const queueId = onlyId(dev, 'AWS::SQS::Queue', 'TimescaleWriterFailedBatches');
    const writer = [dev.findResources('AWS::Lambda::Function')[onlyId(dev, 'AWS::Lambda::Function', 'TimescaleWriterFunction')]!];
    const roleId = (writer[0]!['Properties'] as { Role: { 'Fn::GetAtt': [string, string] } }).Role['Fn::GetAtt'][0];

    // One assertion per grant: arrayWith matches in order, and grant order is not a contract.
    const grants: Array<[string[], unknown]> = [
      [['kinesis:DescribeStream', 'kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:ListShards'], { 'Fn::GetAtt': [streamId, 'Arn'] }],
      // its own secret and the cache URL's (new-data announcements)
      [['secretsmanager:GetSecretValue'], Match.arrayWith([{ Ref: secretId }])],
      [['sqs:SendMessage'], { 'Fn::GetAtt': [queueId, 'Arn'] }],
    ];
    for (const [actions, resource] of grants) {
      dev.hasResourceProperties('AWS::IAM::Policy', {
        Roles: [{ Ref: roleId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Allow', Action: Match.arrayWith(actions), Resource: resource }),
          ]),
        },
      });
    }
  });

  it('keeps its logs for the stage retention', () => {
    dev.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    prod.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
  });
});

describe('PlatformStack: ClickHouse writer', () => {
  it('consumes the same stream with its own secret, event source and failure queue', () => {
    const streamId = onlyId(dev, 'AWS::Kinesis::Stream');
    const secretId = onlyId(dev, 'AWS::SecretsManager::Secret', 'ClickHouseSecret');
    const queueId = onlyId(dev, 'AWS::SQS::Queue', 'ClickHouseWriterFailedBatches');
    const fnId = onlyId(dev, 'AWS::Lambda::Function', 'ClickHouseWriterFunction');
    dev.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Environment: { Variables: Match.objectLike({ CLICKHOUSE_SECRET_ARN: { Ref: secretId } }) },
    });
    dev.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fnId },
      EventSourceArn: { 'Fn::GetAtt': [streamId, 'Arn'] },
      BisectBatchOnFunctionError: true,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
    });
  });
});

describe('PlatformStack: ClickHouse refresher', () => {
  it('tells the ClickHouse writer to leave candles to the refresher, and only that writer', () => {
    const writerId = onlyId(dev, 'AWS::Lambda::Function', 'ClickHouseWriterFunction');
    const fns = dev.findResources('AWS::Lambda::Function');
    const env = (id: string) => (fns[id]!['Properties'] as { Environment: { Variables: Record<string, unknown> } }).Environment.Variables;
    expect(env(writerId)['CLICKHOUSE_CANDLES']).toBe('refresher');
    expect(env(onlyId(dev, 'AWS::Lambda::Function', 'TimescaleWriterFunction'))['CLICKHOUSE_CANDLES']).toBeUndefined();
    // what the writer's runtime schema makes of it
    expect(parseEnv(ClickHouseWriterEnvSchema, { CLICKHOUSE_URL: 'http://ch:8123', CLICKHOUSE_CANDLES: 'refresher' }).CLICKHOUSE_CANDLES).toBe('refresher');
  });

  it('is a Lambda run every minute by an EventBridge rule, with the ClickHouse secret and no retries', () => {
    const secretId = onlyId(dev, 'AWS::SecretsManager::Secret', 'ClickHouseSecret');
    const fnId = onlyId(dev, 'AWS::Lambda::Function', 'ClickHouseRefresherFunction');
    dev.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: 60,
      Environment: { Variables: { CLICKHOUSE_SECRET_ARN: { Ref: secretId }, LOG_LEVEL: 'info', NODE_OPTIONS: '--enable-source-maps' } },
    });
    dev.resourceCountIs('AWS::Events::Rule', 1);
    dev.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] }, RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 } })],
    });
    dev.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
      Principal: 'events.amazonaws.com',
    });
    const role = (dev.findResources('AWS::Lambda::Function')[fnId]!['Properties'] as { Role: { 'Fn::GetAtt': [string, string] } }).Role['Fn::GetAtt'][0];
    dev.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: role }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Allow', Action: Match.arrayWith(['secretsmanager:GetSecretValue']), Resource: { Ref: secretId } })]),
      },
    });
    // its handler and the environment it is given agree
    expect(existsSync(repoPath(CLICKHOUSE_REFRESHER_ENTRY))).toBe(true);
    expect(() => parseEnv(ClickHouseRefresherEnvSchema, { CLICKHOUSE_SECRET_ARN: PROD_CLICKHOUSE_SECRET_ARN, LOG_LEVEL: 'info' })).not.toThrow();
  });

  it('rejects an interval that is not whole minutes or a timeout beyond the interval', () => {
    const stack = new Stack(appWith({}), 'RefresherProps');
    const secret = Secret.fromSecretCompleteArn(stack, 'S', PROD_CLICKHOUSE_SECRET_ARN);
    expect(() => new ClickHouseRefresher(stack, 'Seconds', { secret, interval: Duration.seconds(30) })).toThrow(/interval \(minutes\).*got 0.5/);
    expect(() => new ClickHouseRefresher(stack, 'Slow', { secret, timeout: Duration.minutes(2) })).toThrow(InvalidPropsError);
  });
});

describe('PlatformStack: MCP service', () => {
  it('runs on Fargate (ARM64, private subnets) behind an internet-facing ALB that probes /healthz', () => {
    // the MCP server's and the collector's
    dev.resourceCountIs('AWS::ECS::Service', 2);
    dev.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      DesiredCount: devConfig.mcp.desiredCount,
      DeploymentConfiguration: Match.objectLike({ DeploymentCircuitBreaker: { Enable: true, Rollback: true } }),
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
    dev.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: String(devConfig.mcp.cpu),
      Memory: String(devConfig.mcp.memoryLimitMiB),
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'mcp-server',
          PortMappings: [Match.objectLike({ ContainerPort: 8080 })],
          Environment: Match.arrayWith([
            { Name: 'MCP_HOST', Value: '0.0.0.0' },
            { Name: 'MCP_PORT', Value: '8080' },
            Match.objectLike({ Name: 'JWT_JWKS_URL' }),
          ]),
          Secrets: Match.arrayWith([
            { Name: 'MCP_SESSION_SECRET', ValueFrom: { Ref: onlyId(dev, 'AWS::SecretsManager::Secret', 'McpServiceSessionSecret') } },
            { Name: 'DATABASE_URL', ValueFrom: { Ref: onlyId(dev, 'AWS::SecretsManager::Secret', 'DatabaseSecret') } },
          ]),
        }),
      ],
    });
    dev.resourceCountIs('AWS::ElasticLoadBalancingV2::LoadBalancer', 1);
    dev.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internet-facing',
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'idle_timeout.timeout_seconds', Value: '300' }]),
    });
    dev.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/healthz',
      Matcher: { HttpCode: '200' },
      TargetType: 'ip',
    });
  });

  it('shares a generated session secret between tasks, scales on CPU, and advertises its public URL and hosts', () => {
    const env = (t: Template) => {
      const defs = Object.values(t.findResources('AWS::ECS::TaskDefinition')).flatMap(
        (r) => (r['Properties']['ContainerDefinitions'] as { Name: string; Environment: { Name: string; Value: unknown }[] }[]),
      );
      return Object.fromEntries(defs.find((d) => d.Name === 'mcp-server')!.Environment.map((e) => [e.Name, e.Value]));
    };
    expect(env(prod)['MCP_PUBLIC_URL']).toBe('https://mcp.example.com/mcp');
    expect(JSON.stringify(env(prod)['MCP_ALLOWED_HOSTS'])).toContain('mcp.example.com,');
    expect(env(prod)['MCP_METRICS_PORT']).toBe('9464');
    expect(JSON.stringify(env(dev)['MCP_PUBLIC_URL'])).toMatch(/http:\/\/.*DNSName/);
    dev.hasResourceProperties('AWS::SecretsManager::Secret', {
      GenerateSecretString: Match.objectLike({ PasswordLength: 48, ExcludePunctuation: true }),
    });
    prod.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: prodConfig.mcp.desiredCount,
      MaxCapacity: prodConfig.mcp.desiredCount * 4,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    prod.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 60,
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
  });

  it('builds its image from functions/mcp-server/Dockerfile for arm64 without node_modules in the context', () => {
    const assembly = devApp.synth();
    const manifest = JSON.parse(readFileSync(join(assembly.directory, `${devStack.artifactId}.assets.json`), 'utf8')) as {
      dockerImages: Record<string, { source: { directory: string; dockerFile?: string; platform?: string } }>;
    };
    const images = Object.values(manifest.dockerImages);
    expect(images).toHaveLength(1);
    const { source } = images[0]!;
    expect(source.dockerFile).toBe('functions/mcp-server/Dockerfile');
    expect(source.platform).toBe('linux/arm64');
    const context = join(assembly.directory, source.directory);
    expect(existsSync(join(context, 'functions/mcp-server/Dockerfile'))).toBe(true);
    expect(existsSync(join(context, 'package-lock.json'))).toBe(true);
    for (const ignored of ['node_modules', '.git', 'cdk.out', 'tests', '.data']) {
      expect(existsSync(join(context, ignored)), ignored).toBe(false);
    }
  });

  it('grants the stream to the writers, the collector and the MCP server (published signals), no one else', () => {
    const streamId = onlyId(dev, 'AWS::Kinesis::Stream');
    const readers = dev.findResources('AWS::IAM::Policy', {
      Properties: {
        PolicyDocument: {
          Statement: Match.arrayWith([Match.objectLike({ Resource: { 'Fn::GetAtt': [streamId, 'Arn'] } })]),
        },
      },
    });
    // the writers read it; the collector writes market data, the MCP task the signals agents publish
    expect(Object.keys(readers).sort()).toEqual([
      expect.stringMatching(/^ClickHouseWriterFunctionServiceRole/),
      expect.stringMatching(/^CollectorServiceTaskDefTaskRole/),
      expect.stringMatching(/^McpServiceTaskDefTaskRole/),
      expect.stringMatching(/^TimescaleWriterFunctionServiceRole/),
    ]);
    dev.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({ Name: 'mcp-server', Environment: Match.arrayWith([{ Name: 'STREAM_NAME', Value: { Ref: streamId } }]) }),
      ],
    });
  });

  it('passes JWT settings from context and serves HTTPS with an HTTP redirect when given a certificate', () => {
    prod.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'JWT_ISSUER', Value: PROD_AUTH.jwtIssuer },
            { Name: 'JWT_AUDIENCE', Value: PROD_AUTH.jwtAudience },
            { Name: 'JWT_JWKS_URL', Value: PROD_AUTH.jwksUrl },
          ]),
          Secrets: Match.arrayWith([{ Name: 'DATABASE_URL', ValueFrom: PROD_SECRET_ARN }]),
        }),
      ],
    });
    prod.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTPS',
      Port: 443,
      Certificates: [{ CertificateArn: PROD_CERT_ARN }],
    });
    prod.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Protocol: 'HTTP',
      Port: 80,
      DefaultActions: [Match.objectLike({ Type: 'redirect' })],
    });
    // existing secrets are referenced, never created; new are only the generated session secret and the cache's
    // AUTH token and URL (the external issuer needs no Cognito client secret)
    expect(Object.keys(prod.findResources('AWS::SecretsManager::Secret')).sort()).toEqual([
      expect.stringMatching(/^McpServiceSessionSecret/),
      expect.stringMatching(/^MemoryCacheAuthToken/),
      expect.stringMatching(/^MemoryCacheUrl/),
    ]);
  });

  it('trusts the Cognito user pool by default, checking client ids (its tokens carry no aud), and an external issuer by context', () => {
    const mcpEnv = (t: Template) => {
      const defs = Object.values(t.findResources('AWS::ECS::TaskDefinition')).flatMap(
        (r) => r['Properties']['ContainerDefinitions'] as { Name: string; Environment: ContainerEnv }[],
      );
      return Object.fromEntries(defs.find((d) => d.Name === 'mcp-server')!.Environment.map((e) => [e.Name, e.Value]));
    };
    const poolId = onlyId(dev, 'AWS::Cognito::UserPool');
    const env = mcpEnv(dev);
    expect(JSON.stringify(env['JWT_ISSUER'])).toContain(poolId);
    expect(JSON.stringify(env['JWT_ISSUER'])).toContain('https://cognito-idp.');
    expect(JSON.stringify(env['JWT_JWKS_URL'])).toContain('/.well-known/jwks.json');
    expect(env['JWT_AUDIENCE']).toBeUndefined();
    const clients = Object.keys(dev.findResources('AWS::Cognito::UserPoolClient')).sort();
    expect(clients).toEqual([expect.stringMatching(/^IdentityUserPoolAgentClient/), expect.stringMatching(/^IdentityUserPoolUserClient/)]);
    for (const client of clients) expect(JSON.stringify(env['JWT_CLIENT_IDS'])).toContain(client);
    prod.resourceCountIs('AWS::Cognito::UserPool', 0);
    expect(mcpEnv(prod)['JWT_CLIENT_IDS']).toBeUndefined();
  });

  it('refuses a partial external issuer, and warns when the listener is plain HTTP or the agents have no credentials', () => {
    expect(() => definePlatform(appWith({ stage: 'dev', jwtIssuer: PROD_AUTH.jwtIssuer }), {})).toThrow(
      /external OIDC issuer needs jwtIssuer, jwtAudience and jwksUrl together \(got jwtIssuer\)/,
    );
    const devNotes = Annotations.fromStack(devStack);
    devNotes.hasWarning('/Qicore-dev/McpService', Match.stringLikeRegexp('plain HTTP'));
    devNotes.hasNoWarning('/Qicore-dev', Match.stringLikeRegexp('No scheduled agents'));
    const prodNotes = Annotations.fromStack(prodStack);
    prodNotes.hasNoWarning('*', Match.stringLikeRegexp('plain HTTP'));
    prodNotes.hasWarning('/Qicore-prod', Match.stringLikeRegexp('No scheduled agents'));
  });
});

describe('PlatformStack: collector', () => {
  it('runs one Fargate task in the private subnets, rolling without a gap, from the shared image', () => {
    const serviceId = onlyId(dev, 'AWS::ECS::Service', 'CollectorService');
    const service = dev.findResources('AWS::ECS::Service')[serviceId]!['Properties'] as Record<string, unknown>;
    expect(service).toMatchObject({
      LaunchType: 'FARGATE',
      DesiredCount: 1,
      DeploymentConfiguration: { MinimumHealthyPercent: 100, MaximumPercent: 200, DeploymentCircuitBreaker: { Enable: true, Rollback: true } },
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
    });
    dev.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: String(devConfig.collector.cpu),
      Memory: String(devConfig.collector.memoryLimitMiB),
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      ContainerDefinitions: [Match.objectLike({ Name: 'collector', Command: COLLECTOR_COMMAND })],
    });
  });

  it('gives SIGTERM a minute to drain, restarts a crashed collector in its task, and journals to a task volume', () => {
    dev.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Volumes: [{ Name: 'journal' }],
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'collector',
          StopTimeout: 60,
          RestartPolicy: { Enabled: true, IgnoredExitCodes: [0], RestartAttemptPeriod: 60 },
          MountPoints: [{ SourceVolume: 'journal', ContainerPath: COLLECTOR_JOURNAL_DIR, ReadOnly: false }],
        }),
      ],
    });
    const env = collectorEnv(dev);
    expect(env).toEqual(
      expect.arrayContaining([
        { Name: 'COLLECTOR_JOURNAL_DIR', Value: COLLECTOR_JOURNAL_DIR },
        // drains for the stop timeout less 10 s, then journals and exits before ECS kills it
        { Name: 'COLLECTOR_DRAIN_TIMEOUT_MS', Value: '50000' },
        { Name: 'SHARD', Value: '0/1' },
      ]),
    );
  });

  it('publishes to the Kinesis stream: its name and the stage markets in the environment, PutRecords granted', () => {
    const streamId = onlyId(dev, 'AWS::Kinesis::Stream');
    const env = collectorEnv(dev);
    expect(env).toEqual(
      expect.arrayContaining([
        { Name: 'MARKETS', Value: devConfig.collector.markets },
        { Name: 'STREAM_KIND', Value: 'kinesis' },
        { Name: 'STREAM_NAME', Value: { Ref: streamId } },
        { Name: 'AWS_REGION', Value: { Ref: 'AWS::Region' } },
      ]),
    );
    expect(env.map((e) => e.Name).filter((n) => n.startsWith('KAFKA_'))).toEqual([]);
    dev.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^CollectorServiceTaskDefTaskRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: Match.arrayWith(['kinesis:PutRecord', 'kinesis:PutRecords']), Resource: { 'Fn::GetAtt': [streamId, 'Arn'] } }),
        ]),
      },
    });
    const config = parseEnv(CollectorEnvSchema, asDeployed(env, { STREAM_NAME: 'Qicore-dev-MarketStream', AWS_REGION: 'eu-west-1' }));
    expect(config).toMatchObject({ STREAM_KIND: 'kinesis', KAFKA_AUTH: 'none' });
  });
});

describe('PlatformStack: collector shards', () => {
  it('runs one service per stage shard, each told its shard and given its part of the stage markets', () => {
    expect(prodConfig.collector.shards).toBe(2);
    const envs = collectorEnvs(prod);
    expect(envs).toHaveLength(prodConfig.collector.shards);
    const serviceIds = Object.keys(prod.findResources('AWS::ECS::Service')).filter((id) => id.startsWith('CollectorService'));
    expect(serviceIds).toHaveLength(prodConfig.collector.shards);
    const all = parseMarkets(prodConfig.collector.markets);
    const shards = envs.map((env) => parseShard(envValue(env, 'SHARD')));
    expect(shards.map((sh) => `${sh.index}/${sh.count}`).sort()).toEqual(['0/2', '1/2']);
    // every market is collected by exactly one task, and a task's runtime re-applying the rule keeps all it got
    const got = envs.map((env) => parseMarkets(envValue(env, 'MARKETS')));
    const collected = got.flatMap((m) => [...m].flatMap(([e, ss]) => ss.map((sym) => `${e}:${sym}`)));
    expect(collected.sort()).toEqual([...all].flatMap(([e, ss]) => ss.map((sym) => `${e}:${sym}`)).sort());
    got.forEach((markets, i) => {
      expect(markets).toEqual(shardMarkets(all, shards[i]!));
      expect(shardMarkets(markets, shards[i]!)).toEqual(markets);
    });
    // and the runtime's schema takes every shard's environment
    for (const env of envs) {
      parseEnv(CollectorEnvSchema, asDeployed(env, { STREAM_NAME: 'Qicore-prod-MarketStream', AWS_REGION: 'eu-west-1' }));
    }
  });

  it("gives each shard its own log group with the stage retention, and its container that group", () => {
    const logIds = Object.keys(prod.findResources('AWS::Logs::LogGroup')).filter((id) => id.startsWith('CollectorService'));
    expect(logIds).toHaveLength(prodConfig.collector.shards);
    for (const id of logIds) {
      expect(prod.findResources('AWS::Logs::LogGroup')[id]).toMatchObject({
        Properties: { RetentionInDays: 90 },
        DeletionPolicy: 'Retain',
      });
    }
    type Def = { Properties: { ContainerDefinitions: { Name: string; LogConfiguration: { Options: Record<string, unknown> } }[] } };
    const groups = Object.values(prod.findResources('AWS::ECS::TaskDefinition') as Record<string, Def>)
      .flatMap((d) => d.Properties.ContainerDefinitions)
      .filter((c) => c.Name === 'collector')
      .map((c) => (c.LogConfiguration.Options['awslogs-group'] as { Ref: string }).Ref);
    expect(groups.sort()).toEqual(logIds.sort());
  });

  it('shares one task role, granted the stream once, and one execution role between the shards', () => {
    const streamId = onlyId(prod, 'AWS::Kinesis::Stream');
    type Def = { Properties: { TaskRoleArn: unknown; ExecutionRoleArn: unknown; ContainerDefinitions: { Name: string }[] } };
    const defs = Object.values(prod.findResources('AWS::ECS::TaskDefinition') as Record<string, Def>).filter((d) =>
      d.Properties.ContainerDefinitions.some((c) => c.Name === 'collector'),
    );
    expect(defs).toHaveLength(2);
    expect(new Set(defs.map((d) => JSON.stringify(d.Properties.TaskRoleArn))).size).toBe(1);
    expect(new Set(defs.map((d) => JSON.stringify(d.Properties.ExecutionRoleArn))).size).toBe(1);
    const roleId = (defs[0]!.Properties.TaskRoleArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    type Policy = { Properties: { Roles: { Ref: string }[]; PolicyDocument: { Statement: { Action: string | string[]; Resource: unknown }[] } } };
    const writers = Object.values(prod.findResources('AWS::IAM::Policy') as Record<string, Policy>).filter((p) =>
      p.Properties.PolicyDocument.Statement.some((st) => [st.Action].flat().includes('kinesis:PutRecords')),
    );
    // the shards' one role, and the MCP server's (published signals)
    const collectorWriters = writers.filter((p) => p.Properties.Roles.some((r) => r.Ref === roleId));
    expect(collectorWriters).toHaveLength(1);
    expect(writers.map((p) => p.Properties.Roles[0]!.Ref).filter((r) => r !== roleId)).toEqual([expect.stringMatching(/^McpServiceTaskDefTaskRole/)]);
    expect(JSON.stringify(collectorWriters[0]!.Properties.PolicyDocument)).toContain(JSON.stringify({ 'Fn::GetAtt': [streamId, 'Arn'] }));
  });

  const shardFixture = () => {
    const stack = new Stack(appWith({}), 'Shards');
    const vpc = new Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const stream = new Stream(stack, 'Stream');
    const image = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim');
    return { stack, vpc, stream, image };
  };
  // 30 markets over three exchanges: five shards of them are all non-empty
  const tenOf = (quote: string) => Array.from({ length: 10 }, (_, i) => `C${i}/${quote}`).join(',');
  const MANY = `binance:${tenOf('USDT')};okx:${tenOf('USDT')};kraken:${tenOf('USD')}`;

  it('builds N services, N task definitions and N log groups for shards=N, in one cluster and one security group', () => {
    expect(shardSizes(parseMarkets(MANY), 5)).not.toContain(0);
    const { stack, vpc, stream, image } = shardFixture();
    const collector = new CollectorService(stack, 'Collector', { vpc, stream, image, markets: MANY, shards: 5 });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::ECS::Service', 5);
    t.resourceCountIs('AWS::ECS::TaskDefinition', 5);
    t.resourceCountIs('AWS::Logs::LogGroup', 5);
    t.resourceCountIs('AWS::ECS::Cluster', 1);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    type Def = { Properties: { TaskRoleArn: unknown; ExecutionRoleArn: unknown } };
    const defs = Object.values(t.findResources('AWS::ECS::TaskDefinition') as Record<string, Def>);
    expect(new Set(defs.map((d) => JSON.stringify([d.Properties.TaskRoleArn, d.Properties.ExecutionRoleArn]))).size).toBe(1);
    expect(collector.shards.map((sh) => `${sh.shard.index}/${sh.shard.count}`)).toEqual(['0/5', '1/5', '2/5', '3/5', '4/5']);
    const envs = collectorEnvs(t);
    expect(envs.map((env) => envValue(env, 'SHARD')).sort()).toEqual(['0/5', '1/5', '2/5', '3/5', '4/5']);
    const all = parseMarkets(MANY);
    for (const env of envs) {
      const shard = parseShard(envValue(env, 'SHARD'));
      expect(envValue(env, 'MARKETS')).toBe(formatMarkets(shardMarkets(all, shard)));
    }
    // shard 0 keeps the ids of the single collector; the others live under Shard<i>
    expect(Object.keys(t.findResources('AWS::ECS::Service')).sort()).toEqual([
      expect.stringMatching(/^CollectorService[0-9A-F]{8}$/),
      expect.stringMatching(/^CollectorShard1Service/),
      expect.stringMatching(/^CollectorShard2Service/),
      expect.stringMatching(/^CollectorShard3Service/),
      expect.stringMatching(/^CollectorShard4Service/),
    ]);
  });

  it('rejects more shards than markets, a shard that would be empty, and counts or stop timeouts out of range', () => {
    const { stack, vpc, stream, image } = shardFixture();
    const live = devConfig.collector.markets; // six markets
    const collector = (id: string, props: Partial<CollectorServiceProps>) => () =>
      new CollectorService(stack, id, { vpc, stream, image, markets: live, ...props });
    expect(collector('Seven0', { shards: 7 })).toThrow(InvalidPropsError);
    expect(collector('Seven', { shards: 7 })).toThrow(
      'Seven shards 7 exceeds the 6 markets to collect: every shard needs a market; 4 is the largest count that fills every shard, or add markets',
    );
    expect(shardSizes(parseMarkets(live), 5)).toEqual([2, 1, 2, 1, 0]);
    expect(collector('Five', { shards: 5 })).toThrow(
      'Five shards 5: shard 4/5 would collect nothing (markets per shard: 2, 1, 2, 1, 0); 4 is the largest count below 5 that fills every shard; or add markets',
    );
    expect(collector('Zero', { shards: 0 })).toThrow(new RegExp(`Zero shards must be an integer from 1 to ${MAX_COLLECTOR_SHARDS} .* got 0`));
    expect(collector('Half', { shards: 1.5 })).toThrow(/Half shards .* got 1.5/);
    expect(collector('Slow', { stopTimeout: Duration.seconds(150) })).toThrow(/Slow stopTimeout \(seconds\) must be an integer from 2 to 120 \(the Fargate limit\), got 150/);
    expect(collector('Four', { shards: 4 })).not.toThrow();
  });

  it(`synthesizes the most shards one stack takes (${MAX_COLLECTOR_SHARDS}) under CloudFormation's 500 resources`, () => {
    // enough markets that every one of the shards gets some (about 40 each)
    const exchanges = ['binance', 'okx', 'bybit', 'coinbase', 'kraken', 'bitget', 'kucoin', 'gate', 'mexc', 'htx'];
    const markets = exchanges.map((e) => `${e}:${Array.from({ length: 200 }, (_, i) => `C${i}/USDT`).join(',')}`).join(';');
    expect(shardSizes(parseMarkets(markets), MAX_COLLECTOR_SHARDS)).not.toContain(0);
    const stack = new PlatformStack(appWith({}), 'Biggest', {
      config: { ...prodConfig, collector: { ...prodConfig.collector, markets, shards: MAX_COLLECTOR_SHARDS } },
      streamKind: 'msk',
      ...PROD_AUTH,
    });
    const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, unknown> };
    expect(collectorEnvs(Template.fromStack(stack))).toHaveLength(MAX_COLLECTOR_SHARDS);
    expect(Object.keys(template.Resources).length).toBeLessThanOrEqual(500);
    // the markets are split, not copied into every task: the template stays under CloudFormation's 1 MB
    expect(JSON.stringify(template).length).toBeLessThan(1_000_000);
  });
});

describe('PlatformStack: stages', () => {
  it('names and tags the stack by stage', () => {
    expect(devStack.stackName).toBe('Qicore-dev');
    expect(prodStack.stackName).toBe('Qicore-prod');
    expect(devStack.tags.tagValues()).toEqual({ project: 'qicore', stage: 'dev' });
    expect(prodStack.tags.tagValues()).toEqual({ project: 'qicore', stage: 'prod' });
  });

  it('gives prod more shards, tasks and NAT gateways than dev', () => {
    const shards = (t: Template) => Object.values(t.findResources('AWS::Kinesis::Stream'))[0]!['Properties']['ShardCount'] as number;
    const tasks = (t: Template) =>
      Object.entries(t.findResources('AWS::ECS::Service')).find(([id]) => id.startsWith('McpService'))![1]['Properties']['DesiredCount'] as number;
    expect(shards(prod)).toBeGreaterThan(shards(dev));
    expect(tasks(prod)).toBeGreaterThan(tasks(dev));
    expect(Object.keys(prod.findResources('AWS::EC2::NatGateway')).length).toBeGreaterThan(
      Object.keys(dev.findResources('AWS::EC2::NatGateway')).length,
    );
  });

  it('retains stateful resources in prod and deletes them in dev', () => {
    for (const type of ['AWS::Kinesis::Stream', 'AWS::SQS::Queue', 'AWS::Logs::LogGroup']) {
      prod.allResources(type, { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
      dev.allResources(type, { DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
    }
    expect(prodStack.terminationProtection).toBe(true);
    expect(devStack.terminationProtection).toBe(false);
  });

  it('puts the VPC in two AZs with private subnets for tasks', () => {
    dev.resourceCountIs('AWS::EC2::Subnet', 4);
    dev.resourcePropertiesCountIs('AWS::EC2::Subnet', { MapPublicIpOnLaunch: false }, 2);
  });

  it('rejects an unknown stage naming it and the accepted ones', () => {
    expect(() => definePlatform(appWith({ stage: 'qa' }), {})).toThrow(UnknownStageError);
    expect(() => definePlatform(appWith({ stage: 'qa' }), {})).toThrow(
      "unknown stage 'qa': accepted stages are local, dev, staging, prod (pass -c stage=<name>)",
    );
    expect(() => stageConfigFor('Prod')).toThrow(/unknown stage 'Prod'/);
  });

  it('uses the CLI account and region when present', () => {
    const stack = definePlatformLight({ CDK_DEFAULT_ACCOUNT: '123456789012', CDK_DEFAULT_REGION: 'eu-west-1' });
    expect(stack.account).toBe('123456789012');
    expect(stack.region).toBe('eu-west-1');
  });
});

/** The platform stack for stage dev with `env`, without paying for a second synth. */
function definePlatformLight(env: NodeJS.ProcessEnv): PlatformStack {
  // Constructing is enough to read account and region; bundling is cached from beforeAll.
  return definePlatform(appWith({ stage: 'dev' }), env);
}

describe('construct props validation', () => {
  const fixture = () => {
    const stack = new Stack(appWith({}), 'Fixture');
    return {
      stack,
      stream: new Stream(stack, 'Stream'),
      secret: new Secret(stack, 'Secret'),
      vpc: new Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 }),
    };
  };
  const writer = (overrides: Partial<StoreWriterOptions>) => {
    const { stack, stream, secret } = fixture();
    return () => new TimescaleWriter(stack, 'Writer', { stream, secret, ...overrides });
  };
  const mcp = (overrides: Partial<McpServiceProps>) => {
    const { stack, vpc } = fixture();
    return () =>
      new McpService(stack, 'Mcp', {
        vpc,
        image: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim'),
        jwtIssuer: 'https://idp.example.com/',
        jwtAudience: 'mcp',
        jwksUrl: 'https://idp.example.com/jwks.json',
        ...overrides,
      });
  };

  it('rejects a batch size outside 1..10000 naming the value', () => {
    expect(writer({ batchSize: 0 })).toThrow(InvalidPropsError);
    expect(writer({ batchSize: 0 })).toThrow('Writer batchSize must be an integer from 1 to 10000 (the Kinesis event source limit), got 0');
    expect(writer({ batchSize: 10_001 })).toThrow(/batchSize .* got 10001/);
    expect(writer({ batchSize: 2.5 })).toThrow(/batchSize .* got 2.5/);
  });

  it('rejects a batching window, parallelization, retries or memory out of range', () => {
    expect(writer({ maxBatchingWindow: Duration.minutes(6) })).toThrow(/maxBatchingWindow \(seconds\) .* 0 to 300 .* got 360/);
    expect(writer({ parallelizationFactor: 11 })).toThrow(/parallelizationFactor .* 1 to 10 .* got 11/);
    expect(writer({ retryAttempts: -1 })).toThrow(/retryAttempts .* got -1/);
    expect(writer({ memorySize: 64 })).toThrow(/memorySize \(MB\) .* 128 to 10240 .* got 64/);
  });

  it('rejects shards on an on-demand stream and retention outside 24..8760 hours', () => {
    const { stack } = fixture();
    expect(() => new MarketStream(stack, 'OnDemand', { streamMode: StreamMode.ON_DEMAND, shardCount: 2 })).toThrow(
      /OnDemand shardCount is 2 but streamMode is ON_DEMAND.*drop shardCount/,
    );
    expect(() => new MarketStream(stack, 'Short', { retentionPeriod: Duration.hours(12) })).toThrow(/retentionPeriod \(hours\) .* got 12/);
    expect(() => new MarketStream(stack, 'NoShards', { shardCount: 0 })).toThrow(/shardCount .* got 0/);
  });

  it('rejects Fargate sizes that do not exist, a non-https JWKS URL and an empty issuer', () => {
    expect(mcp({ cpu: 300 })).toThrow(/cpu must be one of 256, 512, .* got 300/);
    expect(mcp({ cpu: 256, memoryLimitMiB: 4096 })).toThrow('Mcp memoryLimitMiB 4096 does not fit cpu 256: Fargate accepts 512, 1024, 2048 MiB with it');
    expect(mcp({ jwksUrl: 'http://idp.example.com/jwks.json' })).toThrow(/jwksUrl must use https/);
    expect(mcp({ jwksUrl: 'idp.example.com' })).toThrow(/jwksUrl must be an absolute URL, got 'idp.example.com'/);
    expect(mcp({ jwtIssuer: ' ' })).toThrow(/jwtIssuer is empty/);
    expect(mcp({ desiredCount: 0 })).toThrow(/desiredCount .* got 0/);
    expect(mcp({ containerPort: 80 })).toThrow(/containerPort .* unprivileged .* got 80/);
    expect(mcp({ desiredCount: 2, maxCount: 1 })).toThrow(/maxCount .* got 1/);
    expect(mcp({ domainName: 'not a domain' })).toThrow(/domainName 'not a domain' is not a DNS name/);
  });

  it('rejects a collector with no or two destinations, markets it cannot collect, or a Fargate size that does not exist', () => {
    const { stack, vpc, stream } = fixture();
    const topic = new MarketTopic(stack, 'Topic', { vpc });
    const image = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim');
    const collector = (id: string, props: Partial<CollectorServiceProps>) => () =>
      new CollectorService(stack, id, { vpc, image, markets: 'binance:BTC/USDT', stream, ...props });
    expect(collector('None', { stream: undefined })).toThrow(/None needs exactly one destination: stream \(Kinesis\) or topic \(MSK\)/);
    expect(collector('Both', { topic })).toThrow(/exactly one destination/);
    expect(collector('Markets', { markets: 'binance' })).toThrow(InvalidPropsError);
    expect(collector('Markets2', { markets: 'binance:BTCUSDT' })).toThrow(/Markets2 markets 'binance:BTCUSDT' cannot be collected: .*not a ccxt unified symbol/);
    expect(collector('Size', { cpu: 256, memoryLimitMiB: 4096 })).toThrow(/Size memoryLimitMiB 4096 does not fit cpu 256/);
  });

  it('adds an alerts consumer on the stream for -c alertRules, from the newest records, one invocation per shard', () => {
    const rules = [{ id: 'btc-100k', kind: 'price_cross', exchange: 'binance', symbol: 'BTC/USDT', level: 100_000, direction: 'up' }];
    const withAlerts = Template.fromStack(definePlatform(appWith({ stage: 'dev', alertRules: JSON.stringify(rules) }), {}));
    const fnId = onlyId(withAlerts, 'AWS::Lambda::Function', 'AlertsConsumerFunction');
    withAlerts.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ ALERT_RULES: Match.stringLikeRegexp('"id":"btc-100k"'), DATABASE_SECRET_ARN: Match.anyValue() }) },
    });
    withAlerts.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: fnId },
      StartingPosition: 'LATEST',
      ParallelizationFactor: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    expect(Object.keys(dev.findResources('AWS::Lambda::Function')).filter((id) => id.startsWith('AlertsConsumer'))).toEqual([]);
    expect(() => definePlatform(appWith({ stage: 'dev', alertRules: '[{"id":"x","kind":"price_cross"}]' }), {})).toThrow(/alertRules: .*level/);
    expect(() => definePlatform(appWith({ stage: 'dev', stream: 'msk', alertRules: JSON.stringify(rules) }), {})).toThrow(/alerts consumer reads Kinesis/);
  });

  it('gives the MCP server and the TimescaleDB writer the Redis of -c redisUrl, and nothing else', () => {
    const withRedis = Template.fromStack(definePlatform(appWith({ stage: 'dev', redisUrl: 'redis://cache.internal:6379' }), {}));
    const redisUsers = (t: Template) =>
      Object.keys({
        ...t.findResources('AWS::Lambda::Function', { Properties: { Environment: { Variables: Match.objectLike({ REDIS_URL: 'redis://cache.internal:6379' }) } } }),
        ...t.findResources('AWS::ECS::TaskDefinition', {
          Properties: { ContainerDefinitions: [Match.objectLike({ Environment: Match.arrayWith([{ Name: 'REDIS_URL', Value: 'redis://cache.internal:6379' }]) })] },
        }),
      }).sort();
    expect(redisUsers(withRedis)).toEqual([expect.stringMatching(/^McpServiceTaskDef/), expect.stringMatching(/^TimescaleWriterFunction/)]);
    expect(redisUsers(dev)).toEqual([]);
  });

  it('lets the task put published signals on the stream it is given, and passes the Redis URL', () => {
    const { stack, vpc, stream } = fixture();
    const mcp = (id: string, props: Partial<McpServiceProps>) =>
      new McpService(stack, id, {
        vpc,
        image: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim'),
        certificate: Certificate.fromCertificateArn(stack, `${id}Cert`, PROD_CERT_ARN),
        jwtIssuer: 'https://idp.example.com/',
        jwtAudience: 'mcp',
        jwksUrl: 'https://idp.example.com/jwks.json',
        ...props,
      });
    mcp('Mcp', { stream, redisUrl: 'rediss://cache.example.internal:6379' });
    expect(() => mcp('BadRedis', { redisUrl: 'http://cache:6379' })).toThrow(/BadRedis redisUrl must be a redis:\/\/ or rediss:\/\/ URL/);
    const template = Template.fromStack(stack);
    const streamId = onlyId(template, 'AWS::Kinesis::Stream');
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^McpServiceTaskDefTaskRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['kinesis:PutRecord', 'kinesis:PutRecords']),
            Resource: { 'Fn::GetAtt': [streamId, 'Arn'] },
          }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Environment: Match.arrayWith([
            { Name: 'STREAM_KIND', Value: 'kinesis' },
            { Name: 'STREAM_NAME', Value: { Ref: streamId } },
            { Name: 'REDIS_URL', Value: 'rediss://cache.example.internal:6379' },
          ]),
        }),
      ],
    });
  });
});

describe('PlatformStack: Kafka on MSK Serverless (-c stream=msk)', () => {
  let msk: Template;
  beforeAll(() => {
    msk = Template.fromStack(definePlatform(appWith({ stage: 'dev', stream: 'msk' }), {}));
  });

  it('creates an IAM-authenticated serverless cluster in the private subnets instead of a Kinesis stream', () => {
    msk.resourceCountIs('AWS::Kinesis::Stream', 0);
    msk.resourceCountIs('AWS::MSK::ServerlessCluster', 1);
    msk.hasResourceProperties('AWS::MSK::ServerlessCluster', {
      ClientAuthentication: { Sasl: { Iam: { Enabled: true } } },
      VpcConfigs: [Match.objectLike({ SubnetIds: Match.anyValue(), SecurityGroups: Match.anyValue() })],
    });
    msk.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupIngress: [Match.objectLike({ FromPort: 9098, ToPort: 9098, IpProtocol: 'tcp' })],
    });
  });

  it('feeds both writers from the topic with their MSK handlers, failure queues and consumer grants', () => {
    const clusterId = onlyId(msk, 'AWS::MSK::ServerlessCluster');
    msk.resourceCountIs('AWS::Lambda::EventSourceMapping', 2);
    for (const prefix of ['TimescaleWriter', 'ClickHouseWriter']) {
      const fnId = onlyId(msk, 'AWS::Lambda::Function', `${prefix}Function`);
      const queueId = onlyId(msk, 'AWS::SQS::Queue', `${prefix}FailedBatches`);
      msk.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.mskHandler' });
      msk.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        FunctionName: { Ref: fnId },
        EventSourceArn: { 'Fn::GetAtt': [clusterId, 'Arn'] },
        Topics: ['market-events'],
        StartingPosition: 'TRIM_HORIZON',
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
      });
    }
    type Policy = { Properties: { PolicyDocument: { Statement: { Action: string | string[] }[] } } };
    const consumers = Object.entries(msk.findResources('AWS::IAM::Policy') as Record<string, Policy>)
      .filter(([, p]) => p.Properties.PolicyDocument.Statement.some((st) => [st.Action].flat().includes('kafka-cluster:ReadData')))
      .map(([id]) => id);
    expect(consumers.sort()).toEqual([
      expect.stringMatching(/^ClickHouseWriterFunctionServiceRole/),
      expect.stringMatching(/^TimescaleWriterFunctionServiceRole/),
    ]);
  });

  it('runs the collector against the topic with IAM auth: brokers, region and auth in its environment, as the runtime reads them', () => {
    const clusterId = onlyId(msk, 'AWS::MSK::ServerlessCluster');
    const lookupId = onlyId(msk, 'Custom::AWS', 'MarketTopicBootstrapBrokers');
    const env = collectorEnv(msk);
    expect(env).toEqual(
      expect.arrayContaining([
        { Name: 'STREAM_KIND', Value: 'kafka' },
        { Name: 'STREAM_NAME', Value: 'market-events' },
        { Name: 'KAFKA_BROKERS', Value: { 'Fn::GetAtt': [lookupId, 'BootstrapBrokerStringSaslIam'] } },
        { Name: 'KAFKA_AUTH', Value: 'iam' },
        { Name: 'AWS_REGION', Value: { Ref: 'AWS::Region' } },
      ]),
    );
    const config = parseEnv(
      CollectorEnvSchema,
      asDeployed(env, { KAFKA_BROKERS: 'boot-ab12cd34.c2.kafka-serverless.eu-west-1.amazonaws.com:9098', AWS_REGION: 'eu-west-1' }),
    );
    expect(config).toMatchObject({ STREAM_KIND: 'kafka', KAFKA_AUTH: 'iam', AWS_REGION: 'eu-west-1', STREAM_NAME: 'market-events' });
    expect(config.KAFKA_SSL).not.toBe(false);

    // the brokers come from MSK at deploy time, by a lookup allowed exactly that call on this cluster
    msk.hasResourceProperties('Custom::AWS', {
      Create: { 'Fn::Join': ['', Match.arrayWith([Match.stringLikeRegexp('"service":"Kafka","action":"getBootstrapBrokers"')])] },
      InstallLatestAwsSdk: false,
    });
    msk.hasResourceProperties('AWS::IAM::Policy', {
      PolicyName: Match.stringLikeRegexp('^MarketTopicBootstrapBrokersCustomResourcePolicy'),
      PolicyDocument: { Statement: [Match.objectLike({ Action: 'kafka:GetBootstrapBrokers', Resource: { 'Fn::GetAtt': [clusterId, 'Arn'] } })] },
    });
  });

  it('gives every log group, the broker lookup\'s included, the stage retention and removal policy', () => {
    msk.allResources('AWS::Logs::LogGroup', { DeletionPolicy: 'Delete', UpdateReplacePolicy: 'Delete' });
    msk.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
  });

  it("lets the collector's task role connect, describe, create and write the topic, the MCP server's write it (signals), and no one else", () => {
    const clusterId = onlyId(msk, 'AWS::MSK::ServerlessCluster');
    msk.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^CollectorServiceTaskDefTaskRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith([
              'kafka-cluster:Connect',
              'kafka-cluster:CreateTopic',
              'kafka-cluster:DescribeCluster',
              'kafka-cluster:DescribeTopic',
              'kafka-cluster:WriteData',
            ]),
            Resource: Match.arrayWith([
              { 'Fn::GetAtt': [clusterId, 'Arn'] },
              {
                'Fn::Join': [
                  '',
                  ['arn:', { Ref: 'AWS::Partition' }, ':kafka:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':topic/Qicore-dev-market/*/market-events'],
                ],
              },
            ]),
          }),
        ]),
      },
    });
    type Policy = { Properties: { PolicyDocument: { Statement: { Action: string | string[] }[] } } };
    const writers = Object.entries(msk.findResources('AWS::IAM::Policy') as Record<string, Policy>)
      .filter(([, p]) => p.Properties.PolicyDocument.Statement.some((st) => [st.Action].flat().includes('kafka-cluster:WriteData')))
      .map(([id]) => id);
    expect(writers.sort()).toEqual([expect.stringMatching(/^CollectorServiceTaskDefTaskRole/), expect.stringMatching(/^McpServiceTaskDefTaskRole/)]);
  });

  it('rejects an unknown stream kind, and a writer with no or two sources', () => {
    expect(() => definePlatform(appWith({ stage: 'dev', stream: 'sqs' }), {})).toThrow(
      "unknown stream 'sqs': accepted are kinesis, msk (pass -c stream=<kind>)",
    );
    const stack = new Stack(new App(), 'Bare');
    const secret = new Secret(stack, 'S');
    expect(() => new TimescaleWriter(stack, 'W', { secret })).toThrow(/exactly one source/);
  });
});
