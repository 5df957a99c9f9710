import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DiskJournal,
  JournalCorruptError,
  JournalFullError,
  type DiskJournalOptions,
  type JournalCounter,
} from '../../layers/shared/src/collector/disk-journal.js';
import { journalDirFor } from '../../layers/shared/src/collector/collector-runtime.js';
import { CollectorEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { ConfigError, type StreamEvent } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { createLogger, silentLogger, type Logger } from '../../layers/shared/src/observability/logger.js';
import { trade } from '../fixtures/events.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qicore-journal-'));
  dirs.push(dir);
  return dir;
}

function trades(from: number, n: number, symbol = 'BTC/USDT'): StreamEvent[] {
  return Array.from({ length: n }, (_, i) => trade({ id: String(from + i), symbol }));
}

/** A logger that keeps what it is given. */
function recordingLogger(): { logger: Logger; lines: { level: string; msg: string; error?: { name: string } }[] } {
  const lines: { level: string; msg: string; error?: { name: string } }[] = [];
  return { logger: createLogger({ level: 'debug', sink: (l) => lines.push(JSON.parse(l) as (typeof lines)[number]) }), lines };
}

async function open(dir: string, extra: Partial<DiskJournalOptions> = {}) {
  const counters = new Counters<JournalCounter>();
  const journal = await DiskJournal.open({ dir, logger: silentLogger, counters, ...extra });
  return { journal, counters };
}

/** Reads and commits everything; the ids in order. */
function drain(journal: DiskJournal, maxEvents = 1_000): string[] {
  const ids: string[] = [];
  for (let read = journal.read(maxEvents); read; read = journal.read(maxEvents)) {
    for (const e of read.events) ids.push(e.type === 'trade' ? e.id : e.type);
    journal.commit(read.end);
  }
  return ids;
}

const segmentFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.journal')).sort();

