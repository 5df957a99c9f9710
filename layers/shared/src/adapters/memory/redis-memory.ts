import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../../observability/logger.js';
import {
  checkMemoryKey,
  MEMORY_LIMITS,
  MemoryFullError,
  memoryListLimit,
  memoryTtl,
  MemoryUnavailableError,
  serializeMemoryValue,
  type AgentMemory,
  type JsonValue,
  type MemoryEntry,
  type MemoryListOptions,
  type MemoryPage,
} from '../../ports/agent-memory.js';
import { systemClock, type Clock } from '../../ports/clock.js';
import { listingStart, pageFrom, type PageCandidate } from './memory-paging.js';

/** Prefix of every key this adapter writes. */
export const DEFAULT_MEMORY_KEY_PREFIX = 'qicore:memory:';

/** Index keys outlive the longest entry: every write pushes their expiry to this, so abandoned namespaces vanish. */
const INDEX_TTL_MS = MEMORY_LIMITS.maxTtlMs + 86_400_000;

// KEYS: idx, exp; ARGV[1]: now. Expired members leave both indexes (the entries themselves expire
// by PX). ZREM in chunks: Lua's unpack has a stack limit of a few thousand values.
const SWEEP = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for i = 1, #expired, 500 do
  local chunk = { unpack(expired, i, math.min(i + 499, #expired)) }
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('ZREM', KEYS[2], unpack(chunk))
end
`;

/**
 * KEYS: idx (lex index, score 0), exp (expiresAt per key), entry (hash v c u x)
 * ARGV: now, key, ttlMs, expiresAt, value JSON, max entries, index TTL ms
 * -> createdAt, or nil when the namespace is full. Atomic: the count and the write cannot interleave
 * with another task's write, so two tasks cannot both take the last free place.
 */
const REMEMBER = `${SWEEP}
local created = ARGV[1]
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  local c = redis.call('HGET', KEYS[3], 'c')
  if c then created = c end
elseif redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return false
end
redis.call('HSET', KEYS[3], 'v', ARGV[5], 'c', created, 'u', ARGV[1], 'x', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[1], 0, ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return created
`;

/** KEYS: idx, exp, entry; ARGV: now, key -> 1 when a live entry was removed, else 0. */
const FORGET = `
local x = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
if x and tonumber(x) > tonumber(ARGV[1]) then return 1 end
return 0
`;

/** KEYS: idx, exp; ARGV: now, lex min, lex max, count -> the next keys of a listing, expired ones swept first. */
const LIST_KEYS = `${SWEEP}
return redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
`;

type Arg = string | number | Buffer;

interface MemoryCommands {
  memoryRemember(idx: string, exp: string, entry: string, ...args: Arg[]): Promise<string | null>;
  memoryForget(idx: string, exp: string, entry: string, ...args: Arg[]): Promise<number>;
  memoryListKeys(idx: string, exp: string, ...args: Arg[]): Promise<string[]>;
}

export interface RedisMemoryOptions {
  /** redis:// or rediss:// URL (the password stays out of logs) */
  readonly url: string;
  /** prefix of every key; tests use a unique one per run. @default DEFAULT_MEMORY_KEY_PREFIX */
  readonly keyPrefix?: string;
  /** a command not answered within this fails with MemoryUnavailableError. @default 2000 */
  readonly commandTimeoutMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/**
 * Agent memory of service mode, shared by every MCP server task. Per namespace: one hash per entry
 * (value JSON, created/updated/expires) with a PX TTL, a lexicographic sorted set of its keys for
 * listing with a cursor, and a sorted set by expiry that writes and listings sweep. The namespace
 * enters keys only as a SHA-256, so no principal can collide with another or inject a separator;
 * it is a hash tag, so a namespace's keys share one cluster slot (Lua scripts need that).
 * Writes that count or check run as Lua scripts, atomically. Redis trouble rejects with
 * MemoryUnavailableError; the connection keeps retrying on its own.
 */
export class RedisMemory implements AgentMemory {
  private readonly redis: Redis & MemoryCommands;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private ready: Promise<void> | null = null;
  private closed = false;

  constructor(options: RedisMemoryOptions) {
    this.prefix = options.keyPrefix ?? DEFAULT_MEMORY_KEY_PREFIX;
    this.clock = options.clock ?? systemClock;
    this.timeoutMs = options.commandTimeoutMs ?? 2_000;
    const redis = new Redis(options.url, {
      // an agent waits on the answer: fail fast, and let it retry, rather than hang while Redis is down
      commandTimeout: this.timeoutMs,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt: number) => Math.min(attempt * 200, 5_000),
      // A command the caller was told failed must not run later: no queue while disconnected, and
      // nothing re-sent after a reconnect (a late forget could delete what was remembered since).
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      connectionName: 'qicore-memory',
    });
    redis.defineCommand('memoryRemember', { numberOfKeys: 3, lua: REMEMBER });
    redis.defineCommand('memoryForget', { numberOfKeys: 3, lua: FORGET });
    redis.defineCommand('memoryListKeys', { numberOfKeys: 2, lua: LIST_KEYS });
    this.redis = redis as Redis & MemoryCommands;
    watchErrors(redis, options.logger);
  }

  async remember(namespace: string, key: string, value: JsonValue, ttlMs?: number): Promise<MemoryEntry> {
    checkMemoryKey(key);
    const text = serializeMemoryValue(value);
    const ttl = memoryTtl(ttlMs);
    const now = this.clock.now();
    const k = this.keysOf(namespace);
    const created = await this.call(() =>
      this.redis.memoryRemember(k.idx, k.exp, k.entry(key), now, key, ttl, now + ttl, text, MEMORY_LIMITS.entriesPerNamespace, INDEX_TTL_MS),
    );
    if (created === null) throw new MemoryFullError(MEMORY_LIMITS.entriesPerNamespace);
    return { key, value: JSON.parse(text) as JsonValue, createdAt: Number(created), updatedAt: now, expiresAt: now + ttl };
  }

  async recall(namespace: string, key: string): Promise<MemoryEntry | null> {
    checkMemoryKey(key);
    const fields = await this.call(() => this.redis.hmget(this.keysOf(namespace).entry(key), 'v', 'c', 'u', 'x'));
    return entryOf(key, fields, this.clock.now())?.entry ?? null;
  }

  async list(namespace: string, options: MemoryListOptions): Promise<MemoryPage> {
    const limit = memoryListLimit(options.limit);
    const { prefix, after } = listingStart(options);
    const k = this.keysOf(namespace);
    // a cursor names a key of this prefix; anything else starts at the prefix
    const min = after !== null && after >= prefix ? `(${after}` : prefix ? `[${prefix}` : '-';
    // 0xff sorts after every ASCII byte, so `[prefix\xff` bounds the keys starting with prefix
    const max = prefix ? Buffer.concat([Buffer.from(`[${prefix}`), Buffer.from([0xff])]) : '+';
    const now = this.clock.now();
    const keys = await this.call(() => this.redis.memoryListKeys(k.idx, k.exp, now, min, max, limit + 1));
    const reads = keys.slice(0, limit);
    const replies = reads.length === 0 ? [] : await this.call(() => this.readEntries(reads.map((key) => k.entry(key))));
    // an entry forgotten or expired between the two round trips is skipped
    const candidates: PageCandidate[] = reads.map((key, i) => entryOf(key, replies[i] ?? [], now));
    return pageFrom(prefix, keys, candidates, limit, options.maxBytes);
  }

  async forget(namespace: string, key: string): Promise<boolean> {
    checkMemoryKey(key);
    const k = this.keysOf(namespace);
    return (await this.call(() => this.redis.memoryForget(k.idx, k.exp, k.entry(key), this.clock.now(), key))) === 1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** Resolves once the connection is ready, waiting at most the command timeout (commands are not queued meanwhile). */
  private async connected(): Promise<void> {
    if (this.redis.status === 'ready') return;
    // one 'ready' listener however many calls wait
    this.ready ??= new Promise<void>((resolve) => {
      this.redis.once('ready', () => {
        this.ready = null;
        resolve();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not connected within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      await Promise.race([this.ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Every key of one namespace; the namespace only as its hash, inside a cluster hash tag. */
  private keysOf(namespace: string): { idx: string; exp: string; entry: (key: string) => string } {
    const base = `${this.prefix}{${createHash('sha256').update(namespace, 'utf8').digest('hex')}}`;
    return { idx: `${base}:idx`, exp: `${base}:exp`, entry: (key) => `${base}:e:${key}` };
  }

  private async readEntries(entryKeys: readonly string[]): Promise<(string | null)[][]> {
    const pipeline = this.redis.pipeline();
    for (const key of entryKeys) pipeline.hmget(key, 'v', 'c', 'u', 'x');
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, fields]) => {
      if (error) throw error;
      return fields as (string | null)[];
    });
  }

  /** Runs one Redis exchange; any failure of Redis becomes MemoryUnavailableError (no URL in its message). */
  private async call<T>(run: () => Promise<T>): Promise<T> {
    if (this.closed) throw new MemoryUnavailableError('agent memory is closed');
    try {
      await this.connected();
      return await run();
    } catch (error) {
      throw new MemoryUnavailableError('agent memory store (Redis) did not answer', { cause: error });
    }
  }
}

/** The entry in an HMGET reply of v c u x, or null when absent or expired by `now`. */
function entryOf(key: string, fields: readonly (string | null)[], now: number): PageCandidate {
  const [v, c, u, x] = fields;
  if (v == null || c == null || u == null || x == null || Number(x) <= now) return null;
  return {
    entry: { key, value: JSON.parse(v) as JsonValue, createdAt: Number(c), updatedAt: Number(u), expiresAt: Number(x) },
    bytes: Buffer.byteLength(v, 'utf8'),
  };
}

/** ioredis emits 'error' on every failed connection attempt; logged once per outage, not per retry. */
function watchErrors(redis: Redis, logger: Logger | undefined): void {
  let down = false;
  redis.on('error', (error: unknown) => {
    if (down) return;
    down = true;
    logger?.warn('agent memory: redis connection failed; retrying', { error });
  });
  redis.on('ready', () => {
    if (down) logger?.info('agent memory: redis connection back');
    down = false;
  });
}
