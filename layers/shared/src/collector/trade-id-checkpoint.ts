import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../observability/logger.js';

/**
 * The file holding the last trade id per market a clean shutdown left durable: next to the journal
 * directory, not in it (the journal removes its directory once it is empty).
 */
export function tradeIdFileFor(journalDir: string): string {
  return join(dirname(journalDir), `${basename(journalDir)}.last-trade-ids.json`);
}

const FileSchema = z.object({ version: z.literal(1), ids: z.record(z.string(), z.number().int().nonnegative()) });

/**
 * The last trade ids a previous run published or journaled (key `exchange|symbol`), or an empty map
 * when there is none or it cannot be read (logged): the start-up fill then covers only its own run.
 */
export async function loadTradeIds(file: string, logger: Logger): Promise<Map<string, number>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') logger.warn('last trade ids could not be read; not resuming', { error });
    return new Map();
  }
  try {
    return new Map(Object.entries(FileSchema.parse(JSON.parse(text)).ids));
  } catch (error) {
    logger.warn('last trade ids file is not valid; not resuming', { file, error });
    return new Map();
  }
}

/** Writes the ids atomically (a crash leaves the old file or the new one, never half of one). */
export async function saveTradeIds(file: string, ids: ReadonlyMap<string, number>): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify({ version: 1, ids: Object.fromEntries(ids) }), { flush: true });
  await rename(tmp, file);
}
