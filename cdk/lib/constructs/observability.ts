import { Duration, Stack, Token } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type HorizontalAnnotation,
  Metric,
  TextWidget,
  TreatMissingData,
  type IMetric,
  type IWidget,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { BaseService } from 'aws-cdk-lib/aws-ecs';
import { HttpCodeElb, HttpCodeTarget, type IApplicationLoadBalancer, type IApplicationTargetGroup } from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IStream } from 'aws-cdk-lib/aws-kinesis';
import { Key } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { FilterPattern, MetricFilter, type ILogGroup } from 'aws-cdk-lib/aws-logs';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { InvalidPropsError } from '../prop-checks.js';

/**
 * What the collector logs when a feed heard nothing for its stale window and is resubscribed
 * (layers/shared/src/collector/market-collector.ts), with `quietMs`: how long it was silent.
 */
export const COLLECTOR_STALE_FEED_MSG = 'feed stale; resubscribing';

/** A Lambda consumer to watch: errors, throttles, duration and, for stream consumers, iterator age. */
export interface ObservedFunction {
  /** short name for the dashboard and alarm descriptions, e.g. `timescale-writer` */
  readonly label: string;
  readonly function: IFunction;
  /**
   * The function's timeout: the duration alarm fires at 80% of it.
   * @default - the `consumerDurationP99` threshold
   */
  readonly timeout?: Duration;
  /**
   * Whether it reads a stream through an event source mapping (its IteratorAge is watched).
   * @default false
   */
  readonly readsStream?: boolean;
}

/** A queue that should stay empty: failed batches, dead letters. */
export interface ObservedQueue {
  readonly label: string;
  readonly queue: IQueue;
}

/** One collector shard: its log group (stale feeds) and its service (is it running). */
export interface ObservedCollectorShard {
  /** the shard as SHARD gives it, e.g. `0/2` */
  readonly label: string;
  readonly logGroup: ILogGroup;
  /**
   * Its ECS service: an alarm fires when it reports no CPU samples (no task running).
   * @default - no running check
   */
  readonly service?: BaseService;
}

/** The MCP endpoint's load balancer and target group. */
export interface ObservedLoadBalancer {
  readonly loadBalancer: IApplicationLoadBalancer;
  readonly targetGroup: IApplicationTargetGroup;
}

/** Alarm thresholds; each alarm evaluates one `period`. */
export interface ObservabilityThresholds {
  /**
   * Oldest unread record of the stream, and of each stream consumer.
   * @default Duration.minutes(1)
   */
  readonly iteratorAge?: Duration;
  /**
   * Failed invocations of a consumer in a period.
   * @default 1
   */
  readonly consumerErrors?: number;
  /**
   * Throttled invocations of a consumer in a period.
   * @default 1
   */
  readonly consumerThrottles?: number;
  /**
   * p99 duration of a consumer that has no `timeout` given (otherwise 80% of its timeout).
   * @default Duration.seconds(30)
   */
  readonly consumerDurationP99?: Duration;
  /**
   * Messages waiting in a failure or dead-letter queue.
   * @default 1
   */
  readonly deadLetterMessages?: number;
  /**
   * Stale-feed resubscribes of one collector shard in a period.
   * @default 3
   */
  readonly staleFeeds?: number;
  /**
   * 5xx answers of the MCP server and its load balancer in a period.
   * @default 5
   */
  readonly mcp5xx?: number;
  /**
   * p99 of the MCP server's response time (to the first byte).
   * @default Duration.seconds(5)
   */
  readonly mcpLatencyP99?: Duration;
  /**
   * Agent runs failed or timed out in a period.
   * @default 1
   */
  readonly agentRunFailures?: number;
}

export interface PlatformObservabilityProps {
  /**
   * The Kinesis stream of market events (GetRecords.IteratorAgeMilliseconds).
   * @default - none (a stage on MSK)
   */
  readonly stream?: IStream;
  /**
   * Lambda consumers: the store writers, the alerts consumer, the refresher.
   * @default - none
   */
  readonly consumers?: readonly ObservedFunction[];
  /**
   * Failure and dead-letter queues.
   * @default - none
   */
  readonly queues?: readonly ObservedQueue[];
  /**
   * Collector shards.
   * @default - none
   */
  readonly collectorShards?: readonly ObservedCollectorShard[];
  /**
   * The MCP endpoint.
   * @default - none
   */
  readonly mcp?: ObservedLoadBalancer;
  /**
   * The agent run (AgentOrchestration.stateMachine).
   * @default - none
   */
  readonly agentStateMachine?: IStateMachine;
  /** Alarm thresholds; each has a default. */
  readonly thresholds?: ObservabilityThresholds;
  /**
   * Period every alarm and graph aggregates over.
   * @default Duration.minutes(5)
   */
  readonly period?: Duration;
  /**
   * Addresses subscribed to the alarm topic (each must confirm by mail).
   * @default - none: subscribe later
   */
  readonly alarmEmails?: readonly string[];
  /**
   * Name of the CloudWatch dashboard.
   * @default - `<stack name>-platform`
   */
  readonly dashboardName?: string;
  /**
   * Namespace of the metrics made from logs (collector staleness).
   * @default - `Qicore/<stack name>`
   */
  readonly metricNamespace?: string;
}

