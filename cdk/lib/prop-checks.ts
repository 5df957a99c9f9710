import { Token } from 'aws-cdk-lib';

/** A construct prop or stage setting that cannot be deployed; the message names the value and the fix. */
export class InvalidPropsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * Throws unless `value` is an integer in [min, max]. `where` names the construct and prop
 * (e.g. `TimescaleWriter batchSize`), `why` names the limit (e.g. `the Kinesis event source limit`).
 * Unresolved tokens are left to CloudFormation.
 */
export function requireIntegerInRange(where: string, value: number, min: number, max: number, why: string): void {
  if (Token.isUnresolved(value)) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidPropsError(
      `${where} must be an integer from ${min} to ${max} (${why}), got ${String(value)}: pass a value in that range`,
    );
  }
}

/** Throws unless `value` is a non-empty https URL (http only on loopback, for local identity providers). */
export function requireHttpsUrl(where: string, value: string): void {
  if (Token.isUnresolved(value)) return;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidPropsError(`${where} must be an absolute URL, got '${value}': pass e.g. https://issuer.example.com/.well-known/jwks.json`);
  }
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new InvalidPropsError(`${where} must use https, got '${value}': tokens are verified against keys fetched from it`);
  }
}
