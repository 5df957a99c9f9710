import { readFileSync } from 'node:fs';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Vpc } from 'aws-cdk-lib/aws-ec2';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { Pass, StateMachine, DefinitionBody } from 'aws-cdk-lib/aws-stepfunctions';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { CollectorService } from '../../cdk/lib/constructs/collector-service.js';
import { MarketStream } from '../../cdk/lib/constructs/market-stream.js';
import { McpService } from '../../cdk/lib/constructs/mcp-service.js';
import { COLLECTOR_STALE_FEED_MSG, PlatformObservability, type PlatformObservabilityProps } from '../../cdk/lib/constructs/observability.js';
import { TimescaleWriter } from '../../cdk/lib/constructs/store-writer.js';
import { InvalidPropsError } from '../../cdk/lib/prop-checks.js';
import { repoPath } from '../../cdk/lib/repo-paths.js';
import { formatShard } from '../../layers/shared/src/config/shards.js';

const cdkJson = JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> };
const IMAGE = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:22-slim');

/** A stack to put the construct in; bundling is skipped (`aws:cdk:bundling-stacks`), the template is the same. */
function testStack(id: string): Stack {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  return new Stack(app, id, { env: { account: '111111111111', region: 'eu-west-1' } });
}

type Resource = { Properties: Record<string, unknown> };

function idOf(template: Template, type: string, prefix: string): string {
  const ids = Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
  expect(ids, `${type} ${prefix}`).toHaveLength(1);
  return ids[0]!;
}

/** The DashboardBody as deployed, each Ref/GetAtt stood in for by `<logical id>`. */
function dashboardBody(template: Template): { widgets: { properties: { metrics?: unknown[][]; title?: string } }[] } {
  const boards = Object.values(template.findResources('AWS::CloudWatch::Dashboard') as Record<string, Resource>);
  expect(boards).toHaveLength(1);
  const resolve = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const v = value as Record<string, unknown>;
    if ('Fn::Join' in v) {
      const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    if ('Ref' in v) return `<${String(v['Ref'])}>`;
    if ('Fn::GetAtt' in v) return `<${(v['Fn::GetAtt'] as string[]).join('.')}>`;
    // Fn::Select/Fn::Split of a load balancer ARN into its metric dimension
    if ('Fn::Select' in v) return '<selected>';
    throw new Error(`unexpected token ${JSON.stringify(value)} in the dashboard body`);
  };
  return JSON.parse(resolve(boards[0]!.Properties['DashboardBody'])) as ReturnType<typeof dashboardBody>;
}

let stack: Stack;
let template: Template;
let props: PlatformObservabilityProps;
let observability: PlatformObservability;

beforeAll(() => {
  stack = testStack('Observed');
  const vpc = new Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const stream = new MarketStream(stack, 'MarketStream', {}).stream;
  const writer = new TimescaleWriter(stack, 'TimescaleWriter', { stream, secret: new Secret(stack, 'Db'), timeout: Duration.seconds(60) });
  const collector = new CollectorService(stack, 'Collector', { vpc, image: IMAGE, markets: 'binance:BTC/USDT,ETH/USDT;kraken:BTC/USD', shards: 2, stream });
  const mcp = new McpService(stack, 'Mcp', { vpc, image: IMAGE, jwtIssuer: 'https://idp.example.com/', jwtAudience: 'mcp', jwksUrl: 'https://idp.example.com/jwks.json' });
  const agents = new StateMachine(stack, 'AgentRun', { definitionBody: DefinitionBody.fromChainable(new Pass(stack, 'Noop')) });
  props = {
    stream,
    consumers: [{ label: 'timescale-writer', function: writer.function, timeout: Duration.seconds(60), readsStream: true }],
    queues: [{ label: 'timescale-writer-failures', queue: writer.failureQueue }],
    collectorShards: collector.shards.map((s) => ({ label: formatShard(s.shard), logGroup: s.logGroup, service: s.service })),
    mcp: { loadBalancer: mcp.service.loadBalancer, targetGroup: mcp.service.targetGroup },
    agentStateMachine: agents,
    thresholds: { iteratorAge: Duration.seconds(90), mcpLatencyP99: Duration.seconds(3) },
    alarmEmails: ['ops@example.com'],
  };
  observability = new PlatformObservability(stack, 'Observability', props);
  template = Template.fromStack(stack);
});

