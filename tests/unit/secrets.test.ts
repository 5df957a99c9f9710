import { describe, expect, it } from 'vitest';
import { ConsumerEnvSchema, McpServerEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { SecretError, getSecretString, resolveDatabaseUrl } from '../../layers/shared/src/config/secrets.js';
import { parseExchangeKeys } from '../../layers/shared/src/config/exchange-keys.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { fakeSecretsClient as secretsClient } from '../support/secrets-client.js';

const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-url-AbCdEf';

describe('database URL from Secrets Manager', () => {
  it('prefers DATABASE_URL, else reads the secret once and caches it', async () => {
    const client = secretsClient({ [ARN]: 'postgres://writer:pw@db:5432/market\n' });
    expect(await resolveDatabaseUrl({ DATABASE_URL: 'postgres://local/x', DATABASE_SECRET_ARN: ARN }, client)).toBe('postgres://local/x');
    expect(client.calls).toEqual([]);
    expect(await resolveDatabaseUrl({ DATABASE_SECRET_ARN: ARN }, client)).toBe('postgres://writer:pw@db:5432/market');
    expect(await resolveDatabaseUrl({ DATABASE_SECRET_ARN: ARN }, client)).toBe('postgres://writer:pw@db:5432/market');
    expect(client.calls).toEqual([ARN]);
  });

  it('names the secret but never shows its value when it is not a URL', async () => {
    const other = `${ARN}-2`;
    const client = secretsClient({ [other]: 'hunter2' });
    const error = await resolveDatabaseUrl({ DATABASE_SECRET_ARN: other }, client).then(
      () => { throw new Error("expected a rejection"); },
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(SecretError);
    expect(error.message).toContain(other);
    expect(error.message).not.toContain('hunter2');
  });

  it('turns a failed read into SecretError with the cause kept', async () => {
    const error = await getSecretString(`${ARN}-missing`, { client: secretsClient({}) }).then(
      () => { throw new Error("expected a rejection"); },
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(SecretError);
    expect(error.message).toMatch(/ResourceNotFoundException/);
    expect(error.cause).toBeInstanceOf(Error);
  });

  it('fails fast at cold start when neither variable is set', () => {
    expect(() => parseEnv(ConsumerEnvSchema, {})).toThrow(ConfigError);
    expect(() => parseEnv(ConsumerEnvSchema, {})).toThrow(/DATABASE_SECRET_ARN/);
    expect(() => parseEnv(ConsumerEnvSchema, { DATABASE_URL: 'mysql://x' })).toThrow(/postgres/);
    expect(parseEnv(ConsumerEnvSchema, { DATABASE_SECRET_ARN: ARN }).LOG_LEVEL).toBe('info');
  });
});

describe('exchange keys secret', () => {
  const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:keys';

  it('reads keys per ccxt exchange id', () => {
    const keys = parseExchangeKeys(JSON.stringify({ binance: { apiKey: 'a', secret: 'b' }, okx: { apiKey: 'c', secret: 'd', password: 'e' } }), ARN);
    expect([...keys.keys()]).toEqual(['binance', 'okx']);
    expect(keys.get('okx')).toEqual({ apiKey: 'c', secret: 'd', password: 'e' });
  });

  it('refuses malformed secrets with a named error that never quotes a key', () => {
    const cases = ['not json sk-LEAK', JSON.stringify({ binance: { apiKey: 'sk-LEAK' } }), JSON.stringify({ binance: { apiKey: 'sk-LEAK', secret: 'x', extra: 'sk-LEAK' } }), JSON.stringify({ 'Bad Id': { apiKey: 'sk-LEAK', secret: 'x' } })];
    for (const text of cases) {
      let caught: unknown;
      try {
        parseExchangeKeys(text, ARN);
      } catch (error) {
        caught = error;
      }
      expect(caught, text).toBeInstanceOf(SecretError);
      expect((caught as Error).message).toContain(ARN);
      expect((caught as Error).message).not.toContain('sk-LEAK');
    }
  });
});

describe('service environments', () => {
  it('reads the MCP server app client ids (Cognito tokens carry client_id, not aud) and the writer Redis secret', () => {
    const mcp = parseEnv(McpServerEnvSchema, { DATABASE_URL: 'postgres://x', JWT_ISSUER: 'https://cognito-idp.eu-west-1.amazonaws.com/pool', JWT_JWKS_URL: 'https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json', JWT_CLIENT_IDS: 'agents1, people2' });
    expect(mcp.JWT_CLIENT_IDS).toEqual(['agents1', 'people2']);
    expect(parseEnv(ConsumerEnvSchema, { DATABASE_URL: 'postgres://x', REDIS_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:1:secret:redis' }).REDIS_SECRET_ARN).toContain('secret:redis');
    expect(() => parseEnv(ConsumerEnvSchema, { DATABASE_URL: 'postgres://x', REDIS_SECRET_ARN: 'redis://plain' })).toThrow(/REDIS_SECRET_ARN/);
  });
});
