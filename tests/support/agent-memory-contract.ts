/**
 * The behaviour every AgentMemory adapter must have, as one suite: run it with a factory for the
 * in-process adapter (unit) and for Redis (integration). Time is a ManualClock the suite moves, so
 * expiry is tested without waiting; each test uses namespaces of its own.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidMemoryCursorError,
  MEMORY_LIMITS,
  MemoryFullError,
  MemoryKeyError,
  MemoryTtlError,
  MemoryValueError,
  type AgentMemory,
  type JsonValue,
  type MemoryEntry,
} from '../../layers/shared/src/ports/agent-memory.js';
import type { Clock } from '../../layers/shared/src/ports/clock.js';

/** A clock that stands still until moved: expiry checked to the millisecond, without waiting. */
export class ManualClock implements Clock {
  private t = Date.now();
  now(): number {
    return this.t;
  }
  /** Back to the wall clock's time (Redis expires entries by real time too). */
  reset(): void {
    this.t = Date.now();
  }
  set(ms: number): void {
    this.t = ms;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface MemoryUnderTest {
  readonly memory: AgentMemory;
  /** removes everything the adapter stored (after the suite) */
  dispose(): Promise<void>;
}

const DAY = 86_400_000;

/** Every page of a listing, following nextCursor; fails on a loop. */
export async function listAll(memory: AgentMemory, namespace: string, options: { prefix?: string; limit: number; maxBytes?: number }) {
  const pages: MemoryEntry[][] = [];
  let cursor: string | undefined;
  do {
    const page = await memory.list(namespace, { ...options, cursor });
    pages.push([...page.entries]);
    cursor = page.nextCursor ?? undefined;
    if (pages.length > 10_000) throw new Error('listing does not end');
  } while (cursor !== undefined);
  return pages;
}

export function agentMemoryContract(name: string, open: (clock: Clock) => Promise<MemoryUnderTest>): void {
  describe(`AgentMemory contract: ${name}`, () => {
    const clock = new ManualClock();
    let subject: MemoryUnderTest;
    let memory: AgentMemory;
    const ns = () => `ns-${randomUUID()}`;

    beforeAll(async () => {
      subject = await open(clock);
      memory = subject.memory;
    });
    afterAll(async () => {
      await subject?.dispose();
    });

    it('round-trips JSON values and keeps createdAt across updates', async () => {
      clock.reset();
      const n = ns();
      const value: JsonValue = {
        text: 'grüße 🚀 "quoted" \\ back',
        big: Number.MAX_SAFE_INTEGER,
        tiny: 0.1 + 0.2,
        neg: -1e-12,
        list: [1, 'two', null, true, { nested: [[]] }],
        empty: {},
      };
      const before = clock.now();
      const first = await memory.remember(n, 'plan/btc', value);
      expect(first.key).toBe('plan/btc');
      expect(first.value).toEqual(value);
      expect(first.createdAt).toBe(first.updatedAt);
      expect(first.createdAt).toBeGreaterThanOrEqual(before);
      expect(first.expiresAt).toBe(first.updatedAt + MEMORY_LIMITS.defaultTtlMs);
      expect(await memory.recall(n, 'plan/btc')).toEqual(first);

      for (const scalar of ['just a string', 42, false, null, [] as JsonValue]) {
        await memory.remember(n, 'scalar', scalar);
        expect((await memory.recall(n, 'scalar'))?.value).toEqual(scalar);
      }

      clock.advance(60_000);
      const second = await memory.remember(n, 'plan/btc', { replaced: true }, 5_000);
      expect(second.createdAt).toBe(first.createdAt);
      expect(second.updatedAt).toBeGreaterThanOrEqual(first.updatedAt + 60_000);
      expect(second.expiresAt).toBe(second.updatedAt + 5_000);
      expect(await memory.recall(n, 'plan/btc')).toEqual(second);
      expect(await memory.recall(n, 'absent')).toBeNull();
    });

    it('hands out copies: changing an answer does not change what is stored', async () => {
      clock.reset();
      const n = ns();
      const entry = await memory.remember(n, 'k', { list: [1] });
      (entry.value as { list: number[] }).list.push(2);
      const recalled = await memory.recall(n, 'k');
      (recalled!.value as { list: number[] }).list.push(3);
      expect((await memory.recall(n, 'k'))?.value).toEqual({ list: [1] });
    });

    it('keeps namespaces apart, whatever characters they hold', async () => {
      clock.reset();
      const base = ns();
      // strings that would collide if namespace and key were joined with a separator
      const a = `${base}:e:x`;
      const b = `${base}`;
      const c = `${base}}:{`;
      await memory.remember(a, 'k', 'of a');
      await memory.remember(b, 'x:e:k', 'of b');
      await memory.remember(b, 'k', 'also of b');
      expect((await memory.recall(a, 'k'))?.value).toBe('of a');
      expect((await memory.recall(b, 'k'))?.value).toBe('also of b');
      expect(await memory.recall(c, 'k')).toBeNull();
      expect((await memory.list(a, { limit: 10 })).entries.map((e) => e.key)).toEqual(['k']);
      expect((await memory.list(c, { limit: 10 })).entries).toEqual([]);
      expect(await memory.forget(c, 'k')).toBe(false);
      expect(await memory.forget(b, 'k')).toBe(true);
      expect((await memory.recall(a, 'k'))?.value).toBe('of a');
    });

    it('expires entries at expiresAt: recall, list and forget no longer see them', async () => {
      clock.reset();
      const n = ns();
      const short = await memory.remember(n, 'short', 1, 5_000);
      await memory.remember(n, 'long', 2, 10 * DAY);
      clock.set(short.expiresAt - 1);
      expect((await memory.recall(n, 'short'))?.value).toBe(1);
      clock.set(short.expiresAt);
      expect(await memory.recall(n, 'short')).toBeNull();
      expect((await memory.list(n, { limit: 10 })).entries.map((e) => e.key)).toEqual(['long']);
      expect(await memory.forget(n, 'short')).toBe(false);
      // written again after expiry, it is a new entry
      const again = await memory.remember(n, 'short', 3);
      expect(again.createdAt).toBe(again.updatedAt);
      expect(again.createdAt).toBeGreaterThan(short.createdAt);
      // the default TTL is 7 days, and each write restarts it
      clock.advance(MEMORY_LIMITS.defaultTtlMs - 1);
      expect((await memory.recall(n, 'short'))?.value).toBe(3);
      expect((await memory.recall(n, 'long'))?.value).toBe(2);
      clock.advance(1);
      expect(await memory.recall(n, 'short')).toBeNull();
    });

    it('refuses keys, values and TTLs beyond the limits with named errors', async () => {
      clock.reset();
      const n = ns();
      const maxKey = 'k'.repeat(MEMORY_LIMITS.keyMaxChars);
      await memory.remember(n, maxKey, 1);
      expect((await memory.recall(n, maxKey))?.value).toBe(1);
      for (const key of ['', 'k'.repeat(MEMORY_LIMITS.keyMaxChars + 1), 'a b', 'é', 'a*', '{x}', 'a\nb', '[a', 'a"b']) {
        await expect(memory.remember(n, key, 1), JSON.stringify(key)).rejects.toBeInstanceOf(MemoryKeyError);
        await expect(memory.recall(n, key), JSON.stringify(key)).rejects.toBeInstanceOf(MemoryKeyError);
        await expect(memory.forget(n, key), JSON.stringify(key)).rejects.toBeInstanceOf(MemoryKeyError);
      }
      await expect(memory.list(n, { prefix: 'a b', limit: 10 })).rejects.toBeInstanceOf(MemoryKeyError);

      // 16 KiB of JSON text fits; one byte more (a multi-byte character counts by its bytes) does not
      const fits = 'x'.repeat(MEMORY_LIMITS.valueMaxBytes - 2);
      await memory.remember(n, 'big', fits);
      expect((await memory.recall(n, 'big'))?.value).toBe(fits);
      await expect(memory.remember(n, 'big', `${fits.slice(1)}é`)).rejects.toBeInstanceOf(MemoryValueError);
      await expect(memory.remember(n, 'undefined', undefined as unknown as JsonValue)).rejects.toBeInstanceOf(MemoryValueError);
      expect((await memory.recall(n, 'big'))?.value).toBe(fits);

      await memory.remember(n, 'max-ttl', 1, MEMORY_LIMITS.maxTtlMs);
      for (const ttl of [0, -1, 1.5, MEMORY_LIMITS.maxTtlMs + 1, Number.NaN]) {
        await expect(memory.remember(n, 'ttl', 1, ttl), String(ttl)).rejects.toBeInstanceOf(MemoryTtlError);
      }
      expect(await memory.recall(n, 'ttl')).toBeNull();
    });

    it(`holds at most ${MEMORY_LIMITS.entriesPerNamespace} live entries per namespace`, async () => {
      clock.reset();
      const n = ns();
      const other = ns();
      const limit = MEMORY_LIMITS.entriesPerNamespace;
      // ten of them expire after a minute
      for (let i = 0; i < limit; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => memory.remember(n, `k${String(i + j).padStart(4, '0')}`, i + j, i + j < 10 ? 60_000 : DAY)));
      }
      await expect(memory.remember(n, 'one-more', 1)).rejects.toBeInstanceOf(MemoryFullError);
      // updating a held key still works, and another namespace is not affected
      expect((await memory.remember(n, 'k0500', 'updated')).value).toBe('updated');
      await memory.remember(other, 'one-more', 1);

      expect(await memory.forget(n, 'k0999')).toBe(true);
      await memory.remember(n, 'one-more', 1);
      await expect(memory.remember(n, 'two-more', 1)).rejects.toBeInstanceOf(MemoryFullError);

      // once the ten have expired they no longer count
      clock.advance(60_000);
      await Promise.all(Array.from({ length: 10 }, (_, i) => memory.remember(n, `late${i}`, i)));
      await expect(memory.remember(n, 'late10', 1)).rejects.toBeInstanceOf(MemoryFullError);
    });

    it('lets exactly as many concurrent new keys in as there is room for', async () => {
      clock.reset();
      const n = ns();
      const room = 5;
      const limit = MEMORY_LIMITS.entriesPerNamespace;
      for (let i = 0; i < limit - room; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, limit - room - i) }, (_, j) => memory.remember(n, `held${i + j}`, 1)),
        );
      }
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => memory.remember(n, `race${i}`, i)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(room);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(MemoryFullError);
    });

    it('lists in key order, page by page with a cursor, by prefix and within a byte budget', async () => {
      clock.reset();
      const n = ns();
      const keys = [
        ...Array.from({ length: 12 }, (_, i) => `watch/${String(i).padStart(2, '0')}`),
        ...Array.from({ length: 5 }, (_, i) => `plan:${i}`),
        'watch',
        'watch0',
        'w',
        'Z',
        '_',
      ];
      for (const key of keys) await memory.remember(n, key, { key });
      const sorted = [...keys].sort();

      const pages = await listAll(memory, n, { limit: 4 });
      expect(pages.flat().map((e) => e.key)).toEqual(sorted);
      expect(pages.slice(0, -1).every((p) => p.length === 4)).toBe(true);
      expect(pages.flat().every((e) => (e.value as { key: string }).key === e.key)).toBe(true);

      const watch = await listAll(memory, n, { prefix: 'watch/', limit: 5 });
      expect(watch.map((p) => p.length)).toEqual([5, 5, 2]);
      expect(watch.flat().map((e) => e.key)).toEqual(sorted.filter((k) => k.startsWith('watch/')));
      const exact = await memory.list(n, { prefix: 'watch/', limit: 12 });
      expect(exact.entries).toHaveLength(12);
      expect(exact.nextCursor).toBeNull();
      expect((await memory.list(n, { prefix: 'nothing', limit: 5 })).entries).toEqual([]);

      // a key written behind the cursor shows up on a later page; one before it does not
      const first = await memory.list(n, { prefix: 'watch/', limit: 5 });
      await memory.remember(n, 'watch/99', 'late');
      await memory.remember(n, 'watch/-', 'early');
      let cursor = first.nextCursor ?? undefined;
      const after: string[] = [];
      while (cursor !== undefined) {
        const page = await memory.list(n, { prefix: 'watch/', limit: 5, cursor });
        after.push(...page.entries.map((e) => e.key));
        cursor = page.nextCursor ?? undefined;
      }
      expect(after).toEqual([...sorted.filter((k) => k.startsWith('watch/')).slice(5), 'watch/99']);

      // a cursor only works with the prefix it was issued for
      await expect(memory.list(n, { prefix: 'plan:', limit: 5, cursor: first.nextCursor! })).rejects.toBeInstanceOf(InvalidMemoryCursorError);
      await expect(memory.list(n, { limit: 5, cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidMemoryCursorError);

      // pages stop at the byte budget, but always hold one entry
      const m = ns();
      const chunk = 'y'.repeat(4_000);
      for (let i = 0; i < 10; i++) await memory.remember(m, `blob${i}`, chunk);
      const byBytes = await listAll(memory, m, { limit: 100, maxBytes: 10_000 });
      expect(byBytes.map((p) => p.length)).toEqual([2, 2, 2, 2, 2]);
      const tiny = await listAll(memory, m, { limit: 100, maxBytes: 1 });
      expect(tiny.map((p) => p.length)).toEqual(Array(10).fill(1));
      expect(tiny.flat().map((e) => e.key)).toEqual(Array.from({ length: 10 }, (_, i) => `blob${i}`));
    });

    it('leaves expired entries out of listings and pages past them', async () => {
      clock.reset();
      const n = ns();
      for (let i = 0; i < 30; i++) await memory.remember(n, `e${String(i).padStart(2, '0')}`, i, i % 3 === 0 ? DAY : 1_000);
      clock.advance(1_000);
      const pages = await listAll(memory, n, { limit: 3 });
      expect(pages.flat().map((e) => e.value)).toEqual([0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
    });

    it('forgets a key once: true, then false', async () => {
      clock.reset();
      const n = ns();
      await memory.remember(n, 'a', 1);
      await memory.remember(n, 'b', 2);
      expect(await memory.forget(n, 'a')).toBe(true);
      expect(await memory.forget(n, 'a')).toBe(false);
      expect(await memory.forget(n, 'never')).toBe(false);
      expect(await memory.recall(n, 'a')).toBeNull();
      expect((await memory.list(n, { limit: 10 })).entries.map((e) => e.key)).toEqual(['b']);
      // remembered again, it starts afresh
      const again = await memory.remember(n, 'a', 3);
      expect(again.createdAt).toBe(again.updatedAt);
    });
  });
}