/** What an alarm watches, for tests and for the dashboard. */
export interface PlatformAlarm {
  readonly alarm: Alarm;
  readonly metric: IMetric;
}

/** Throws unless `value` is a finite number > 0. */
function requirePositive(where: string, value: number): void {
  if (Token.isUnresolved(value)) return;
  if (!Number.isFinite(value) || value <= 0) throw new InvalidPropsError(`${where} must be a number above 0, got ${String(value)}`);
}

/** A construct id from a label: `timescale-writer` -> `TimescaleWriter`, `shard 0/2` -> `Shard0Of2`. */
function idFrom(label: string): string {
  const words = label.replaceAll('/', ' of ').split(/[^A-Za-z0-9]+/).filter(Boolean);
  return words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

/**
 * CloudWatch alarms and a dashboard over the platform: the stream, its consumers, the failure queues,
 * the collector shards, the MCP endpoint and the agent runs. Every alarm notifies one encrypted SNS
 * topic, on alarm and on recovery. Resources a stage lacks are simply left out.
 */
export class PlatformObservability extends Construct {
  /** every alarm goes here, in alarm and back to OK */
  readonly alarmTopic: Topic;
  readonly dashboard: Dashboard;
  /** alarms by name: `StreamIteratorAge`, `<Consumer>Errors`, `Collector<Shard>StaleFeeds`, ... */
  readonly alarms: ReadonlyMap<string, PlatformAlarm>;

  private readonly alarmMap = new Map<string, PlatformAlarm>();
  private readonly period: Duration;

  constructor(scope: Construct, id: string, props: PlatformObservabilityProps) {
    super(scope, id);
    const t = props.thresholds ?? {};
    const thresholds = {
      iteratorAgeMs: (t.iteratorAge ?? Duration.minutes(1)).toMilliseconds(),
      consumerErrors: t.consumerErrors ?? 1,
      consumerThrottles: t.consumerThrottles ?? 1,
      consumerDurationMs: (t.consumerDurationP99 ?? Duration.seconds(30)).toMilliseconds(),
      deadLetterMessages: t.deadLetterMessages ?? 1,
      staleFeeds: t.staleFeeds ?? 3,
      mcp5xx: t.mcp5xx ?? 5,
      mcpLatencySeconds: (t.mcpLatencyP99 ?? Duration.seconds(5)).toMilliseconds() / 1000,
      agentRunFailures: t.agentRunFailures ?? 1,
    };
    for (const [name, value] of Object.entries(thresholds)) requirePositive(`${id} thresholds.${name}`, value);
    this.period = props.period ?? Duration.minutes(5);
    const periodSeconds = this.period.toSeconds({ integral: false });
    if (!(periodSeconds === 10 || periodSeconds === 30 || (periodSeconds >= 60 && periodSeconds % 60 === 0))) {
      throw new InvalidPropsError(`${id} period must be 10 s, 30 s or a whole number of minutes (CloudWatch periods), got ${periodSeconds} s`);
    }
    for (const [kind, labels] of [
      ['consumers', (props.consumers ?? []).map((c) => c.label)],
      ['queues', (props.queues ?? []).map((q) => q.label)],
      ['collectorShards', (props.collectorShards ?? []).map((c) => c.label)],
    ] as const) {
      const ids = new Map<string, string>();
      for (const label of labels) {
        const labelId = idFrom(label);
        if (labelId === '') throw new InvalidPropsError(`${id} ${kind}: label '${label}' has no letters or digits`);
        const other = ids.get(labelId);
        if (other !== undefined) throw new InvalidPropsError(`${id} ${kind}: labels '${other}' and '${label}' are not distinct: give each its own`);
        ids.set(labelId, label);
      }
    }
    const stackName = Stack.of(this).stackName;
    const namespace = props.metricNamespace ?? `Qicore/${stackName}`;

    // CloudWatch publishes to an encrypted topic only with a key whose policy lets it (not the AWS managed key).
    const key = new Key(this, 'AlarmTopicKey', { description: 'Encrypts the platform alarm topic', enableKeyRotation: true });
    key.grant(new ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    this.alarmTopic = new Topic(this, 'AlarmTopic', { displayName: `${stackName} platform alarms`, masterKey: key, enforceSSL: true });
    for (const email of props.alarmEmails ?? []) {
      if (!Token.isUnresolved(email) && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
        throw new InvalidPropsError(`${id} alarmEmails: '${email}' is not an email address`);
      }
      this.alarmTopic.addSubscription(new EmailSubscription(email));
    }

    const rows: IWidget[][] = [];
    const graph = (title: string, left: IMetric[], threshold?: { value: number; label: string }) =>
      new GraphWidget({
        title,
        left,
        width: 12,
        height: 6,
        period: this.period,
        ...(threshold && { leftAnnotations: [{ value: threshold.value, label: threshold.label } satisfies HorizontalAnnotation] }),
      });

    if (props.stream) {
      const metric = props.stream.metricGetRecordsIteratorAgeMilliseconds({ statistic: 'Maximum', period: this.period });
      this.addAlarm('StreamIteratorAge', metric, thresholds.iteratorAgeMs, 'the oldest unread record of the market stream is older than the threshold (ms): a consumer is behind');
      rows.push([graph('Market stream: iterator age (ms, max)', [metric], { value: thresholds.iteratorAgeMs, label: 'alarm' })]);
    }

    for (const consumer of props.consumers ?? []) {
      const name = idFrom(consumer.label);
      const fn = consumer.function;
      const errors = fn.metricErrors({ statistic: 'Sum', period: this.period });
      const throttles = fn.metricThrottles({ statistic: 'Sum', period: this.period });
      const duration = fn.metricDuration({ statistic: 'p99', period: this.period });
      const durationLimit = consumer.timeout ? consumer.timeout.toMilliseconds() * 0.8 : thresholds.consumerDurationMs;
      this.addAlarm(`${name}Errors`, errors, thresholds.consumerErrors, `${consumer.label}: invocations failed`);
      this.addAlarm(`${name}Throttles`, throttles, thresholds.consumerThrottles, `${consumer.label}: invocations throttled`);
      this.addAlarm(`${name}Duration`, duration, durationLimit, `${consumer.label}: p99 duration (ms) near its timeout`);
      const row: IWidget[] = [graph(`${consumer.label}: errors and throttles`, [errors, throttles]), graph(`${consumer.label}: duration (ms, p99)`, [duration], { value: durationLimit, label: 'alarm' })];
      if (consumer.readsStream) {
        const age = fn.metric('IteratorAge', { statistic: 'Maximum', period: this.period });
        this.addAlarm(`${name}IteratorAge`, age, thresholds.iteratorAgeMs, `${consumer.label}: its oldest unprocessed stream record is older than the threshold (ms)`);
        row.push(graph(`${consumer.label}: iterator age (ms, max)`, [age], { value: thresholds.iteratorAgeMs, label: 'alarm' }));
      }
      rows.push(row);
    }

    // labels go on the graphed copies only: an alarm on a labelled metric becomes a metric query
    const queueMetrics: IMetric[] = [];
    for (const { label, queue } of props.queues ?? []) {
      const metric = queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: this.period });
      this.addAlarm(`${idFrom(label)}QueueDepth`, metric, thresholds.deadLetterMessages, `${label}: messages are waiting in a failure queue (batches that failed every retry)`);
      queueMetrics.push(metric.with({ label }));
    }
    if (queueMetrics.length > 0) rows.push([graph('Failure and dead-letter queues: messages visible', queueMetrics, { value: thresholds.deadLetterMessages, label: 'alarm' })]);

    // Staleness per shard, from the collector's own log line: one metric a shard whose samples are
    // stale-feed resubscribes and whose value is how long the feed was silent (ms).
    const staleMetrics: IMetric[] = [];
    const runningMetrics: IMetric[] = [];
    for (const shard of props.collectorShards ?? []) {
      const name = `Collector${idFrom(`shard ${shard.label}`)}`;
      // one metric name a shard: a metric filter's dimensions can only come from the log line, which has no shard
      const metricName = `StaleFeedQuietMs${idFrom(`shard ${shard.label}`)}`;
      new MetricFilter(this, `${name}StaleFeedFilter`, {
        logGroup: shard.logGroup,
        filterPattern: FilterPattern.stringValue('$.msg', '=', COLLECTOR_STALE_FEED_MSG),
        metricNamespace: namespace,
        metricName,
        metricValue: '$.quietMs',
      });
      const stale = new Metric({ namespace, metricName, statistic: 'SampleCount', period: this.period });
      this.addAlarm(`${name}StaleFeeds`, stale, thresholds.staleFeeds, `collector shard ${shard.label}: feeds went stale and were resubscribed`);
      staleMetrics.push(stale.with({ label: `shard ${shard.label}` }));
      if (shard.service) {
        // ECS reports CPU while a task runs: no samples at all means no task
        const running = shard.service.metricCpuUtilization({ statistic: 'SampleCount', period: Duration.minutes(1) });
        this.addAlarm(`${name}NotRunning`, running, 1, `collector shard ${shard.label}: no task is running`, {
          comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
          treatMissingData: TreatMissingData.BREACHING,
          evaluationPeriods: 3,
        });
        runningMetrics.push(running.with({ label: `shard ${shard.label}` }));
      }
    }
    if (staleMetrics.length > 0) {
      rows.push([
        graph('Collector: stale-feed resubscribes per shard', staleMetrics, { value: thresholds.staleFeeds, label: 'alarm' }),
        ...(runningMetrics.length > 0 ? [graph('Collector: CPU samples per shard (0 = not running)', runningMetrics)] : []),
      ]);
    }

    if (props.mcp) {
      const { loadBalancer, targetGroup } = props.mcp;
      const target5xx = targetGroup.metrics.httpCodeTarget(HttpCodeTarget.TARGET_5XX_COUNT, { statistic: 'Sum', period: this.period });
      const elb5xx = loadBalancer.metrics.httpCodeElb(HttpCodeElb.ELB_5XX_COUNT, { statistic: 'Sum', period: this.period });
      const latency = targetGroup.metrics.targetResponseTime({ statistic: 'p99', period: this.period });
      this.addAlarm('McpTarget5xx', target5xx, thresholds.mcp5xx, 'MCP server: 5xx answers');
      this.addAlarm('McpLoadBalancer5xx', elb5xx, thresholds.mcp5xx, 'MCP load balancer: 5xx answers of its own (no healthy target, timeouts)');
      this.addAlarm('McpLatencyP99', latency, thresholds.mcpLatencySeconds, 'MCP server: p99 response time (s) above the threshold');
      rows.push([
        graph('MCP: 5xx (server, load balancer)', [target5xx, elb5xx], { value: thresholds.mcp5xx, label: 'alarm' }),
        graph('MCP: response time (s, p99)', [latency], { value: thresholds.mcpLatencySeconds, label: 'alarm' }),
      ]);
    }

    if (props.agentStateMachine) {
      const failed = props.agentStateMachine.metricFailed({ statistic: 'Sum', period: this.period });
      const timedOut = props.agentStateMachine.metricTimedOut({ statistic: 'Sum', period: this.period });
      this.addAlarm('AgentRunsFailed', failed, thresholds.agentRunFailures, 'agent runs failed (see the RunFailed state of the execution)');
      this.addAlarm('AgentRunsTimedOut', timedOut, thresholds.agentRunFailures, 'agent runs timed out');
      rows.push([graph('Agent runs: failed and timed out', [failed, timedOut], { value: thresholds.agentRunFailures, label: 'alarm' })]);
    }

    this.dashboard = new Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? `${stackName}-platform`,
      widgets: [[new TextWidget({ markdown: `# ${stackName}\nAlarms notify the SNS topic of this stack's PlatformObservability.`, width: 24, height: 2 })], ...rows],
    });
    this.alarms = this.alarmMap;
  }

  private addAlarm(
    name: string,
    metric: IMetric,
    threshold: number,
    description: string,
    options: { comparisonOperator?: ComparisonOperator; treatMissingData?: TreatMissingData; evaluationPeriods?: number } = {},
  ): void {
    const alarm = new Alarm(this, `${name}Alarm`, {
      metric,
      threshold,
      evaluationPeriods: options.evaluationPeriods ?? 1,
      comparisonOperator: options.comparisonOperator ?? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // no data is no errors, no messages, no stale feeds
      treatMissingData: options.treatMissingData ?? TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    const action = new SnsAction(this.alarmTopic);
    alarm.addAlarmAction(action);
    alarm.addOkAction(action);
    this.alarmMap.set(name, { alarm, metric });
  }
}
