import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ValidationError } from '../../domain/errors.js';
import type { Logger } from '../../observability/logger.js';
import {
  MEMORY_KEY_CHARSET,
  MEMORY_KEY_PATTERN,
  MEMORY_LIMITS,
  MemoryFullError,
  MemoryUnavailableError,
  type AgentMemory,
  type JsonValue,
  type MemoryEntry,
} from '../../ports/agent-memory.js';
import { callerOf } from '../caller.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, toolFailure, toolSuccess } from '../tool-result.js';
import { iso } from './schemas.js';

export interface MemoryToolDeps {
  readonly memory: AgentMemory;
  readonly logger?: Logger | undefined;
  readonly metrics?: McpMetrics | undefined;
}

const DAY_S = 86_400;
const MAX_TTL_S = MEMORY_LIMITS.maxTtlMs / 1000;
const DEFAULT_LIST_LIMIT = 20;

const keyText = `1-${MEMORY_LIMITS.keyMaxChars} characters of ${MEMORY_KEY_CHARSET}`;
const keyInput = z
  .string()
  .min(1)
  .max(MEMORY_LIMITS.keyMaxChars)
  .regex(MEMORY_KEY_PATTERN, `use ${keyText}`)
  .describe(`Key of the memory, ${keyText}. Use '/' or ':' to group, e.g. 'watchlist/btc' or 'plan:2026-01-05'.`);

const EntryOutput = z.object({
  key: z.string().describe('Key of the memory.'),
  value: z.json().describe('The stored JSON value, as remembered.'),
  createdAt: z.number().describe('First write of this key, ms epoch.'),
  updatedAt: z.number().describe('Latest write, ms epoch.'),
  expiresAt: z.number().describe('When it is forgotten by itself, ms epoch.'),
  expiresAtIso: z.string().describe('expiresAt as ISO-8601 UTC.'),
});

const RememberOutput = {
  key: z.string().describe('Key written.'),
  createdAt: z.number().describe('First write of this key, ms epoch; earlier than updatedAt when an existing value was replaced.'),
  updatedAt: z.number().describe('This write, ms epoch.'),
  expiresAt: z.number().describe('When it is forgotten by itself, ms epoch.'),
  expiresAtIso: z.string().describe('expiresAt as ISO-8601 UTC.'),
};

const RecallOutput = {
  entries: z
    .array(EntryOutput)
    .describe('With key: the entry, or none when it is absent or expired. Without key: live entries in key order.'),
  count: z.number().int().describe('Entries in this answer.'),
  nextCursor: z.string().nullable().describe('Pass as cursor (with the same prefix) for the next page; null when there is no more.'),
};

const ForgetOutput = {
  key: z.string().describe('Key forgotten.'),
  forgotten: z.boolean().describe('true when a live entry was removed; false when there was none (absent or already expired).'),
};

/**
 * Registers `remember`, `recall` and `forget`: a small key/value memory per caller. The namespace is
 * the caller's token principal (stdio: the local user), never an argument, so one agent can neither
 * read nor overwrite another's memory.
 */
export function registerMemoryTools(server: McpServer, deps: MemoryToolDeps): void {
  registerRememberTool(server, deps);
  registerRecallTool(server, deps);
  registerForgetTool(server, deps);
}

