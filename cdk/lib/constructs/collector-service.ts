import { RemovalPolicy, Stack } from 'aws-cdk-lib';
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
import { Construct } from 'constructs';
import { parseMarkets } from '../../../layers/shared/src/config/markets.js';
import { InvalidPropsError } from '../prop-checks.js';
import { REPO_ROOT } from '../repo-paths.js';
import type { MarketTopic } from './market-topic.js';
import { checkFargateSize, MCP_SERVER_DOCKERFILE } from './mcp-service.js';

/** Entry point of the collector inside the image (see functions/collector/main.ts). */
export const COLLECTOR_COMMAND = ['node_modules/.bin/tsx', 'functions/collector/main.ts'];

export type CollectorLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface CollectorServiceProps {
  /** VPC of the service; the task runs in its private subnets with egress (exchanges are on the internet). */
  readonly vpc: IVpc;
  /** Markets to collect, `exchange:SYM,SYM;exchange:SYM` (MARKETS); checked at synth. */
  readonly markets: string;
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

/**
 * The collector on ECS Fargate: one task (a second would only publish every event twice), ccxt.pro sockets
 * out through NAT, events to the Kinesis stream or the MSK topic with the grants and environment its
 * runtime reads (see CollectorEnvSchema).
 */
export class CollectorService extends Construct {
  readonly service: FargateService;
  readonly taskDefinition: FargateTaskDefinition;

  constructor(scope: Construct, id: string, props: CollectorServiceProps) {
    super(scope, id);
    if ((props.stream === undefined) === (props.topic === undefined)) {
      throw new InvalidPropsError(`${id} needs exactly one destination: stream (Kinesis) or topic (MSK)`);
    }
    try {
      parseMarkets(props.markets);
    } catch (error) {
      throw new InvalidPropsError(`${id} markets '${props.markets}' cannot be collected: ${(error as Error).message}`);
    }
    const cpu = props.cpu ?? 256;
    const memoryLimitMiB = props.memoryLimitMiB ?? 512;
    checkFargateSize(id, cpu, memoryLimitMiB);
    const cpuArchitecture = props.cpuArchitecture ?? CpuArchitecture.ARM64;

    const cluster = new Cluster(this, 'Cluster', { vpc: props.vpc, containerInsightsV2: ContainerInsights.ENABLED });
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    const image =
      props.image ??
      ContainerImage.fromAsset(REPO_ROOT, {
        file: MCP_SERVER_DOCKERFILE,
        platform: cpuArchitecture === CpuArchitecture.ARM64 ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      });

    const environment: Record<string, string> = {
      MARKETS: props.markets,
      // the SDK and the MSK token signer read it; set here so it never depends on the platform's defaults
      AWS_REGION: Stack.of(this).region,
      LOG_LEVEL: props.logLevel ?? 'info',
      NODE_OPTIONS: '--enable-source-maps',
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

    this.taskDefinition = new FargateTaskDefinition(this, 'TaskDef', {
      cpu,
      memoryLimitMiB,
      runtimePlatform: { cpuArchitecture, operatingSystemFamily: OperatingSystemFamily.LINUX },
    });
    this.taskDefinition.addContainer('collector', {
      image,
      command: COLLECTOR_COMMAND,
      environment,
      logging: LogDrivers.awsLogs({ streamPrefix: 'collector', logGroup }),
    });
    if (props.topic) props.topic.grantProduce(this.taskDefinition.taskRole);
    else props.stream!.grantWrite(this.taskDefinition.taskRole);

    this.service = new FargateService(this, 'Service', {
      cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: 1,
      vpcSubnets: { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
      // the new task starts before the old one stops (SIGTERM drains it): no gap in collection; the overlap
      // publishes some events twice, which the stores' natural keys absorb
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
    });
  }
}
