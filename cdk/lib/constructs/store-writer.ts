import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Peer, Port, SubnetType, type IVpc, type SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import type { IStream } from 'aws-cdk-lib/aws-kinesis';
import { Architecture, Runtime, StartingPosition, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource, ManagedKafkaEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import { NodejsFunction, OutputFormat, type BundlingOptions } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption, type IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';
import { repoPath } from '../repo-paths.js';

/** Handler sources, relative to the repository root. */
export const TIMESCALE_WRITER_ENTRY = 'functions/consumers/timescale-writer/handler.ts';
export const CLICKHOUSE_WRITER_ENTRY = 'functions/consumers/clickhouse-writer/handler.ts';
export const ALERTS_CONSUMER_ENTRY = 'functions/consumers/alerts/handler.ts';

/**
 * ESM bundles that inline CommonJS packages (pg) still call `require` for Node built-ins;
 * esbuild's ESM output has no `require`, so one is created from import.meta.url.
 */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __qicoreCreateRequire } from 'node:module'; const require = __qicoreCreateRequire(import.meta.url);";

/** How every platform Lambda is bundled. */
export const LAMBDA_BUNDLING: BundlingOptions = {
  // Local esbuild only: there is no Docker on build machines or in CI.
  forceDockerBundling: false,
  format: OutputFormat.ESM,
  target: 'node22',
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_BANNER,
  // keepNames: the platform's errors take their `name` from the class name.
  minify: true,
  keepNames: true,
  sourceMap: true,
  // file:line mapping without shipping the sources again
  sourcesContent: false,
  // The runtime ships AWS SDK v3; everything else (pg, zod...) is bundled.
  externalModules: ['@aws-sdk/*'],
};

/**
 * What every platform Lambda shares: its entry bundled from the repository with the lock file,
 * Node 22 on ARM64, and LAMBDA_BUNDLING. Constructs add size, timeout, logs and environment.
 */
export function platformFunctionProps(entry: string, handler = 'handler') {
  return {
    entry: repoPath(entry),
    handler,
    projectRoot: repoPath(''),
    depsLockFilePath: repoPath('package-lock.json'),
    runtime: Runtime.NODEJS_22_X,
    architecture: Architecture.ARM_64,
    bundling: LAMBDA_BUNDLING,
  } as const;
}

export type WriterLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The Kafka source of a writer: the MSK cluster and topic (see MarketTopic). */
export interface KafkaSource {
  readonly clusterArn: string;
  readonly topic: string;
  /** grants the function's role what Lambda's event source needs to read as a consumer group */
  grantConsume(grantee: IFunction): unknown;
}

export interface StoreWriterProps {
  /**
   * The Kinesis stream of market events to consume; give this or `kafka`.
   * @default - none
   */
  readonly stream?: IStream;
  /**
   * The MSK topic of market events to consume instead of a Kinesis stream.
   * @default - none
   */
  readonly kafka?: KafkaSource;
  /** Handler source file, relative to the repository root. */
  readonly entry: string;
  /** What the function writes where, for the console. */
  readonly description: string;
  /** Secret whose SecretString is the store's connection URL. */
  readonly secret: ISecret;
  /** Environment variable that carries the secret's ARN to the handler. */
  readonly secretEnvVar: string;
  /**
   * Lambda memory in MB (CPU grows with it).
   * @default 256
   */
  readonly memorySize?: number;
  /**
   * Lambda timeout for one batch.
   * @default Duration.seconds(60)
   */
  readonly timeout?: Duration;
  /**
   * Records per invocation, 1 to 10000.
   * @default 100
   */
  readonly batchSize?: number;
  /**
   * How long the poller gathers records before invoking, 0 to 300 seconds.
   * @default Duration.seconds(1)
   */
  readonly maxBatchingWindow?: Duration;
  /**
   * Concurrent batches per shard, 1 to 10 (order is kept per partition key).
   * @default 1
   */
  readonly parallelizationFactor?: number;
  /**
   * Retries of a failing batch before it goes to the failure queue, 0 to 10000.
   * @default 10
   */
  readonly retryAttempts?: number;
  /**
   * Where a new mapping starts reading.
   * @default StartingPosition.TRIM_HORIZON (at-least-once: nothing written before the mapping exists is skipped)
   */
  readonly startingPosition?: StartingPosition;
  /**
   * LOG_LEVEL of the handler.
   * @default 'info'
   */
  readonly logLevel?: WriterLogLevel;
  /**
   * More environment variables of the handler (e.g. CLICKHOUSE_CANDLES).
   * @default - none
   */
  readonly environment?: Readonly<Record<string, string>>;
  /**
   * Retention of the function's log group.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Removal policy of the log group and the failure queue.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * VPC to run in, when the database is only reachable there.
   * @default - not in a VPC (the database is reached over the internet, with TLS)
   */
  readonly vpc?: IVpc;
  /**
   * Subnets within `vpc`.
   * @default - private subnets with egress
   */
  readonly vpcSubnets?: SubnetSelection;
  /**
   * TCP ports the function may reach outside the VPC (through NAT), when in `vpc`: its security group
   * allows nothing else out. 443 covers the AWS APIs (Secrets Manager); add the store's port.
   * @default [443]
   */
  readonly egressPorts?: readonly number[];
}

