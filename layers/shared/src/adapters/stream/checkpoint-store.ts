import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PlatformError } from '../../domain/errors.js';

/** A checkpoint file that exists but cannot be read back. */
export class CheckpointStoreError extends PlatformError {}

/**
 * Where a stream consumer keeps its position: the last handled sequence number per shard.
 * `scope` names one consumer of one stream (e.g. `market-events/timescale-writer`), so that several
 * consumers of the same stream keep positions of their own, as Lambda event source mappings do.
 */
export interface CheckpointStore {
  /** The saved sequence number of every shard of `scope` (empty when there is none). */
  load(scope: string): Promise<ReadonlyMap<string, string>>;
  /** Saves `sequenceNumber` as the last handled record of `shardId`; resolves once it is durable. */
  save(scope: string, shardId: string, sequenceNumber: string): Promise<void>;
}

/** Checkpoints held in memory: for tests and for consumers that may start over after a restart. */
export class InMemoryCheckpointStore implements CheckpointStore {
  private readonly scopes = new Map<string, Map<string, string>>();

  async load(scope: string): Promise<ReadonlyMap<string, string>> {
    return new Map(this.scopes.get(scope));
  }

  async save(scope: string, shardId: string, sequenceNumber: string): Promise<void> {
    let shards = this.scopes.get(scope);
    if (!shards) this.scopes.set(scope, (shards = new Map()));
    shards.set(shardId, sequenceNumber);
  }
}

type CheckpointFile = Record<string, Record<string, string>>;

/**
 * Checkpoints in one JSON file in a data directory. Every save rewrites the file through a temporary
 * file and a rename, so a crash leaves either the old or the new checkpoints, never a torn file.
 */
export class JsonFileCheckpointStore implements CheckpointStore {
  readonly path: string;
  private data: CheckpointFile | null = null;
  // saves are chained: two renames racing could leave the older state on disk
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    fileName = 'stream-checkpoints.json',
  ) {
    this.path = join(dir, fileName);
  }

  async load(scope: string): Promise<ReadonlyMap<string, string>> {
    const data = await this.read();
    return new Map(Object.entries(data[scope] ?? {}));
  }

  save(scope: string, shardId: string, sequenceNumber: string): Promise<void> {
    const next = this.tail.then(async () => {
      const data = await this.read();
      data[scope] = { ...data[scope], [shardId]: sequenceNumber };
      await this.write(data);
    });
    // a failed save must not poison the ones after it; the caller still sees its own failure
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async read(): Promise<CheckpointFile> {
    if (this.data) return this.data;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return (this.data = {});
      throw new CheckpointStoreError(`cannot read checkpoints ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new CheckpointStoreError(`checkpoints ${this.path} are not JSON: ${(error as Error).message}`, { cause: error });
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new CheckpointStoreError(`checkpoints ${this.path} are not an object of scopes`);
    }
    return (this.data = parsed as CheckpointFile);
  }

  private async write(data: CheckpointFile): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const temp = `${this.path}.${randomUUID()}.tmp`;
    try {
      // flush: the rename must never publish a file whose bytes are not on disk yet
      await writeFile(temp, JSON.stringify(data, null, 2), { encoding: 'utf8', flush: true });
      await rename(temp, this.path);
    } catch (error) {
      await rm(temp, { force: true });
      throw new CheckpointStoreError(`cannot write checkpoints ${this.path}: ${(error as Error).message}`, { cause: error });
    }
  }
}