/** Expected alarms: name -> the alarm's metric properties and threshold. */
function expectedAlarms(t: Template): Record<string, Record<string, unknown>> {
  const fn = idOf(t, 'AWS::Lambda::Function', 'TimescaleWriterFunction');
  const queue = idOf(t, 'AWS::SQS::Queue', 'TimescaleWriterFailedBatches');
  const stream = idOf(t, 'AWS::Kinesis::Stream', 'MarketStream');
  const machine = idOf(t, 'AWS::StepFunctions::StateMachine', 'AgentRun');
  const lambda = { Namespace: 'AWS/Lambda', Dimensions: [{ Name: 'FunctionName', Value: { Ref: fn } }] };
  const shard = (i: number) => ({ Namespace: 'Qicore/Observed', MetricName: `StaleFeedQuietMsShard${i}Of2`, Statistic: 'SampleCount', Threshold: 3, TreatMissingData: 'notBreaching' });
  const running = (i: number) => ({
    Namespace: 'AWS/ECS',
    MetricName: 'CPUUtilization',
    Statistic: 'SampleCount',
    Threshold: 1,
    Period: 60,
    EvaluationPeriods: 3,
    ComparisonOperator: 'LessThanThreshold',
    TreatMissingData: 'breaching',
    Dimensions: Match.arrayWith([{ Name: 'ServiceName', Value: { 'Fn::GetAtt': [idOf(t, 'AWS::ECS::Service', i === 0 ? 'CollectorService' : `CollectorShard${i}Service`), 'Name'] } }]),
  });
  return {
    StreamIteratorAge: { Namespace: 'AWS/Kinesis', MetricName: 'GetRecords.IteratorAgeMilliseconds', Statistic: 'Maximum', Threshold: 90_000, Dimensions: [{ Name: 'StreamName', Value: { Ref: stream } }] },
    TimescaleWriterErrors: { ...lambda, MetricName: 'Errors', Statistic: 'Sum', Threshold: 1 },
    TimescaleWriterThrottles: { ...lambda, MetricName: 'Throttles', Statistic: 'Sum', Threshold: 1 },
    // 80% of the 60 s timeout
    TimescaleWriterDuration: { ...lambda, MetricName: 'Duration', ExtendedStatistic: 'p99', Threshold: 48_000 },
    TimescaleWriterIteratorAge: { ...lambda, MetricName: 'IteratorAge', Statistic: 'Maximum', Threshold: 90_000 },
    TimescaleWriterFailuresQueueDepth: {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Statistic: 'Maximum',
      Threshold: 1,
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue, 'QueueName'] } }],
    },
    CollectorShard0Of2StaleFeeds: shard(0),
    CollectorShard1Of2StaleFeeds: shard(1),
    CollectorShard0Of2NotRunning: running(0),
    CollectorShard1Of2NotRunning: running(1),
    McpTarget5xx: { Namespace: 'AWS/ApplicationELB', MetricName: 'HTTPCode_Target_5XX_Count', Statistic: 'Sum', Threshold: 5 },
    McpLoadBalancer5xx: { Namespace: 'AWS/ApplicationELB', MetricName: 'HTTPCode_ELB_5XX_Count', Statistic: 'Sum', Threshold: 5 },
    McpLatencyP99: { Namespace: 'AWS/ApplicationELB', MetricName: 'TargetResponseTime', ExtendedStatistic: 'p99', Threshold: 3 },
    AgentRunsFailed: { Namespace: 'AWS/States', MetricName: 'ExecutionsFailed', Statistic: 'Sum', Threshold: 1, Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: machine } }] },
    AgentRunsTimedOut: { Namespace: 'AWS/States', MetricName: 'ExecutionsTimedOut', Statistic: 'Sum', Threshold: 1, Dimensions: [{ Name: 'StateMachineArn', Value: { Ref: machine } }] },
  };
}

describe('PlatformObservability: alarms', () => {
  it('has one alarm per watched item, each on its metric with its threshold, notifying the topic on alarm and recovery', () => {
    const topic = idOf(template, 'AWS::SNS::Topic', 'ObservabilityAlarmTopic');
    const expected = expectedAlarms(template);
    expect([...observability.alarms.keys()].sort()).toEqual(Object.keys(expected).sort());
    template.resourceCountIs('AWS::CloudWatch::Alarm', Object.keys(expected).length);
    for (const [name, properties] of Object.entries(expected)) {
      const alarms = template.findResources('AWS::CloudWatch::Alarm', {
        Properties: {
          Period: 300,
          EvaluationPeriods: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: 'notBreaching',
          ...properties,
          AlarmActions: [{ Ref: topic }],
          OKActions: [{ Ref: topic }],
        },
      });
      expect(Object.keys(alarms).filter((id) => id.startsWith(`Observability${name}Alarm`)), name).toHaveLength(1);
    }
  });

  it('counts collector staleness per shard from the collector\'s own "feed stale" log line, valued by how long the feed was silent', () => {
    for (const i of [0, 1]) {
      const logGroup = idOf(template, 'AWS::Logs::LogGroup', i === 0 ? 'CollectorLogs' : `CollectorShard${i}Logs`);
      template.hasResourceProperties('AWS::Logs::MetricFilter', {
        LogGroupName: { Ref: logGroup },
        FilterPattern: `{ $.msg = "${COLLECTOR_STALE_FEED_MSG}" }`,
        MetricTransformations: [{ MetricNamespace: 'Qicore/Observed', MetricName: `StaleFeedQuietMsShard${i}Of2`, MetricValue: '$.quietMs' }],
      });
    }
    // the line the filter matches is the one the collector writes, with the field the metric takes
    const source = readFileSync(repoPath('layers/shared/src/collector/market-collector.ts'), 'utf8');
    expect(source).toMatch(/logger\.warn\('feed stale; resubscribing', \{ \.\.\.fields, quietMs: /);
  });

  it('sends alarms to a KMS-encrypted topic that refuses plain HTTP, whose key CloudWatch may use', () => {
    const key = idOf(template, 'AWS::KMS::Key', 'ObservabilityAlarmTopicKey');
    const topic = idOf(template, 'AWS::SNS::Topic', 'ObservabilityAlarmTopic');
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: { 'Fn::GetAtt': [key, 'Arn'] } });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Allow', Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topic }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
      },
    });
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com', TopicArn: { Ref: topic } });
  });
});

