import { Annotations, CfnOutput, Duration, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { FlowLogDestination, FlowLogTrafficType, IpAddresses, SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { CfnLogGroup, LogGroup } from 'aws-cdk-lib/aws-logs';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { AgentOrchestration } from './constructs/agent-orchestration.js';
import { ClickHouseRefresher } from './constructs/clickhouse-refresher.js';
import { CollectorService } from './constructs/collector-service.js';
import { MarketStream } from './constructs/market-stream.js';
import { MarketTopic } from './constructs/market-topic.js';
import { McpFirewall } from './constructs/mcp-firewall.js';
import { McpService } from './constructs/mcp-service.js';
import { MemoryCache } from './constructs/memory-cache.js';
import { PlatformObservability, type ObservedFunction } from './constructs/observability.js';
import { PlatformIdentity } from './constructs/platform-identity.js';
import { AlertsConsumer, ClickHouseWriter, TimescaleWriter, type StoreWriterOptions } from './constructs/store-writer.js';
import { parseAlertRules } from '../../layers/shared/src/alerts/alert-rules.js';
import { acknowledgeAgentRun, acknowledgeLambdaDefaults } from './nag-acknowledgements.js';
import { InvalidPropsError, requireIntegerInRange } from './prop-checks.js';
import type { StageConfig } from './stage-config.js';

/** The stream choice: Kinesis Data Streams, or Kafka on MSK Serverless. */
export type StreamKind = 'kinesis' | 'msk';
export const STREAM_KINDS: readonly StreamKind[] = ['kinesis', 'msk'];

export interface PlatformStackProps extends StackProps {
  /** sizes and lifetimes of the stage */
  readonly config: StageConfig;
  /**
   * Expected `iss` of MCP access tokens, for an external OIDC issuer; give all three of jwtIssuer,
   * jwtAudience and jwksUrl, or none.
   * @default - the stack's Cognito user pool issues the tokens
   */
  readonly jwtIssuer?: string;
  /**
   * Expected `aud` of MCP access tokens (external issuer).
   * @default - Cognito: the app clients' ids are checked instead (its access tokens carry no `aud`)
   */
  readonly jwtAudience?: string;
  /**
   * JWKS of the external token issuer.
   * @default - the user pool's
   */
  readonly jwksUrl?: string;
  /**
   * Prefix of the Cognito hosted domain (`<prefix>.auth.<region>.amazoncognito.com`).
   * @default `qicore-<stage>-<account id>`
   */
  readonly cognitoDomainPrefix?: string;
  /**
   * Redirect URLs of the people's app client (authorization code + PKCE).
   * @default the MCP Inspector's local callback
   */
  readonly cognitoCallbackUrls?: readonly string[];
  /**
   * ARN of an existing secret holding the exchanges' API keys (JSON), read by the collector at run time.
   * @default - public market data only, no keys
   */
  readonly exchangeKeysSecretArn?: string;
  /**
   * TCP port of the TimescaleDB that DATABASE_SECRET's URL names: the only port besides 443 the functions
   * using it may reach.
   * @default 5432
   */
  readonly databasePort?: number;
  /**
   * TCP port of the ClickHouse HTTP(S) interface the ClickHouse secret's URL names.
   * @default 8443 (ClickHouse Cloud's HTTPS)
   */
  readonly clickhousePort?: number;
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
   * redis:// or rediss:// URL of an external Redis for agent memory and live resource updates, instead of the
   * stack's ElastiCache (which is then not created). It is passed as a plain value: use it for a Redis
   * without credentials in the URL.
   * @default - an ElastiCache (Valkey) cache in the VPC, its URL in Secrets Manager
   */
  readonly redisUrl?: string;
  /**
   * Addresses the alarm topic mails (each confirms its subscription).
   * @default - none: subscribe later
   */
  readonly alarmEmails?: readonly string[];
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
  /** the ElastiCache cache; absent when an external redisUrl is given */
  readonly memoryCache?: MemoryCache;
  /** the Cognito issuer; absent with an external OIDC issuer */
  readonly identity?: PlatformIdentity;
  readonly firewall: McpFirewall;
  readonly exchangeKeysSecret?: ISecret;
  /** the scheduled agent run; present with the Cognito issuer (its client credentials are the agents') */
  readonly agents?: AgentOrchestration;
  readonly observability: PlatformObservability;

  constructor(scope: Construct, id: string, props: PlatformStackProps) {
    super(scope, id, { terminationProtection: props.config.terminationProtection, ...props });
    const { config } = props;
    const external = [props.jwtIssuer, props.jwtAudience, props.jwksUrl];
    if (external.some((v) => v !== undefined) && external.some((v) => v === undefined)) {
      throw new InvalidPropsError(
        `${id}: an external OIDC issuer needs jwtIssuer, jwtAudience and jwksUrl together (got ${['jwtIssuer', 'jwtAudience', 'jwksUrl'].filter((_, i) => external[i] !== undefined).join(', ')}); pass all three, or none for the Cognito user pool`,
      );
    }
    const databasePort = props.databasePort ?? 5432;
    const clickhousePort = props.clickhousePort ?? 8443;
    requireIntegerInRange(`${id} databasePort`, databasePort, 1, 65535, 'a TCP port');
    requireIntegerInRange(`${id} clickhousePort`, clickhousePort, 1, 65535, 'a TCP port');

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
    // Rejected flows only: what a security group refused is what an investigation needs, at a fraction of ALL's volume.
    this.vpc.addFlowLog('FlowLogs', {
      trafficType: FlowLogTrafficType.REJECT,
      destination: FlowLogDestination.toCloudWatchLogs(
        new LogGroup(this, 'FlowLogsGroup', { retention: config.logRetention, removalPolicy: config.removalPolicy }),
      ),
    });

    this.databaseSecret = props.databaseSecretArn
      ? Secret.fromSecretCompleteArn(this, 'DatabaseSecret', props.databaseSecretArn)
      : new Secret(this, 'DatabaseSecret', {
          description: `postgres:// URL of the ${config.name} TimescaleDB; replace the generated value after the first deploy`,
          removalPolicy: config.removalPolicy,
        });

    this.exchangeKeysSecret = props.exchangeKeysSecretArn
      ? Secret.fromSecretCompleteArn(this, 'ExchangeKeysSecret', props.exchangeKeysSecretArn)
      : undefined;

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
    for (const secret of [this.databaseSecret, this.clickhouseSecret]) {
      if (secret instanceof Secret) {
        Validations.of(secret).acknowledge({
          id: 'AwsSolutions-SMG4',
          reason:
            'The secret holds the URL of a database run outside this stack (Timescale Cloud, ClickHouse Cloud, self-hosted): its password ' +
            'is rotated where the database lives, then put here (docs/deployment.md); a Secrets Manager rotation Lambda cannot change it there.',
        });
      }
    }

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
      // in the private subnets: the stores allow-list the NAT addresses, and the cache is only reachable there
      vpc: this.vpc,
    });
    if (props.redisUrl === undefined) {
      this.memoryCache = new MemoryCache(this, 'MemoryCache', {
        vpc: this.vpc,
        nodeType: config.cache.nodeType,
        replicas: config.cache.replicas,
        removalPolicy: config.removalPolicy,
      });
      if (config.cache.replicas === 0) {
        Validations.of(this.memoryCache.replicationGroup).acknowledge({
          id: 'AwsSolutions-AEC4',
          reason: `${config.name} runs one cache node to save cost: memory and announcements are lost for the minutes a replacement takes; prod has a replica in the other AZ.`,
        });
      }
    }
    const cache = this.memoryCache;
    this.timescaleWriter = new TimescaleWriter(this, 'TimescaleWriter', {
      ...writer(this.databaseSecret),
      egressPorts: [databasePort],
      // it announces each stored batch to the MCP server tasks (live resource subscriptions)
      ...(props.redisUrl && { environment: { REDIS_URL: props.redisUrl } }),
      // the cache's URL holds its token: the function gets the secret's ARN and reads it at run time
      ...(cache && { environment: { REDIS_SECRET_ARN: cache.urlSecret.secretArn } }),
    });
    if (cache) {
      cache.urlSecret.grantRead(this.timescaleWriter.function);
      cache.allowFrom(this.timescaleWriter.function, 'TimescaleDB writer: new-data announcements');
    }
    // The ClickHouse writer sends one insert per batch and leaves candles to the refresher, which
    // rebuilds them every minute (issue #4): ClickHouse candles lag by up to ~2 minutes, behind
    // the recent store's retention window that reads of recent ranges are routed to.
    this.clickhouseWriter = new ClickHouseWriter(this, 'ClickHouseWriter', {
      ...writer(this.clickhouseSecret),
      egressPorts: [clickhousePort],
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
          vpc: this.vpc,
          egressPorts: [databasePort],
        });
      }
    }
    this.clickhouseRefresher = new ClickHouseRefresher(this, 'ClickHouseRefresher', {
      secret: this.clickhouseSecret,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
      vpc: this.vpc,
      egressPorts: [clickhousePort],
    });

    if (props.jwtIssuer === undefined) {
      this.identity = new PlatformIdentity(this, 'Identity', {
        stage: config.name,
        removalPolicy: config.removalPolicy,
        ...(props.cognitoDomainPrefix && { domainPrefix: props.cognitoDomainPrefix }),
        ...(props.cognitoCallbackUrls && { callbackUrls: props.cognitoCallbackUrls }),
      });
    }
    const identity = this.identity;
    this.mcpService = new McpService(this, 'McpService', {
      vpc: this.vpc,
      ...(identity
        ? {
            jwtIssuer: identity.issuer,
            jwksUrl: identity.jwksUrl,
            jwtClientIds: [identity.agentClient.userPoolClientId, identity.userClient.userPoolClientId],
          }
        : { jwtIssuer: props.jwtIssuer!, jwtAudience: props.jwtAudience!, jwksUrl: props.jwksUrl! }),
      databaseSecret: this.databaseSecret,
      clickhouseSecret: this.clickhouseSecret,
      ...(cache && { redisUrlSecret: cache.urlSecret }),
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

    if (cache) cache.allowFrom(this.mcpService.service.service, 'MCP server: agent memory and resource subscriptions');
    this.firewall = new McpFirewall(this, 'McpFirewall', {
      loadBalancerArn: this.mcpService.service.loadBalancer.loadBalancerArn,
      requestsPer5Minutes: config.firewall.requestsPer5Minutes,
    });

    this.collectorService = new CollectorService(this, 'CollectorService', {
      vpc: this.vpc,
      ...(this.exchangeKeysSecret && { exchangeKeysSecret: this.exchangeKeysSecret }),
      markets: config.collector.markets,
      shards: config.collector.shards,
      ...(this.marketTopic ? { topic: this.marketTopic } : { stream: this.marketStream!.stream }),
      cpu: config.collector.cpu,
      memoryLimitMiB: config.collector.memoryLimitMiB,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
    });

    if (identity) {
      // Agents are MCP clients like any other: the public endpoint, a token from the agents' app client.
      this.agents = new AgentOrchestration(this, 'Agents', {
        // private subnets like every other function; they reach the MCP endpoint through the NAT gateways
        vpc: this.vpc,
        mcpUrl: this.mcpService.url,
        clientCredentials: {
          tokenUrl: identity.tokenUrl,
          clientId: identity.agentClient.userPoolClientId,
          clientSecret: identity.agentClientSecret,
          scopes: identity.agentScopes,
        },
        schedule: config.agents.schedule,
        enabled: config.agents.enabled,
        logRetention: config.logRetention,
        removalPolicy: config.removalPolicy,
      });
      acknowledgeAgentRun(this, this.agents);
    } else {
      Annotations.of(this).addWarningV2(
        'qicore:platform:no-agents',
        'No scheduled agents: with an external OIDC issuer the stack has no client credentials to give them; deploy without jwtIssuer/jwtAudience/jwksUrl to use Cognito',
      );
    }

    const consumer = (label: string, fn: IFunction, timeout: Duration, readsStream: boolean): ObservedFunction => ({
      label,
      function: fn,
      timeout,
      readsStream,
    });
    this.observability = new PlatformObservability(this, 'Observability', {
      ...(this.marketStream && { stream: this.marketStream.stream }),
      consumers: [
        consumer('timescale-writer', this.timescaleWriter.function, config.writer.timeout, true),
        consumer('clickhouse-writer', this.clickhouseWriter.function, config.writer.timeout, true),
        ...(this.alertsConsumer ? [consumer('alerts', this.alertsConsumer.function, config.writer.timeout, true)] : []),
        consumer('clickhouse-refresher', this.clickhouseRefresher.function, Duration.minutes(1), false),
      ],
      queues: [
        { label: 'timescale-writer failures', queue: this.timescaleWriter.failureQueue },
        { label: 'clickhouse-writer failures', queue: this.clickhouseWriter.failureQueue },
        ...(this.alertsConsumer ? [{ label: 'alerts failures', queue: this.alertsConsumer.failureQueue }] : []),
      ],
      collectorShards: this.collectorService.shards.map((sh) => ({
        label: `${sh.shard.index}/${sh.shard.count}`,
        logGroup: sh.logGroup,
        service: sh.service,
      })),
      mcp: { loadBalancer: this.mcpService.service.loadBalancer, targetGroup: this.mcpService.service.targetGroup },
      ...(this.agents && { agentStateMachine: this.agents.stateMachine }),
      ...(props.alarmEmails && { alarmEmails: props.alarmEmails }),
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
    if (identity) {
      new CfnOutput(this, 'TokenUrl', { value: identity.tokenUrl });
      new CfnOutput(this, 'UserPoolId', { value: identity.userPool.userPoolId });
      new CfnOutput(this, 'AgentClientId', { value: identity.agentClient.userPoolClientId });
      new CfnOutput(this, 'AgentClientSecretArn', { value: identity.agentClientSecret.secretArn });
      new CfnOutput(this, 'UserClientId', { value: identity.userClient.userPoolClientId });
      new CfnOutput(this, 'AuthorizeUrl', { value: `${identity.domain.baseUrl()}/oauth2/authorize` });
    }
    acknowledgeLambdaDefaults(this);
    conformCustomResourceLogs(this, config);
  }
}

/** Construct id of the function CDK shares between every AwsCustomResource of a stack. */
const AWS_CUSTOM_RESOURCE_FUNCTION_ID = 'AWS679f53fac002430cb0da5b7982bd2287';

/**
 * The shared AwsCustomResource function (Cognito's client secret lookup, MSK's broker lookup) makes its
 * own log group, kept two years and retained, unless the first user passed one: it gets the stage's.
 */
export function conformCustomResourceLogs(stack: Stack, config: Pick<StageConfig, 'logRetention' | 'removalPolicy'>): void {
  const provider = stack.node.tryFindChild(AWS_CUSTOM_RESOURCE_FUNCTION_ID);
  if (!provider) return;
  for (const child of provider.node.findAll()) {
    if (child instanceof CfnLogGroup) {
      child.retentionInDays = config.logRetention;
      child.applyRemovalPolicy(config.removalPolicy);
    }
  }
}
