import { z } from 'zod';
import { ConfigError } from '../domain/errors.js';
import { parseToolsets } from '../mcp/toolsets.js';
import { formatIssues } from '../domain/issues.js';
import { ShardSchema } from './shards.js';

/** Parses `env` with `schema` at start-up; a missing or bad variable fails fast naming it. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${formatIssues(parsed.error.issues)}`);
  }
  return parsed.data;
}

export const LogLevelSchema = z.enum(['debug', 'info', 'warn', 'error']).default('info');

/** Environment of the store-writing consumers: the database URL itself (local) or its secret (AWS). */
export const ConsumerEnvSchema = z
  .object({
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL')
      .optional()
      .describe('PostgreSQL/TimescaleDB connection URL'),
    DATABASE_SECRET_ARN: z
      .string()
      .regex(/^arn:aws[a-z-]*:secretsmanager:/, 'a Secrets Manager secret ARN')
      .optional()
      .describe('secret whose SecretString is the connection URL'),
    /** Redis for "new data" announcements to the MCP server tasks; none are sent when unset */
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').optional(),
    /** secret holding the Redis URL (ElastiCache with an AUTH token); REDIS_URL wins when both are set */
    REDIS_SECRET_ARN: z.string().regex(/^arn:aws[a-z-]*:secretsmanager:/, 'a Secrets Manager secret ARN').optional(),
    LOG_LEVEL: LogLevelSchema,
  })
  .refine((e) => e.DATABASE_URL !== undefined || e.DATABASE_SECRET_ARN !== undefined, {
    message: 'set DATABASE_SECRET_ARN (AWS) or DATABASE_URL (local)',
    path: ['DATABASE_URL'],
  });

const AWS_REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d+$/;

/** `true` or `false`, spelled out: `z.coerce.boolean` would read "false" as true. */
const flag = z.enum(['true', 'false'], { message: 'true or false' }).transform((v) => v === 'true');

const csv = z
  .string()
  .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
  .optional();

/** Environment of the alerts consumer: the store-writing consumers' plus its rules. */
export const AlertsConsumerEnvSchema = ConsumerEnvSchema.safeExtend({
  /** alert rules, a JSON array (alerts/alert-rules.ts, checked at cold start); none when unset */
  ALERT_RULES: z.string().max(200_000, 'at most 200000 characters').default('[]'),
});

const StreamNameSchema = z.string().regex(/^[a-zA-Z0-9_.-]{1,128}$/, 'a Kinesis stream or Kafka topic name');

/** Which stream a process publishes to; the collector's and the MCP server's (signals) are the same settings. */
const STREAM_ENV = {
    /** kinesis (default) or kafka (Redpanda, MSK, librdkafka's mock) */
    STREAM_KIND: z.enum(['kinesis', 'kafka']).default('kinesis'),
    /** a Kinesis-compatible endpoint (kinesalite, LocalStack); unset on AWS */
    KINESIS_ENDPOINT: z.string().url().optional(),
    /** `host:port,host:port` of the Kafka bootstrap brokers */
    KAFKA_BROKERS: z
      .string()
      .regex(/^[^,\s]+:\d+(,[^,\s]+:\d+)*$/, 'host:port,host:port')
      .transform((s) => s.split(','))
      .optional(),
    /** how the Kafka client authenticates: none, or iam (MSK: SASL/OAUTHBEARER signed with the task's AWS credentials, over TLS) */
    KAFKA_AUTH: z.enum(['none', 'iam']).default('none'),
    /** TLS to the Kafka brokers; default on with KAFKA_AUTH=iam, off otherwise */
    KAFKA_SSL: flag.optional(),
    /** region an MSK IAM token is signed for (ECS and Lambda set it); checked only with KAFKA_AUTH=iam (local tools set odd ones) */
    AWS_REGION: z.string().optional(),
};

type StreamEnv = { STREAM_KIND: 'kinesis' | 'kafka'; KAFKA_BROKERS?: string[] | undefined; KAFKA_AUTH: 'none' | 'iam'; KAFKA_SSL?: boolean | undefined; AWS_REGION?: string | undefined };

