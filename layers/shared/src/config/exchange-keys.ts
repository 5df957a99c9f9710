/**
 * Exchange API keys of the collector, from one Secrets Manager secret holding
 * `{"<ccxt exchange id>": {"apiKey": "...", "secret": "...", "password"?: "...", "uid"?: "..."}}`.
 * Public market data needs none; some exchanges serve history or higher rate limits only to keyed
 * clients. No message here ever carries a key: errors name the exchange and the field only.
 */
import { z } from 'zod';
import type { ProExchange } from '../adapters/exchange/ccxt-pro-exchanges.js';
import { SecretError } from './secrets.js';

const CredentialsSchema = z.strictObject({
  apiKey: z.string().min(1),
  secret: z.string().min(1),
  password: z.string().min(1).optional(),
  uid: z.string().min(1).optional(),
});
export type ExchangeCredentials = z.infer<typeof CredentialsSchema>;

const KeysSchema = z.record(z.string().regex(/^[a-z][a-z0-9]*$/, 'a ccxt exchange id'), CredentialsSchema);

/** Parses the secret's text; `secretId` names the secret in errors. */
export function parseExchangeKeys(text: string, secretId: string): ReadonlyMap<string, ExchangeCredentials> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SecretError(`secret ${secretId} is not JSON: expected {"<exchange id>": {"apiKey": "...", "secret": "..."}}`);
  }
  const parsed = KeysSchema.safeParse(json);
  if (!parsed.success) {
    // paths and messages only: an issue's `input` could hold a key
    const where = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new SecretError(`secret ${secretId} does not hold exchange keys: ${where}`);
  }
  return new Map(Object.entries(parsed.data));
}

/** Gives an exchange client its keys, when the secret has some for it. */
export function applyExchangeKeys(exchange: ProExchange, keys: ReadonlyMap<string, ExchangeCredentials>): void {
  const credentials = keys.get(exchange.id);
  if (!credentials) return;
  exchange.apiKey = credentials.apiKey;
  exchange.secret = credentials.secret;
  if (credentials.password !== undefined) exchange.password = credentials.password;
  if (credentials.uid !== undefined) exchange.uid = credentials.uid;
}
