import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { SubnetType, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  Cluster,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  FargateService,
  FargateTaskDefinition,
  LogDrivers,
  OperatingSystemFamily,
} from 'aws-cdk-lib/aws-ecs';
import type { IStream } from 'aws-cdk-lib/aws-kinesis';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { parseMarkets } from '../../../layers/shared/src/config/markets.js';
import { formatMarkets, formatShard, shardSizes, splitMarkets, type Shard } from '../../../layers/shared/src/config/shards.js';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';
import { REPO_ROOT } from '../repo-paths.js';
import type { MarketTopic } from './market-topic.js';
import { checkFargateSize, MCP_SERVER_DOCKERFILE } from './mcp-service.js';

/** Entry point of the collector inside the image (see functions/collector/main.ts). */
export const COLLECTOR_COMMAND = ['node_modules/.bin/tsx', 'functions/collector/main.ts'];

export type CollectorLogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Where the collector journals events the stream refuses (COLLECTOR_JOURNAL_DIR): a bind-mount volume on
 * the task's ephemeral storage. It outlives the container (the restart policy restarts a crashed collector
 * in the same task, which replays it) but not the task: a stopped or replaced task takes it along. Fargate
 * mounts it root-owned unless the image creates the path owned by its user and declares it a VOLUME (see
 * functions/mcp-server/Dockerfile): the collector runs as `node`.
 */
export const COLLECTOR_JOURNAL_DIR = '/var/lib/qicore/journal';

/**
 * Most shards one stack takes: each adds a task definition, a log group and a service (3 resources; roles
 * and security group are shared) and, in PlatformStack, its staleness metric filter and two alarms (3 more).
 * CloudFormation allows 500 resources a stack, of which the rest of the platform (network, identity, cache,
 * firewall, agents, dashboard) uses about 160: 50 shards come to about 460, room left for both to grow
 * (docs/scale-out.md).
 */
export const MAX_COLLECTOR_SHARDS = 50;

export interface CollectorServiceProps {
  /** VPC of the service; the task runs in its private subnets with egress (exchanges are on the internet). */
  readonly vpc: IVpc;
  /** Markets to collect, `exchange:SYM,SYM;exchange:SYM` (MARKETS); checked at synth. */
  readonly markets: string;
  /**
   * Collector services the markets are split across by the rendezvous rule of layers/shared/src/config/shards.ts:
   * service i runs with SHARD=i/shards and MARKETS holding its part. Every shard must get a market.
   * @default 1
   */
  readonly shards?: number;
  /**
   * How long ECS waits after SIGTERM before SIGKILL: the collector drains its buffer to the stream
   * (about 20 s at most), then journals what the stream refused. Fargate allows 2 to 120 s.
   * @default Duration.seconds(60)
   */
  readonly stopTimeout?: Duration;
  /**
   * Kinesis stream to publish to; give this or `topic`.
   * @default - none
   */
  readonly stream?: IStream;
  /**
   * MSK Serverless topic to publish to, with IAM auth over TLS; give this or `stream`.
   * @default - none
   */
  readonly topic?: MarketTopic;
  /**
   * Secret holding the exchanges' API keys (JSON, per exchange: docs/deployment.md); the task gets its ARN
   * (EXCHANGE_KEYS_SECRET_ARN) and reads it at run time. Public market data needs no keys.
   * @default - no keys
   */
  readonly exchangeKeysSecret?: ISecret;
  /**
   * Image to run (its command is replaced by COLLECTOR_COMMAND).
   * @default - built from functions/mcp-server/Dockerfile, which holds every entry point: the same image as the MCP server
   */
  readonly image?: ContainerImage;
  /**
   * Fargate CPU units (1024 = 1 vCPU).
   * @default 256
   */
  readonly cpu?: number;
  /**
   * Memory in MiB; must suit `cpu`.
   * @default 512
   */
  readonly memoryLimitMiB?: number;
  /**
   * CPU architecture of the task and of the built image.
   * @default CpuArchitecture.ARM64
   */
  readonly cpuArchitecture?: CpuArchitecture;
  /**
   * LOG_LEVEL of the collector.
   * @default 'info'
   */
  readonly logLevel?: CollectorLogLevel;
  /**
   * Retention of the container log group.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Removal policy of the log group.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** One collector shard: its service, task definition and log group. */
export interface CollectorShard {
  readonly shard: Shard;
  readonly service: FargateService;
  readonly taskDefinition: FargateTaskDefinition;
  readonly logGroup: LogGroup;
}

/**
 * The collector on ECS Fargate: one service of one task per shard (a second task of a shard would only
 * publish its events twice), ccxt.pro sockets out through NAT, events to the Kinesis stream or the MSK
 * topic with the grants and environment its runtime reads (see CollectorEnvSchema). The platform grows by
 * adding shards: each task knows its shard (SHARD) and gets its part of the markets (MARKETS).
 */
export class CollectorService extends Construct {
  /** index i: shard i/n */
  readonly shards: readonly CollectorShard[];
  /** the cluster every shard's service runs in */
  readonly cluster: Cluster;

