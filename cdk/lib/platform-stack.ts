import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { IpAddresses, SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { ClickHouseRefresher } from './constructs/clickhouse-refresher.js';
import { CollectorService } from './constructs/collector-service.js';
import { MarketStream } from './constructs/market-stream.js';
import { MarketTopic } from './constructs/market-topic.js';
import { McpService } from './constructs/mcp-service.js';
import { AlertsConsumer, ClickHouseWriter, TimescaleWriter, type StoreWriterOptions } from './constructs/store-writer.js';
import { parseAlertRules } from '../../layers/shared/src/alerts/alert-rules.js';
import { InvalidPropsError } from './prop-checks.js';
import type { StageConfig } from './stage-config.js';

/** The stream choice: Kinesis Data Streams, or Kafka on MSK Serverless. */
export type StreamKind = 'kinesis' | 'msk';
export const STREAM_KINDS: readonly StreamKind[] = ['kinesis', 'msk'];

export interface PlatformStackProps extends StackProps {
  /** sizes and lifetimes of the stage */
  readonly config: StageConfig;
  /** expected `iss` of MCP access tokens */
  readonly jwtIssuer: string;
  /** expected `aud` of MCP access tokens */
  readonly jwtAudience: string;
  /** JWKS of the token issuer */
  readonly jwksUrl: string;
  /**
   * ARN of an existing secret holding the postgres:// URL.
   * @default - a new secret, whose value must be set after the first deploy
   */
  readonly databaseSecretArn?: string;
  /**
   * What carries market events: Kinesis Data Streams, or Kafka on MSK Serverless.
   * @default 'kinesis'
   */
  readonly streamKind?: StreamKind;
  /**
   * ARN of an existing secret holding the ClickHouse http(s):// URL.
   * @default - a new secret, whose value must be set after the first deploy
   */
  readonly clickhouseSecretArn?: string;
  /**
   * ACM certificate for the MCP load balancer.
   * @default - HTTP only
   */
  readonly mcpCertificateArn?: string;
  /** public DNS name of the MCP endpoint (covered by the certificate); the load balancer's name when omitted */
  readonly mcpDomain?: string;
  /**
   * redis:// URL of the Redis for agent memory and live resource updates (ElastiCache in the VPC);
   * without it the MCP server offers no memory tools and resources are not subscribable.
   */
  readonly redisUrl?: string;
  /**
   * Alert rules as JSON (layers/shared/src/alerts/alert-rules.ts): an alerts consumer on the
   * Kinesis stream stores each firing as a signal. None without rules.
   */
  readonly alertRules?: string;
}

/** One stage of the platform: network, market stream, collector, store writers and MCP service. */
export class PlatformStack extends Stack {
  readonly vpc: Vpc;
  readonly databaseSecret: ISecret;
  /** the Kinesis stream, when the stack streams through Kinesis */
  readonly marketStream?: MarketStream;
  /** the MSK Serverless topic, when the stack streams through Kafka */
  readonly marketTopic?: MarketTopic;
  readonly clickhouseSecret: ISecret;
  readonly timescaleWriter: TimescaleWriter;
  readonly clickhouseWriter: ClickHouseWriter;
  readonly clickhouseRefresher: ClickHouseRefresher;
  /** present when the stage has alert rules */
  readonly alertsConsumer?: AlertsConsumer;
  readonly mcpService: McpService;
  readonly collectorService: CollectorService;

  constructor(scope: Construct, id: string, props: PlatformStackProps) {
    super(scope, id, { terminationProtection: props.config.terminationProtection, ...props });
    const { config } = props;

    this.vpc = new Vpc(this, 'Vpc', {
      // Not the default 10.0.0.0/16: peering with a managed database VPC needs ranges that do not overlap.
      ipAddresses: IpAddresses.cidr('10.40.0.0/16'),
      maxAzs: 2,
      natGateways: config.network.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'private', subnetType: SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
    });

    this.databaseSecret = props.databaseSecretArn
      ? Secret.fromSecretCompleteArn(this, 'DatabaseSecret', props.databaseSecretArn)
      : new Secret(this, 'DatabaseSecret', {
          description: `postgres:// URL of the ${config.name} TimescaleDB; replace the generated value after the first deploy`,
          removalPolicy: config.removalPolicy,
        });

    const streamKind = props.streamKind ?? 'kinesis';
    if (streamKind === 'kinesis') {
      this.marketStream = new MarketStream(this, 'MarketStream', {
        streamMode: config.stream.mode,
        shardCount: config.stream.shardCount,
        retentionPeriod: config.stream.retentionPeriod,
        removalPolicy: config.removalPolicy,
      });
    } else {
      this.marketTopic = new MarketTopic(this, 'MarketTopic', {
        vpc: this.vpc,
        logRetention: config.logRetention,
        removalPolicy: config.removalPolicy,
      });
    }
    const topic = this.marketTopic;
    const source = topic
      ? { kafka: { clusterArn: topic.clusterArn, topic: topic.topicName, grantConsume: (fn: IFunction) => topic.grantConsume(fn) } }
      : { stream: this.marketStream!.stream };

    this.clickhouseSecret = props.clickhouseSecretArn
      ? Secret.fromSecretCompleteArn(this, 'ClickHouseSecret', props.clickhouseSecretArn)
      : new Secret(this, 'ClickHouseSecret', {
          description: `http(s):// URL of the ${config.name} ClickHouse; replace the generated value after the first deploy`,
          removalPolicy: config.removalPolicy,
        });

    // Both writers read the same stream, each with its own event source and failure queue,
    // so a slow or failing store never holds the other back.
    const writer = (secret: ISecret): StoreWriterOptions => ({
      ...source,
      secret,
      memorySize: config.writer.memorySize,
      timeout: config.writer.timeout,
      batchSize: config.writer.batchSize,
      maxBatchingWindow: config.writer.maxBatchingWindow,
      parallelizationFactor: config.writer.parallelizationFactor,
      retryAttempts: config.writer.retryAttempts,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
    });
    this.timescaleWriter = new TimescaleWriter(this, 'TimescaleWriter', {
      ...writer(this.databaseSecret),
      // it announces each stored batch to the MCP server tasks (live resource subscriptions)
      ...(props.redisUrl && { environment: { REDIS_URL: props.redisUrl } }),
    });
    // The ClickHouse writer sends one insert per batch and leaves candles to the refresher, which
    // rebuilds them every minute (issue #4): ClickHouse candles lag by up to ~2 minutes, behind
    // the recent store's retention window that reads of recent ranges are routed to.
    this.clickhouseWriter = new ClickHouseWriter(this, 'ClickHouseWriter', {
      ...writer(this.clickhouseSecret),
      environment: { CLICKHOUSE_CANDLES: 'refresher' },
    });
    if (props.alertRules !== undefined) {
      let rules;
      try {
        rules = parseAlertRules(props.alertRules);
      } catch (error) {
        throw new InvalidPropsError(`alertRules: ${(error as Error).message}`);
      }
      if (!this.marketStream) throw new InvalidPropsError('alertRules: the alerts consumer reads Kinesis; use -c stream=kinesis or drop alertRules');
      if (rules.length > 0) {
        this.alertsConsumer = new AlertsConsumer(this, 'AlertsConsumer', {
          stream: this.marketStream.stream,
          secret: this.databaseSecret,
          rulesJson: JSON.stringify(rules),
          // alerts are worth little late: small batches, no batching window
          batchSize: 100,
          maxBatchingWindow: Duration.seconds(0),
          retryAttempts: config.writer.retryAttempts,
          logRetention: config.logRetention,
          removalPolicy: config.removalPolicy,
        });
      }
    }
    this.clickhouseRefresher = new ClickHouseRefresher(this, 'ClickHouseRefresher', {
      secret: this.clickhouseSecret,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
    });

    this.mcpService = new McpService(this, 'McpService', {
      vpc: this.vpc,
      jwtIssuer: props.jwtIssuer,
      jwtAudience: props.jwtAudience,
      jwksUrl: props.jwksUrl,
      databaseSecret: this.databaseSecret,
      // published signals go on the market stream, where the writers store them (ClickHouse too)
      ...(this.marketTopic ? { topic: this.marketTopic } : { stream: this.marketStream!.stream }),
      ...(props.redisUrl && { redisUrl: props.redisUrl }),
      cpu: config.mcp.cpu,
      memoryLimitMiB: config.mcp.memoryLimitMiB,
      desiredCount: config.mcp.desiredCount,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
      ...(props.mcpCertificateArn && {
        certificate: Certificate.fromCertificateArn(this, 'McpCertificate', props.mcpCertificateArn),
      }),
      ...(props.mcpDomain && { domainName: props.mcpDomain }),
    });

    this.collectorService = new CollectorService(this, 'CollectorService', {
      vpc: this.vpc,
      markets: config.collector.markets,
      shards: config.collector.shards,
      ...(this.marketTopic ? { topic: this.marketTopic } : { stream: this.marketStream!.stream }),
      cpu: config.collector.cpu,
      memoryLimitMiB: config.collector.memoryLimitMiB,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
    });

    if (this.marketStream) new CfnOutput(this, 'MarketStreamName', { value: this.marketStream.stream.streamName });
    if (this.marketTopic) {
      new CfnOutput(this, 'MarketClusterArn', { value: this.marketTopic.clusterArn });
      new CfnOutput(this, 'MarketTopicName', { value: this.marketTopic.topicName });
    }
    new CfnOutput(this, 'DatabaseSecretArn', { value: this.databaseSecret.secretArn });
    new CfnOutput(this, 'WriterFailureQueueUrl', { value: this.timescaleWriter.failureQueue.queueUrl });
    new CfnOutput(this, 'ClickHouseSecretArn', { value: this.clickhouseSecret.secretArn });
    new CfnOutput(this, 'ClickHouseWriterFailureQueueUrl', { value: this.clickhouseWriter.failureQueue.queueUrl });
    new CfnOutput(this, 'McpUrl', { value: this.mcpService.url });
  }
}
