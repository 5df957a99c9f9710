import { applyExchangeKeys, parseExchangeKeys } from '../config/exchange-keys.js';
import { getSecretString, type SecretsClient } from '../config/secrets.js';
import { join } from 'node:path';
import { applyEndpointOverride } from '../adapters/exchange/endpoint-overrides.js';
import { streamBusFromEnv } from '../adapters/stream/stream-from-env.js';
import { CollectorEnvSchema, parseEnv } from '../config/env.js';
import { parseMarkets } from '../config/markets.js';
import { formatShard, shardMarkets, SINGLE_SHARD, type Shard } from '../config/shards.js';
import { ConfigError } from '../domain/errors.js';
import type { Logger } from '../observability/logger.js';
import { systemClock, type StreamBus } from '../ports/index.js';
import { startCollectorService, type CollectorService } from './collector-service.js';
import type { BatcherCloseSummary } from './event-batcher.js';

export interface CollectorRuntime {
  readonly service: CollectorService;
  /** SHARD: which part of MARKETS this process collects (0/1: all) */
  readonly shard: Shard;
  /** COLLECTOR_DRAIN_TIMEOUT_MS: how long stop() keeps publishing */
  readonly drainTimeoutMs: number;
  /**
   * Stops collecting, publishes what the stream takes within `deadlineMs` (default
   * COLLECTOR_DRAIN_TIMEOUT_MS), journals and fsyncs the rest, closes the stream client; says what
   * went to the journal.
   */
  shutdown(deadlineMs?: number): Promise<BatcherCloseSummary>;
  /** shutdown() without the summary */
  stop(deadlineMs?: number): Promise<void>;
}

/**
 * Starts the collector of service mode from its environment: markets from MARKETS, events to
 * Kinesis or Kafka (MSK with KAFKA_AUTH=iam), a disk journal in COLLECTOR_JOURNAL_DIR for what the
 * stream cannot take (a journal left by an earlier run is published first).
 */
export async function startCollectorFromEnv(
  env: NodeJS.ProcessEnv,
  logger: Logger,
  options: { secrets?: SecretsClient } = {},
): Promise<CollectorRuntime> {
  const config = parseEnv(CollectorEnvSchema, env);
  const keys = config.EXCHANGE_KEYS_SECRET_ARN
    ? parseExchangeKeys(
        await getSecretString(config.EXCHANGE_KEYS_SECRET_ARN, options.secrets ? { client: options.secrets } : {}),
        config.EXCHANGE_KEYS_SECRET_ARN,
      )
    : undefined;
  const all = parseMarkets(config.MARKETS);
  const shard = config.SHARD ?? SINGLE_SHARD;
  const markets = shardMarkets(all, shard);
  if (markets.size === 0) {
    const count = [...all.values()].reduce((n, symbols) => n + symbols.length, 0);
    throw new ConfigError(`SHARD ${formatShard(shard)} gets none of the ${count} markets in MARKETS: use fewer shards or add markets`);
  }
  const bus: StreamBus = streamBusFromEnv(config, 'qicore-collector');
  const endpoint =
    config.EXCHANGE_REST_URL && config.EXCHANGE_WS_URL ? { rest: config.EXCHANGE_REST_URL, ws: config.EXCHANGE_WS_URL } : undefined;
  try {
    const service = await startCollectorService({
      markets,
      bus,
      logger,
      clock: systemClock,
      bookIntervalMs: config.BOOK_INTERVAL_MS,
      journal: {
        dir: journalDirFor(config),
        maxBytes: config.COLLECTOR_JOURNAL_MAX_BYTES,
        segmentBytes: config.COLLECTOR_JOURNAL_SEGMENT_BYTES,
      },
      batching: {
        maxBuffered: config.COLLECTOR_MAX_BUFFERED_EVENTS,
        spillAfterMs: config.COLLECTOR_SPILL_AFTER_MS,
        drainTimeoutMs: config.COLLECTOR_DRAIN_TIMEOUT_MS,
      },
      ...((endpoint || keys) && {
        configure: async (exchange) => {
          if (keys) applyExchangeKeys(exchange, keys);
          if (endpoint) await applyEndpointOverride(exchange, endpoint);
        },
      }),
    });
    let stopped: Promise<BatcherCloseSummary> | null = null;
    const shutdown = async (deadlineMs: number) => {
      const deadline = Date.now() + deadlineMs;
      const summary = await service.stop(deadlineMs);
      // a publish still retrying against a stream that is down holds close(): its events are in the journal
      await closeBy(bus, deadline, logger);
      return summary;
    };
    const runtime: CollectorRuntime = {
      service,
      shard,
      drainTimeoutMs: config.COLLECTOR_DRAIN_TIMEOUT_MS,
      shutdown: (deadlineMs = config.COLLECTOR_DRAIN_TIMEOUT_MS) => (stopped ??= shutdown(deadlineMs)),
      stop: async (deadlineMs) => {
        await runtime.shutdown(deadlineMs);
      },
    };
    return runtime;
  } catch (error) {
    await bus.close();
    throw error;
  }
}

/**
 * The journal of one stream: `<COLLECTOR_JOURNAL_DIR>/<kind>-<stream>`, so that events journaled for
 * one stream are never replayed into another (a changed STREAM_NAME, tests sharing ./.data). One
 * collector process per directory: shards running on one host need a journal directory each.
 */
export function journalDirFor(config: { COLLECTOR_JOURNAL_DIR: string; STREAM_KIND: string; STREAM_NAME: string; SHARD?: Shard | undefined }): string {
  // STREAM_NAME is [a-zA-Z0-9_.-]; with the kind in front it can never be `.` or `..`. Shards sharing a
  // host (local runs) each keep their own journal.
  const shard = config.SHARD && config.SHARD.count > 1 ? `-shard${config.SHARD.index}of${config.SHARD.count}` : '';
  return join(config.COLLECTOR_JOURNAL_DIR, `${config.STREAM_KIND}-${config.STREAM_NAME}${shard}`);
}

/** Closes the stream client, waiting for it until `deadline` (ms epoch) at most. */
async function closeBy(bus: StreamBus, deadline: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    bus.close().then(
      () => true,
      (error: unknown) => {
        logger.warn('stream client close failed', { error });
        return true;
      },
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
    }),
  ]);
  clearTimeout(timer);
  if (!closed) logger.warn('stream client still closing at the drain deadline; leaving it');
}
