import { Annotations, Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type { ICertificate } from 'aws-cdk-lib/aws-certificatemanager';
import { SubnetType, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  Cluster,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  LogDrivers,
  OperatingSystemFamily,
  Secret as EcsSecret,
} from 'aws-cdk-lib/aws-ecs';
import { ApplicationLoadBalancedFargateService } from 'aws-cdk-lib/aws-ecs-patterns';
import { ApplicationProtocol } from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type { IStream } from 'aws-cdk-lib/aws-kinesis';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { InvalidPropsError, requireHttpsUrl, requireIntegerInRange } from '../prop-checks.js';
import { REPO_ROOT } from '../repo-paths.js';
import type { MarketTopic } from './market-topic.js';

/** Dockerfile of the MCP server, relative to the repository root (the build context). */
export const MCP_SERVER_DOCKERFILE = 'functions/mcp-server/Dockerfile';

/** Memory sizes (MiB) Fargate accepts for each CPU size. */
const FARGATE_MEMORY: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: steps(1024, 4096, 1024),
  1024: steps(2048, 8192, 1024),
  2048: steps(4096, 16384, 1024),
  4096: steps(8192, 30720, 1024),
  8192: steps(16384, 61440, 4096),
  16384: steps(32768, 122880, 8192),
};

function steps(min: number, max: number, step: number): number[] {
  return Array.from({ length: (max - min) / step + 1 }, (_, i) => min + i * step);
}

