import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Vpc } from 'aws-cdk-lib/aws-ec2';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AGENT_ENTRIES,
  AGENT_STOP_ERRORS,
  AgentOrchestration,
  LAMBDA_SERVICE_ERRORS,
  scheduleIntervalSeconds,
  type AgentOrchestrationProps,
} from '../../cdk/lib/constructs/agent-orchestration.js';
import { acknowledgeAgentRun, acknowledgeLambdaDefaults } from '../../cdk/lib/nag-acknowledgements.js';
import { InvalidPropsError } from '../../cdk/lib/prop-checks.js';
import { repoPath } from '../../cdk/lib/repo-paths.js';
import { parseAgentConfig } from '../../layers/shared/src/agents/agent-config.js';
import {
  AnalystEventSchema,
  ExecuteEventSchema,
  ExecuteResultSchema,
  MonitorEventSchema,
  MonitorResultSchema,
  RiskEventSchema,
  RiskResultSchema,
} from '../../layers/shared/src/agents/agent-steps.js';
import { AnalysisSchema, BudgetExceededError, KillSwitchEngagedError, RiskLimitsSchema, RunBudgetSchema } from '../../layers/shared/src/agents/contracts.js';
import { parseModelEnv } from '../../layers/shared/src/agents/model/model-config.js';

/** asl-validator ships no types: its documented call shape. */
type AslValidator = (
  definition: unknown,
  options?: { checkPaths: boolean; checkArn: boolean },
) => { isValid: boolean; errors: { 'Error code': string; Message: string }[]; errorsText(separator?: string): string };
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

const cdkJson = JSON.parse(readFileSync(repoPath('cdk.json'), 'utf8')) as { context: Record<string, unknown> };
const ENV = { account: '111111111111', region: 'eu-west-1' };
const MCP_URL = 'https://mcp.example.com/mcp';
const TOKEN_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:qicore/agents/token-AbCdEf';

/**
 * A stack to put the construct in. Bundling is skipped (`aws:cdk:bundling-stacks`): the template
 * is the same, esbuild is what takes seconds, and the bundles are built by the platform stack test.
 */
function testStack(id = 'Agents'): Stack {
  const app = new App({ context: { ...cdkJson.context, 'aws:cdk:bundling-stacks': [] } });
  return new Stack(app, id, { env: ENV });
}

type Props = AgentOrchestrationProps;
type Resource = { Properties: Record<string, unknown> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown };

function fnEnv(template: Template, prefix: string): Record<string, unknown> {
  const fns = Object.entries(template.findResources('AWS::Lambda::Function') as Record<string, Resource>).filter(([id]) => id.startsWith(prefix));
  expect(fns, prefix).toHaveLength(1);
  return (fns[0]![1].Properties['Environment'] as { Variables: Record<string, unknown> }).Variables;
}

/** Role logical id -> statements of every policy attached to it. */
function statementsByRole(template: Template): Map<string, Statement[]> {
  const byRole = new Map<string, Statement[]>();
  for (const policy of Object.values(template.findResources('AWS::IAM::Policy') as Record<string, Resource>)) {
    const roles = policy.Properties['Roles'] as { Ref: string }[];
    const { Statement: statements } = policy.Properties['PolicyDocument'] as { Statement: Statement[] };
    for (const { Ref } of roles) byRole.set(Ref, [...(byRole.get(Ref) ?? []), ...statements]);
  }
  return byRole;
}

