/** Backfill checkpoints on disk and progress output. */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CheckpointError, CheckpointStore, checkpointFileName, type Checkpoint } from '../../local/backfill/checkpoint.js';
import { formatBar, formatDuration, formatPlain, ProgressDisplay, type JobProgress } from '../../local/backfill/progress.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function store(): Promise<CheckpointStore> {
  const dir = await mkdtemp(join(tmpdir(), 'qicore-checkpoints-'));
  dirs.push(dir);
  return new CheckpointStore(join(dir, 'state'));
}

const key = { exchange: 'binance', symbol: 'BTC/USDT', kind: 'candles', timeframe: '1m' } as const;
const checkpoint: Checkpoint = {
  version: 1,
  exchange: 'binance',
  symbol: 'BTC/USDT',
  kind: 'candles',
  timeframe: '1m',
  target: 'PGlite in /tmp/x',
  since: 1_700_000_000_000,
  coveredTo: 1_700_060_000_000,
  cursor: 1_700_060_000_000,
  pages: 1,
  rows: 1000,
  updatedAt: 1_700_100_000_000,
};

describe('backfill checkpoints', () => {
  it('are one file per job, replaced whole', async () => {
    const s = await store();
    expect(await s.load(key)).toBeUndefined();
    await s.save(checkpoint);
    await s.save({ ...checkpoint, pages: 2, rows: 2000 });
    expect(await s.load(key)).toEqual({ ...checkpoint, pages: 2, rows: 2000 });
    expect(await readdir(s.dir)).toEqual(['binance_BTC-USDT_candles_1m.json']); // no temporary file left
    expect(await s.load({ ...key, timeframe: '5m' })).toBeUndefined();
    expect(checkpointFileName({ exchange: 'okx', symbol: 'BTC/USDT:USDT', kind: 'trades' })).toBe('okx_BTC-USDT_USDT_trades.json');
  });

  it('that cannot be used fail with a message saying what to do', async () => {
    const s = await store();
    await s.save(checkpoint);
    await writeFile(s.path(key), '{"version": 1, "exchange": "binance"');
    await expect(s.load(key)).rejects.toThrow(CheckpointError);
    await expect(s.load(key)).rejects.toThrow(/not JSON; delete it/);
    await writeFile(s.path(key), JSON.stringify({ ...checkpoint, cursor: 'x' }));
    await expect(s.load(key)).rejects.toThrow(/not valid .*cursor/);
    await writeFile(s.path(key), JSON.stringify({ ...checkpoint, symbol: 'ETH/USDT' }));
    await expect(s.load(key)).rejects.toThrow(/belongs to another job/);
  });
});

const progress = (over: Partial<JobProgress> = {}): JobProgress => ({
  label: 'binance BTC/USDT candles 1m',
  index: 1,
  jobs: 2,
  pages: 12,
  rows: 12_000,
  fraction: 0.5,
  startedAt: 0,
  startFraction: 0.25,
  rowsThisRun: 3_000,
  ...over,
});

describe('backfill progress', () => {
  it('shows pages, rows, share of the range, rows/s and ETA', () => {
    // 10 s for a quarter of the range at 300 rows/s: another 20 s for the half left
    expect(formatBar(progress(), 10_000)).toBe(
      '[1/2] binance BTC/USDT candles 1m [############------------] 50.0% | 12 pages | 12,000 rows | 300 rows/s | ETA 0:20',
    );
    expect(formatPlain(progress(), 10_000)).toBe(
      '[1/2] binance BTC/USDT candles 1m: 50.0% of the range, 12 pages, 12,000 rows, 300 rows/s, ETA 0:20',
    );
    expect(formatPlain(progress({ fraction: 0.25 }), 10_000)).toMatch(/ETA -$/); // nothing done yet this run
    expect(formatDuration(3_725_000)).toBe('1:02:05');
  });

  it('redraws a bar in place on a terminal and writes throttled lines elsewhere', () => {
    let now = 0;
    const tty: string[] = [];
    const onTty = new ProgressDisplay({ write: (s: string) => tty.push(s), isTTY: true, columns: 200 }, () => now);
    onTty.page(progress());
    onTty.page(progress({ pages: 13 }));
    onTty.jobDone(progress({ fraction: 1 }), 'complete');
    expect(tty[0]).toMatch(/^\r\[1\/2\] .*12 pages/);
    expect(tty[1]).toMatch(/^\r\[1\/2\] .*13 pages/);
    expect(tty.at(-1)).toBe('[1/2] binance BTC/USDT candles 1m: complete\n');
    expect(tty.at(-2)).toMatch(/^\r +\r$/); // the bar is cleared before the line

    const file: string[] = [];
    const onFile = new ProgressDisplay({ write: (s: string) => file.push(s) }, () => now, 5_000);
    onFile.page(progress());
    now = 1_000;
    onFile.page(progress({ pages: 13 })); // within 5 s of the last line: not written
    now = 6_000;
    onFile.page(progress({ pages: 14 }));
    onFile.note('a note');
    expect(file).toHaveLength(3);
    expect(file[0]).toMatch(/^\[1\/2\] binance BTC\/USDT candles 1m: 50.0% of the range, 12 pages, .*\n$/);
    expect(file[1]).toMatch(/, 14 pages, /);
    expect(file[2]).toBe('a note\n');
    expect(file.every((l) => !l.includes('\r'))).toBe(true);
  });
});
