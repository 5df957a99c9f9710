import { describe, expect, it } from 'vitest';
import { CollectorEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { journalDirFor } from '../../layers/shared/src/collector/collector-runtime.js';

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

describe('collector environment: Kafka auth (MSK IAM)', () => {
  const kafka = { ...base, STREAM_KIND: 'kafka', KAFKA_BROKERS: 'boot-x.c1.kafka-serverless.eu-west-1.amazonaws.com:9098' };

  it('defaults to no auth and no TLS; reads iam with its region, and TLS spelled true/false', () => {
    const plain = parseEnv(CollectorEnvSchema, kafka);
    expect(plain.KAFKA_AUTH).toBe('none');
    expect(plain.KAFKA_SSL).toBeUndefined();
    const iam = parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'iam', AWS_REGION: 'eu-west-1' });
    expect(iam).toMatchObject({ KAFKA_AUTH: 'iam', AWS_REGION: 'eu-west-1' });
    expect(iam.KAFKA_SSL).toBeUndefined();
    expect(parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'iam', AWS_REGION: 'us-gov-west-1', KAFKA_SSL: 'true' }).KAFKA_SSL).toBe(true);
    // "false" is false (z.coerce.boolean would say true)
    expect(parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_SSL: 'false' }).KAFKA_SSL).toBe(false);
  });

  it('names the variable and the fix for bad values', () => {
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'scram' })).toThrow(ConfigError);
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'scram' })).toThrow(/KAFKA_AUTH/);
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'iam' })).toThrow(/AWS_REGION.*KAFKA_AUTH=iam needs AWS_REGION/);
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'iam', AWS_REGION: 'Ireland' })).toThrow(/AWS_REGION.*an AWS region such as eu-west-1/);
    // without IAM the region is none of the collector's business (kinesalite set-ups use made-up ones)
    expect(parseEnv(CollectorEnvSchema, { ...base, AWS_REGION: 'local' }).AWS_REGION).toBe('local');
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_SSL: 'yes' })).toThrow(/KAFKA_SSL.*true or false/);
    expect(() => parseEnv(CollectorEnvSchema, { ...kafka, KAFKA_AUTH: 'iam', AWS_REGION: 'eu-west-1', KAFKA_SSL: 'false' })).toThrow(
      /KAFKA_SSL.*KAFKA_AUTH=iam needs TLS/,
    );
  });

  it('reads SHARD as INDEX/COUNT and keeps each shard its own journal', () => {
    const e = parseEnv(CollectorEnvSchema, { ...base, SHARD: '0/3' });
    expect(e.SHARD).toEqual({ index: 0, count: 3 });
    expect(() => parseEnv(CollectorEnvSchema, { ...base, SHARD: '3/3' })).toThrow(/SHARD.*0\/3, 1\/3 or 2\/3/);
    expect(journalDirFor(e)).not.toBe(journalDirFor(parseEnv(CollectorEnvSchema, { ...base, SHARD: '1/3' })));
    expect(journalDirFor(parseEnv(CollectorEnvSchema, base))).toBe(journalDirFor(parseEnv(CollectorEnvSchema, { ...base, SHARD: '0/1' })));
  });
});