/** The stream settings that only make sense together. */
function checkStreamEnv(e: StreamEnv, ctx: z.RefinementCtx): void {
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (e.STREAM_KIND === 'kafka' && e.KAFKA_BROKERS === undefined) issue('KAFKA_BROKERS', 'STREAM_KIND=kafka needs KAFKA_BROKERS');
  if (e.KAFKA_AUTH !== 'iam') return;
  if (e.AWS_REGION === undefined) issue('AWS_REGION', "KAFKA_AUTH=iam needs AWS_REGION (the MSK cluster's region; the token is signed for it)");
  else if (!AWS_REGION_PATTERN.test(e.AWS_REGION)) issue('AWS_REGION', 'KAFKA_AUTH=iam needs an AWS region such as eu-west-1 in AWS_REGION');
  if (e.KAFKA_SSL === false) issue('KAFKA_SSL', 'KAFKA_AUTH=iam needs TLS: drop KAFKA_SSL=false (MSK takes IAM on its TLS listener, port 9098)');
}

/** Environment of the MCP server in service mode (Fargate). */
export const McpServerEnvSchema = z
  .object({
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL'),
    MCP_HOST: z.string().default('0.0.0.0'),
    MCP_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
    /** Host header values accepted (DNS-rebinding protection), e.g. the load balancer's name */
    MCP_ALLOWED_HOSTS: csv,
    /** OIDC issuer (Cognito user pool URL or any OIDC issuer) */
    JWT_ISSUER: z.string().min(1),
    JWT_AUDIENCE: z.string().min(1).optional(),
    /** app clients whose tokens are accepted, checked against `client_id` (Cognito access tokens carry no `aud`) */
    JWT_CLIENT_IDS: csv,
    /** ClickHouse holding history; older ranges are read from it when set */
    CLICKHOUSE_URL: z.string().regex(/^https?:\/\//, 'an http(s):// ClickHouse URL').optional(),
    CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a ClickHouse database name').optional(),
    /** how long TimescaleDB keeps ticks and candles: the handover to ClickHouse */
    RETENTION_TICKS_DAYS: z.coerce.number().int().min(1).default(7),
    RETENTION_CANDLES_DAYS: z.coerce.number().int().min(1).default(30),
    /** JWKS of the issuer; production mode */
    JWT_JWKS_URL: z.string().url().optional(),
    /** HS256 shared secret (at least 32 bytes); development only */
    JWT_HS256_SECRET: z.string().min(32, 'JWT_HS256_SECRET must be at least 32 characters').optional(),
    /** the endpoint's public URL behind the load balancer, e.g. https://mcp.example.com/mcp (protected resource metadata) */
    MCP_PUBLIC_URL: z.string().url().optional(),
    /** shared by every task: session ids are signed with it so any task continues any session (at least 32 characters) */
    MCP_SESSION_SECRET: z.string().min(32, 'MCP_SESSION_SECRET must be at least 32 characters').optional(),
    /** browser origins allowed to call the endpoint (CORS-style allow list); none by default */
    MCP_ALLOWED_ORIGINS: csv,
    /** requests per token principal per minute */
    MCP_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(1200),
    /** MCP tool groups to expose: all (default), or some of market,analysis,signals,memory */
    MCP_TOOLSETS: z
      .string()
      .optional()
      .transform((value, ctx) => {
        try {
          return parseToolsets(value);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: (error as Error).message });
          return z.NEVER;
        }
      }),
    ...STREAM_ENV,
    /** the collectors' stream: published signals also go on it (for the ClickHouse writer and other consumers); stored only when unset */
    STREAM_NAME: StreamNameSchema.optional(),
    /** Prometheus metrics on this port (not behind the load balancer); off when unset */
    MCP_METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
    /** Redis whose pub/sub carries the store writers' "new data" announcements: resources become subscribable */
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').optional(),
    LOG_LEVEL: LogLevelSchema,
  })
  .refine((e) => (e.JWT_JWKS_URL === undefined) !== (e.JWT_HS256_SECRET === undefined), {
    message: 'set exactly one of JWT_JWKS_URL (production) or JWT_HS256_SECRET (development)',
    path: ['JWT_JWKS_URL'],
  })
  .refine((e) => e.JWT_HS256_SECRET === undefined || e.JWT_AUDIENCE !== undefined, {
    message: 'JWT_AUDIENCE is required with JWT_HS256_SECRET',
    path: ['JWT_AUDIENCE'],
  })
  .superRefine((e, ctx) => {
    if (e.STREAM_NAME !== undefined) checkStreamEnv(e, ctx);
  });