function roleOf(template: Template, fnPrefix: string): string {
  const fns = Object.entries(template.findResources('AWS::Lambda::Function') as Record<string, Resource>).filter(([id]) => id.startsWith(fnPrefix));
  return (fns[0]![1].Properties['Role'] as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
}

/**
 * The state machine's definition as deployed: the DefinitionString's Fn::Join resolved, each
 * Fn::GetAtt/Ref stood in for by a plausible ARN, so the JSON can be validated and walked.
 */
function definitionOf(template: Template): Record<string, unknown> {
  const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine') as Record<string, Resource>);
  expect(machines).toHaveLength(1);
  const resolve = (value: unknown): string => {
    if (typeof value === 'string') return value;
    const v = value as Record<string, unknown>;
    if ('Fn::Join' in v) {
      const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    if ('Fn::GetAtt' in v) {
      const [id, attr] = v['Fn::GetAtt'] as [string, string];
      if (attr !== 'Arn') throw new Error(`unexpected attribute ${attr} of ${id}`);
      return `arn:aws:lambda:${ENV.region}:${ENV.account}:function:${id}`;
    }
    if ('Ref' in v) {
      const ref = v['Ref'] as string;
      const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': ENV.region, 'AWS::AccountId': ENV.account, 'AWS::URLSuffix': 'amazonaws.com' };
      if (pseudo[ref]) return pseudo[ref];
      throw new Error(`unexpected Ref ${ref} in the definition`);
    }
    throw new Error(`unexpected token ${JSON.stringify(value)} in the definition`);
  };
  return JSON.parse(resolve(machines[0]!.Properties['DefinitionString'])) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// A small interpreter of the JSONPath subset the definition uses, to follow what each Lambda gets
// ---------------------------------------------------------------------------------------------

type Json = unknown;
type State = Record<string, unknown>;

function readPath(path: string, input: Json, context: Json): Json {
  const [root, rest] = path.startsWith('$$') ? [context, path.slice(2)] : [input, path.slice(1)];
  if (!/^(\.[A-Za-z0-9_]+)*$/.test(rest)) throw new Error(`path ${path} is outside the subset this interpreter reads`);
  return rest === '' ? root : rest.slice(1).split('.').reduce<Json>((node, key) => {
    if (node === null || typeof node !== 'object' || !(key in node)) throw new Error(`States.Runtime: ${path} not found`);
    return (node as Record<string, Json>)[key];
  }, root);
}

/** A `.$` field's value: a path, or the one intrinsic function the definition uses. */
function evaluateField(expression: string, input: Json, context: Json): Json {
  const length = /^States\.ArrayLength\((\$[^)]*)\)$/.exec(expression);
  if (length) return (readPath(length[1]!, input, context) as Json[]).length;
  if (expression.startsWith('States.')) throw new Error(`intrinsic ${expression} is not interpreted`);
  return readPath(expression, input, context);
}

function applyTemplate(template: Json, input: Json, context: Json): Json {
  if (Array.isArray(template)) return template.map((t) => applyTemplate(t, input, context));
  if (template === null || typeof template !== 'object') return template;
  return Object.fromEntries(
    Object.entries(template as Record<string, Json>).map(([key, value]) =>
      key.endsWith('.$') ? [key.slice(0, -2), evaluateField(value as string, input, context)] : [key, applyTemplate(value, input, context)],
    ),
  );
}

function writeResult(path: string | undefined, input: Json, result: Json): Json {
  if (path === undefined || path === '$') return result;
  if (path === null) return input;
  const keys = path.slice(2).split('.');
  const out = structuredClone(input) as Record<string, Json>;
  let node = out;
  for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Record<string, Json>;
  node[keys.at(-1)!] = result;
  return out;
}

type Handlers = Record<string, (payload: Json) => Json>;

/** An error a state raised, as Step Functions names it. */
class StatesError extends Error {
  constructor(
    readonly error: string,
    readonly causeText: string,
  ) {
    super(`${error}: ${causeText}`);
  }
}

/** How a run ended: the terminal state's name, and its output (Succeed) or error and cause (Fail). */
type Ending = { end: string; output?: Json; error?: Json; cause?: Json };

/** Runs `definition` on `input`; `handlers` are keyed by the function's logical id prefix. */
async function run(definition: State, input: Json, handlers: Handlers, executionName = 'exec-1'): Promise<{ ending: Ending; calls: [string, Json][] }> {
  const calls: [string, Json][] = [];

  /** One state's result (for a Choice: the next state's name); a failed Task throws a StatesError. */
  const evaluate = async (state: State, input: Json, context: Record<string, Json>): Promise<Json> => {
    switch (state['Type']) {
      case 'Pass':
        return state['Parameters'] ? applyTemplate(state['Parameters'], input, context) : input;
      case 'Choice': {
        const rule = (state['Choices'] as State[]).find((c) => {
          if (!('IsPresent' in c)) throw new Error('only IsPresent is interpreted');
          let present = true;
          try {
            readPath(c['Variable'] as string, input, context);
          } catch {
            present = false;
          }
          return c['IsPresent'] === present;
        });
        return (rule?.['Next'] ?? state['Default']) as string;
      }
      case 'Task': {
        expect(state['Resource']).toBe('arn:aws:states:::lambda:invoke');
        const params = applyTemplate(state['Parameters'], input, context) as { FunctionName: string; Payload: Json };
        const fnId = params.FunctionName.split(':function:')[1]!;
        const handler = Object.entries(handlers).find(([prefix]) => fnId.startsWith(prefix));
        if (!handler) throw new Error(`no handler for ${fnId}`);
        calls.push([handler[0], params.Payload]);
        let payload: Json;
        try {
          payload = handler[1](structuredClone(params.Payload));
        } catch (error) {
          // a handler's error reaches the state machine under its name (the Lambda errorType)
          const { name, message } = error as Error;
          throw new StatesError(name, JSON.stringify({ errorType: name, errorMessage: message }));
        }
        // what the lambda:invoke integration returns: the payload inside the invoke envelope
        const envelope = { ExecutedVersion: '$LATEST', Payload: payload, StatusCode: 200 };
        return state['ResultSelector'] ? applyTemplate(state['ResultSelector'], envelope, context) : envelope;
      }
      case 'Map': {
        const items = readPath(state['ItemsPath'] as string, input, context) as Json[];
        const results: Json[] = [];
        for (const [index, value] of items.entries()) {
          const itemContext = { ...context, Map: { Item: { Index: index, Value: value } } };
          const itemInput = state['ItemSelector'] ? applyTemplate(state['ItemSelector'], input, itemContext) : value;
          // an iteration's error fails the Map with that error
          results.push(await runStates(state['ItemProcessor'] as State, itemInput, itemContext));
        }
        return results;
      }
      default:
        throw new Error(`state type ${String(state['Type'])} is not interpreted`);
    }
  };

  /** Runs a States graph to its end: the last output, or the Ending of a Succeed/Fail state. */
  const runStates = async (machine: State, machineInput: Json, context: Record<string, Json>): Promise<Json> => {
    const states = machine['States'] as Record<string, State>;
    let name = machine['StartAt'] as string;
    let data = machineInput;
    for (;;) {
      const state = states[name]!;
      if (state['Type'] === 'Succeed') return { end: name, output: data } satisfies Ending;
      if (state['Type'] === 'Fail') {
        return { end: name, error: readPath(state['ErrorPath'] as string, data, context), cause: readPath(state['CausePath'] as string, data, context) } satisfies Ending;
      }
      let result: Json;
      try {
        result = await evaluate(state, data, context);
      } catch (error) {
        if (!(error instanceof StatesError)) throw error;
        // a retrier that matched would run the step again: handlers' errors must match none
        for (const retrier of (state['Retry'] ?? []) as State[]) {
          expect(retrier['ErrorEquals'] as string[], `${name} retries ${error.error}`).not.toContain(error.error);
        }
        const catcher = ((state['Catch'] ?? []) as State[]).find((c) => {
          const errors = c['ErrorEquals'] as string[];
          return errors.includes(error.error) || errors.includes('States.ALL');
        });
        if (!catcher) throw error;
        data = writeResult(catcher['ResultPath'] as string | undefined, data, { Error: error.error, Cause: error.causeText });
        name = catcher['Next'] as string;
        continue;
      }
      if (state['Type'] === 'Choice') {
        name = result as string;
        continue;
      }
      data = writeResult(state['ResultPath'] as string | undefined, data, result);
      if (state['OutputPath'] !== undefined) data = readPath(state['OutputPath'] as string, data, context);
      if (state['End'] === true) return data;
      name = state['Next'] as string;
    }
  };

  const ending = (await runStates(definition, input, { Execution: { Name: executionName } })) as Ending;
  return { ending, calls };
}

// ---------------------------------------------------------------------------------------------

let stack: Stack;
let template: Template;
let tokenSecretId: string;

const baseProps = (stack: Stack): Props => ({
  mcpUrl: MCP_URL,
  tokenSecret: new Secret(stack, 'AgentToken'),
});

beforeAll(() => {
  stack = testStack();
  const vpc = new Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  new AgentOrchestration(stack, 'Agents', {
    ...baseProps(stack),
    vpc,
    markets: 'binance:BTC/USDT,ETH/USDT',
    riskLimits: { maxPositionNotional: 1_000 },
    budget: { maxWallMs: 90_000 },
    maxConcurrency: 3,
    timeframe: '15m',
    schedule: 'rate(30 minutes)',
    logRetention: RetentionDays.ONE_WEEK,
  });
  template = Template.fromStack(stack);
  tokenSecretId = Object.keys(template.findResources('AWS::SecretsManager::Secret')).find((id) => id.startsWith('AgentToken'))!;
});

describe('AgentOrchestration: agent Lambdas', () => {
  it('has one function per step, each bundled from its entry, in the private subnets, traced, sized to the budget', () => {
    // the VPC's default security group lockdown is a Lambda too
    expect(Object.keys(template.findResources('AWS::Lambda::Function')).filter((id) => id.startsWith('Agents'))).toHaveLength(4);
    for (const name of ['Monitor', 'Analyst', 'Risk', 'Execute']) {
      template.hasResource('AWS::Lambda::Function', {
        Properties: Match.objectLike({
          Runtime: 'nodejs22.x',
          Architectures: ['arm64'],
          Handler: 'index.handler',
          // 90 s of wall time plus the 30 s grace to record and return
          Timeout: 120,
          MemorySize: 512,
          TracingConfig: { Mode: 'Active' },
          VpcConfig: { SubnetIds: Match.arrayWith([{ Ref: Match.stringLikeRegexp('^VpcPrivateSubnet') }]), SecurityGroupIds: Match.anyValue() },
        }),
      });
      expect(Object.keys(template.findResources('AWS::Lambda::Function')).some((id) => id.startsWith(`Agents${name}Function`)), name).toBe(true);
    }
    expect(Object.values(AGENT_ENTRIES)).toEqual([
      'functions/agents/monitor/main.ts',
      'functions/agents/analyst/main.ts',
      'functions/agents/risk/main.ts',
      'functions/agents/execute/main.ts',
    ]);
  });

  it('gives every function the MCP URL, the token secret, the limits, budget and markets, and no model without one', () => {
    for (const name of ['Monitor', 'Analyst', 'Risk', 'Execute']) {
      const env = fnEnv(template, `Agents${name}Function`);
      expect(env).toEqual({
        MCP_URL: MCP_URL,
        AGENT_TOKEN_SECRET_ARN: { Ref: tokenSecretId },
        AGENT_RISK_LIMITS: JSON.stringify(RiskLimitsSchema.parse({ maxPositionNotional: 1_000 })),
        AGENT_BUDGET: JSON.stringify(RunBudgetSchema.parse({ maxWallMs: 90_000 })),
        AGENT_MARKETS: 'binance:BTC/USDT,ETH/USDT',
        AGENT_TIMEFRAME: '15m',
        LOG_LEVEL: 'info',
        NODE_OPTIONS: '--enable-source-maps',
      });
      // what the handlers' own configuration parser makes of it, the secret's ARN stood in for
      const config = parseAgentConfig({ ...(env as Record<string, string>), AGENT_TOKEN_SECRET_ARN: TOKEN_ARN });
      expect(config).toMatchObject({
        mcpUrl: MCP_URL,
        auth: { kind: 'secret', secretArn: TOKEN_ARN },
        markets: [{ exchange: 'binance', symbol: 'BTC/USDT' }, { exchange: 'binance', symbol: 'ETH/USDT' }],
        timeframe: '15m',
      });
      expect(config.limits.maxPositionNotional).toBe(1_000);
      expect(config.budget.maxWallMs).toBe(90_000);
      expect(parseModelEnv(env as Record<string, string>).AGENT_MODEL_PROVIDER).toBe('none');
    }
  });

  it('lets each function read the token secret and nothing else: no other secret, no Bedrock', () => {
    const byRole = statementsByRole(template);
    for (const name of ['Monitor', 'Analyst', 'Risk', 'Execute']) {
      const statements = byRole.get(roleOf(template, `Agents${name}Function`)) ?? [];
      const secretReads = statements.filter((st) => [st.Action].flat().includes('secretsmanager:GetSecretValue'));
      expect(secretReads.flatMap((st) => [st.Resource].flat())).toEqual([{ Ref: tokenSecretId }]);
      expect(statements.filter((st) => JSON.stringify(st.Action).includes('bedrock'))).toEqual([]);
    }
  });

  it('with client credentials and a model: those variables, those secrets read, the runtime accepts the model settings', () => {
    const s = testStack('Credentials');
    const clientSecret = new Secret(s, 'ClientSecret');
    const apiKey = new Secret(s, 'ModelKey');
    new AgentOrchestration(s, 'Agents', {
      mcpUrl: MCP_URL,
      clientCredentials: { tokenUrl: 'https://idp.example.com/oauth2/token', clientId: 'agents', clientSecret, scopes: ['market:read', 'agents:write'] },
      model: { provider: 'openai-compatible', model: 'qwen2.5:7b', baseUrl: 'https://llm.example.com/v1', apiKeySecret: apiKey },
    });
    const t = Template.fromStack(s);
    const ids = Object.keys(t.findResources('AWS::SecretsManager::Secret'));
    const clientId = ids.find((id) => id.startsWith('ClientSecret'))!;
    const keyId = ids.find((id) => id.startsWith('ModelKey'))!;
    const env = fnEnv(t, 'AgentsAnalystFunction');
    expect(env).toMatchObject({
      AGENT_TOKEN_URL: 'https://idp.example.com/oauth2/token',
      AGENT_CLIENT_ID: 'agents',
      AGENT_CLIENT_SECRET_ARN: { Ref: clientId },
      AGENT_SCOPES: 'market:read agents:write',
      AGENT_MODEL_PROVIDER: 'openai-compatible',
      AGENT_MODEL: 'qwen2.5:7b',
      AGENT_MODEL_BASE_URL: 'https://llm.example.com/v1',
      AGENT_MODEL_API_KEY_SECRET_ARN: { Ref: keyId },
    });
    expect(env).not.toHaveProperty('AGENT_TOKEN_SECRET_ARN');
    expect(env).not.toHaveProperty('AGENT_MARKETS');
    const deployed = { ...env, AGENT_CLIENT_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:c-AbCdEf', AGENT_MODEL_API_KEY_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:k-AbCdEf' };
    expect(parseModelEnv(deployed as Record<string, string>)).toMatchObject({ AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'qwen2.5:7b' });
    expect(parseAgentConfig(deployed as Record<string, string>).auth).toEqual({
      kind: 'client_credentials',
      tokenUrl: 'https://idp.example.com/oauth2/token',
      clientId: 'agents',
      clientSecretArn: deployed.AGENT_CLIENT_SECRET_ARN,
      scopes: ['market:read', 'agents:write'],
    });
    const statements = statementsByRole(t).get(roleOf(t, 'AgentsRiskFunction')) ?? [];
    // statements of the same actions are merged: their resources, flattened
    const reads = statements.filter((st) => [st.Action].flat().includes('secretsmanager:GetSecretValue')).flatMap((st) => [st.Resource].flat());
    expect(reads).toHaveLength(2);
    expect(reads).toEqual(expect.arrayContaining([{ Ref: clientId }, { Ref: keyId }]));
  });

  it('with a Bedrock model: invoke rights on that model (and the models its inference profile routes to) only', () => {
    const s = testStack('Bedrock');
    new AgentOrchestration(s, 'Agents', { ...baseProps(s), model: { provider: 'bedrock', model: 'eu.anthropic.claude-sonnet-4-5-20250929-v1:0' } });
    const t = Template.fromStack(s);
    const statements = statementsByRole(t).get(roleOf(t, 'AgentsMonitorFunction')) ?? [];
    const bedrock = statements.filter((st) => JSON.stringify(st.Action).includes('bedrock'));
    expect(bedrock).toHaveLength(1);
    expect(bedrock[0]!.Action).toEqual(['bedrock:InvokeModel', 'bedrock:InvokeModelWithResponseStream']);
    expect(JSON.stringify(bedrock[0]!.Resource)).toContain(':inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0');
    expect(JSON.stringify(bedrock[0]!.Resource)).toContain(':bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0');
    expect(JSON.stringify(bedrock[0]!.Resource)).not.toContain('*"');
    const env = fnEnv(t, 'AgentsMonitorFunction');
    expect(parseModelEnv({ ...(env as Record<string, string>), AGENT_TOKEN_SECRET_ARN: 'x', AWS_REGION: ENV.region }).AGENT_MODEL_PROVIDER).toBe('bedrock');
  });
});

describe('AgentOrchestration: state machine', () => {
  it('is a standard, traced machine with a run timeout, logging to a log group with the given retention', () => {
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    const logGroupId = Object.keys(template.findResources('AWS::Logs::LogGroup')).find((id) => id.startsWith('AgentsRunLogs'))!;
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: {
        Level: 'ALL',
        IncludeExecutionData: false,
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: { 'Fn::GetAtt': [logGroupId, 'Arn'] } } }],
      },
    });
    // 6 steps of 120 s fit in the 30 minute rate
    expect(definitionOf(template)['TimeoutSeconds']).toBe(720);
    // the functions' four and the machine's
    template.resourceCountIs('AWS::Logs::LogGroup', 5);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
  });

  it('is valid Amazon States Language (asl-validator), with the flow monitor -> analysts -> risk -> execute', () => {
    const definition = definitionOf(template);
    const result = aslValidator(definition);
    expect(result.errorsText(), 'asl-validator').toBe('');
    expect(result.isValid).toBe(true);
    const states = definition['States'] as Record<string, State>;
    expect(definition['StartAt']).toBe('NameRun');
    expect(states['Monitor']!['Next']).toBe('AnalyseMarkets');
    expect(states['AnalyseMarkets']!['Next']).toBe('Risk');
    expect(states['Risk']!['Next']).toBe('Execute');
    expect(states['Execute']!['Next']).toBe('RunDone');
    expect(states['AnalyseMarkets']).toMatchObject({ Type: 'Map', MaxConcurrency: 3, ItemsPath: '$.report.markets' });
  });

  it('retries Lambda service errors only; a stop ends the run as stopped, any other error in a Fail state with it', () => {
    const definition = definitionOf(template);
    const states = definition['States'] as Record<string, State>;
    const analyse = ((states['AnalyseMarkets']!['ItemProcessor'] as State)['States'] as Record<string, State>)['Analyse']!;
    for (const task of [states['Monitor']!, analyse, states['Risk']!, states['Execute']!]) {
      expect(task['Retry']).toEqual([{ ErrorEquals: [...LAMBDA_SERVICE_ERRORS], IntervalSeconds: 2, MaxAttempts: 3, BackoffRate: 2 }]);
      expect(JSON.stringify(task['Retry'])).not.toMatch(/States\.ALL|States\.TaskFailed|Error"/);
    }
    for (const name of ['Monitor', 'AnalyseMarkets', 'Risk', 'Execute']) {
      expect(states[name]!['Catch']).toEqual([
        { ErrorEquals: ['KillSwitchEngagedError', 'BudgetExceededError'], ResultPath: '$.stopped', Next: 'RunStopped' },
        { ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'RunFailed' },
      ]);
    }
    expect(states['RunStopped']).toMatchObject({ Type: 'Succeed' });
    expect(states['RunFailed']).toMatchObject({ Type: 'Fail', ErrorPath: '$.failure.Error', CausePath: '$.failure.Cause' });
  });

  it('gives each Lambda exactly its payload, as the handlers\' own schemas take it, and ends with what execute returns', async () => {
    const definition = definitionOf(template);
    const markets = [{ exchange: 'binance', symbol: 'BTC/USDT' }, { exchange: 'kraken', symbol: 'ETH/USD' }];
    const observation = { kind: 'anomaly', severity: 'warning', detail: 'volume x4', figures: { ratio: 4 } };
    const summary = { runId: 'sched-42', status: 'completed', observations: 2, proposals: 0, decisions: { approve: 0, resize: 0, reject: 0 }, executions: 0, detail: 'ok' };
    // each handler checks its event with the schema the real one parses it with (strict: no extra field)
    const handlers: Handlers = {
      AgentsMonitorFunction: (p) => {
        const { runId } = MonitorEventSchema.parse(p);
        return MonitorResultSchema.parse({ runId, report: { runId: runId!, observations: [observation, observation], markets, excluded: [] } });
      },
      AgentsAnalystFunction: (p) => {
        const { runId, market } = AnalystEventSchema.parse(p);
        return AnalysisSchema.parse({ runId, market, proposal: null, note: 'flat' });
      },
      AgentsRiskFunction: (p) => RiskResultSchema.parse({ runId: RiskEventSchema.parse(p).runId, decisions: [] }),
      AgentsExecuteFunction: (p) => ExecuteResultSchema.parse({ runId: ExecuteEventSchema.parse(p).runId, executions: [], summary }),
    };
    const scheduled = await run(definition, {}, handlers, 'sched-42');
    const analyses = markets.map((market) => ({ runId: 'sched-42', market, proposal: null, note: 'flat' }));
    expect(scheduled.calls).toEqual([
      ['AgentsMonitorFunction', { runId: 'sched-42' }],
      ['AgentsAnalystFunction', { runId: 'sched-42', market: markets[0] }],
      ['AgentsAnalystFunction', { runId: 'sched-42', market: markets[1] }],
      ['AgentsRiskFunction', { runId: 'sched-42', analyses }],
      // the monitor's observation count rides along for the run summary
      ['AgentsExecuteFunction', { runId: 'sched-42', decisions: [], observations: 2 }],
    ]);
    expect(scheduled.ending).toEqual({ end: 'RunDone', output: { runId: 'sched-42', executions: [], summary } });
    // a run id given in the input (a manual rerun) is kept; anything else in the input is not passed on
    const manual = await run(definition, { runId: 'manual-1', extra: true }, handlers);
    expect(manual.calls[0]).toEqual(['AgentsMonitorFunction', { runId: 'manual-1' }]);
    expect(manual.ending.end).toBe('RunDone');
  });

  it('ends a run stopped by the kill switch or the budget as stopped, any other error as failed with that error', async () => {
    const definition = definitionOf(template);
    expect([...AGENT_STOP_ERRORS]).toEqual(['KillSwitchEngagedError', 'BudgetExceededError']);
    const report = { runId: 'r', observations: [], markets: [{ exchange: 'binance', symbol: 'BTC/USDT' }], excluded: [] };
    const flow = (analyst: () => Json): Handlers => ({
      AgentsMonitorFunction: () => ({ runId: 'r', report }),
      AgentsAnalystFunction: analyst,
      AgentsRiskFunction: () => ({ runId: 'r', decisions: [] }),
      AgentsExecuteFunction: () => ({ runId: 'r', executions: [], summary: {} }),
    });
    // errors as the handlers throw them: the platform's own classes, named by their class
    const killed = await run(definition, {}, flow(() => { throw new KillSwitchEngagedError('maintenance'); }));
    expect(killed.ending.end).toBe('RunStopped');
    expect(killed.calls.map(([fn]) => fn)).toEqual(['AgentsMonitorFunction', 'AgentsAnalystFunction']);
    const broke = await run(definition, {}, flow(() => { throw new BudgetExceededError('maxToolCalls', 200); }));
    expect(broke.ending.end).toBe('RunStopped');
    const crashed = await run(definition, {}, flow(() => { throw new TypeError('x is undefined'); }));
    expect(crashed.ending).toMatchObject({ end: 'RunFailed', error: 'TypeError' });
    expect(JSON.parse(crashed.ending.cause as string)).toEqual({ errorType: 'TypeError', errorMessage: 'x is undefined' });
    expect(crashed.calls.map(([fn]) => fn)).not.toContain('AgentsRiskFunction');
  });

  it('reports a broken definition (asl-validator can fail)', () => {
    const definition = definitionOf(template);
    const states = definition['States'] as Record<string, State>;
    const missingTarget = structuredClone(definition) as { States: Record<string, State> };
    delete missingTarget.States['Risk'];
    const dangling = aslValidator(missingTarget);
    expect(dangling.isValid).toBe(false);
    expect(dangling.errors.map((e) => e['Error code'])).toContain('MISSING_TRANSITION_TARGET');

    const badPath = structuredClone(definition) as { States: Record<string, State> };
    badPath.States['Execute'] = { ...states['Execute']!, ResultPath: 'decisions' };
    expect(aslValidator(badPath).isValid).toBe(false);

    const noConcurrency = structuredClone(definition) as { States: Record<string, State> };
    noConcurrency.States['AnalyseMarkets'] = { ...states['AnalyseMarkets']!, MaxConcurrency: -1 };
    expect(aslValidator(noConcurrency).isValid).toBe(false);
  });
});