export type McpLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface McpServiceProps {
  /** VPC of the service; tasks run in its private subnets with egress, the load balancer in its public ones. */
  readonly vpc: IVpc;
  /** Expected `iss` of access tokens (JWT_ISSUER). */
  readonly jwtIssuer: string;
  /**
   * Expected `aud` of access tokens (JWT_AUDIENCE), for issuers that set it; give this or `jwtClientIds`.
   * @default - `aud` is not checked
   */
  readonly jwtAudience?: string;
  /**
   * App clients whose tokens are accepted (JWT_CLIENT_IDS, checked against `client_id`): Cognito access
   * tokens carry no `aud`. Give this or `jwtAudience`.
   * @default - none
   */
  readonly jwtClientIds?: readonly string[];
  /** https URL of the issuer's JSON Web Key Set (JWT_JWKS_URL). */
  readonly jwksUrl: string;
  /**
   * Secret whose SecretString is the postgres:// URL; ECS injects it as DATABASE_URL at task start.
   * @default - no DATABASE_URL
   */
  readonly databaseSecret?: ISecret;
  /**
   * Secret whose SecretString is the ClickHouse http(s):// URL; ECS injects it as CLICKHOUSE_URL, and older
   * ranges are read from ClickHouse.
   * @default - recent store only
   */
  readonly clickhouseSecret?: ISecret;
  /**
   * Secret whose SecretString is the rediss:// URL of the platform's cache (MemoryCache.urlSecret), injected
   * as REDIS_URL; give this or `redisUrl`.
   * @default - no Redis
   */
  readonly redisUrlSecret?: ISecret;
  /**
   * Kinesis stream published signals go on (publish_signal), for the writers and other consumers.
   * Give this or `topic`.
   * @default - signals are stored only
   */
  readonly stream?: IStream;
  /**
   * MSK Serverless topic published signals go on, with IAM auth over TLS; give this or `stream`.
   * @default - signals are stored only
   */
  readonly topic?: MarketTopic;
  /**
   * redis:// or rediss:// URL of the Redis that holds agent memory and carries the writers' new-data
   * announcements (live resource subscriptions). Without it the memory tools are not offered.
   * @default - no Redis
   */
  readonly redisUrl?: string;
  /**
   * Image to run.
   * @default - built from functions/mcp-server/Dockerfile with the repository root as context
   */
  readonly image?: ContainerImage;
  /**
   * Port the server listens on in the container.
   * @default 8080
   */
  readonly containerPort?: number;
  /**
   * Path the load balancer probes; must answer 200 without a token.
   * @default '/healthz'
   */
  readonly healthCheckPath?: string;
  /**
   * Fargate CPU units per task (1024 = 1 vCPU).
   * @default 256
   */
  readonly cpu?: number;
  /**
   * Memory per task in MiB; must suit `cpu`.
   * @default 512
   */
  readonly memoryLimitMiB?: number;
  /**
   * Tasks to keep running; auto scaling keeps at least this many.
   * @default 1
   */
  readonly desiredCount?: number;
  /**
   * Most tasks auto scaling may run (on CPU); equal to desiredCount turns scaling off.
   * @default desiredCount * 4
   */
  readonly maxCount?: number;
  /**
   * Public domain name of the endpoint (its certificate must cover it); the server then advertises
   * https://<domainName>/mcp as its resource URL and accepts only that Host (and the load balancer's).
   * @default - the load balancer's DNS name
   */
  readonly domainName?: string;
  /**
   * CPU architecture of tasks and of the built image.
   * @default CpuArchitecture.ARM64
   */
  readonly cpuArchitecture?: CpuArchitecture;
  /**
   * Certificate for an HTTPS listener (HTTP then redirects to it).
   * @default - HTTP only, with a synth warning: bearer tokens would cross the network in clear
   */
  readonly certificate?: ICertificate;
  /**
   * Seconds an idle connection stays open on the load balancer; MCP streams (SSE) sit idle between events.
   * @default Duration.minutes(5)
   */
  readonly idleTimeout?: Duration;
  /**
   * LOG_LEVEL of the server.
   * @default 'info'
   */
  readonly logLevel?: McpLogLevel;
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

/** The MCP server on ECS Fargate behind a public Application Load Balancer. */
export class McpService extends Construct {
  readonly service: ApplicationLoadBalancedFargateService;
  /** http(s)://<load balancer DNS>/mcp */
  readonly url: string;

  constructor(scope: Construct, id: string, props: McpServiceProps) {
    super(scope, id);
    const containerPort = props.containerPort ?? 8080;
    const cpu = props.cpu ?? 256;
    const memoryLimitMiB = props.memoryLimitMiB ?? 512;
    const desiredCount = props.desiredCount ?? 1;
    const healthCheckPath = props.healthCheckPath ?? '/healthz';
    const idleTimeout = props.idleTimeout ?? Duration.minutes(5);
    requireIntegerInRange(`${id} containerPort`, containerPort, 1024, 65535, 'an unprivileged port: the container runs as non-root');
    requireIntegerInRange(`${id} desiredCount`, desiredCount, 1, 100, 'at least one task serves traffic');
    requireIntegerInRange(`${id} idleTimeout (seconds)`, idleTimeout.toSeconds({ integral: false }), 1, 4000, 'the load balancer limit');
    checkFargateSize(id, cpu, memoryLimitMiB);
    if (!healthCheckPath.startsWith('/')) {
      throw new InvalidPropsError(`${id} healthCheckPath must start with '/', got '${healthCheckPath}': pass e.g. '/healthz'`);
    }
    for (const [name, value] of [['jwtIssuer', props.jwtIssuer], ['jwtAudience', props.jwtAudience]] as const) {
      if (value !== undefined && value.trim() === '') {
        throw new InvalidPropsError(`${id} ${name} is empty: pass the value your identity provider puts in access tokens`);
      }
    }
    const clientIds = props.jwtClientIds ?? [];
    if (props.jwtAudience === undefined && clientIds.length === 0) {
      // the server would otherwise accept a token the issuer made for any of its applications
      throw new InvalidPropsError(`${id} needs jwtAudience or jwtClientIds: the tokens it accepts must be meant for it`);
    }
    if (props.redisUrl !== undefined && props.redisUrlSecret !== undefined) {
      throw new InvalidPropsError(`${id} takes redisUrl (an external Redis) or redisUrlSecret (the platform's cache), not both`);
    }
    requireHttpsUrl(`${id} jwksUrl`, props.jwksUrl);
    const cpuArchitecture = props.cpuArchitecture ?? CpuArchitecture.ARM64;

    const cluster = new Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ContainerInsights.ENABLED,
    });
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    const image =
      props.image ??
      ContainerImage.fromAsset(REPO_ROOT, {
        file: MCP_SERVER_DOCKERFILE,
        // Built for the task architecture, whatever machine runs `cdk deploy`.
        platform: cpuArchitecture === CpuArchitecture.ARM64 ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      });

    const environment: Record<string, string> = {
      MCP_HOST: '0.0.0.0',
      MCP_PORT: String(containerPort),
      JWT_ISSUER: props.jwtIssuer,
      ...(props.jwtAudience !== undefined && { JWT_AUDIENCE: props.jwtAudience }),
      ...(clientIds.length > 0 && { JWT_CLIENT_IDS: clientIds.join(',') }),
      JWT_JWKS_URL: props.jwksUrl,
      LOG_LEVEL: props.logLevel ?? 'info',
      NODE_OPTIONS: '--enable-source-maps',
    };
    if (props.stream && props.topic) throw new InvalidPropsError(`${id} takes a stream (Kinesis) or a topic (MSK) for signals, not both`);
    if (props.topic) {
      Object.assign(environment, {
        STREAM_KIND: 'kafka',
        STREAM_NAME: props.topic.topicName,
        KAFKA_BROKERS: props.topic.bootstrapBrokers,
        KAFKA_AUTH: 'iam',
        AWS_REGION: Stack.of(this).region,
      });
    } else if (props.stream) {
      Object.assign(environment, { STREAM_KIND: 'kinesis', STREAM_NAME: props.stream.streamName });
    }
    if (props.redisUrl !== undefined) {
      if (!/^rediss?:\/\/\S+$/.test(props.redisUrl)) throw new InvalidPropsError(`${id} redisUrl must be a redis:// or rediss:// URL`);
      environment['REDIS_URL'] = props.redisUrl;
    }
    // Tasks sign session ids with one secret, so any task continues a session another opened.
    const sessionSecret = new Secret(this, 'SessionSecret', {
      description: 'Signs MCP session ids; shared by every MCP server task',
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    Validations.of(sessionSecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Tasks read it at start (ECS secret); rotating it in place would leave running tasks signing with the old value and end every open session. It is replaced by redeploying.',
    });
    const maxCount = props.maxCount ?? desiredCount * 4;
    requireIntegerInRange(`${id} maxCount`, maxCount, desiredCount, 100, 'at least desiredCount');
    if (props.domainName !== undefined && !/^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$/i.test(props.domainName)) {
      throw new InvalidPropsError(`${id} domainName '${props.domainName}' is not a DNS name: pass e.g. 'mcp.example.com'`);
    }

    this.service = new ApplicationLoadBalancedFargateService(this, 'Service', {
      cluster,
      cpu,
      memoryLimitMiB,
      desiredCount,
      runtimePlatform: { cpuArchitecture, operatingSystemFamily: OperatingSystemFamily.LINUX },
      taskSubnets: { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
      publicLoadBalancer: true,
      idleTimeout,
      ...(props.certificate
        ? { certificate: props.certificate, protocol: ApplicationProtocol.HTTPS, redirectHTTP: true }
        : { protocol: ApplicationProtocol.HTTP }),
      // Keep serving during deploys; a task that never gets healthy rolls the deployment back.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { rollback: true },
      // tsx compiles the server at start; give it time before health checks count.
      healthCheckGracePeriod: Duration.seconds(60),
      taskImageOptions: {
        image,
        containerName: 'mcp-server',
        containerPort,
        environment,
        secrets: {
          MCP_SESSION_SECRET: EcsSecret.fromSecretsManager(sessionSecret),
          ...(props.databaseSecret && { DATABASE_URL: EcsSecret.fromSecretsManager(props.databaseSecret) }),
          ...(props.clickhouseSecret && { CLICKHOUSE_URL: EcsSecret.fromSecretsManager(props.clickhouseSecret) }),
          ...(props.redisUrlSecret && { REDIS_URL: EcsSecret.fromSecretsManager(props.redisUrlSecret) }),
        },
        logDriver: LogDrivers.awsLogs({ streamPrefix: 'mcp-server', logGroup }),
      },
    });
    this.service.targetGroup.configureHealthCheck({
      path: healthCheckPath,
      healthyHttpCodes: '200',
      interval: Duration.seconds(15),
      timeout: Duration.seconds(5),
      healthyThresholdCount: 2,
      unhealthyThresholdCount: 3,
    });
    // Any task can continue any session (signed session ids); stickiness only saves the re-initialization
    // for clients that keep the cookie.
    this.service.targetGroup.enableCookieStickiness(Duration.hours(1));
    const container = this.service.taskDefinition.defaultContainer!;
    const lbName = this.service.loadBalancer.loadBalancerDnsName;
    const scheme = props.certificate ? 'https' : 'http';
    container.addEnvironment('MCP_PUBLIC_URL', `${scheme}://${props.domainName ?? lbName}/mcp`);
    container.addEnvironment('MCP_ALLOWED_HOSTS', props.domainName ? `${props.domainName},${lbName}` : lbName);
    // Prometheus metrics on a port the load balancer does not route to.
    container.addEnvironment('MCP_METRICS_PORT', '9464');
    if (maxCount > desiredCount) {
      this.service.service
        .autoScaleTaskCount({ minCapacity: desiredCount, maxCapacity: maxCount })
        .scaleOnCpuUtilization('Cpu', { targetUtilizationPercent: 60, scaleInCooldown: Duration.minutes(5), scaleOutCooldown: Duration.minutes(1) });
    }
    if (props.stream) props.stream.grantWrite(this.service.taskDefinition.taskRole);
    if (props.topic) props.topic.grantProduce(this.service.taskDefinition.taskRole);

    this.logAccess(props.removalPolicy ?? RemovalPolicy.RETAIN, props.logRetention ?? RetentionDays.ONE_MONTH);
    Validations.of(this.service.loadBalancer).acknowledge({
      id: 'AwsSolutions-EC23',
      reason: 'The MCP endpoint is public by design (agents and people anywhere); the WAF web ACL and bearer tokens guard it.',
    });
    Validations.of(this.service.taskDefinition.executionRole!).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ecr:GetAuthorizationToken, which ECS needs to pull the image, has no resource-level permissions; the image pull itself is scoped to the asset repository.',
    });
    Validations.of(this.service.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'The environment holds only non-secret settings (ports, issuer, stream name); every credential is an ECS secret read from Secrets Manager by ARN.',
    });

    if (!props.certificate) {
      Annotations.of(this).addWarningV2(
        'qicore:mcp-service:plain-http',
        'MCP is served over plain HTTP: bearer tokens cross the network in clear. Pass a certificate to serve HTTPS.',
      );
    }
    this.url = `${scheme}://${props.domainName ?? lbName}/mcp`;
  }

  /**
   * Access logs of the load balancer to an S3 bucket. The log delivery principal depends on the region,
   * so an environment-agnostic synth (no region) cannot have them: it warns instead; `cdk deploy` always has a region.
   */
  private logAccess(removalPolicy: RemovalPolicy, retention: RetentionDays): void {
    if (Token.isUnresolved(Stack.of(this).region)) {
      Annotations.of(this).addWarningV2(
        'qicore:mcp-service:no-access-logs',
        'Load balancer access logs need the stack region: set CDK_DEFAULT_REGION (cdk deploy does) to have them',
      );
      Validations.of(this.service.loadBalancer).acknowledge({
        id: 'AwsSolutions-ELB2',
        reason: 'Environment-agnostic synth only: with a region (every deploy) access logs go to the AccessLogs bucket.',
      });
      return;
    }
    const bucket = new Bucket(this, 'AccessLogs', {
      // ALB log delivery writes with SSE-S3 only
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(Math.max(1, retention)) }],
      // a bucket with objects cannot be deleted by CloudFormation: kept, and emptied by its lifecycle rule
      removalPolicy: removalPolicy === RemovalPolicy.DESTROY ? RemovalPolicy.RETAIN : removalPolicy,
    });
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This bucket receives access logs; logging access to it again would only log the log delivery.',
    });
    this.service.loadBalancer.logAccessLogs(bucket, 'mcp');
  }
}

/** Throws unless `cpu` and `memoryLimitMiB` form a size Fargate offers. */
export function checkFargateSize(id: string, cpu: number, memoryLimitMiB: number): void {
  const sizes = FARGATE_MEMORY[cpu];
  if (!sizes) {
    throw new InvalidPropsError(
      `${id} cpu must be one of ${Object.keys(FARGATE_MEMORY).join(', ')} (Fargate sizes), got ${cpu}: pick one of them`,
    );
  }
  if (!sizes.includes(memoryLimitMiB)) {
    const accepted = sizes.length <= 4 ? sizes.join(', ') : `${sizes[0]} to ${sizes[sizes.length - 1]} in steps of ${sizes[1]! - sizes[0]!}`;
    throw new InvalidPropsError(
      `${id} memoryLimitMiB ${memoryLimitMiB} does not fit cpu ${cpu}: Fargate accepts ${accepted} MiB with it`,
    );
  }
}
