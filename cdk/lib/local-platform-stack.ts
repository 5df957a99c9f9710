import { CfnOutput, Duration, RemovalPolicy, SecretValue, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import { StreamMode } from 'aws-cdk-lib/aws-kinesis';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { AgentOrchestration } from './constructs/agent-orchestration.js';
import { MarketStream } from './constructs/market-stream.js';
import { ClickHouseWriter, TimescaleWriter, type StoreWriterOptions } from './constructs/store-writer.js';
import { acknowledgeAgentRun, acknowledgeLambdaDefaults } from './nag-acknowledgements.js';
import { LOCAL_STAGE } from './stage-config.js';

/**
 * Where the functions find the stores: LocalStack runs each Lambda in a container on the compose network
 * (LAMBDA_DOCKER_NETWORK=qicore in local/docker-compose.yml), so the compose service names resolve.
 */
export const LOCAL_STORE_URLS = {
  database: 'postgres://postgres@timescaledb:5432/qicore_test',
  clickhouse: 'http://clickhouse:8123',
  mcp: 'http://mcp-server:8080/mcp',
  /** the stream the compose collector publishes to by default (QICORE_STREAM_NAME) */
  streamName: 'qicore-local-market-events',
} as const;

/** Sizes of the local stage: one shard, small functions, nothing kept. */
export const LOCAL_CONFIG = {
  name: LOCAL_STAGE,
  stream: { mode: StreamMode.PROVISIONED, shardCount: 1, retentionPeriod: Duration.hours(24) },
  writer: {
    memorySize: 256,
    timeout: Duration.seconds(60),
    batchSize: 100,
    maxBatchingWindow: Duration.seconds(1),
    parallelizationFactor: 1,
    retryAttempts: 3,
  },
  logRetention: RetentionDays.ONE_DAY,
  removalPolicy: RemovalPolicy.DESTROY,
} as const;

/** AWS resource types the local stage may contain: what LocalStack's free edition emulates, and the IAM and logs around them. */
export const LOCAL_RESOURCE_TYPES: readonly string[] = [
  'AWS::Kinesis::Stream',
  'AWS::Lambda::Function',
  'AWS::Lambda::EventSourceMapping',
  'AWS::StepFunctions::StateMachine',
  'AWS::SecretsManager::Secret',
  'AWS::SQS::Queue',
  'AWS::SQS::QueuePolicy',
  'AWS::IAM::Role',
  'AWS::IAM::Policy',
  'AWS::Logs::LogGroup',
  'AWS::CDK::Metadata',
];

/**
 * The `local` stage, deployed to LocalStack's free edition with `cdklocal` next to local/docker-compose.yml:
 * the market stream, the store writers and the agent run (Lambdas and Step Functions), with the secrets
 * they read. Nothing else, because the free edition emulates nothing else: no VPC or NAT, Fargate, load
 * balancer, ElastiCache, Cognito or WAF. The compose file runs the rest as containers (TimescaleDB,
 * ClickHouse, Redis, the collector, the MCP server), which is also why no Scheduler: a run is started by hand.
 */
export class LocalPlatformStack extends Stack {
  readonly marketStream: MarketStream;
  readonly timescaleWriter: TimescaleWriter;
  readonly clickhouseWriter: ClickHouseWriter;
  readonly agents: AgentOrchestration;

  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, props);
    const config = LOCAL_CONFIG;
    const { removalPolicy, logRetention } = config;

    this.marketStream = new MarketStream(this, 'MarketStream', {
      streamName: LOCAL_STORE_URLS.streamName,
      streamMode: config.stream.mode,
      shardCount: config.stream.shardCount,
      retentionPeriod: config.stream.retentionPeriod,
      removalPolicy,
    });
    // The compose stores trust every connection on their private network (no password): the URLs hold no
    // credential, so they are given as values. AWS stages create these secrets empty and never hold a value in the template.
    const localSecret = (name: string, url: string, what: string) => {
      const secret = new Secret(this, name, {
        description: `${what} of the local stage (compose service)`,
        secretStringValue: SecretValue.unsafePlainText(url),
        removalPolicy,
      });
      Validations.of(secret).acknowledge({ id: 'AwsSolutions-SMG4', reason: 'The URL names a compose store that trusts its private network and takes no password: there is no credential in it to rotate.' });
      return secret;
    };
    const databaseSecret = localSecret('DatabaseSecret', LOCAL_STORE_URLS.database, 'postgres:// URL of TimescaleDB');
    const clickhouseSecret = localSecret('ClickHouseSecret', LOCAL_STORE_URLS.clickhouse, 'http:// URL of ClickHouse');

    const writer = (secret: Secret): StoreWriterOptions => ({
      stream: this.marketStream.stream,
      secret,
      ...config.writer,
      logRetention,
      removalPolicy,
    });
    this.timescaleWriter = new TimescaleWriter(this, 'TimescaleWriter', writer(databaseSecret));
    // Candles are built by the writer itself (its default mode): the refresher needs an EventBridge rule.
    this.clickhouseWriter = new ClickHouseWriter(this, 'ClickHouseWriter', writer(clickhouseSecret));

    // The MCP server's development tokens are HS256 ones from `docker compose run --rm token`: put one here.
    const agentToken = new Secret(this, 'AgentToken', {
      description: 'Bearer token the local agents send to the MCP server (docker compose run --rm token)',
      removalPolicy,
    });
    Validations.of(agentToken).acknowledge({ id: 'AwsSolutions-SMG4', reason: 'It holds a development token an operator pastes in from the compose token service; the token expires by itself after seven days.' });
    this.agents = new AgentOrchestration(this, 'Agents', {
      mcpUrl: LOCAL_STORE_URLS.mcp,
      tokenSecret: agentToken,
      enabled: false,
      logRetention,
      removalPolicy,
    });
    Validations.of(this.agents).acknowledge({
      id: 'Annotation::qicore:agent-orchestration:plain-http:mcpUrl',
      reason: 'The local MCP server is a container on the private compose network and takes development tokens only; there is no certificate to give it.',
    });
    // Without Scheduler in the free edition, the schedule and its role go: runs start with `awslocal stepfunctions start-execution`.
    this.agents.node.tryRemoveChild(this.agents.schedule.node.id);
    this.agents.node.tryRemoveChild('ScheduleRole');

    new CfnOutput(this, 'MarketStreamName', { value: this.marketStream.stream.streamName });
    new CfnOutput(this, 'AgentTokenSecretArn', { value: agentToken.secretArn });
    new CfnOutput(this, 'AgentStateMachineArn', { value: this.agents.stateMachine.stateMachineArn });
    acknowledgeLambdaDefaults(this);
    acknowledgeAgentRun(this, this.agents);
  }
}
