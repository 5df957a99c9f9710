import { applyEndpointOverride } from '../adapters/exchange/endpoint-overrides.js';
import { KafkaStreamBus } from '../adapters/stream/kafka-stream-bus.js';
import { KinesisStreamBus } from '../adapters/stream/kinesis-stream-bus.js';
import { CollectorEnvSchema, parseEnv } from '../config/env.js';
import { parseMarkets } from '../config/markets.js';
import type { Logger } from '../observability/logger.js';
import { systemClock, type StreamBus } from '../ports/index.js';
import { startCollectorService, type CollectorService } from './collector-service.js';

export interface CollectorRuntime {
  readonly service: CollectorService;
  /** Stops collecting, publishes what is buffered, closes the stream client. */
  stop(): Promise<void>;
}

/** Starts the collector of service mode from its environment: markets from MARKETS, events to Kinesis or Kafka (MSK with KAFKA_AUTH=iam). */
export async function startCollectorFromEnv(env: NodeJS.ProcessEnv, logger: Logger): Promise<CollectorRuntime> {
  const config = parseEnv(CollectorEnvSchema, env);
  const markets = parseMarkets(config.MARKETS);
  const bus: StreamBus =
    config.STREAM_KIND === 'kafka'
      ? new KafkaStreamBus({
          brokers: config.KAFKA_BROKERS!,
          topic: config.STREAM_NAME,
          clientId: 'qicore-collector',
          auth: config.KAFKA_AUTH === 'iam' ? { mechanism: 'iam', region: config.AWS_REGION! } : { mechanism: 'none' },
          ...(config.KAFKA_SSL !== undefined && { ssl: config.KAFKA_SSL }),
        })
      : new KinesisStreamBus({
          streamName: config.STREAM_NAME,
          ...(config.KINESIS_ENDPOINT && { endpoint: config.KINESIS_ENDPOINT }),
        });
  const endpoint =
    config.EXCHANGE_REST_URL && config.EXCHANGE_WS_URL ? { rest: config.EXCHANGE_REST_URL, ws: config.EXCHANGE_WS_URL } : undefined;
  try {
    const service = await startCollectorService({
      markets,
      bus,
      logger,
      clock: systemClock,
      bookIntervalMs: config.BOOK_INTERVAL_MS,
      ...(endpoint && { configure: (exchange) => applyEndpointOverride(exchange, endpoint) }),
    });
    return {
      service,
      stop: async () => {
        await service.stop();
        await bus.close();
      },
    };
  } catch (error) {
    await bus.close();
    throw error;
  }
}
