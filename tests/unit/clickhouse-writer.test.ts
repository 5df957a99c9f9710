import { describe, expect, it } from 'vitest';
import { parseEnv } from '../../layers/shared/src/config/env.js';
import { SecretError, type SecretsClient } from '../../layers/shared/src/config/secrets.js';
import { ClickHouseWriterEnvSchema, resolveClickHouseUrl } from '../../layers/shared/src/consumers/clickhouse-writer.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';

const secrets = (value: string | undefined): SecretsClient => ({ send: async () => ({ SecretString: value }) });
const arn = (name: string) => `arn:aws:secretsmanager:eu-west-1:000000000000:secret:${name}`;

describe('clickhouse-writer configuration', () => {
  it('needs CLICKHOUSE_URL or CLICKHOUSE_SECRET_ARN, and checks both', () => {
    expect(() => parseEnv(ClickHouseWriterEnvSchema, {})).toThrow(ConfigError);
    expect(() => parseEnv(ClickHouseWriterEnvSchema, { CLICKHOUSE_URL: 'postgres://x' })).toThrow(/http/);
    expect(parseEnv(ClickHouseWriterEnvSchema, { CLICKHOUSE_URL: 'http://127.0.0.1:8123' }).LOG_LEVEL).toBe('info');
  });

  it("rebuilds candles inline unless told the refresher runs, and refuses any other mode", () => {
    const base = { CLICKHOUSE_URL: 'http://127.0.0.1:8123' };
    expect(parseEnv(ClickHouseWriterEnvSchema, base).CLICKHOUSE_CANDLES).toBe('inline');
    expect(parseEnv(ClickHouseWriterEnvSchema, { ...base, CLICKHOUSE_CANDLES: 'refresher' }).CLICKHOUSE_CANDLES).toBe('refresher');
    expect(() => parseEnv(ClickHouseWriterEnvSchema, { ...base, CLICKHOUSE_CANDLES: 'later' })).toThrow(ConfigError);
  });

  it('uses the URL when set, else reads it from the secret', async () => {
    expect(await resolveClickHouseUrl({ CLICKHOUSE_URL: 'http://a:8123' }, secrets('unused'))).toBe('http://a:8123');
    expect(await resolveClickHouseUrl({ CLICKHOUSE_SECRET_ARN: arn('ok') }, secrets(' https://u:p@ch:8443 \n'))).toBe('https://u:p@ch:8443');
  });

  it('refuses a secret that holds no http(s) URL, without echoing it', async () => {
    const error = await resolveClickHouseUrl({ CLICKHOUSE_SECRET_ARN: arn('bad') }, secrets('tcp://u:hunter2@ch')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretError);
    expect(String(error)).not.toContain('hunter2');
    await expect(resolveClickHouseUrl({})).rejects.toBeInstanceOf(SecretError);
  });
});
