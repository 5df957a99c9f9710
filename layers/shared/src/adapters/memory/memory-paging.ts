import { z } from 'zod';
import { checkMemoryKey, InvalidMemoryCursorError, MEMORY_KEY_PATTERN, MEMORY_LIMITS, type MemoryEntry, type MemoryPage } from '../../ports/agent-memory.js';

const CursorSchema = z.object({
  k: z.literal('memory'),
  p: z.string(),
  a: z.string().min(1).max(MEMORY_LIMITS.keyMaxChars).regex(MEMORY_KEY_PATTERN),
});

/**
 * Opaque listing cursor: the last key a page covered, tagged with the listing's prefix so a cursor
 * reused on another prefix is refused, not misapplied. It names a key of the caller's own
 * namespace only, and every adapter reads it inside the caller's namespace.
 */
export function encodeMemoryCursor(prefix: string, afterKey: string): string {
  return Buffer.from(JSON.stringify({ k: 'memory', p: prefix, a: afterKey })).toString('base64url');
}

/** The key a listing resumes after; throws InvalidMemoryCursorError. */
export function decodeMemoryCursor(cursor: string, prefix: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new InvalidMemoryCursorError('cursor is not one this memory issued; list again without it', [], { cause: error });
  }
  const envelope = CursorSchema.safeParse(parsed);
  if (!envelope.success || envelope.data.p !== prefix) {
    throw new InvalidMemoryCursorError('cursor does not belong to this listing (same prefix); list again without it');
  }
  return envelope.data.a;
}

/** The checked prefix and resume key of a listing request. */
export function listingStart(options: { readonly prefix?: string | undefined; readonly cursor?: string | undefined }): { prefix: string; after: string | null } {
  const prefix = options.prefix ?? '';
  checkMemoryKey(prefix, 'prefix');
  return { prefix, after: options.cursor === undefined ? null : decodeMemoryCursor(options.cursor, prefix) };
}

/** An entry read for a page and the size of its value's JSON text; null when it vanished meanwhile. */
export type PageCandidate = { readonly entry: MemoryEntry; readonly bytes: number } | null;

/**
 * One page from `keys`: the next keys of the listing in order, `limit + 1` of them when the store has
 * that many (the extra one only says there is more). `candidates[i]` is what `keys[i]` holds.
 * Entries are taken until `limit` or until `maxBytes` of values would be passed (the first is always
 * taken, so a page never comes back empty while entries remain).
 */
export function pageFrom(
  prefix: string,
  keys: readonly string[],
  candidates: readonly PageCandidate[],
  limit: number,
  maxBytes: number = MEMORY_LIMITS.listMaxBytes,
): MemoryPage {
  const entries: MemoryEntry[] = [];
  let bytes = 0;
  const walked = Math.min(keys.length, limit);
  for (let i = 0; i < walked; i++) {
    const candidate = candidates[i];
    if (!candidate) continue;
    if (entries.length > 0 && bytes + candidate.bytes > maxBytes) {
      return { entries, nextCursor: encodeMemoryCursor(prefix, keys[i - 1]!) };
    }
    entries.push(candidate.entry);
    bytes += candidate.bytes;
  }
  const more = keys.length > limit;
  return { entries, nextCursor: more ? encodeMemoryCursor(prefix, keys[walked - 1]!) : null };
}