/** Opens `ports` to any IPv4 address on the security group of `fn`, which allows nothing out otherwise. */
export function allowEgressPorts(fn: IFunction, ports: readonly number[], what: string): void {
  for (const port of new Set([443, ...ports])) {
    requireIntegerInRange(`${what} egress port`, port, 1, 65535, 'a TCP port');
    fn.connections.allowTo(Peer.anyIpv4(), Port.tcp(port), port === 443 ? 'HTTPS: AWS APIs and https stores' : `${what}: store port`);
  }
}

/** A Lambda consumer that writes market events from the stream to one store, idempotently. */
export class StoreWriter extends Construct {
  readonly function: IFunction;
  /** receives metadata (shard, sequence range) of batches that failed every retry */
  readonly failureQueue: IQueue;

  constructor(scope: Construct, id: string, props: StoreWriterProps) {
    super(scope, id);
    const batchSize = props.batchSize ?? 100;
    const maxBatchingWindow = props.maxBatchingWindow ?? Duration.seconds(1);
    const parallelizationFactor = props.parallelizationFactor ?? 1;
    const retryAttempts = props.retryAttempts ?? 10;
    const memorySize = props.memorySize ?? 256;
    const timeout = props.timeout ?? Duration.seconds(60);
    if ((props.stream === undefined) === (props.kafka === undefined)) {
      throw new InvalidPropsError(`${id} needs exactly one source: stream (Kinesis) or kafka (MSK)`);
    }
    // Validated before bundling: a bad value fails in milliseconds, not after esbuild.
    requireIntegerInRange(`${id} batchSize`, batchSize, 1, 10_000, 'the Kinesis event source limit');
    requireIntegerInRange(
      `${id} maxBatchingWindow (seconds)`,
      maxBatchingWindow.toSeconds({ integral: false }),
      0,
      300,
      'the event source limit',
    );
    requireIntegerInRange(`${id} parallelizationFactor`, parallelizationFactor, 1, 10, 'the Kinesis event source limit');
    requireIntegerInRange(`${id} retryAttempts`, retryAttempts, 0, 10_000, 'the Kinesis event source limit');
    requireIntegerInRange(`${id} memorySize (MB)`, memorySize, 128, 10_240, 'the Lambda limit');
    requireIntegerInRange(`${id} timeout (seconds)`, timeout.toSeconds({ integral: false }), 1, 900, 'the Lambda limit');
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy,
    });

    const fn = new NodejsFunction(this, 'Function', {
      description: props.description,
      // the entry exports `handler` for Kinesis events and `mskHandler` for MSK events
      ...platformFunctionProps(props.entry, props.kafka ? 'mskHandler' : 'handler'),
      memorySize,
      timeout,
      logGroup,
      environment: {
        ...props.environment,
        [props.secretEnvVar]: props.secret.secretArn,
        LOG_LEVEL: props.logLevel ?? 'info',
        NODE_OPTIONS: '--enable-source-maps',
      },
      ...(props.vpc && {
        vpc: props.vpc,
        vpcSubnets: props.vpcSubnets ?? { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
        allowAllOutbound: false,
      }),
    });
    if (props.vpc) allowEgressPorts(fn, props.egressPorts ?? [], id);
    if (!/^[A-Z][A-Z0-9_]*$/.test(props.secretEnvVar)) {
      throw new InvalidPropsError(`${id} secretEnvVar '${props.secretEnvVar}' is not an environment variable name (A-Z, 0-9, _)`);
    }
    props.secret.grantRead(fn);

    const failureQueue = new Queue(this, 'FailedBatches', {
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy,
    });
    Validations.of(failureQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself the dead-letter destination of the event source; nothing consumes it automatically, so a DLQ of its own would never receive anything.',
    });

    if (props.stream) {
      fn.addEventSource(
        new KinesisEventSource(props.stream, {
          startingPosition: props.startingPosition ?? StartingPosition.TRIM_HORIZON,
          batchSize,
          maxBatchingWindow,
          parallelizationFactor,
          retryAttempts,
          // One poison record is isolated by splitting and by the handler's partial failures,
          // so it never blocks its shard or replays a whole batch.
          bisectBatchOnError: true,
          reportBatchItemFailures: true,
          onFailure: new SqsDlq(failureQueue),
        }),
      );
    } else if (props.kafka) {
      // The handler throws to have a batch retried (partial responses need provisioned pollers);
      // poison records never fail a batch, they are dead-lettered by the handler itself.
      fn.addEventSource(
        new ManagedKafkaEventSource({
          clusterArn: props.kafka.clusterArn,
          topic: props.kafka.topic,
          startingPosition: props.startingPosition ?? StartingPosition.TRIM_HORIZON,
          batchSize,
          maxBatchingWindow,
          onFailure: new SqsDlq(failureQueue),
        }),
      );
      props.kafka.grantConsume(fn);
    }

    this.function = fn;
    this.failureQueue = failureQueue;
  }
}

