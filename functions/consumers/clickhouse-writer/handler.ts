// Lambda entry: configuration, the secret and the client are resolved once per cold start, then
// every invocation is one call into the shared consumer.
import { openClickHouse } from '../../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { parseEnv } from '../../../layers/shared/src/config/env.js';
import {
  ClickHouseWriterEnvSchema,
  createClickHouseWriterHandler,
  resolveClickHouseUrl,
} from '../../../layers/shared/src/consumers/clickhouse-writer.js';
import { createMskWriterHandler } from '../../../layers/shared/src/consumers/msk-store-writer.js';
import type { StoreWriterCounter, StoreWriterDeps } from '../../../layers/shared/src/consumers/store-writer.js';
import { Counters } from '../../../layers/shared/src/observability/counters.js';
import { createLogger } from '../../../layers/shared/src/observability/logger.js';

const env = parseEnv(ClickHouseWriterEnvSchema);
const logger = createLogger({ level: env.LOG_LEVEL, fields: { fn: 'clickhouse-writer' } });
const url = await resolveClickHouseUrl(env);

const deps: StoreWriterDeps = {
  writer: new ClickHouseMarketStore(openClickHouse(url, env.CLICKHOUSE_DATABASE ? { database: env.CLICKHOUSE_DATABASE } : {}), {
    candles: env.CLICKHOUSE_CANDLES,
  }),
  logger,
  counters: new Counters<StoreWriterCounter>(),
  source: 'clickhouse-writer',
};

/** Kinesis event source. */
export const handler = createClickHouseWriterHandler(deps);
/** MSK (Kafka) event source. */
export const mskHandler = createMskWriterHandler(deps);
