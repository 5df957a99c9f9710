// Fargate entry of the collector: configuration from the environment, exchange sockets through
// ccxt.pro, events to the stream, a disk journal for what the stream cannot take.
// SIGTERM (a deploy, a scale-in): stop the watch loops, publish what the stream takes within
// COLLECTOR_DRAIN_TIMEOUT_MS (default 20 s, under Fargate's 30 s stopTimeout), journal and fsync
// the rest, exit 0. The next start publishes that journal first.
// With COLLECTOR_METRICS_PORT, Prometheus metrics on /metrics (feed staleness, counters) and /healthz;
// every COLLECTOR_STALENESS_LOG_MS a `collector staleness` log line, which CloudWatch metric filters read.
import { CollectorMetrics, serveCollectorMetrics } from '../../layers/shared/src/collector/collector-metrics.js';
import { startCollectorFromEnv } from '../../layers/shared/src/collector/collector-runtime.js';
import { CollectorEnvSchema, LogLevelSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { formatShard } from '../../layers/shared/src/config/shards.js';
import { createLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';

/** Past the drain deadline, this long for the journal's writes and fsync before the process gives up. */
const JOURNAL_GRACE_MS = 5_000;

const logger = createLogger({ level: LogLevelSchema.safeParse(process.env.LOG_LEVEL).data ?? 'info', fields: { fn: 'collector' } });
const runtime = await startCollectorFromEnv(process.env, logger);
logger.info('collector started', {
  shard: `${runtime.shard.index}/${runtime.shard.count}`,
  exchanges: runtime.service.exchanges.map((c) => c.exchange.id),
  journalDir: runtime.service.journal?.dir,
  journalBytes: runtime.service.batcher.journalBytes,
});

const config = parseEnv(CollectorEnvSchema);
const metrics = new CollectorMetrics(runtime.service, { shard: formatShard(runtime.shard), clock: systemClock });
const metricsServer = config.COLLECTOR_METRICS_PORT
  ? await serveCollectorMetrics({ metrics, host: config.COLLECTOR_METRICS_HOST, port: config.COLLECTOR_METRICS_PORT, logger })
  : undefined;
if (metricsServer) logger.info('collector metrics listening', { url: metricsServer.url });
const stalenessLog = config.COLLECTOR_STALENESS_LOG_MS > 0 ? setInterval(() => metrics.logStaleness(logger), config.COLLECTOR_STALENESS_LOG_MS) : undefined;
stalenessLog?.unref();

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info('stopping', { signal, drainTimeoutMs: runtime.drainTimeoutMs });
  // a stop that hangs past its deadline must not outlive the task's stopTimeout silently
  setTimeout(() => {
    logger.error('shutdown overran its deadline; exiting without a clean journal close', { signal });
    process.exit(1);
  }, runtime.drainTimeoutMs + JOURNAL_GRACE_MS).unref();
  clearInterval(stalenessLog);
  try {
    const summary = await runtime.shutdown();
    await metricsServer?.close();
    // events lost to a full journal were logged as errors when it happened
    logger.info('collector shut down', { signal, ...summary });
    process.exit(0);
  } catch (error) {
    logger.error('shutdown failed', { signal, error });
    process.exit(1);
  }
};
process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
