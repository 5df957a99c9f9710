import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidTokenError, ServerError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { createRemoteJWKSet, errors, jwtVerify, SignJWT, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ConfigError, PlatformError } from '../domain/errors.js';

/** File under the data directory holding the development HS256 secret (base64url). */
export const DEV_SECRET_FILE = 'dev-jwt-secret';
/** Issuer and audience of development tokens, unless the caller picks others. */
export const DEV_TOKEN_ISSUER = 'qicore-dev';
export const DEV_TOKEN_AUDIENCE = 'qicore-mcp';

/** HS256 keys shorter than the hash output are weak (RFC 7518 §3.2). */
const MIN_SECRET_BYTES = 32;
/** Leeway for clock skew between token issuer and this server. */
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;

/** Returns the development secret under `dataDir`, creating a random one (mode 0600) on first use. */
export async function loadOrCreateDevSecret(dataDir: string): Promise<Uint8Array> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, DEV_SECRET_FILE);
  const fresh = randomBytes(MIN_SECRET_BYTES);
  try {
    // 'wx' fails when the file exists, so two processes starting together never overwrite each other's secret.
    await writeFile(path, `${fresh.toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    return new Uint8Array(fresh);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if (process.platform !== 'win32' && ((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
  const secret = Buffer.from((await readFile(path, 'utf8')).trim(), 'base64url');
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(`${path} holds fewer than ${MIN_SECRET_BYTES} bytes; delete it to have a new secret generated`);
  }
  return new Uint8Array(secret);
}

export interface DevTokenOptions {
  /** `sub`: who the token is for (also its client id) */
  readonly subject: string;
  /** space-joined into the `scope` claim */
  readonly scopes?: readonly string[];
  /** lifetime; default 3600 */
  readonly ttlSeconds?: number;
  readonly issuer?: string;
  readonly audience?: string;
}

/** Signs an HS256 development access token with `secret`. */
export async function issueDevToken(secret: Uint8Array, options: DevTokenOptions): Promise<string> {
  requireStrongSecret(secret);
  const ttl = options.ttlSeconds ?? 3600;
  if (!Number.isInteger(ttl) || ttl <= 0) throw new ConfigError(`ttlSeconds must be a positive integer, got ${ttl}`);
  return new SignJWT({ scope: (options.scopes ?? []).join(' '), client_id: options.subject })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(options.subject)
    .setIssuer(options.issuer ?? DEV_TOKEN_ISSUER)
    .setAudience(options.audience ?? DEV_TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${ttl}s`)
    .setJti(randomUUID())
    .sign(secret);
}

/** Development tokens: HS256 with a shared secret (see loadOrCreateDevSecret). */
export interface Hs256VerifierOptions {
  readonly kind: 'hs256';
  readonly secret: Uint8Array;
  readonly issuer: string;
  readonly audience: string;
  readonly clockToleranceSeconds?: number;
  readonly cache?: VerifierCacheOptions;
}

/**
 * Tokens already verified, kept until they expire: a client sends the same token with every
 * request, and checking its signature each time was a tenth of the server's CPU per tool call.
 * A hit still checks `exp`; only successes are kept; the map is bounded (oldest dropped first).
 */
export interface VerifierCacheOptions {
  /** tokens kept at most; 0 turns the cache off. Default 10 000. */
  readonly maxEntries?: number;
  /** the verifier's clock (ms epoch), for tests; default Date.now */
  readonly now?: () => number;
}

export type AsymmetricJwsAlgorithm =
  | 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'Ed25519';

/**
 * Tokens of an OIDC provider (Cognito, Auth0, Keycloak...) checked against its JWKS. Cognito access
 * tokens carry no `aud` but `client_id`: configure `clientIds` for them, `audience` for providers that set `aud`.
 */
export interface JwksVerifierOptions {
  readonly kind: 'jwks';
  /** https, or http on a loopback host (tests, local providers) */
  readonly jwksUrl: string | URL;
  readonly issuer: string;
  readonly audience?: string | readonly string[];
  readonly clientIds?: readonly string[];
  /** default RS256 and ES256 */
  readonly algorithms?: readonly AsymmetricJwsAlgorithm[];
  readonly clockToleranceSeconds?: number;
  readonly cache?: VerifierCacheOptions;
}

export type JwtVerifierOptions = Hs256VerifierOptions | JwksVerifierOptions;

/**
 * A token verifier for the SDK's `requireBearerAuth`. Every bad token throws InvalidTokenError
 * (HTTP 401); only an unreachable JWKS throws ServerError (HTTP 500): any other error class would
 * also become a 500 in the SDK.
 */
