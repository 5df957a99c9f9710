import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { SubnetType, type IVpc } from 'aws-cdk-lib/aws-ec2';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';
import { allowEgressPorts, platformFunctionProps, type WriterLogLevel } from './store-writer.js';

/** Handler source, relative to the repository root. */
export const CLICKHOUSE_REFRESHER_ENTRY = 'functions/consumers/clickhouse-refresher/handler.ts';

export interface ClickHouseRefresherProps {
  /** Secret whose SecretString is the ClickHouse URL. */
  readonly secret: ISecret;
  /**
   * How often candles are refreshed: ClickHouse candles of writers in 'refresher' mode lag by up
   * to this plus one run. Whole minutes (EventBridge's finest rate).
   * @default Duration.minutes(1)
   */
  readonly interval?: Duration;
  /**
   * Lambda timeout of one refresh; at most the interval, so runs rarely overlap (an overlap is
   * correct, only wasted work; a run cut short resumes at the next tick).
   * @default the interval
   */
  readonly timeout?: Duration;
  /**
   * Lambda memory in MB (the work is server side; the function only sends statements).
   * @default 256
   */
  readonly memorySize?: number;
  /**
   * LOG_LEVEL of the handler.
   * @default 'info'
   */
  readonly logLevel?: WriterLogLevel;
  /**
   * Retention of the function's log group.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Removal policy of the log group.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * VPC whose private subnets the function runs in, when ClickHouse is reachable only there or by allow-listed NAT addresses.
   * @default - not in a VPC
   */
  readonly vpc?: IVpc;
  /**
   * TCP ports the function may reach outside the VPC besides 443, when in `vpc`.
   * @default []
   */
  readonly egressPorts?: readonly number[];
}

/**
 * The scheduled ClickHouse candle refresher: an EventBridge rule invokes a Lambda every interval,
 * which rebuilds the candles of the minutes writers marked since its watermark (kept in ClickHouse).
 */
export class ClickHouseRefresher extends Construct {
  readonly function: IFunction;
  readonly rule: Rule;

  constructor(scope: Construct, id: string, props: ClickHouseRefresherProps) {
    super(scope, id);
    const interval = props.interval ?? Duration.minutes(1);
    const minutes = interval.toSeconds({ integral: false }) / 60;
    requireIntegerInRange(`${id} interval (minutes)`, minutes, 1, 60, "EventBridge's finest rate, and candles at most an hour behind");
    const timeout = props.timeout ?? interval;
    const memorySize = props.memorySize ?? 256;
    requireIntegerInRange(`${id} memorySize (MB)`, memorySize, 128, 10_240, 'the Lambda limit');
    if (timeout.toSeconds({ integral: false }) > interval.toSeconds({ integral: false })) {
      throw new InvalidPropsError(
        `${id} timeout (${timeout.toSeconds()} s) exceeds the interval (${interval.toSeconds()} s): give a timeout of at most the interval`,
      );
    }
    requireIntegerInRange(`${id} timeout (seconds)`, timeout.toSeconds({ integral: false }), 1, 900, 'the Lambda limit');

    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    const fn = new NodejsFunction(this, 'Function', {
      description: 'Rebuilds ClickHouse candles of the minutes writers marked since the last run',
      ...platformFunctionProps(CLICKHOUSE_REFRESHER_ENTRY),
      memorySize,
      timeout,
      logGroup,
      environment: {
        CLICKHOUSE_SECRET_ARN: props.secret.secretArn,
        LOG_LEVEL: props.logLevel ?? 'info',
        NODE_OPTIONS: '--enable-source-maps',
      },
      ...(props.vpc && { vpc: props.vpc, vpcSubnets: { subnetType: SubnetType.PRIVATE_WITH_EGRESS }, allowAllOutbound: false }),
    });
    if (props.vpc) allowEgressPorts(fn, props.egressPorts ?? [], id);
    props.secret.grantRead(fn);

    this.rule = new Rule(this, 'Schedule', {
      description: 'Refreshes ClickHouse candles',
      schedule: Schedule.rate(interval),
    });
    // No retries: the next tick is the retry, and it resumes from the saved watermark.
    this.rule.addTarget(new LambdaFunction(fn, { retryAttempts: 0, maxEventAge: interval }));
    this.function = fn;
  }
}
