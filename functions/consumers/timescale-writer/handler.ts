// Lambda entry: configuration, the secret and clients are resolved once per cold start, then
// every invocation is one call into the shared consumer.
import { openPostgres } from '../../../layers/shared/src/adapters/stores/pg-client.js';
import { PgCopyWriter } from '../../../layers/shared/src/adapters/stores/pg-copy-writer.js';
import { PostgresLedgerStore } from '../../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { RedisUpdates } from '../../../layers/shared/src/adapters/updates/redis-updates.js';
import { ConsumerEnvSchema, parseEnv } from '../../../layers/shared/src/config/env.js';
import { getSecretString, resolveDatabaseUrl } from '../../../layers/shared/src/config/secrets.js';
import { createMskWriterHandler } from '../../../layers/shared/src/consumers/msk-store-writer.js';
import { createTimescaleWriterHandler } from '../../../layers/shared/src/consumers/timescale-writer.js';
import type { StoreWriterCounter, StoreWriterDeps } from '../../../layers/shared/src/consumers/store-writer.js';
import { createUpdateNotifier } from '../../../layers/shared/src/consumers/update-notifier.js';
import { Counters } from '../../../layers/shared/src/observability/counters.js';
import { createLogger } from '../../../layers/shared/src/observability/logger.js';

const env = parseEnv(ConsumerEnvSchema);
const logger = createLogger({ level: env.LOG_LEVEL, fields: { fn: 'timescale-writer' } });
const databaseUrl = await resolveDatabaseUrl(env);

const db = openPostgres(databaseUrl, { max: 1 });
// publisher only: MCP server tasks are told what each committed batch stored (best effort, never fails a batch)
const redisUrl = env.REDIS_URL ?? (env.REDIS_SECRET_ARN ? (await getSecretString(env.REDIS_SECRET_ARN)).trim() : undefined);
const updates = redisUrl ? new RedisUpdates({ url: redisUrl, receive: false, logger }) : undefined;
const deps: StoreWriterDeps = {
  // COPY for batches of trades, parameterized statements for the rest
  writer: new PostgresMarketStore(db, { copyWriter: new PgCopyWriter(databaseUrl, { max: 1 }) }),
  // the collectors' completeness ledger (feed_status and gap events)
  ledger: new PostgresLedgerStore(db),
  logger,
  counters: new Counters<StoreWriterCounter>(),
  source: 'timescale-writer',
  ...(updates && { onWritten: createUpdateNotifier({ updates, logger }) }),
};

/** Kinesis event source. */
export const handler = createTimescaleWriterHandler(deps);
/** MSK (Kafka) event source. */
export const mskHandler = createMskWriterHandler(deps);