describe('DiskJournal', () => {
  it('reads back what was appended, in order, in batches of whole entries, and is empty after commit', async () => {
    const dir = tempDir();
    const { journal, counters } = await open(dir);
    journal.append(trades(1, 3));
    journal.append(trades(4, 3));
    journal.append(trades(7, 3));
    expect(journal.isEmpty).toBe(false);
    const first = journal.read(5)!;
    // whole entries only: 3, then the next entry of 3 would pass 5
    expect(first.events.map((e) => (e as { id: string }).id)).toEqual(['1', '2', '3']);
    // not committed: read again from the same place
    expect(journal.read(5)!.events).toHaveLength(3);
    journal.commit(first.end);
    expect(drain(journal)).toEqual(['4', '5', '6', '7', '8', '9']);
    expect(journal.isEmpty).toBe(true);
    expect(journal.read(10)).toBeNull();
    expect(counters.get('journal_bytes')).toBeGreaterThan(0);
    journal.close();
  });

  it('closes segments at their size, reads across them in order, and deletes each once committed', async () => {
    const dir = tempDir();
    const { journal } = await open(dir, { segmentBytes: 4_096 });
    for (let i = 0; i < 40; i++) journal.append(trades(i * 10 + 1, 10));
    const files = segmentFiles(dir);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(4_096);
    expect(journal.bytes).toBe(files.reduce((n, f) => n + statSync(join(dir, f)).size, 0));

    // half read: the segments before the cursor are gone, the rest stay
    const ids: string[] = [];
    while (ids.length < 200) {
      const read = journal.read(10)!;
      ids.push(...read.events.map((e) => (e as { id: string }).id));
      journal.commit(read.end);
    }
    expect(segmentFiles(dir).length).toBeLessThan(files.length);
    ids.push(...drain(journal, 37));
    expect(ids).toEqual(Array.from({ length: 400 }, (_, i) => String(i + 1)));
    // the segment being written stays (empty of unread entries); every closed one is gone
    expect(segmentFiles(dir).length).toBeLessThanOrEqual(1);
    journal.close();
  });

  it('keeps order when appends continue while it is read (the writer moves on to a new segment)', async () => {
    const dir = tempDir();
    const { journal } = await open(dir);
    const ids: string[] = [];
    let next = 1;
    for (let round = 0; round < 20; round++) {
      journal.append(trades(next, 7));
      next += 7;
      const read = journal.read(5);
      if (read) {
        ids.push(...read.events.map((e) => (e as { id: string }).id));
        journal.commit(read.end);
      }
    }
    ids.push(...drain(journal));
    expect(ids).toEqual(Array.from({ length: next - 1 }, (_, i) => String(i + 1)));
    journal.close();
  });

  it('a journal left by an earlier run is read first, then what the new run appends', async () => {
    const dir = tempDir();
    const first = await open(dir);
    first.journal.append(trades(1, 5));
    first.journal.close();
    const second = await open(dir);
    expect(second.journal.isEmpty).toBe(false);
    second.journal.append(trades(6, 5));
    expect(drain(second.journal)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
    second.journal.close();
  });

  it('skips a torn last entry (a crash mid-write) with a named error, counted, and replays the rest', async () => {
    const dir = tempDir();
    const first = await open(dir);
    first.journal.append(trades(1, 3));
    first.journal.append(trades(4, 3));
    first.journal.close();
    const [file] = segmentFiles(dir);
    const path = join(dir, file!);
    // the last entry loses its tail, as when the process dies inside write()
    truncateSync(path, statSync(path).size - 20);

    const { logger, lines } = recordingLogger();
    const counters = new Counters<JournalCounter>();
    const journal = await DiskJournal.open({ dir, logger, counters });
    journal.append(trades(7, 2));
    expect(drain(journal)).toEqual(['1', '2', '3', '7', '8']);
    expect(counters.get('journal_corrupt_entries')).toBe(1);
    const logged = lines.find((l) => l.msg.includes('cannot be replayed'));
    expect(logged?.error?.name).toBe(JournalCorruptError.name);
    journal.close();
  });

  it('skips an entry whose checksum or content is wrong and keeps the entries around it', async () => {
    const dir = tempDir();
    const first = await open(dir);
    first.journal.append(trades(1, 2));
    first.journal.append(trades(3, 2));
    first.journal.append(trades(5, 2));
    first.journal.close();
    const path = join(dir, segmentFiles(dir)[0]!);
    const lines = readFileSync(path, 'latin1').split('\n');
    // a flipped digit inside the second entry's price: still JSON, so only the checksum notices
    lines[1] = lines[1]!.replace('"price":100', '"price":900');
    writeFileSync(path, lines.join('\n'), 'latin1');
    // and a line of garbage at the end, newline-terminated
    appendFileSync(path, 'not an entry at all\n');

    const { journal, counters } = await open(dir);
    expect(drain(journal, 100)).toEqual(['1', '2', '5', '6']);
    expect(counters.get('journal_corrupt_entries')).toBe(2);
    journal.close();
  });

  it('refuses appends past its cap on disk bytes with JournalFullError, and takes them again once read', async () => {
    const dir = tempDir();
    const { journal } = await open(dir, { maxBytes: 3_000, segmentBytes: 1_024 });
    let appended = 0;
    let refused: unknown;
    for (let i = 0; i < 100 && !refused; i++) {
      try {
        journal.append(trades(i * 2 + 1, 2));
        appended += 2;
      } catch (error) {
        refused = error;
      }
    }
    expect(refused).toBeInstanceOf(JournalFullError);
    expect((refused as Error).message).toMatch(/cap of 3000/);
    expect(journal.bytes).toBeLessThanOrEqual(3_000);
    expect(appended).toBeGreaterThan(0);
    // nothing half-written: everything that was accepted reads back
    const ids = drain(journal);
    expect(ids).toEqual(Array.from({ length: appended }, (_, i) => String(i + 1)));
    // room again once published segments are deleted
    expect(() => journal.append(trades(1_000, 2))).not.toThrow();
    journal.close();
  });

  it('on close deletes what was published, and its directory once empty; a later append recreates it', async () => {
    const dir = join(tempDir(), 'kinesis-stream');
    const { journal } = await open(dir);
    journal.append(trades(1, 2));
    expect(drain(journal)).toEqual(['1', '2']);
    journal.close();
    expect(() => readdirSync(dir)).toThrow(/ENOENT/);
    journal.append(trades(3, 1));
    journal.close();
    const again = await open(dir);
    expect(drain(again.journal)).toEqual(['3']);
    again.journal.close();
  });

  it('ignores files that are not segments, and fsyncs on close (the data is on disk, no open segment)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'README'), 'not a segment');
    const { journal } = await open(dir);
    expect(journal.isEmpty).toBe(true);
    journal.append(trades(1, 1));
    journal.close();
    const [file] = segmentFiles(dir);
    expect(readFileSync(join(dir, file!), 'utf8')).toMatch(/^[0-9a-f]{8} \{"v":1,"events":\[.*\]\}\n$/);
    // an append after close opens a new segment
    journal.append(trades(2, 1));
    expect(segmentFiles(dir)).toHaveLength(2);
    journal.close();
  });
});

