// Lambda entry, invoked by an EventBridge schedule: configuration, the secret and the client are
// resolved once per cold start, then every invocation is one refresh of the ClickHouse candles.
import { openClickHouse } from '../../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { parseEnv } from '../../../layers/shared/src/config/env.js';
import { ClickHouseRefresherEnvSchema, createClickHouseRefresherHandler } from '../../../layers/shared/src/consumers/clickhouse-refresher.js';
import { resolveClickHouseUrl } from '../../../layers/shared/src/consumers/clickhouse-writer.js';
import { createLogger } from '../../../layers/shared/src/observability/logger.js';

const env = parseEnv(ClickHouseRefresherEnvSchema);
const logger = createLogger({ level: env.LOG_LEVEL, fields: { fn: 'clickhouse-refresher' } });
const url = await resolveClickHouseUrl(env);

/** Scheduled event source (the event itself carries nothing the refresh needs). */
export const handler = createClickHouseRefresherHandler({
  ch: openClickHouse(url, env.CLICKHOUSE_DATABASE ? { database: env.CLICKHOUSE_DATABASE } : {}),
  logger,
});
