import { Annotations, Duration, RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import type { IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { SubnetType } from 'aws-cdk-lib/aws-ec2';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Tracing, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { StepFunctionsStartExecution } from 'aws-cdk-lib/aws-scheduler-targets';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import {
  Choice,
  Condition,
  DefinitionBody,
  Fail,
  JsonPath,
  LogLevel,
  Map as MapState,
  Pass,
  StateMachine,
  StateMachineType,
  Succeed,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke, type LambdaInvokeProps } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { z } from 'zod';
import { BudgetExceededError, KillSwitchEngagedError, RiskLimitsSchema, RunBudgetSchema } from '../../../layers/shared/src/agents/contracts.js';
import { TimeframeSchema, type Timeframe } from '../../../layers/shared/src/domain/index.js';
import { parseMarkets } from '../../../layers/shared/src/config/markets.js';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';
import { platformFunctionProps, type WriterLogLevel } from './store-writer.js';

/** The four agent steps, in flow order. */
export const AGENT_STEPS = ['monitor', 'analyst', 'risk', 'execute'] as const;
export type AgentStep = (typeof AGENT_STEPS)[number];

/** Handler sources, relative to the repository root; each exports `handler`. */
export const AGENT_ENTRIES: Readonly<Record<AgentStep, string>> = {
  monitor: 'functions/agents/monitor/main.ts',
  analyst: 'functions/agents/analyst/main.ts',
  risk: 'functions/agents/risk/main.ts',
  execute: 'functions/agents/execute/main.ts',
};

/**
 * Errors of the Lambda service itself (throttling, a failed invoke): retried. Errors a handler
 * throws (the platform's named errors: KillSwitchEngagedError, BudgetExceededError...) are not:
 * running the same step again would not change them, and a kill switch must stop the run.
 */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
  'Lambda.ClientExecutionTimeoutException',
] as const;

/**
 * Errors with which a step stops a run on purpose, after recording its end: they end the run as
 * stopped (succeeded), not failed. Names as the handlers throw them (layers/shared/src/agents/contracts.ts).
 */
export const AGENT_STOP_ERRORS = [KillSwitchEngagedError.name, BudgetExceededError.name] as const;

/** Model providers the agents can use (layers/shared/src/agents); none: deterministic rules. */
export type AgentModelProvider = 'openai-compatible' | 'anthropic' | 'bedrock';
export const AGENT_MODEL_PROVIDERS: readonly AgentModelProvider[] = ['openai-compatible', 'anthropic', 'bedrock'];

/** The model the agents call, when one is configured. */
export interface AgentModelOptions {
  readonly provider: AgentModelProvider;
  /** model id, e.g. `llama3.1:8b`, `claude-sonnet-4-5`, `eu.anthropic.claude-sonnet-4-5-20250929-v1:0` */
  readonly model: string;
  /**
   * Endpoint of an OpenAI-compatible server (required for that provider).
   * @default - the provider's own endpoint
   */
  readonly baseUrl?: string;
  /**
   * Secret whose SecretString is the API key (not for Bedrock, which is called with the function's role).
   * @default - no key
   */
  readonly apiKeySecret?: ISecret;
}

/** OAuth client credentials the agents exchange for an MCP access token at the start of a run. */
export interface AgentClientCredentials {
  /** token endpoint of the identity provider (https) */
  readonly tokenUrl: string;
  readonly clientId: string;
  /** secret whose SecretString is the client secret */
  readonly clientSecret: ISecret;
  /**
   * Scopes to ask for (AGENT_SCOPES, space-separated).
   * @default - the client's default scopes
   */
  readonly scopes?: readonly string[];
}

export interface AgentOrchestrationProps {
  /** The MCP endpoint the agents call (the MCP service's URL, ending in /mcp). */
  readonly mcpUrl: string;
  /**
   * A secret whose SecretString is a bearer token for the MCP server. Give this or `clientCredentials`.
   * @default - none
   */
  readonly tokenSecret?: ISecret;
  /**
   * OAuth client credentials for the MCP server. Give this or `tokenSecret`.
   * @default - none
   */
  readonly clientCredentials?: AgentClientCredentials;
  /**
   * Limits the risk manager enforces (AGENT_RISK_LIMITS); checked against the runtime schema at synth.
   * @default - the schema's defaults
   */
  readonly riskLimits?: z.input<typeof RiskLimitsSchema>;
  /**
   * Budget of one step (AGENT_BUDGET): tool calls, model tokens, wall time. The Lambda timeout is
   * the wall time plus a grace for the step to record its decisions and return.
   * @default - the schema's defaults (120 s of wall time)
   */
  readonly budget?: z.input<typeof RunBudgetSchema>;
  /**
   * Markets the monitor covers (AGENT_MARKETS, `exchange:SYM,SYM;exchange:SYM`).
   * @default - every market the MCP server serves
   */
  readonly markets?: string;
  /**
   * Candles the analyst and its strategies use (AGENT_TIMEFRAME).
   * @default - the runtime's default ('1h')
   */
  readonly timeframe?: Timeframe;
  /**
   * The model the agents use.
   * @default - none: deterministic rules only
   */
  readonly model?: AgentModelOptions;
  /**
   * How many markets are analysed at once (the Map's MaxConcurrency), 1 to 40.
   * @default 4
   */
  readonly maxConcurrency?: number;
  /**
   * When runs start: an EventBridge Scheduler expression, `rate(15 minutes)` or `cron(0/30 * * * ? *)` (UTC).
   * @default 'rate(15 minutes)'
   */
  readonly schedule?: string;
  /**
   * Whether the schedule starts runs; false pauses the agents without removing anything.
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * Longest a whole run may take before Step Functions stops it; at most the schedule's rate, so
   * runs never overlap.
   * @default 6 step timeouts (monitor, up to 3 waves of analysts, risk, execution), capped by the rate
   */
  readonly runTimeout?: Duration;
  /**
   * Lambda memory in MB of each agent.
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * LOG_LEVEL of the handlers.
   * @default 'info'
   */
  readonly logLevel?: WriterLogLevel;
  /**
   * Retention of the functions' and the state machine's log groups.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * Removal policy of the log groups.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * VPC to run the agents in (they reach the MCP server through its NAT).
   * @default - not in a VPC
   */
  readonly vpc?: IVpc;
  /**
   * Subnets within `vpc`.
   * @default - private subnets with egress
   */
  readonly vpcSubnets?: SubnetSelection;
}

/** Grace a step gets past its wall-time budget to record its decisions and return. */
const STEP_GRACE_SECONDS = 30;

/** The schedule's interval in seconds when it is a rate; undefined for cron expressions. Throws for anything else. */
export function scheduleIntervalSeconds(where: string, expression: string): number | undefined {
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (rate) {
    const value = Number(rate[1]);
    const unit = rate[2]!;
    // Scheduler refuses `rate(1 minutes)` and `rate(5 minute)`
    if (value < 1 || (value === 1) !== !unit.endsWith('s')) {
      throw new InvalidPropsError(
        `${where} schedule '${expression}' is not a valid rate: use a positive whole number with a matching unit, e.g. rate(1 hour) or rate(15 minutes)`,
      );
    }
    const unitSeconds = unit.startsWith('minute') ? 60 : unit.startsWith('hour') ? 3600 : 86_400;
    return value * unitSeconds;
  }
  // cron(minutes hours day-of-month month day-of-week year): six fields, one of the two days a '?'
  const cron = /^cron\((.+)\)$/.exec(expression);
  if (cron) {
    const fields = cron[1]!.trim().split(/\s+/);
    if (fields.length === 6 && (fields[2] === '?') !== (fields[4] === '?')) return undefined;
  }
  throw new InvalidPropsError(
    `${where} schedule '${expression}' is not a schedule expression: use rate(<n> minutes|hours|days) or cron(<min> <hour> <day-of-month> <month> <day-of-week> <year>) with '?' in one of the day fields`,
  );
}

/** Throws unless `value` is an http(s) URL; warns when a bearer credential would cross the network in clear. */
function requireHttpUrl(scope: Construct, where: string, value: string, carriesCredential: boolean): void {
  if (Token.isUnresolved(value)) return;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidPropsError(`${where} must be an absolute http(s) URL, got '${value}'`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidPropsError(`${where} must be an http(s) URL, got '${value}'`);
  }
  if (url.protocol === 'http:' && carriesCredential) {
    Annotations.of(scope).addWarningV2(
      `qicore:agent-orchestration:plain-http:${where.split(' ').slice(1).join(' ')}`,
      `${where} '${value}' is plain HTTP: the agents' token crosses the network in clear; give the endpoint a certificate`,
    );
  }
}

/**
 * The scheduled agent run: an EventBridge Scheduler schedule starts a Step Functions state machine
 * that runs the market monitor, then the technical analyst once per market (in parallel, bounded),
 * then the risk manager, then paper execution, each a Lambda that talks to the platform only
 * through the MCP server. A kill switch or an exhausted budget ends the run as stopped; any other
 * error a step throws ends it in a Fail state with that error.
 */
export class AgentOrchestration extends Construct {
  /** the agent run; its metrics (metricFailed, metricTimedOut) are what to alarm on */
  readonly stateMachine: StateMachine;
  readonly functions: Readonly<Record<AgentStep, IFunction>>;
  readonly schedule: Schedule;
  /** the state machine's execution log */
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: AgentOrchestrationProps) {
    super(scope, id);
    // Validated before bundling: a bad value fails in milliseconds, not after esbuild.
    if ((props.tokenSecret === undefined) === (props.clientCredentials === undefined)) {
      throw new InvalidPropsError(
        `${id} needs exactly one way to authenticate to the MCP server: tokenSecret (a bearer token) or clientCredentials (OAuth client credentials)`,
      );
    }
    requireHttpUrl(this, `${id} mcpUrl`, props.mcpUrl, true);
    const credentials = props.clientCredentials;
    if (credentials) {
      requireHttpUrl(this, `${id} clientCredentials.tokenUrl`, credentials.tokenUrl, true);
      if (credentials.clientId.trim() === '') throw new InvalidPropsError(`${id} clientCredentials.clientId is empty`);
      for (const scopeName of credentials.scopes ?? []) {
        if (!/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scopeName)) {
          throw new InvalidPropsError(`${id} clientCredentials.scopes: '${scopeName}' is not an OAuth scope (no spaces or quotes)`);
        }
      }
    }
    const maxConcurrency = props.maxConcurrency ?? 4;
    requireIntegerInRange(`${id} maxConcurrency`, maxConcurrency, 1, 40, 'analysts at once; 0 would mean unbounded');
    const memorySize = props.memorySize ?? 512;
    requireIntegerInRange(`${id} memorySize (MB)`, memorySize, 128, 10_240, 'the Lambda limit');

    const limits = RiskLimitsSchema.safeParse(props.riskLimits ?? {});
    if (!limits.success) throw new InvalidPropsError(`${id} riskLimits: ${limits.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const budget = RunBudgetSchema.safeParse(props.budget ?? {});
    if (!budget.success) throw new InvalidPropsError(`${id} budget: ${budget.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    if (props.markets !== undefined) {
      try {
        parseMarkets(props.markets);
      } catch (error) {
        throw new InvalidPropsError(`${id} ${(error as Error).message}`);
      }
    }
    if (props.timeframe !== undefined && !TimeframeSchema.safeParse(props.timeframe).success) {
      throw new InvalidPropsError(`${id} timeframe '${String(props.timeframe)}' is not a ccxt timeframe (1m, 5m, 1h, ...)`);
    }
    const model = props.model;
    if (model) this.checkModel(id, model);

    const stepSeconds = Math.ceil(budget.data.maxWallMs / 1000) + STEP_GRACE_SECONDS;
    requireIntegerInRange(`${id} budget.maxWallMs (seconds, plus ${STEP_GRACE_SECONDS} s grace)`, stepSeconds, 1, 900, 'the Lambda limit');
    const scheduleExpression = props.schedule ?? 'rate(15 minutes)';
    const intervalSeconds = scheduleIntervalSeconds(id, scheduleExpression);
    const runSeconds = props.runTimeout?.toSeconds() ?? Math.min(6 * stepSeconds, intervalSeconds ?? Number.POSITIVE_INFINITY);
    if (runSeconds < 3 * stepSeconds) {
      throw new InvalidPropsError(
        `${id} runTimeout (${runSeconds} s) is shorter than the monitor, one wave of analysts and risk (${3 * stepSeconds} s at ${stepSeconds} s a step): give a longer runTimeout or a smaller budget.maxWallMs`,
      );
    }
    if (intervalSeconds !== undefined && runSeconds > intervalSeconds) {
      throw new InvalidPropsError(
        `${id} runTimeout (${runSeconds} s) exceeds the schedule's rate (${intervalSeconds} s): runs would overlap; give a slower schedule or a shorter runTimeout`,
      );
    }

    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const retention = props.logRetention ?? RetentionDays.ONE_MONTH;
    const environment: Record<string, string> = {
      MCP_URL: props.mcpUrl,
      AGENT_RISK_LIMITS: JSON.stringify(limits.data),
      AGENT_BUDGET: JSON.stringify(budget.data),
      ...(props.markets !== undefined && { AGENT_MARKETS: props.markets }),
      ...(props.timeframe !== undefined && { AGENT_TIMEFRAME: props.timeframe }),
      ...(props.tokenSecret && { AGENT_TOKEN_SECRET_ARN: props.tokenSecret.secretArn }),
      ...(credentials && {
        AGENT_TOKEN_URL: credentials.tokenUrl,
        AGENT_CLIENT_ID: credentials.clientId,
        AGENT_CLIENT_SECRET_ARN: credentials.clientSecret.secretArn,
        ...(credentials.scopes && credentials.scopes.length > 0 && { AGENT_SCOPES: credentials.scopes.join(' ') }),
      }),
      ...(model && {
        AGENT_MODEL_PROVIDER: model.provider,
        AGENT_MODEL: model.model,
        ...(model.baseUrl !== undefined && { AGENT_MODEL_BASE_URL: model.baseUrl }),
        ...(model.apiKeySecret && { AGENT_MODEL_API_KEY_SECRET_ARN: model.apiKeySecret.secretArn }),
      }),
      LOG_LEVEL: props.logLevel ?? 'info',
      NODE_OPTIONS: '--enable-source-maps',
    };
    const secrets = [props.tokenSecret, credentials?.clientSecret, model?.apiKeySecret].filter((s): s is ISecret => s !== undefined);

    const descriptions: Record<AgentStep, string> = {
      monitor: 'Agent run, step 1: the market monitor picks the markets to analyse',
      analyst: 'Agent run, step 2: the technical analyst of one market',
      risk: 'Agent run, step 3: the risk manager decides on the proposals',
      execute: 'Agent run, step 4: paper execution of the approved decisions',
    };
    const functions = {} as Record<AgentStep, NodejsFunction>;
    for (const step of AGENT_STEPS) {
      const name = step.charAt(0).toUpperCase() + step.slice(1);
      const fn = new NodejsFunction(this, `${name}Function`, {
        description: descriptions[step],
        ...platformFunctionProps(AGENT_ENTRIES[step]),
        memorySize,
        timeout: Duration.seconds(stepSeconds),
        tracing: Tracing.ACTIVE,
        logGroup: new LogGroup(this, `${name}Logs`, { retention, removalPolicy }),
        environment,
        ...(props.vpc && {
          vpc: props.vpc,
          vpcSubnets: props.vpcSubnets ?? { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
        }),
      });
      for (const secret of secrets) secret.grantRead(fn);
      if (model?.provider === 'bedrock') this.allowBedrock(fn, model.model);
      functions[step] = fn;
    }
    this.functions = functions;

    this.logGroup = new LogGroup(this, 'RunLogs', { retention, removalPolicy });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      comment: 'Agent run: monitor, analysts per market, risk, paper execution',
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(this.definition(functions, maxConcurrency, stepSeconds)),
      timeout: Duration.seconds(runSeconds),
      tracingEnabled: true,
      // payloads are in the audit log already; the execution log keeps the transitions and errors
      logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: false },
      removalPolicy,
    });

    // The scheduler's own role, allowed to start this machine and nothing else.
    const scheduleRole = new Role(this, 'ScheduleRole', {
      description: 'EventBridge Scheduler: starts the agent run',
      assumedBy: new ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
    });
    this.schedule = new Schedule(this, 'Schedule', {
      description: 'Starts an agent run',
      schedule: ScheduleExpression.expression(scheduleExpression),
      enabled: props.enabled ?? true,
      target: new StepFunctionsStartExecution(this.stateMachine, {
        role: scheduleRole,
        input: ScheduleTargetInput.fromObject({}),
        // retries of the start call only (a throttled StartExecution), never of a run
        retryAttempts: 3,
        maxEventAge: Duration.minutes(5),
      }),
    });
  }

  /** monitor -> Map(analyst) -> risk -> execute, each Lambda given exactly its payload. */
  private definition(functions: Record<AgentStep, IFunction>, maxConcurrency: number, stepSeconds: number) {
    const failed = new Fail(this, 'RunFailed', {
      comment: 'A step failed with an error it did not handle',
      errorPath: JsonPath.stringAt('$.failure.Error'),
      causePath: JsonPath.stringAt('$.failure.Cause'),
    });
    const invoke = (step: AgentStep, id: string, io: Pick<LambdaInvokeProps, 'payload' | 'resultSelector' | 'resultPath' | 'outputPath'>) => {
      const task = new LambdaInvoke(this, id, {
        lambdaFunction: functions[step],
        // replaced by the retry below, so that the errors retried are exactly the service's
        retryOnServiceExceptions: false,
        // the function's own timeout ends it first; this bounds a lost invocation
        taskTimeout: Timeout.duration(Duration.seconds(stepSeconds + 60)),
        ...io,
      });
      task.addRetry({ errors: [...LAMBDA_SERVICE_ERRORS], interval: Duration.seconds(2), maxAttempts: 3, backoffRate: 2 });
      return task;
    };

    // A run id given in the input is kept (a manual rerun); a scheduled run is named after its execution.
    const nameRun = new Choice(this, 'NameRun')
      .when(Condition.isPresent('$.runId'), new Pass(this, 'GivenRunId', { parameters: { runId: JsonPath.stringAt('$.runId') } }))
      .otherwise(new Pass(this, 'ExecutionRunId', { parameters: { runId: JsonPath.executionName } }));

    const monitor = invoke('monitor', 'Monitor', {
      payload: TaskInput.fromObject({ runId: JsonPath.stringAt('$.runId') }),
      // the observation count rides along to execute, for the run summary
      resultSelector: {
        runId: JsonPath.stringAt('$.Payload.runId'),
        report: JsonPath.objectAt('$.Payload.report'),
        observations: JsonPath.arrayLength(JsonPath.listAt('$.Payload.report.observations')),
      },
      resultPath: '$',
    });
    const analyst = invoke('analyst', 'Analyse', {
      payload: TaskInput.fromJsonPathAt('$'),
      outputPath: '$.Payload',
    });
    const analysts = new MapState(this, 'AnalyseMarkets', {
      itemsPath: JsonPath.stringAt('$.report.markets'),
      itemSelector: { runId: JsonPath.stringAt('$.runId'), market: JsonPath.objectAt('$$.Map.Item.Value') },
      maxConcurrency,
      resultPath: '$.analyses',
    }).itemProcessor(analyst);
    const risk = invoke('risk', 'Risk', {
      payload: TaskInput.fromObject({ runId: JsonPath.stringAt('$.runId'), analyses: JsonPath.listAt('$.analyses') }),
      resultSelector: { decisions: JsonPath.listAt('$.Payload.decisions') },
      resultPath: '$.risk',
    });
    const execute = invoke('execute', 'Execute', {
      payload: TaskInput.fromObject({
        runId: JsonPath.stringAt('$.runId'),
        decisions: JsonPath.listAt('$.risk.decisions'),
        observations: JsonPath.numberAt('$.observations'),
      }),
      outputPath: '$.Payload',
    });
    // A kill switch or an exhausted budget is a stop the step has recorded (run_end), not a failure:
    // the run ends as succeeded, so the failure alarm keeps meaning failure while the switch is on.
    const stopped = new Succeed(this, 'RunStopped', { comment: 'Stopped by the kill switch or the run budget; run_end is in the audit log' });
    for (const state of [monitor, analysts, risk, execute]) {
      state.addCatch(stopped, { errors: [...AGENT_STOP_ERRORS], resultPath: '$.stopped' });
      state.addCatch(failed, { errors: ['States.ALL'], resultPath: '$.failure' });
    }

    const flow = monitor.next(analysts).next(risk).next(execute).next(new Succeed(this, 'RunDone'));
    nameRun.afterwards().next(flow);
    return nameRun;
  }

  private checkModel(id: string, model: AgentModelOptions): void {
    if (!AGENT_MODEL_PROVIDERS.includes(model.provider)) {
      throw new InvalidPropsError(`${id} model.provider '${model.provider}' is not one of ${AGENT_MODEL_PROVIDERS.join(', ')}`);
    }
    if (model.model.trim() === '') throw new InvalidPropsError(`${id} model.model is empty: name the model id`);
    if (model.provider === 'openai-compatible' && model.baseUrl === undefined) {
      throw new InvalidPropsError(`${id} model.baseUrl is required for an openai-compatible model: give the server's /v1 URL`);
    }
    if (model.provider === 'anthropic' && !model.apiKeySecret) {
      throw new InvalidPropsError(`${id} an anthropic model needs model.apiKeySecret (a secret holding the API key)`);
    }
    if (model.provider === 'bedrock' && (model.apiKeySecret || model.baseUrl !== undefined)) {
      throw new InvalidPropsError(`${id} a bedrock model is called with the function's role: drop model.apiKeySecret and model.baseUrl`);
    }
    if (model.baseUrl !== undefined) requireHttpUrl(this, `${id} model.baseUrl`, model.baseUrl, model.apiKeySecret !== undefined);
  }

  /** Bedrock invoke rights on the model only (a cross-region inference profile and the models it routes to). */
  private allowBedrock(fn: NodejsFunction, modelId: string): void {
    const stack = Stack.of(this);
    const profile = /^(us|eu|apac|us-gov|global)\.(.+)$/.exec(modelId);
    const anyRegionModel = profile && `arn:${stack.partition}:bedrock:*::foundation-model/${profile[2]}`;
    const resources = profile
      ? [stack.formatArn({ service: 'bedrock', resource: 'inference-profile', resourceName: modelId }), anyRegionModel!]
      : [`arn:${stack.partition}:bedrock:${stack.region}::foundation-model/${modelId}`];
    fn.addToRolePolicy(new PolicyStatement({ actions: ['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream'], resources }));
    if (profile) {
      const partition = Token.isUnresolved(stack.partition) ? '<AWS::Partition>' : stack.partition;
      Validations.of(fn).acknowledge({
        id: `AwsSolutions-IAM5[Resource::arn:${partition}:bedrock:*::foundation-model/${profile[2]}]`,
        reason: 'One model in any region: a cross-region inference profile routes each call to a region of its choosing, and the caller must be allowed the model there.',
      });
    }
  }
}
