import { describe, expect, it } from 'vitest';
import { InProcessMemory } from '../../layers/shared/src/adapters/memory/in-process-memory.js';
import { decodeMemoryCursor, encodeMemoryCursor, pageFrom } from '../../layers/shared/src/adapters/memory/memory-paging.js';
import { InvalidMemoryCursorError, type MemoryEntry } from '../../layers/shared/src/ports/agent-memory.js';
import { agentMemoryContract, ManualClock } from '../support/agent-memory-contract.js';

agentMemoryContract('in-process', async (clock) => {
  const memory = new InProcessMemory({ clock, sweepIntervalMs: 0 });
  return { memory, dispose: () => memory.close() };
});

describe('InProcessMemory', () => {
  it('sweeps expired entries and empty namespaces out of the process', async () => {
    const clock = new ManualClock();
    const memory = new InProcessMemory({ clock, sweepIntervalMs: 0 });
    await memory.remember('a', 'short', 1, 1_000);
    await memory.remember('b', 'short', 1, 1_000);
    await memory.remember('b', 'long', 1, 10_000);
    memory.sweep();
    expect(memory.size).toBe(3);
    clock.advance(1_000);
    memory.sweep();
    expect(memory.size).toBe(1);
    expect((await memory.list('a', { limit: 10 })).entries).toEqual([]);
    expect((await memory.recall('b', 'long'))?.value).toBe(1);
    await memory.close();
    expect(memory.size).toBe(0);
  });

  it('drops the expired entries of a namespace when it is written', async () => {
    const clock = new ManualClock();
    const memory = new InProcessMemory({ clock, sweepIntervalMs: 0 });
    for (let i = 0; i < 5; i++) await memory.remember('n', `k${i}`, i, 1_000);
    clock.advance(1_000);
    await memory.remember('n', 'fresh', 1);
    expect(memory.size).toBe(1);
    await memory.close();
  });
});

describe('memory listing pages', () => {
  const entry = (key: string): MemoryEntry => ({ key, value: key, createdAt: 1, updatedAt: 1, expiresAt: 2 });

  it('round-trips a cursor only with its own prefix', () => {
    const cursor = encodeMemoryCursor('p/', 'p/b');
    expect(decodeMemoryCursor(cursor, 'p/')).toBe('p/b');
    expect(() => decodeMemoryCursor(cursor, 'q/')).toThrow(InvalidMemoryCursorError);
    expect(() => decodeMemoryCursor(cursor, '')).toThrow(InvalidMemoryCursorError);
    // a cursor naming a key outside the charset is refused (it would reach the store's range syntax)
    const forged = Buffer.from(JSON.stringify({ k: 'memory', p: '', a: '+ inf' })).toString('base64url');
    expect(() => decodeMemoryCursor(forged, '')).toThrow(InvalidMemoryCursorError);
  });

  it('skips entries that vanished between reads and still resumes after them', () => {
    const keys = ['a', 'b', 'c', 'd'];
    const page = pageFrom('', keys, [{ entry: entry('a'), bytes: 1 }, null, null], 3);
    expect(page.entries.map((e) => e.key)).toEqual(['a']);
    expect(decodeMemoryCursor(page.nextCursor!, '')).toBe('c');
    const last = pageFrom('', ['x'], [null], 3);
    expect(last).toEqual({ entries: [], nextCursor: null });
  });

  it('cuts a page at the byte budget, resuming after the last entry it holds', () => {
    const keys = ['a', 'b', 'c'];
    const candidates = keys.map((k) => ({ entry: entry(k), bytes: 10 }));
    const page = pageFrom('', keys, candidates, 3, 25);
    expect(page.entries.map((e) => e.key)).toEqual(['a', 'b']);
    expect(decodeMemoryCursor(page.nextCursor!, '')).toBe('b');
  });
});
