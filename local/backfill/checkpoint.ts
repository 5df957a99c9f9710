/**
 * Backfill checkpoints: one small JSON file per job (exchange, symbol, kind, timeframe), written
 * after each page is stored, so a run killed at any point resumes after the last stored page. A
 * file is replaced atomically (write to a temporary file, then rename), so a kill mid-write leaves
 * the previous checkpoint, never half of one.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { PlatformError } from '../../layers/shared/src/domain/errors.js';
import { formatIssues } from '../../layers/shared/src/domain/index.js';

/** A checkpoint file that exists but cannot be used. */
export class CheckpointError extends PlatformError {}

export type BackfillKind = 'candles' | 'trades';

/** Which job a checkpoint belongs to. */
export interface JobKey {
  readonly exchange: string;
  readonly symbol: string;
  readonly kind: BackfillKind;
  /** candles only */
  readonly timeframe?: string;
}

const CheckpointSchema = z.object({
  version: z.literal(1),
  exchange: z.string(),
  symbol: z.string(),
  kind: z.enum(['candles', 'trades']),
  timeframe: z.string().nullable(),
  /** the stores written to: a checkpoint of another database does not count */
  target: z.string(),
  /** start of the stored range (ms epoch) */
  since: z.number().int(),
  /** every row with since <= ts < coveredTo is stored */
  coveredTo: z.number().int(),
  /** where the next page starts: candles an open time, trades a trade id */
  cursor: z.number().int(),
  pages: z.number().int().nonnegative(),
  rows: z.number().int().nonnegative(),
  updatedAt: z.number().int(),
});

export type Checkpoint = z.infer<typeof CheckpointSchema>;

/** File name of a job's checkpoint: `binance_BTC-USDT_candles_1m.json`. */
export function checkpointFileName(key: JobKey): string {
  const safe = (s: string) => s.replace(/\//g, '-').replace(/[^A-Za-z0-9._-]/g, '_');
  return `${[key.exchange, key.symbol, key.kind, ...(key.timeframe ? [key.timeframe] : [])].map(safe).join('_')}.json`;
}

/** Checkpoint files in one directory. */
export class CheckpointStore {
  constructor(readonly dir: string) {}

  path(key: JobKey): string {
    return join(this.dir, checkpointFileName(key));
  }

  /** The job's checkpoint, undefined when there is none; CheckpointError when the file is unreadable. */
  async load(key: JobKey): Promise<Checkpoint | undefined> {
    const path = this.path(key);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CheckpointError(`cannot read checkpoint ${path}: ${(error as Error).message}`, { cause: error });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new CheckpointError(`checkpoint ${path} is not JSON; delete it to start the job over`, { cause: error });
    }
    const parsed = CheckpointSchema.safeParse(json);
    if (!parsed.success) throw new CheckpointError(`checkpoint ${path} is not valid (${formatIssues(parsed.error.issues)}); delete it to start the job over`);
    const c = parsed.data;
    if (c.exchange !== key.exchange || c.symbol !== key.symbol || c.kind !== key.kind || (c.timeframe ?? undefined) !== key.timeframe) {
      throw new CheckpointError(`checkpoint ${path} belongs to another job (${c.exchange} ${c.symbol} ${c.kind}); delete it`);
    }
    return c;
  }

  /** Replaces the job's checkpoint atomically. */
  async save(checkpoint: Checkpoint): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const key: JobKey = {
      exchange: checkpoint.exchange,
      symbol: checkpoint.symbol,
      kind: checkpoint.kind,
      ...(checkpoint.timeframe !== null ? { timeframe: checkpoint.timeframe } : {}),
    };
    const path = this.path(key);
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(checkpoint, null, 2)}\n`);
    await rename(tmp, path);
  }
}
