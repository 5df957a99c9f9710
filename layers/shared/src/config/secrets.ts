import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError } from '../domain/errors.js';

/** What the getter needs of a Secrets Manager client. */
export interface SecretsClient {
  send(command: GetSecretValueCommand): Promise<{ SecretString?: string | undefined }>;
}

/** A secret that cannot be read, or does not hold what it should; never carries the secret's value. */
export class SecretError extends ConfigError {}

const cache = new Map<string, { value: string; expires: number }>();

/** Reads a secret's string, cached for `ttlMs` so warm invocations do not call Secrets Manager. */
export async function getSecretString(
  secretId: string,
  options: { client?: SecretsClient; ttlMs?: number; now?: () => number } = {},
): Promise<string> {
  const now = options.now ?? Date.now;
  const hit = cache.get(secretId);
  if (hit && hit.expires > now()) return hit.value;
  const client = options.client ?? new SecretsManagerClient({});
  let value: string | undefined;
  try {
    value = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
  } catch (error) {
    throw new SecretError(`cannot read secret ${secretId}: ${(error as Error).name}`, { cause: error });
  }
  if (!value) throw new SecretError(`secret ${secretId} has no SecretString`);
  cache.set(secretId, { value, expires: now() + (options.ttlMs ?? 5 * 60_000) });
  return value;
}

/** The database URL: DATABASE_URL when set (local runs), else the secret DATABASE_SECRET_ARN names. */
export async function resolveDatabaseUrl(
  env: { DATABASE_URL?: string | undefined; DATABASE_SECRET_ARN?: string | undefined },
  client?: SecretsClient,
): Promise<string> {
  if (env.DATABASE_URL) return env.DATABASE_URL;
  if (!env.DATABASE_SECRET_ARN) throw new SecretError('set DATABASE_SECRET_ARN (AWS) or DATABASE_URL (local)');
  const url = (await getSecretString(env.DATABASE_SECRET_ARN, client ? { client } : {})).trim();
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new SecretError(`secret ${env.DATABASE_SECRET_ARN} does not hold a postgres:// URL`);
  }
  return url;
}
