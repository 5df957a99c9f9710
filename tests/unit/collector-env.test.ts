import { describe, expect, it } from 'vitest';
import { CollectorEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';

const base = { MARKETS: 'binance:BTC/USDT', STREAM_NAME: 'market-events' };

describe('collector environment', () => {
  it('defaults to Kinesis and reads Kafka brokers as a list', () => {
    expect(parseEnv(CollectorEnvSchema, base)).toMatchObject({ STREAM_KIND: 'kinesis', BOOK_INTERVAL_MS: 1000, LOG_LEVEL: 'info' });
    expect(parseEnv(CollectorEnvSchema, { ...base, STREAM_KIND: 'kafka', KAFKA_BROKERS: 'a:9092,b:9093' }).KAFKA_BROKERS).toEqual(['a:9092', 'b:9093']);
  });

  it('names what is missing or malformed', () => {
    expect(() => parseEnv(CollectorEnvSchema, { ...base, STREAM_KIND: 'kafka' })).toThrow(/KAFKA_BROKERS/);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, KAFKA_BROKERS: 'nohost' })).toThrow(/host:port/);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, EXCHANGE_REST_URL: 'http://127.0.0.1:1' })).toThrow(/EXCHANGE_WS_URL/);
    expect(() => parseEnv(CollectorEnvSchema, { STREAM_NAME: 'x' })).toThrow(ConfigError);
    expect(() => parseEnv(CollectorEnvSchema, { STREAM_NAME: 'x' })).toThrow(/MARKETS/);
  });
});