describe('AgentOrchestration: schedule', () => {
  it('starts the machine on the rate, with an empty input, as a role allowed only states:StartExecution on it', () => {
    const machineId = Object.keys(template.findResources('AWS::StepFunctions::StateMachine'))[0]!;
    const roleId = Object.keys(template.findResources('AWS::IAM::Role')).find((id) => id.startsWith('AgentsScheduleRole'))!;
    template.resourceCountIs('AWS::Scheduler::Schedule', 1);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(30 minutes)',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: Match.objectLike({
        Arn: { Ref: machineId },
        RoleArn: { 'Fn::GetAtt': [roleId, 'Arn'] },
        Input: '{}',
        RetryPolicy: { MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 300 },
      }),
    });
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Action: 'sts:AssumeRole',
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': ENV.account } },
          }),
        ],
      },
    });
    expect(statementsByRole(template).get(roleId)).toEqual([{ Effect: 'Allow', Action: 'states:StartExecution', Resource: { Ref: machineId } }]);
    // no other role may start it
    const starters = [...statementsByRole(template)].filter(([, sts]) => sts.some((st) => [st.Action].flat().some((a) => a.startsWith('states:Start'))));
    expect(starters.map(([id]) => id)).toEqual([roleId]);
  });

  it('is paused with enabled: false, and takes a cron expression', () => {
    const s = testStack('Paused');
    new AgentOrchestration(s, 'Agents', { ...baseProps(s), enabled: false, schedule: 'cron(0/30 * * * ? *)' });
    Template.fromStack(s).hasResourceProperties('AWS::Scheduler::Schedule', { State: 'DISABLED', ScheduleExpression: 'cron(0/30 * * * ? *)' });
  });
});