describe('PlatformObservability: dashboard', () => {
  it('graphs every alarmed metric, and names each one', () => {
    const body = dashboardBody(template);
    const graphed = body.widgets.flatMap((w) => w.properties.metrics ?? []).map((m) => `${String(m[0])} ${String(m[1])}`);
    const text = JSON.stringify(body);
    for (const [name, properties] of Object.entries(expectedAlarms(template))) {
      expect(graphed, name).toContain(`${String(properties['Namespace'])} ${String(properties['MetricName'])}`);
    }
    for (const metric of [
      'GetRecords.IteratorAgeMilliseconds',
      'Errors',
      'Throttles',
      'Duration',
      'IteratorAge',
      'ApproximateNumberOfMessagesVisible',
      'StaleFeedQuietMsShard0Of2',
      'StaleFeedQuietMsShard1Of2',
      'CPUUtilization',
      'HTTPCode_Target_5XX_Count',
      'HTTPCode_ELB_5XX_Count',
      'TargetResponseTime',
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]) {
      expect(text, metric).toContain(`"${metric}"`);
    }
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'Observed-platform' });
  });
});

describe('PlatformObservability: what a stage lacks, and props', () => {
  it('leaves out what it is not given: no props, no alarms, still a topic and a dashboard', () => {
    const stack = testStack('Bare');
    const bare = new PlatformObservability(stack, 'Observability', {});
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    t.resourceCountIs('AWS::SNS::Topic', 1);
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    expect(bare.alarms.size).toBe(0);
  });

  it('rejects thresholds that are not above 0, a period CloudWatch has not, duplicate labels and bad addresses', () => {
    const build = (p: PlatformObservabilityProps) => () => new PlatformObservability(testStack('Props'), 'Obs', p);
    expect(build({ thresholds: { consumerErrors: 0 } })).toThrow(InvalidPropsError);
    expect(build({ thresholds: { consumerErrors: 0 } })).toThrow('Obs thresholds.consumerErrors must be a number above 0, got 0');
    expect(build({ thresholds: { mcpLatencyP99: Duration.seconds(0) } })).toThrow(/thresholds.mcpLatencySeconds must be a number above 0/);
    expect(build({ period: Duration.seconds(45) })).toThrow(/period must be 10 s, 30 s or a whole number of minutes .* got 45 s/);
    expect(build({ alarmEmails: ['ops'] })).toThrow(/alarmEmails: 'ops' is not an email address/);
    const stack = testStack('Labels');
    const queue = new (class {})() as never;
    expect(() => new PlatformObservability(stack, 'Obs', { queues: [{ label: 'a-b', queue }, { label: 'a b', queue }] })).toThrow(
      /queues: labels 'a-b' and 'a b' are not distinct/,
    );
    expect(() => new PlatformObservability(stack, 'Obs2', { queues: [{ label: '--', queue }] })).toThrow(/label '--' has no letters or digits/);
  });
});

describe('PlatformObservability: cdk-nag', () => {
  it('leaves no AwsSolutions finding on its own resources', () => {
    const report = new AwsSolutionsChecks(stack.node.scope as App).validateScope(stack);
    const findings = report.violations.flatMap((v) =>
      v.violatingResources.map((r) => `${v.ruleName} at ${(r as { constructPath?: string }).constructPath ?? r.resourceLogicalId}`),
    );
    // the checks ran: the fixture's VPC has no flow log
    expect(findings.some((f) => f.startsWith('AwsSolutions-VPC7'))).toBe(true);
    expect(findings.filter((f) => / at Observed\/Observability\//.test(f))).toEqual([]);
  });
});