describe('collector environment: journal, memory and drain settings', () => {
  const base = { MARKETS: 'binance:BTC/USDT', STREAM_NAME: 'market-events' };

  it('has documented defaults, and each stream gets its own journal directory under COLLECTOR_JOURNAL_DIR', () => {
    const config = parseEnv(CollectorEnvSchema, base);
    expect(config).toMatchObject({
      COLLECTOR_JOURNAL_DIR: './.data/journal',
      COLLECTOR_JOURNAL_MAX_BYTES: 2 * 1024 ** 3,
      COLLECTOR_JOURNAL_SEGMENT_BYTES: 8 * 1024 ** 2,
      COLLECTOR_MAX_BUFFERED_EVENTS: 100_000,
      COLLECTOR_SPILL_AFTER_MS: 5_000,
      COLLECTOR_DRAIN_TIMEOUT_MS: 20_000,
    });
    expect(journalDirFor(config)).toBe(join('.data', 'journal', 'kinesis-market-events'));
    const kafka = parseEnv(CollectorEnvSchema, { ...base, STREAM_KIND: 'kafka', KAFKA_BROKERS: 'b:9092', COLLECTOR_JOURNAL_DIR: '/var/lib/qicore/journal' });
    expect(journalDirFor(kafka)).toBe('/var/lib/qicore/journal/kafka-market-events');
  });

  it('names the variable and the limit for bad values', () => {
    expect(() => parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_DRAIN_TIMEOUT_MS: '200000' })).toThrow(/COLLECTOR_DRAIN_TIMEOUT_MS.*120 s/);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_JOURNAL_MAX_BYTES: '1000' })).toThrow(/COLLECTOR_JOURNAL_MAX_BYTES.*1 MiB/);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_JOURNAL_SEGMENT_BYTES: '1024' })).toThrow(/COLLECTOR_JOURNAL_SEGMENT_BYTES.*64 KiB/);
    expect(() =>
      parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_JOURNAL_MAX_BYTES: String(2 * 1024 ** 2), COLLECTOR_JOURNAL_SEGMENT_BYTES: String(4 * 1024 ** 2) }),
    ).toThrow(/COLLECTOR_JOURNAL_SEGMENT_BYTES must not exceed COLLECTOR_JOURNAL_MAX_BYTES/);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_MAX_BUFFERED_EVENTS: 'lots' })).toThrow(ConfigError);
    expect(() => parseEnv(CollectorEnvSchema, { ...base, COLLECTOR_JOURNAL_DIR: '' })).toThrow(/COLLECTOR_JOURNAL_DIR/);
  });
});
