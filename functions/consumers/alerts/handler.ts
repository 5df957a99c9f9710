// Lambda entry: configuration, rules, the secret and clients are resolved once per cold start, then
// every invocation is one call into the shared consumer. A bad ALERT_RULES fails the cold start.
import { AlertEngine, type AlertCounter } from '../../../layers/shared/src/alerts/alert-engine.js';
import { parseAlertRules } from '../../../layers/shared/src/alerts/alert-rules.js';
import { openPostgres } from '../../../layers/shared/src/adapters/stores/pg-client.js';
import { PostgresMarketStore } from '../../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { AlertsConsumerEnvSchema, parseEnv } from '../../../layers/shared/src/config/env.js';
import { resolveDatabaseUrl } from '../../../layers/shared/src/config/secrets.js';
import { createAlertsConsumerHandler } from '../../../layers/shared/src/consumers/alerts-consumer.js';
import { Counters } from '../../../layers/shared/src/observability/counters.js';
import { createLogger } from '../../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../../layers/shared/src/ports/index.js';
import { SignalService } from '../../../layers/shared/src/query/signal-service.js';

const env = parseEnv(AlertsConsumerEnvSchema);
const logger = createLogger({ level: env.LOG_LEVEL, fields: { fn: 'alerts' } });
const rules = parseAlertRules(env.ALERT_RULES);
const databaseUrl = await resolveDatabaseUrl(env);

const db = openPostgres(databaseUrl, { max: 1 });
const counters = new Counters<AlertCounter>();
// stored directly (get_signals sees them at once); the stream copy is left to the MCP path's publishers
const signals = new SignalService({
  writer: new PostgresMarketStore(db),
  reader: new PostgresSignalReader(db),
  clock: systemClock,
  logger,
  // the publisher limit guards against agents; the rules' cooldowns are this publisher's own limit
  limits: { perPublisher: 600 },
});
const engine = new AlertEngine({ rules, signals, clock: systemClock, counters, logger });
logger.info('alert rules loaded', { rules: rules.length });

/** Kinesis event source. */
export const handler = createAlertsConsumerHandler({ engine, counters, logger });