/** Props of a writer whose handler, description and secret variable are fixed by the store. */
export type StoreWriterOptions = Omit<StoreWriterProps, 'entry' | 'description' | 'secretEnvVar'>;

/** The consumer that writes market events to TimescaleDB (recent, operational). */
export class TimescaleWriter extends StoreWriter {
  constructor(scope: Construct, id: string, props: StoreWriterOptions) {
    super(scope, id, {
      ...props,
      entry: TIMESCALE_WRITER_ENTRY,
      description: 'Writes market events from the stream to TimescaleDB',
      secretEnvVar: 'DATABASE_SECRET_ARN',
    });
  }
}

/** The consumer that writes market events to ClickHouse (history, analytics). */
export class ClickHouseWriter extends StoreWriter {
  constructor(scope: Construct, id: string, props: StoreWriterOptions) {
    super(scope, id, {
      ...props,
      entry: CLICKHOUSE_WRITER_ENTRY,
      description: 'Writes market events from the stream to ClickHouse',
      secretEnvVar: 'CLICKHOUSE_SECRET_ARN',
    });
  }
}

/** Props of the alerts consumer: a Kinesis source, the operational store's secret and its rules (JSON). */
export type AlertsConsumerOptions = Omit<StoreWriterOptions, 'kafka' | 'startingPosition' | 'parallelizationFactor' | 'environment'> & {
  /** the rules as JSON (alerts/alert-rules.ts), checked by the caller */
  readonly rulesJson: string;
};

/**
 * The consumer that evaluates alert rules as events arrive and stores each firing as a signal.
 * It starts at the newest records (an alert on old data is no alert) and reads each shard with one
 * invocation at a time, so a market's rule state stays in one execution environment, in order.
 */
export class AlertsConsumer extends StoreWriter {
  constructor(scope: Construct, id: string, props: AlertsConsumerOptions) {
    const { rulesJson, ...rest } = props;
    if (props.stream === undefined) throw new InvalidPropsError(`${id} reads a Kinesis stream: give it stream`);
    super(scope, id, {
      ...rest,
      entry: ALERTS_CONSUMER_ENTRY,
      description: 'Evaluates alert rules on the stream and stores firings as signals',
      secretEnvVar: 'DATABASE_SECRET_ARN',
      startingPosition: StartingPosition.LATEST,
      parallelizationFactor: 1,
      environment: { ALERT_RULES: rulesJson },
    });
  }
}
