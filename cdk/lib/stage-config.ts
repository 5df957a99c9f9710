import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { StreamMode } from 'aws-cdk-lib/aws-kinesis';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { InvalidPropsError } from './prop-checks.js';

/** What every stage collects: the live defaults of `npm start`. */
const LIVE_MARKETS = 'binance:BTC/USDT,ETH/USDT;coinbase:BTC/USD,ETH/USD;kraken:BTC/USD,ETH/USD';

/** AWS stages the app can deploy, chosen with `-c stage=<name>`. */
export const STAGE_NAMES = ['dev', 'staging', 'prod'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
export const DEFAULT_STAGE: StageName = 'dev';
/**
 * The LocalStack stage (`cdklocal`, free edition): only the serverless parts it emulates. It is not a
 * StageConfig: it has no network, services or identity to size (see LocalPlatformStack for why).
 */
export const LOCAL_STAGE = 'local';
/** Every name `-c stage` accepts. */
export const ALL_STAGE_NAMES: readonly string[] = [LOCAL_STAGE, ...STAGE_NAMES];

/** Every size and lifetime that differs between stages; constructs get these values as props. */
export interface StageConfig {
  readonly name: StageName;
  readonly network: {
    /** NAT gateways for the private subnets: one is cheaper, one per AZ survives an AZ outage */
    readonly natGateways: number;
  };
  readonly stream: {
    readonly mode: StreamMode;
    /** provisioned mode only */
    readonly shardCount: number;
    readonly retentionPeriod: Duration;
  };
  readonly writer: {
    readonly memorySize: number;
    readonly timeout: Duration;
    readonly batchSize: number;
    readonly maxBatchingWindow: Duration;
    readonly parallelizationFactor: number;
    readonly retryAttempts: number;
  };
  readonly mcp: {
    /** Fargate CPU units (1024 = 1 vCPU) */
    readonly cpu: number;
    readonly memoryLimitMiB: number;
    readonly desiredCount: number;
  };
  readonly collector: {
    /** MARKETS: `exchange:SYM,SYM;exchange:SYM` */
    readonly markets: string;
    /**
     * collector services the markets are split across, one task each (SHARD=i/n); each must get a
     * market (checked at synth); docs/scale-out.md says how many a given message rate needs
     */
    readonly shards: number;
    /** Fargate CPU units (1024 = 1 vCPU), per shard */
    readonly cpu: number;
    readonly memoryLimitMiB: number;
  };
  readonly cache: {
    /** ElastiCache node type of agent memory and live-resource fan-out */
    readonly nodeType: string;
    /** read replicas in the other AZ; at least one enables automatic failover and Multi-AZ */
    readonly replicas: number;
  };
  readonly agents: {
    /** EventBridge Scheduler expression of the agent runs (UTC) */
    readonly schedule: string;
    /** false keeps everything deployed but starts no runs */
    readonly enabled: boolean;
  };
  readonly firewall: {
    /** requests one client IP may make in 5 minutes before the WAF blocks it (AWS minimum 10) */
    readonly requestsPer5Minutes: number;
  };
  readonly logRetention: RetentionDays;
  /** applies to the stream, queues, log groups and the database secret */
  readonly removalPolicy: RemovalPolicy;
  readonly terminationProtection: boolean;
}

const STAGES: Readonly<Record<StageName, StageConfig>> = {
  dev: {
    name: 'dev',
    network: { natGateways: 1 },
    stream: { mode: StreamMode.PROVISIONED, shardCount: 1, retentionPeriod: Duration.hours(24) },
    writer: {
      memorySize: 256,
      timeout: Duration.seconds(60),
      batchSize: 100,
      maxBatchingWindow: Duration.seconds(2),
      parallelizationFactor: 1,
      retryAttempts: 3,
    },
    mcp: { cpu: 256, memoryLimitMiB: 512, desiredCount: 1 },
    collector: { markets: LIVE_MARKETS, shards: 1, cpu: 256, memoryLimitMiB: 512 },
    cache: { nodeType: 'cache.t4g.micro', replicas: 0 },
    agents: { schedule: 'rate(30 minutes)', enabled: true },
    firewall: { requestsPer5Minutes: 3000 },
    logRetention: RetentionDays.ONE_WEEK,
    removalPolicy: RemovalPolicy.DESTROY,
    terminationProtection: false,
  },
  staging: {
    name: 'staging',
    network: { natGateways: 1 },
    stream: { mode: StreamMode.PROVISIONED, shardCount: 2, retentionPeriod: Duration.hours(24) },
    writer: {
      memorySize: 512,
      timeout: Duration.seconds(60),
      batchSize: 500,
      maxBatchingWindow: Duration.seconds(1),
      parallelizationFactor: 2,
      retryAttempts: 5,
    },
    mcp: { cpu: 512, memoryLimitMiB: 1024, desiredCount: 1 },
    // two shards before prod has them, so a rollout of sharding is tried where it is cheap
    collector: { markets: LIVE_MARKETS, shards: 2, cpu: 256, memoryLimitMiB: 512 },
    cache: { nodeType: 'cache.t4g.micro', replicas: 0 },
    agents: { schedule: 'rate(15 minutes)', enabled: true },
    firewall: { requestsPer5Minutes: 3000 },
    logRetention: RetentionDays.ONE_MONTH,
    removalPolicy: RemovalPolicy.DESTROY,
    terminationProtection: false,
  },
  prod: {
    name: 'prod',
    network: { natGateways: 2 },
    stream: { mode: StreamMode.PROVISIONED, shardCount: 4, retentionPeriod: Duration.hours(168) },
    writer: {
      memorySize: 1024,
      timeout: Duration.seconds(60),
      batchSize: 1000,
      maxBatchingWindow: Duration.seconds(1),
      parallelizationFactor: 4,
      retryAttempts: 10,
    },
    mcp: { cpu: 1024, memoryLimitMiB: 2048, desiredCount: 2 },
    // two shards: a failing task stops half the markets, not all
    collector: { markets: LIVE_MARKETS, shards: 2, cpu: 512, memoryLimitMiB: 1024 },
    // a replica in the second AZ: memory survives a node or AZ failure
    cache: { nodeType: 'cache.t4g.small', replicas: 1 },
    agents: { schedule: 'rate(15 minutes)', enabled: true },
    // the MCP server's own limit is 1200 calls a minute per token; this stops floods before they reach it
    firewall: { requestsPer5Minutes: 6000 },
    logRetention: RetentionDays.THREE_MONTHS,
    removalPolicy: RemovalPolicy.RETAIN,
    terminationProtection: true,
  },
};

/** A stage name that is not one of STAGE_NAMES. */
export class UnknownStageError extends InvalidPropsError {}

/** The configuration of a stage; an unknown name throws naming it and the accepted ones. */
export function stageConfigFor(name: string): StageConfig {
  if (!(STAGE_NAMES as readonly string[]).includes(name)) {
    throw new UnknownStageError(
      `unknown stage '${name}': accepted stages are ${ALL_STAGE_NAMES.join(', ')} (pass -c stage=<name>)`,
    );
  }
  return STAGES[name as StageName];
}