  constructor(scope: Construct, id: string, props: CollectorServiceProps) {
    super(scope, id);
    if ((props.stream === undefined) === (props.topic === undefined)) {
      throw new InvalidPropsError(`${id} needs exactly one destination: stream (Kinesis) or topic (MSK)`);
    }
    let markets: Map<string, string[]>;
    try {
      markets = parseMarkets(props.markets);
    } catch (error) {
      throw new InvalidPropsError(`${id} markets '${props.markets}' cannot be collected: ${(error as Error).message}`);
    }
    const shardCount = props.shards ?? 1;
    requireIntegerInRange(`${id} shards`, shardCount, 1, MAX_COLLECTOR_SHARDS, "CloudFormation's 500 resources a stack");
    checkEveryShardCollects(id, markets, shardCount);
    const stopTimeout = props.stopTimeout ?? Duration.seconds(60);
    requireIntegerInRange(`${id} stopTimeout (seconds)`, stopTimeout.toSeconds(), 2, 120, 'the Fargate limit');
    const cpu = props.cpu ?? 256;
    const memoryLimitMiB = props.memoryLimitMiB ?? 512;
    checkFargateSize(id, cpu, memoryLimitMiB);
    const cpuArchitecture = props.cpuArchitecture ?? CpuArchitecture.ARM64;

    this.cluster = new Cluster(this, 'Cluster', { vpc: props.vpc, containerInsightsV2: ContainerInsights.ENABLED });
    const image =
      props.image ??
      ContainerImage.fromAsset(REPO_ROOT, {
        file: MCP_SERVER_DOCKERFILE,
        platform: cpuArchitecture === CpuArchitecture.ARM64 ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      });

    const environment: Record<string, string> = {
      COLLECTOR_JOURNAL_DIR,
      // publish for all but the last 10 s of the stop timeout, then journal the rest and exit before SIGKILL
      COLLECTOR_DRAIN_TIMEOUT_MS: String(Math.max(1, stopTimeout.toSeconds() - 10) * 1000),
      // the SDK and the MSK token signer read it; set here so it never depends on the platform's defaults
      AWS_REGION: Stack.of(this).region,
      LOG_LEVEL: props.logLevel ?? 'info',
      NODE_OPTIONS: '--enable-source-maps',
      ...(props.exchangeKeysSecret && { EXCHANGE_KEYS_SECRET_ARN: props.exchangeKeysSecret.secretArn }),
    };
    if (props.topic) {
      Object.assign(environment, {
        STREAM_KIND: 'kafka',
        STREAM_NAME: props.topic.topicName,
        KAFKA_BROKERS: props.topic.bootstrapBrokers,
        KAFKA_AUTH: 'iam',
      });
    } else {
      Object.assign(environment, { STREAM_KIND: 'kinesis', STREAM_NAME: props.stream!.streamName });
    }

    const shards: CollectorShard[] = [];
    const parts = splitMarkets(markets, shardCount);
    for (let index = 0; index < shardCount; index++) {
      const shard: Shard = { index, count: shardCount };
      // Shard 0 keeps the construct ids the single collector had, so turning sharding on rolls the running
      // service instead of replacing it (and leaving its retained log group behind); shard i lives under Shard<i>.
      const where = index === 0 ? this : new Construct(this, `Shard${index}`);
      const first = shards[0];
      const logGroup = new LogGroup(where, 'Logs', {
        retention: props.logRetention ?? RetentionDays.ONE_MONTH,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      });
      // One task role (one stream grant), one execution role and one security group for every shard: a shard
      // costs three resources, not eight, and every shard may write the same stream anyway.
      const taskDefinition = new FargateTaskDefinition(where, 'TaskDef', {
        cpu,
        memoryLimitMiB,
        runtimePlatform: { cpuArchitecture, operatingSystemFamily: OperatingSystemFamily.LINUX },
        ...(first && { taskRole: first.taskDefinition.taskRole, executionRole: first.taskDefinition.executionRole! }),
      });
      taskDefinition.addVolume({ name: 'journal' });
      const container = taskDefinition.addContainer('collector', {
        image,
        command: COLLECTOR_COMMAND,
        // Each task gets its own part of the markets (the rendezvous rule applied here, at synth) and its SHARD;
        // the runtime applying the rule again to that part keeps all of it. Not the whole set in every task:
        // adding a market then changes, and restarts, only the shard that collects it, and the template grows
        // with the markets, not with markets x shards (an ECS task definition holds at most 64 KiB).
        environment: { ...environment, MARKETS: formatMarkets(parts[index]!), SHARD: formatShard(shard) },
        logging: LogDrivers.awsLogs({ streamPrefix: `collector-${index}`, logGroup }),
        stopTimeout,
        // a crashed collector restarts in its task and replays the journal; a clean exit (0, after SIGTERM) ends the task
        enableRestartPolicy: true,
        restartIgnoredExitCodes: [0],
        restartAttemptPeriod: Duration.seconds(60),
      });
      container.addMountPoints({ sourceVolume: 'journal', containerPath: COLLECTOR_JOURNAL_DIR, readOnly: false });

      const service = new FargateService(where, 'Service', {
        cluster: this.cluster,
        taskDefinition,
        desiredCount: 1,
        vpcSubnets: { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
        // the new task starts before the old one stops (SIGTERM drains it): no gap in collection; the overlap
        // publishes some events twice, which the stores' natural keys absorb
        minHealthyPercent: 100,
        maxHealthyPercent: 200,
        circuitBreaker: { rollback: true },
        // egress only, the same for every shard: one security group
        ...(first && { securityGroups: first.service.connections.securityGroups }),
      });
      Validations.of(taskDefinition).acknowledge({
        id: 'AwsSolutions-ECS2',
        reason: 'The environment holds only non-secret settings (markets, shard, stream); exchange keys are read at run time from Secrets Manager by ARN.',
      });
      shards.push({ shard, service, taskDefinition, logGroup });
    }
    Validations.of(shards[0]!.taskDefinition.executionRole!).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ecr:GetAuthorizationToken, which ECS needs to pull the image, has no resource-level permissions; the image pull itself is scoped to the asset repository.',
    });
    const taskRole = shards[0]!.taskDefinition.taskRole;
    if (props.topic) props.topic.grantProduce(taskRole);
    else props.stream!.grantWrite(taskRole);
    props.exchangeKeysSecret?.grantRead(taskRole);
    this.shards = shards;
  }
}

