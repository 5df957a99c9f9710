import { PlatformError, ValidationError } from '../domain/errors.js';

/** A value an agent may store: anything JSON can say. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** One remembered value and its times (ms epoch). */
export interface MemoryEntry {
  readonly key: string;
  readonly value: JsonValue;
  /** first write of this key (since it was last absent: forgotten or expired) */
  readonly createdAt: number;
  /** latest write */
  readonly updatedAt: number;
  /** when it is forgotten by itself; each write restarts its TTL */
  readonly expiresAt: number;
}

export interface MemoryListOptions {
  /** only keys that start with this; every key when omitted or empty */
  readonly prefix?: string | undefined;
  /** `nextCursor` of the previous page of the same listing */
  readonly cursor?: string | undefined;
  /** entries per page at most (1..MEMORY_LIMITS.listMaxEntries) */
  readonly limit: number;
  /** serialized values per page at most, bytes; a page always holds at least one entry. @default MEMORY_LIMITS.listMaxBytes */
  readonly maxBytes?: number | undefined;
}

export interface MemoryPage {
  /** in key order (code-unit order: the key charset is ASCII) */
  readonly entries: readonly MemoryEntry[];
  /** pass back as `cursor` for the next page; null when the listing is complete */
  readonly nextCursor: string | null;
}

/**
 * Small per-caller key/value memory of the agents (issue #8): what an agent wants to find again in a
 * later session. `namespace` separates callers (the MCP tools pass the token principal, never an
 * argument); any string is a safe namespace. Entries expire by themselves, and a namespace holds a
 * bounded number of them. Adapters: in process (embedded mode) and Redis (service mode).
 * Every method may reject with MemoryUnavailableError when the backing store cannot be reached.
 */
export interface AgentMemory {
  /** Stores `value` under `key`, replacing what was there; TTL from now (default 7 days). */
  remember(namespace: string, key: string, value: JsonValue, ttlMs?: number): Promise<MemoryEntry>;
  /** The live entry under `key`, or null when absent or expired. */
  recall(namespace: string, key: string): Promise<MemoryEntry | null>;
  /** Live entries in key order, one page at a time. */
  list(namespace: string, options: MemoryListOptions): Promise<MemoryPage>;
  /** Removes `key`; true when a live entry was removed. */
  forget(namespace: string, key: string): Promise<boolean>;
  close(): Promise<void>;
}

const DAY_MS = 86_400_000;

/** Bounds of every adapter: what one caller can make the platform hold and return. */
export const MEMORY_LIMITS = {
  keyMaxChars: 200,
  /** UTF-8 bytes of the value's JSON text */
  valueMaxBytes: 16 * 1024,
  entriesPerNamespace: 1000,
  defaultTtlMs: 7 * DAY_MS,
  maxTtlMs: 90 * DAY_MS,
  listMaxEntries: 100,
  listMaxBytes: 32 * 1024,
} as const;

/** Characters of a key (and of a listing prefix): no spaces, quotes or control characters to smuggle into a store's key syntax. */
export const MEMORY_KEY_PATTERN = /^[A-Za-z0-9_.:/-]+$/;
export const MEMORY_KEY_CHARSET = 'letters, digits and _ . : / -';

/** A key or prefix that is empty, too long or outside the charset. */
export class MemoryKeyError extends ValidationError {}
/** A value that is not JSON or whose JSON text is too large. */
export class MemoryValueError extends ValidationError {}
/** A TTL that is not a positive whole number of ms, or beyond the maximum. */
export class MemoryTtlError extends ValidationError {}
/** A listing cursor that this memory did not issue for this prefix. */
export class InvalidMemoryCursorError extends ValidationError {}

/** The namespace already holds the maximum number of live entries; a new key is refused (updates still work). */
export class MemoryFullError extends PlatformError {
  constructor(readonly limit: number) {
    super(`memory full: ${limit} entries held, the most one caller may keep`);
  }
}

/** The backing store (Redis) cannot be reached or did not answer in time; nothing is known to have changed. */
export class MemoryUnavailableError extends PlatformError {}

/** Throws MemoryKeyError unless `key` is a usable key. */
export function checkMemoryKey(key: string, what: 'key' | 'prefix' = 'key'): void {
  const min = what === 'key' ? 1 : 0;
  if (key.length < min || key.length > MEMORY_LIMITS.keyMaxChars || (key.length > 0 && !MEMORY_KEY_PATTERN.test(key))) {
    throw new MemoryKeyError(
      `Invalid ${what} ${JSON.stringify(key.slice(0, 50))}: use ${min}-${MEMORY_LIMITS.keyMaxChars} characters of ${MEMORY_KEY_CHARSET}.`,
    );
  }
}

/** The value's JSON text; throws MemoryValueError when it has none or it is too large. */
export function serializeMemoryValue(value: JsonValue): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value) as string | undefined;
  } catch (error) {
    throw new MemoryValueError('Value is not JSON (it may hold a cycle or a BigInt).', [], { cause: error });
  }
  if (text === undefined) throw new MemoryValueError('Value is not JSON: pass an object, array, string, number, boolean or null.');
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MEMORY_LIMITS.valueMaxBytes) {
    throw new MemoryValueError(
      `Value is ${bytes} bytes as JSON; at most ${MEMORY_LIMITS.valueMaxBytes} are kept. Store a summary, or split it over several keys.`,
    );
  }
  return text;
}

/** `ttlMs` checked, or the default; throws MemoryTtlError. */
export function memoryTtl(ttlMs: number | undefined): number {
  if (ttlMs === undefined) return MEMORY_LIMITS.defaultTtlMs;
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MEMORY_LIMITS.maxTtlMs) {
    throw new MemoryTtlError(`TTL must be 1 ms to ${MEMORY_LIMITS.maxTtlMs / DAY_MS} days (whole ms), got ${ttlMs}.`);
  }
  return ttlMs;
}

/** Page size checked against MEMORY_LIMITS.listMaxEntries. */
export function memoryListLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1 || limit > MEMORY_LIMITS.listMaxEntries) {
    throw new ValidationError(`limit must be 1-${MEMORY_LIMITS.listMaxEntries}, got ${limit}.`);
  }
  return limit;
}