describe('AgentOrchestration: props', () => {
  const build = (overrides: Partial<Props>, id = 'Agents') => () => {
    const s = testStack();
    return new AgentOrchestration(s, id, { ...baseProps(s), ...overrides });
  };

  it('parses schedule expressions: rates in seconds, cron as undefined, anything else refused', () => {
    expect(scheduleIntervalSeconds('A', 'rate(1 hour)')).toBe(3600);
    expect(scheduleIntervalSeconds('A', 'rate(15 minutes)')).toBe(900);
    expect(scheduleIntervalSeconds('A', 'rate(2 days)')).toBe(172_800);
    expect(scheduleIntervalSeconds('A', 'cron(0 * ? * MON-FRI *)')).toBeUndefined();
    for (const bad of ['rate(5 minute)', 'rate(1 minutes)', 'rate(0 minutes)', 'rate(15 seconds)', 'every 15 minutes', 'cron(0 * * * *)', 'cron(0 * * * * *)']) {
      expect(() => scheduleIntervalSeconds('A', bad), bad).toThrow(InvalidPropsError);
    }
  });

  it('rejects a bad schedule, zero or too much concurrency, and runs that would overlap', () => {
    expect(build({ schedule: 'rate(15 minute)' })).toThrow(/Agents schedule 'rate\(15 minute\)' is not a valid rate/);
    expect(build({ schedule: '*/15 * * * *' })).toThrow(/is not a schedule expression/);
    expect(build({ maxConcurrency: 0 })).toThrow('Agents maxConcurrency must be an integer from 1 to 40 (analysts at once; 0 would mean unbounded), got 0');
    expect(build({ maxConcurrency: 41 })).toThrow(InvalidPropsError);
    // 6 steps of 150 s is 15 minutes: a 10 minute rate cannot hold a run
    expect(build({ schedule: 'rate(10 minutes)', runTimeout: Duration.minutes(15) })).toThrow(/runTimeout \(900 s\) exceeds the schedule's rate \(600 s\)/);
    expect(build({ runTimeout: Duration.minutes(5) })).toThrow(/runTimeout \(300 s\) is shorter than the monitor, one wave of analysts and risk \(450 s/);
    expect(build({ budget: { maxWallMs: 900_000 } })).toThrow(/budget.maxWallMs .* 1 to 900 .* got 930/);
    // with a shorter rate the default run timeout shrinks to it, if it still holds three steps
    expect(build({ schedule: 'rate(10 minutes)' })).not.toThrow();
  });

  it('rejects both or neither kind of MCP auth', () => {
    expect(build({ tokenSecret: undefined })).toThrow(/Agents needs exactly one way to authenticate to the MCP server/);
    const both = () => {
      const s = testStack();
      const clientSecret = new Secret(s, 'C');
      return new AgentOrchestration(s, 'Agents', {
        ...baseProps(s),
        clientCredentials: { tokenUrl: 'https://idp.example.com/token', clientId: 'a', clientSecret },
      });
    };
    expect(both).toThrow(InvalidPropsError);
    expect(both).toThrow(/exactly one way to authenticate/);
  });

  it('rejects limits, budgets, markets and models the runtime would refuse', () => {
    expect(build({ riskLimits: { maxConcentration: 2 } })).toThrow(/Agents riskLimits: maxConcentration/);
    expect(build({ budget: { maxToolCalls: 0 } })).toThrow(/Agents budget: maxToolCalls/);
    expect(build({ markets: 'binance:BTCUSDT' })).toThrow(/Agents markets: 'BTCUSDT' is not a ccxt unified symbol/);
    expect(build({ timeframe: '7m' as never })).toThrow(/Agents timeframe '7m' is not a ccxt timeframe/);
    expect(build({ mcpUrl: 'mcp.example.com' })).toThrow(/mcpUrl must be an absolute http\(s\) URL/);
    expect(build({ model: { provider: 'openai-compatible', model: 'llama3' } })).toThrow(/model.baseUrl is required/);
    expect(build({ model: { provider: 'anthropic', model: 'claude-sonnet-4-5' } })).toThrow(/anthropic model needs model.apiKeySecret/);
    expect(build({ model: { provider: 'bedrock', model: 'm', baseUrl: 'https://x.example.com' } })).toThrow(/drop model.apiKeySecret and model.baseUrl/);
    expect(build({ model: { provider: 'gpt' as never, model: 'm' } })).toThrow(/model.provider 'gpt' is not one of/);
  });

  it('warns when the MCP token would travel over plain HTTP', () => {
    const s = testStack('Http');
    new AgentOrchestration(s, 'Agents', { ...baseProps(s), mcpUrl: 'http://mcp.internal.example.com/mcp' });
    Annotations.fromStack(s).hasWarning('/Http/Agents', Match.stringLikeRegexp('plain HTTP: the agents\' token crosses the network in clear'));
  });
});

describe('AgentOrchestration: cdk-nag', () => {
  it('leaves no AwsSolutions finding unacknowledged beyond those the platform stack acknowledges for it', () => {
    const s = testStack('Nag');
    const vpc = new Vpc(s, 'Vpc', { maxAzs: 2, natGateways: 1 });
    const agents = new AgentOrchestration(s, 'Agents', { ...baseProps(s), vpc, model: { provider: 'bedrock', model: 'eu.anthropic.claude-sonnet-4-5-20250929-v1:0' } });
    acknowledgeLambdaDefaults(s);
    acknowledgeAgentRun(s, agents);
    const report = new AwsSolutionsChecks(s.node.scope as App).validateScope(s);
    const findings = report.violations.flatMap((v) =>
      v.violatingResources.map((r) => `${v.ruleName} at ${(r as { constructPath?: string }).constructPath ?? r.resourceLogicalId}`),
    );
    // the checks ran: the fixture's VPC has no flow log
    expect(findings.some((f) => f.startsWith('AwsSolutions-VPC7'))).toBe(true);
    // the test fixture's own VPC and secret are not the construct's
    expect(findings.filter((f) => !/ at Nag\/(Vpc|AgentToken)\//.test(f))).toEqual([]);
  });
});