export function createJwtVerifier(options: JwtVerifierOptions): OAuthTokenVerifier {
  const tolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  const now = options.cache?.now ?? Date.now;
  const cacheEntries = options.cache?.maxEntries ?? 10_000;
  if (options.kind === 'hs256') {
    requireStrongSecret(options.secret);
    const secret = options.secret;
    return verifierWith(
      (token) =>
        jwtVerify(token, secret, {
          algorithms: ['HS256'],
          issuer: options.issuer,
          audience: options.audience,
          requiredClaims: ['exp'],
          clockTolerance: tolerance,
          currentDate: new Date(now()),
        }),
      cacheEntries,
      now,
    );
  }
  const url = jwksUrlOf(options.jwksUrl);
  const audience = options.audience === undefined ? undefined : typeof options.audience === 'string' ? options.audience : [...options.audience];
  const clientIds = options.clientIds ?? [];
  if (audience === undefined && clientIds.length === 0) {
    // Without either, any token of the issuer for any of its apps would be accepted.
    throw new ConfigError('a JWKS verifier needs an audience or clientIds');
  }
  const keys = tagKeySourceFailures(createRemoteJWKSet(url));
  return verifierWith(
    async (token) => {
      const result = await jwtVerify(token, keys, {
        algorithms: [...(options.algorithms ?? ['RS256', 'ES256'])],
        issuer: options.issuer,
        ...(audience !== undefined && { audience }),
        requiredClaims: ['exp'],
        clockTolerance: tolerance,
        currentDate: new Date(now()),
      });
      if (clientIds.length > 0 && !clientIds.includes(String(result.payload['client_id'] ?? result.payload['azp'] ?? ''))) {
        throw new InvalidTokenError('token was issued to another client');
      }
      return result;
    },
    cacheEntries,
    now,
  );
}

function verifierWith(verify: (token: string) => Promise<{ payload: JWTPayload }>, cacheEntries: number, now: () => number): OAuthTokenVerifier {
  const verified = new Map<string, AuthInfo>();
  return {
    async verifyAccessToken(token: string): Promise<AuthInfo> {
      const hit = verified.get(token);
      // exp is required, so every cached entry has expiresAt; past it the full check runs (and refuses with its reason)
      if (hit && now() < hit.expiresAt! * 1000) return hit;
      if (hit) verified.delete(token);
      let payload: JWTPayload;
      try {
        ({ payload } = await verify(token));
      } catch (error) {
        throw tokenError(error);
      }
      const info = authInfoOf(token, payload);
      if (cacheEntries > 0 && info.expiresAt !== undefined) {
        verified.set(token, info);
        if (verified.size > cacheEntries) verified.delete(verified.keys().next().value!);
      }
      return info;
    },
  };
}

/** Maps a verification failure to the error class requireBearerAuth turns into the right status. */
function tokenError(error: unknown): Error {
  if (error instanceof InvalidTokenError) return error;
  // Only a key source failure is the server's problem (500); every other failure is the token's (401).
  if (error instanceof KeySourceUnavailableError) return new ServerError('authorization keys are unavailable');
  // Fixed messages: they go into the WWW-Authenticate header, where jose's quoted texts do not belong.
  if (error instanceof errors.JWTExpired) return new InvalidTokenError('token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) return new InvalidTokenError(`token claim ${error.claim} is not valid`);
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return new InvalidTokenError('token algorithm is not accepted');
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return new InvalidTokenError('token signature is not valid');
  if (error instanceof errors.JWKSNoMatchingKey) return new InvalidTokenError('token key is not known');
  return new InvalidTokenError('token is malformed');
}

/** The JWKS could not be fetched or read: not the token's fault. */
export class KeySourceUnavailableError extends PlatformError {}

/**
 * Wraps a remote key set so its own failures (timeout, non-200, bad JSON, fetch errors, which are
 * plain TypeErrors) are told apart from a token whose key simply is not in the set.
 */
function tagKeySourceFailures(keys: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await keys(header, token);
    } catch (error) {
      const tokenFault =
        error instanceof errors.JOSEError &&
        !(error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid || error.code === 'ERR_JOSE_GENERIC');
      if (tokenFault) throw error;
      throw new KeySourceUnavailableError('JWKS could not be fetched or read', { cause: error });
    }
  };
}

function authInfoOf(token: string, payload: JWTPayload): AuthInfo {
  const scope = payload['scope'];
  const scp = payload['scp'];
  const scopes =
    typeof scope === 'string'
      ? scope.split(' ').filter(Boolean)
      : Array.isArray(scp)
        ? scp.filter((s): s is string => typeof s === 'string')
        : [];
  const clientId = [payload['client_id'], payload['azp'], payload.sub].find((v): v is string => typeof v === 'string');
  if (clientId === undefined) throw new InvalidTokenError('token names no subject or client');
  const resource = resourceOf(payload.aud);
  return {
    token,
    clientId,
    scopes,
    ...(payload.exp !== undefined && { expiresAt: payload.exp }),
    ...(resource && { resource }),
    extra: { subject: payload.sub ?? null, issuer: payload.iss ?? null },
  };
}

/** An `aud` that is one absolute URL names the resource (RFC 8707), which requireBearerAuth can check. */
function resourceOf(aud: JWTPayload['aud']): URL | undefined {
  if (typeof aud !== 'string' || !/^https?:\/\//.test(aud)) return undefined;
  try {
    return new URL(aud);
  } catch {
    return undefined;
  }
}

function requireStrongSecret(secret: Uint8Array): void {
  if (secret.length < MIN_SECRET_BYTES) throw new ConfigError(`an HS256 secret needs at least ${MIN_SECRET_BYTES} bytes`);
}

function jwksUrlOf(value: string | URL): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch (error) {
    throw new ConfigError(`JWKS URL '${String(value)}' is not a URL`, { cause: error });
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new ConfigError(`JWKS URL must use https (http only on loopback): ${url.href}`);
  }
  return url;
}
