import {
  checkMemoryKey,
  MEMORY_LIMITS,
  MemoryFullError,
  memoryListLimit,
  memoryTtl,
  serializeMemoryValue,
  type AgentMemory,
  type JsonValue,
  type MemoryEntry,
  type MemoryListOptions,
  type MemoryPage,
} from '../../ports/agent-memory.js';
import { systemClock, type Clock } from '../../ports/clock.js';
import { listingStart, pageFrom } from './memory-paging.js';

export interface InProcessMemoryOptions {
  readonly clock?: Clock;
  /** expired entries of every namespace are dropped this often; 0 turns the timer off. @default 60000 */
  readonly sweepIntervalMs?: number;
}

interface StoredEntry {
  readonly entry: MemoryEntry;
  /** the value's JSON text: what was stored is what is returned, never a live reference */
  readonly text: string;
}

/**
 * Agent memory of the embedded platform: a map per namespace in this process, gone on restart
 * (as the embedded mode's in-process stream is). Expiry is honoured on every read; expired entries
 * are dropped from a namespace before it is counted for a write, and by a periodic sweep.
 */
export class InProcessMemory implements AgentMemory {
  private readonly clock: Clock;
  private readonly namespaces = new Map<string, Map<string, StoredEntry>>();
  private readonly timer: NodeJS.Timeout | null;

  constructor(options: InProcessMemoryOptions = {}) {
    this.clock = options.clock ?? systemClock;
    const every = options.sweepIntervalMs ?? 60_000;
    this.timer = every > 0 ? setInterval(() => this.sweep(), every) : null;
    // the sweep must not keep a finished process alive
    this.timer?.unref();
  }

  // async: a refused argument rejects the promise instead of throwing at the call
  async remember(namespace: string, key: string, value: JsonValue, ttlMs?: number): Promise<MemoryEntry> {
    checkMemoryKey(key);
    const text = serializeMemoryValue(value);
    const ttl = memoryTtl(ttlMs);
    const now = this.clock.now();
    const entries = this.namespaces.get(namespace) ?? new Map<string, StoredEntry>();
    sweepNamespace(entries, now);
    const previous = entries.get(key);
    if (!previous && entries.size >= MEMORY_LIMITS.entriesPerNamespace) throw new MemoryFullError(MEMORY_LIMITS.entriesPerNamespace);
    const entry: MemoryEntry = {
      key,
      value: JSON.parse(text) as JsonValue,
      createdAt: previous?.entry.createdAt ?? now,
      updatedAt: now,
      expiresAt: now + ttl,
    };
    entries.set(key, { entry, text });
    this.namespaces.set(namespace, entries);
    return copy({ entry, text });
  }

  async recall(namespace: string, key: string): Promise<MemoryEntry | null> {
    checkMemoryKey(key);
    const stored = this.namespaces.get(namespace)?.get(key);
    return stored && stored.entry.expiresAt > this.clock.now() ? copy(stored) : null;
  }

  async list(namespace: string, options: MemoryListOptions): Promise<MemoryPage> {
    const limit = memoryListLimit(options.limit);
    const { prefix, after } = listingStart(options);
    const now = this.clock.now();
    const entries = this.namespaces.get(namespace);
    const live = [...(entries?.values() ?? [])].filter(
      (s) => s.entry.expiresAt > now && s.entry.key.startsWith(prefix) && (after === null || s.entry.key > after),
    );
    // keys are ASCII (MEMORY_KEY_PATTERN): code-unit order is the byte order Redis lists in too
    live.sort((a, b) => (a.entry.key < b.entry.key ? -1 : a.entry.key > b.entry.key ? 1 : 0));
    const window = live.slice(0, limit + 1);
    return pageFrom(
      prefix,
      window.map((s) => s.entry.key),
      window.map((s) => ({ entry: copy(s), bytes: Buffer.byteLength(s.text, 'utf8') })),
      limit,
      options.maxBytes,
    );
  }

  async forget(namespace: string, key: string): Promise<boolean> {
    checkMemoryKey(key);
    const entries = this.namespaces.get(namespace);
    const stored = entries?.get(key);
    if (!entries || !stored) return false;
    entries.delete(key);
    if (entries.size === 0) this.namespaces.delete(namespace);
    return stored.entry.expiresAt > this.clock.now();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.namespaces.clear();
  }

  /** Drops expired entries, and namespaces left empty. */
  sweep(): void {
    const now = this.clock.now();
    for (const [namespace, entries] of this.namespaces) {
      sweepNamespace(entries, now);
      if (entries.size === 0) this.namespaces.delete(namespace);
    }
  }

  /** Entries held, expired ones not yet swept included (for tests and status). */
  get size(): number {
    let n = 0;
    for (const entries of this.namespaces.values()) n += entries.size;
    return n;
  }
}

function sweepNamespace(entries: Map<string, StoredEntry>, now: number): void {
  for (const [key, stored] of entries) if (stored.entry.expiresAt <= now) entries.delete(key);
}

/** A fresh value per answer, so a caller mutating what it got cannot change what is stored. */
function copy(stored: StoredEntry): MemoryEntry {
  return { ...stored.entry, value: JSON.parse(stored.text) as JsonValue };
}
