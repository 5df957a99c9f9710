import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RedisMemory } from '../../layers/shared/src/adapters/memory/redis-memory.js';
import { MEMORY_LIMITS, MemoryUnavailableError } from '../../layers/shared/src/ports/agent-memory.js';
import { agentMemoryContract } from '../support/agent-memory-contract.js';
import { waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.js';

/** Every key under `prefix` (SCAN, so a shared Redis is never blocked). */
async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

async function deleteUnder(redis: Redis, prefix: string): Promise<void> {
  const keys = await keysUnder(redis, prefix);
  for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
}

describeWithService('redis', 'RedisMemory', (url) => {
  // every key of this run under one unique prefix, removed afterwards
  const runPrefix = `test:memory:${randomUUID()}:`;

  agentMemoryContract('redis', async (clock) => {
    const memory = new RedisMemory({ url, keyPrefix: `${runPrefix}contract:`, clock });
    return { memory, dispose: () => memory.close() };
  });

  let raw: Redis;
  let memory: RedisMemory;
  const prefix = `${runPrefix}own:`;

  beforeAll(() => {
    raw = new Redis(url);
    memory = new RedisMemory({ url, keyPrefix: prefix });
  });

  afterAll(async () => {
    await memory?.close();
    await deleteUnder(raw, runPrefix);
    expect(await keysUnder(raw, runPrefix)).toEqual([]);
    await raw?.quit();
  });

  it('names keys by a hash of the namespace, never by the namespace itself', async () => {
    const principal = JSON.stringify(['issuer', 'client}:e:', 'subject:idx']);
    await memory.remember(principal, 'plan/x', { a: 1 });
    const keys = await keysUnder(raw, prefix);
    expect(keys.length).toBe(3);
    for (const key of keys) {
      expect(key).toMatch(/^.*\{[0-9a-f]{64}\}:(idx|exp|e:plan\/x)$/);
      expect(key).not.toContain('issuer');
      expect(key).not.toContain('client');
    }
    // every key of a namespace shares one hash tag (one cluster slot), and all of them expire
    expect(new Set(keys.map((k) => /\{([0-9a-f]{64})\}/.exec(k)![1])).size).toBe(1);
    for (const key of keys) expect(await raw.pttl(key)).toBeGreaterThan(0);
    const [entryKey] = keys.filter((k) => k.includes(':e:'));
    expect(await raw.pttl(entryKey!)).toBeLessThanOrEqual(MEMORY_LIMITS.defaultTtlMs);
    expect(await raw.pttl(keys.find((k) => k.endsWith(':idx'))!)).toBeGreaterThan(MEMORY_LIMITS.maxTtlMs);
  });

  it('lets Redis drop an entry at its TTL (real time, 1.2 s)', async () => {
    const namespace = randomUUID();
    await memory.remember(namespace, 'brief', 'soon gone', 1_200);
    const entryKey = (await keysUnder(raw, prefix)).find((k) => k.endsWith(':e:brief'))!;
    const pttl = await raw.pttl(entryKey);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(1_200);
    // polled, not slept: the entry key itself disappears from Redis, not only from our answers
    await waitFor('entry key expired by Redis', () => raw.exists(entryKey), (n) => n === 0, { timeoutMs: 10_000, intervalMs: 100 });
    expect(await memory.recall(namespace, 'brief')).toBeNull();
    expect((await memory.list(namespace, { limit: 10 })).entries).toEqual([]);
    // the listing swept it out of both indexes too
    const indexes = (await keysUnder(raw, prefix)).filter((k) => k.endsWith(':idx') || k.endsWith(':exp'));
    for (const index of indexes) expect(await raw.zscore(index, 'brief')).toBeNull();
  });

  it('rejects with MemoryUnavailableError while Redis is unreachable, and works again when it is back', async () => {
    let proxy: TcpProxy | undefined;
    let viaCut: RedisMemory | undefined;
    try {
      proxy = await startTcpProxy(url);
      viaCut = new RedisMemory({ url: viaProxy(url, proxy), keyPrefix: prefix, commandTimeoutMs: 1_000 });
      const namespace = randomUUID();
      await viaCut.remember(namespace, 'before', 1);
      proxy.cut();
      for (const call of [
        () => viaCut!.remember(namespace, 'during', 2),
        () => viaCut!.recall(namespace, 'before'),
        () => viaCut!.list(namespace, { limit: 5 }),
        () => viaCut!.forget(namespace, 'before'),
      ]) {
        const error = await call().then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(MemoryUnavailableError);
        // its message names no host or port
        expect((error as Error).message).not.toMatch(/127\.0\.0\.1|:\d{2,5}/);
      }
      proxy.restore();
      await waitFor('memory reachable again', () => viaCut!.remember(namespace, 'after', 3), (e) => e.value === 3, { timeoutMs: 15_000, intervalMs: 200 });
      expect((await memory.recall(namespace, 'before'))?.value).toBe(1);
      expect(await memory.recall(namespace, 'during')).toBeNull();
    } finally {
      await viaCut?.close();
      await proxy?.close();
    }
  });

  it('rejects after close instead of reconnecting', async () => {
    const closing = new RedisMemory({ url, keyPrefix: prefix });
    await closing.close();
    await expect(closing.recall('n', 'k')).rejects.toBeInstanceOf(MemoryUnavailableError);
  });
});
