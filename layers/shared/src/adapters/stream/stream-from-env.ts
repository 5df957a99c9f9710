import type { StreamBus } from '../../ports/index.js';
import { KafkaStreamBus } from './kafka-stream-bus.js';
import { KinesisStreamBus } from './kinesis-stream-bus.js';

/** The stream settings of a service's environment (config/env.ts), already validated. */
export interface StreamSettings {
  readonly STREAM_KIND: 'kinesis' | 'kafka';
  readonly STREAM_NAME: string;
  readonly KINESIS_ENDPOINT?: string | undefined;
  readonly KAFKA_BROKERS?: readonly string[] | undefined;
  readonly KAFKA_AUTH: 'none' | 'iam';
  readonly KAFKA_SSL?: boolean | undefined;
  readonly AWS_REGION?: string | undefined;
}

/** The Kinesis stream or Kafka topic the settings name; `clientId` names this process to Kafka. */
export function streamBusFromEnv(config: StreamSettings, clientId: string): StreamBus {
  if (config.STREAM_KIND === 'kafka') {
    return new KafkaStreamBus({
      brokers: [...config.KAFKA_BROKERS!],
      topic: config.STREAM_NAME,
      clientId,
      auth: config.KAFKA_AUTH === 'iam' ? { mechanism: 'iam', region: config.AWS_REGION! } : { mechanism: 'none' },
      ...(config.KAFKA_SSL !== undefined && { ssl: config.KAFKA_SSL }),
    });
  }
  return new KinesisStreamBus({ streamName: config.STREAM_NAME, ...(config.KINESIS_ENDPOINT && { endpoint: config.KINESIS_ENDPOINT }) });
}
