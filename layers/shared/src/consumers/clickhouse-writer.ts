import middy from '@middy/core';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { z } from 'zod';
import { getSecretString, SecretError, type SecretsClient } from '../config/secrets.js';
import { LogLevelSchema } from '../config/env.js';
import { writeKinesisBatch, type StoreWriterDeps } from './store-writer.js';
import type { KinesisBatchHandler } from './timescale-writer.js';

const HTTP_URL = /^https?:\/\//;

/** Where ClickHouse is: the HTTP URL itself (local) or the secret holding it (AWS). */
const ClickHouseConnectionEnv = z.object({
  CLICKHOUSE_URL: z.string().regex(HTTP_URL, 'an http(s):// ClickHouse URL').optional().describe('ClickHouse HTTP interface URL'),
  CLICKHOUSE_SECRET_ARN: z
    .string()
    .regex(/^arn:aws[a-z-]*:secretsmanager:/, 'a Secrets Manager secret ARN')
    .optional()
    .describe('secret whose SecretString is the ClickHouse URL'),
  CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional().describe('database (default: the URL path, else default)'),
  LOG_LEVEL: LogLevelSchema,
});

const urlOrSecret = {
  check: (e: { CLICKHOUSE_URL?: string | undefined; CLICKHOUSE_SECRET_ARN?: string | undefined }) =>
    e.CLICKHOUSE_URL !== undefined || e.CLICKHOUSE_SECRET_ARN !== undefined,
  error: { message: 'set CLICKHOUSE_SECRET_ARN (AWS) or CLICKHOUSE_URL (local)', path: ['CLICKHOUSE_URL'] },
};

/** Environment of the clickhouse-writer. */
export const ClickHouseWriterEnvSchema = ClickHouseConnectionEnv.extend({
  CLICKHOUSE_CANDLES: z
    .enum(['inline', 'refresher'])
    .default('inline')
    .describe("who rebuilds candles: each write ('inline'), or the scheduled clickhouse-refresher ('refresher': set only where it runs)"),
}).refine(urlOrSecret.check, urlOrSecret.error);

/** Environment of the clickhouse-refresher. */
export const ClickHouseRefresherEnvSchema = ClickHouseConnectionEnv.refine(urlOrSecret.check, urlOrSecret.error);

/** The ClickHouse URL: CLICKHOUSE_URL when set (local runs), else the secret CLICKHOUSE_SECRET_ARN names. */
export async function resolveClickHouseUrl(
  env: { CLICKHOUSE_URL?: string | undefined; CLICKHOUSE_SECRET_ARN?: string | undefined },
  client?: SecretsClient,
): Promise<string> {
  if (env.CLICKHOUSE_URL) return env.CLICKHOUSE_URL;
  if (!env.CLICKHOUSE_SECRET_ARN) throw new SecretError('set CLICKHOUSE_SECRET_ARN (AWS) or CLICKHOUSE_URL (local)');
  const url = (await getSecretString(env.CLICKHOUSE_SECRET_ARN, client ? { client } : {})).trim();
  if (!HTTP_URL.test(url)) throw new SecretError(`secret ${env.CLICKHOUSE_SECRET_ARN} does not hold an http(s):// URL`);
  return url;
}

/** The clickhouse-writer Lambda handler over the given dependencies (writer: a ClickHouseMarketStore). */
export function createClickHouseWriterHandler(deps: StoreWriterDeps): KinesisBatchHandler {
  return middy<KinesisStreamEvent, KinesisStreamBatchResponse>().handler((event) => writeKinesisBatch(event, deps));
}