/** Throws unless each of `count` shards gets at least one of `markets`, naming the empty ones and a count that works. */
function checkEveryShardCollects(id: string, markets: ReadonlyMap<string, readonly string[]>, count: number): void {
  const total = [...markets.values()].reduce((n, symbols) => n + symbols.length, 0);
  if (count > total) {
    throw new InvalidPropsError(
      `${id} shards ${count} exceeds the ${total} markets to collect: every shard needs a market; ${largestFullCount(markets, total)} is the largest count that fills every shard, or add markets`,
    );
  }
  const sizes = shardSizes(markets, count);
  const empty = sizes.flatMap((n, index) => (n === 0 ? [formatShard({ index, count })] : []));
  if (empty.length > 0) {
    throw new InvalidPropsError(
      `${id} shards ${count}: shard ${empty.join(', ')} would collect nothing (markets per shard: ${sizes.join(', ')}); ` +
        `${largestFullCount(markets, count - 1)} is the largest count below ${count} that fills every shard; or add markets`,
    );
  }
}

/** The largest count <= `upTo` that gives every shard a market. */
function largestFullCount(markets: ReadonlyMap<string, readonly string[]>, upTo: number): number {
  for (let n = upTo; n > 1; n--) if (!shardSizes(markets, n).includes(0)) return n;
  return 1;
}