/** Registers `remember`: stores a JSON value under a key of the caller's memory. */
export function registerRememberTool(server: McpServer, deps: MemoryToolDeps): void {
  server.registerTool(
    'remember',
    {
      title: 'Remember',
      description:
        'Stores a JSON value under a key in your own memory, to find it again in a later call or session with recall. ' +
        'Writing an existing key replaces its value and restarts its TTL. ' +
        `Entries expire after ttlSeconds (default ${MEMORY_LIMITS.defaultTtlMs / 86_400_000} days, at most ${MAX_TTL_S / DAY_S} days). ` +
        `Limits: value at most ${MEMORY_LIMITS.valueMaxBytes} bytes as JSON, ${MEMORY_LIMITS.entriesPerNamespace} keys in all. ` +
        'Keep values compact (a few dozen fields); for a larger structure store it as one JSON string. ' +
        'Only you (your token) can read what you store.',
      inputSchema: {
        key: keyInput,
        value: z.json().describe('Any JSON value: object, array, string, number, boolean or null.'),
        ttlSeconds: z
          .number()
          .int()
          .min(1)
          .max(MAX_TTL_S)
          .optional()
          .describe(`Seconds until it is forgotten by itself (1-${MAX_TTL_S}); default ${MEMORY_LIMITS.defaultTtlMs / 1000} (7 days).`),
      },
      outputSchema: RememberOutput,
      // replacing a key's value loses the old one: not additive-only, hence destructive
      annotations: { title: 'Remember', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    (args, extra) =>
      runTool('remember', deps, () =>
        memoryCall('remember', async () => {
          const { principal } = callerOf(extra);
          const ttlMs = args.ttlSeconds === undefined ? undefined : args.ttlSeconds * 1000;
          const entry = await deps.memory.remember(principal, args.key, args.value as JsonValue, ttlMs);
          const { key, createdAt, updatedAt, expiresAt } = entry;
          return toolSuccess({ key, createdAt, updatedAt, expiresAt, expiresAtIso: iso(expiresAt) });
        }),
      ),
  );
}

/** Registers `recall`: one key of the caller's memory, or a page of its keys by prefix. */
export function registerRecallTool(server: McpServer, deps: MemoryToolDeps): void {
  server.registerTool(
    'recall',
    {
      title: 'Recall',
      description:
        'Reads your own memory (what you stored with remember). With key: that entry, or entries: [] when it is absent or expired. ' +
        "Without key: your entries in key order, only those starting with prefix when given (e.g. 'watchlist/'), " +
        `a page at a time (limit, at most ${MEMORY_LIMITS.listMaxEntries}; a page also stops at about ${MEMORY_LIMITS.listMaxBytes / 1024} KiB of values): ` +
        'pass nextCursor back as cursor, with the same prefix, for the next page. Call it without arguments to see what you remember.',
      inputSchema: {
        key: keyInput.optional().describe(`Key to read (${keyText}). Omit to list entries instead.`),
        prefix: z
          .string()
          .max(MEMORY_LIMITS.keyMaxChars)
          .regex(/^[A-Za-z0-9_.:/-]*$/, `use up to ${MEMORY_LIMITS.keyMaxChars} characters of ${MEMORY_KEY_CHARSET}`)
          .optional()
          .describe('List only keys starting with this; omit or empty for every key. Not with key.'),
        cursor: z
          .string()
          .min(1)
          .max(1024)
          .optional()
          .describe("nextCursor of this tool's previous listing, unchanged, with the same prefix. Omit for the first page. Not with key."),
        limit: z
          .number()
          .int()
          .min(1)
          .max(MEMORY_LIMITS.listMaxEntries)
          .default(DEFAULT_LIST_LIMIT)
          .describe(`Entries per page when listing (1-${MEMORY_LIMITS.listMaxEntries}, default ${DEFAULT_LIST_LIMIT}).`),
      },
      outputSchema: RecallOutput,
      annotations: readOnlyAnnotations('Recall'),
    },
    (args, extra) =>
      runTool('recall', deps, () =>
        memoryCall('recall', async () => {
          const { principal } = callerOf(extra);
          if (args.key !== undefined) {
            if (args.prefix !== undefined || args.cursor !== undefined) {
              throw new ValidationError('Pass either key (read one entry) or prefix/cursor (list entries), not both.');
            }
            const entry = await deps.memory.recall(principal, args.key);
            const entries = entry ? [entryOut(entry)] : [];
            return toolSuccess({ entries, count: entries.length, nextCursor: null });
          }
          const page = await deps.memory.list(principal, { prefix: args.prefix, cursor: args.cursor, limit: args.limit });
          const entries = page.entries.map(entryOut);
          return toolSuccess({ entries, count: entries.length, nextCursor: page.nextCursor });
        }),
      ),
  );
}

/** Registers `forget`: removes one key of the caller's memory. */
export function registerForgetTool(server: McpServer, deps: MemoryToolDeps): void {
  server.registerTool(
    'forget',
    {
      title: 'Forget',
      description:
        'Removes one key from your own memory for good. forgotten is false when there was nothing to remove (absent or already expired). ' +
        'Use recall without key to see which keys you hold.',
      inputSchema: { key: keyInput },
      outputSchema: ForgetOutput,
      annotations: { title: 'Forget', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    (args, extra) =>
      runTool('forget', deps, () =>
        memoryCall('forget', async () => {
          const forgotten = await deps.memory.forget(callerOf(extra).principal, args.key);
          return toolSuccess({ key: args.key, forgotten });
        }),
      ),
  );
}

function entryOut(entry: MemoryEntry): z.infer<typeof EntryOutput> {
  return { ...entry, value: entry.value as z.infer<typeof EntryOutput>['value'], expiresAtIso: iso(entry.expiresAt) };
}

/** The memory's own failures as recovery hints; anything else goes on to runTool. */
async function memoryCall(tool: 'remember' | 'recall' | 'forget', body: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof MemoryFullError) {
      return toolFailure(
        `Memory full: you hold ${error.limit} entries, the most kept per caller, so a new key is refused (existing keys can still be updated). ` +
          'Call recall without key to list your keys, forget those you no longer need, then retry.',
      );
    }
    if (error instanceof MemoryUnavailableError) {
      const retry =
        tool === 'recall'
          ? 'Retry in a few seconds.'
          : `The ${tool} may or may not have been applied; repeating the same call is safe, so retry it in a few seconds.`;
      return toolFailure(`Agent memory is unavailable right now (its store did not answer). ${retry}`);
    }
    throw error;
  }
}