/** Environment of the collector in service mode (Fargate). */
export const CollectorEnvSchema = z
  .object({
    /** secret with exchange API keys, `{"binance": {"apiKey": "...", "secret": "..."}}`; public data needs none */
    EXCHANGE_KEYS_SECRET_ARN: z.string().regex(/^arn:aws[a-z-]*:secretsmanager:/, 'a Secrets Manager secret ARN').optional(),
    /** `exchange:SYM,SYM;exchange:SYM` */
    MARKETS: z.string().min(1),
    /** `INDEX/COUNT` (INDEX from 0): collect only the markets of MARKETS that shard gets (config/shards.ts); all of them when unset */
    SHARD: ShardSchema.optional(),
    ...STREAM_ENV,
    /** the Kinesis stream, or the Kafka topic */
    STREAM_NAME: StreamNameSchema,
    /** a compatible exchange endpoint (the simulator, a proxy), for every exchange listed */
    EXCHANGE_REST_URL: z.string().url().optional(),
    EXCHANGE_WS_URL: z.string().regex(/^wss?:\/\//, 'a ws:// or wss:// URL').optional(),
    BOOK_INTERVAL_MS: z.coerce.number().int().min(0).max(60_000).default(1_000),
    /**
     * where events wait on disk while the stream is down (and across a restart); default ./.data/journal.
     * Each stream gets a directory of its own in it (`kinesis-<STREAM_NAME>`, `kafka-<STREAM_NAME>`),
     * used by one collector process at a time. On Fargate: a path on the task's ephemeral storage,
     * which survives a restart of the container within the task but not the task (a replaced task
     * starts with an empty journal).
     */
    COLLECTOR_JOURNAL_DIR: z.string().min(1).default('./.data/journal'),
    /** cap on the journal's bytes on disk: past it new events are dropped (counted, logged as errors); default 2 GiB */
    COLLECTOR_JOURNAL_MAX_BYTES: z.coerce
      .number()
      .int()
      .min(1024 * 1024, 'at least 1 MiB (1048576)')
      .default(2 * 1024 * 1024 * 1024),
    /** a journal segment is closed at this size (and deleted once published); default 8 MiB */
    COLLECTOR_JOURNAL_SEGMENT_BYTES: z.coerce
      .number()
      .int()
      .min(64 * 1024, 'at least 64 KiB (65536)')
      .max(256 * 1024 * 1024, 'at most 256 MiB (268435456): replay reads a segment whole')
      .default(8 * 1024 * 1024),
    /** events held in memory at most; past it they go to the journal; default 100000 (about 20 MB of trades; book snapshots weigh more) */
    COLLECTOR_MAX_BUFFERED_EVENTS: z.coerce.number().int().min(1_000).default(100_000),
    /** publishes failing this long mean the stream is down: events then go to the journal as they come; default 5000 */
    COLLECTOR_SPILL_AFTER_MS: z.coerce.number().int().min(0).max(600_000).default(5_000),
    /**
     * on SIGTERM, how long the collector keeps publishing before the journal takes the rest; default
     * 20000, under Fargate's default stopTimeout of 30 s (raise stopTimeout, at most 120 s, to go higher)
     */
    COLLECTOR_DRAIN_TIMEOUT_MS: z.coerce.number().int().min(0).max(110_000, 'at most 110000: Fargate stops a task at most 120 s after SIGTERM').default(20_000),
    /** Prometheus metrics (`/metrics`) and `/healthz` on this port; off when unset */
    COLLECTOR_METRICS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
    /** the interface the metrics port listens on; default all (a container's port) */
    COLLECTOR_METRICS_HOST: z.string().min(1).default('0.0.0.0'),
    /**
     * how often a `collector staleness` log line (feeds, stale feeds, max feed age of the shard) is
     * written, for CloudWatch metric filters; 0: never. Default 60000.
     */
    COLLECTOR_STALENESS_LOG_MS: z.coerce.number().int().min(0).max(3_600_000).refine((ms) => ms === 0 || ms >= 1_000, '0 (off) or at least 1000').default(60_000),
    LOG_LEVEL: LogLevelSchema,
  })
  .refine((e) => e.COLLECTOR_JOURNAL_SEGMENT_BYTES <= e.COLLECTOR_JOURNAL_MAX_BYTES, {
    message: 'COLLECTOR_JOURNAL_SEGMENT_BYTES must not exceed COLLECTOR_JOURNAL_MAX_BYTES',
    path: ['COLLECTOR_JOURNAL_SEGMENT_BYTES'],
  })
  .refine((e) => (e.EXCHANGE_REST_URL === undefined) === (e.EXCHANGE_WS_URL === undefined), {
    message: 'set both EXCHANGE_REST_URL and EXCHANGE_WS_URL, or neither',
    path: ['EXCHANGE_REST_URL'],
  })
  .superRefine(checkStreamEnv);

