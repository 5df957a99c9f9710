// Fargate entry of the collector: configuration from the environment, exchange sockets through
// ccxt.pro, events to the stream. SIGTERM (a deploy, a scale-in) drains the buffer first.
import { startCollectorFromEnv } from '../../layers/shared/src/collector/collector-runtime.js';
import { LogLevelSchema } from '../../layers/shared/src/config/env.js';
import { createLogger } from '../../layers/shared/src/observability/logger.js';

const logger = createLogger({ level: LogLevelSchema.safeParse(process.env.LOG_LEVEL).data ?? 'info', fields: { fn: 'collector' } });
const runtime = await startCollectorFromEnv(process.env, logger);
logger.info('collector started', { exchanges: runtime.service.exchanges.map((c) => c.exchange.id) });

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info('stopping', { signal });
  await runtime.stop();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
