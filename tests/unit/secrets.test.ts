import type { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { ConsumerEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { SecretError, getSecretString, resolveDatabaseUrl } from '../../layers/shared/src/config/secrets.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';

// Secrets Manager itself cannot run here; this client stands in for it and counts calls.
function secretsClient(values: Record<string, string | undefined>) {
  const calls: string[] = [];
  return {
    calls,
    async send(command: GetSecretValueCommand) {
      const id = command.input.SecretId!;
      calls.push(id);
      if (!(id in values)) throw Object.assign(new Error('not found'), { name: 'ResourceNotFoundException' });
      return { SecretString: values[id] };
    },
  };
}

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
