/**
 * The collector's disk journal: where events go while the stream cannot take them, so that an
 * outage (or a SIGTERM during one) costs disk space instead of data or memory.
 *
 * Layout: a directory of append-only segment files `<16-digit seq>.journal`, written in order and
 * closed at a size. Each line is one entry: `<crc32 as 8 hex> <record>\n`, where the record is the
 * stream's own envelope (encodeEvents), so replay decodes and validates exactly as a consumer does.
 * A segment is deleted once every entry in it was published.
 *
 * Writes are synchronous: they go to the page cache in microseconds and must stay in order with the
 * in-memory queue; fsync (the slow part) runs on the thread pool at a cadence, and synchronously on
 * close. A torn last line (a crash mid-write) or a line whose checksum or content is wrong is
 * reported as JournalCorruptError, counted and skipped: it never stops the replay.
 *
 * On Fargate the directory is the task's ephemeral storage: it survives a restart of the container
 * within the task, not the task itself (a new task starts with an empty journal).
 */
import { closeSync, fstatSync, fsync, fsyncSync, mkdirSync, openSync, readFileSync, rmdirSync, unlinkSync, writeSync, close as closeFd } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { PlatformError, type StreamEvent } from '../domain/index.js';
import type { Logger } from '../observability/logger.js';
import { decodeStreamEvents, encodeEvents } from '../stream/event-codec.js';

export type JournalCounter = 'journal_bytes' | 'journal_corrupt_entries';

/** The journal would grow past its cap on disk bytes: the entry was not written. */
export class JournalFullError extends PlatformError {}

/** Writing an entry failed (disk error, no space left on the device): the entry is not in the journal. */
export class JournalWriteError extends PlatformError {}

/** An entry that cannot be replayed: torn by a crash mid-write, a wrong checksum, or content that does not decode. */
export class JournalCorruptError extends PlatformError {
  constructor(
    message: string,
    readonly segment: string,
    readonly offset: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface DiskJournalOptions {
  readonly dir: string;
  readonly logger: Logger;
  /** the batcher's counters do (journal_bytes, journal_corrupt_entries) */
  readonly counters: { add(name: JournalCounter, n?: number): void };
  /** a segment is closed once it holds this many bytes; @default 8 MiB */
  readonly segmentBytes?: number;
  /** bytes the journal may hold on disk; an append past it throws JournalFullError; @default 2 GiB */
  readonly maxBytes?: number;
  /** the segment being written is fsync'd this often while it changes; @default 1000 */
  readonly syncIntervalMs?: number;
}

/** A place in the journal: the byte offset in a segment. */
export interface JournalPosition {
  readonly segment: number;
  readonly offset: number;
}

/** Entries read from the head, not yet committed. */
export interface JournalRead {
  readonly events: readonly StreamEvent[];
  readonly entries: number;
  /** commit this once the events are published */
  readonly end: JournalPosition;
}

interface Segment {
  readonly seq: number;
  readonly path: string;
  size: number;
}

const SEGMENT_NAME = /^(\d{16})\.journal$/;
const NEWLINE = 0x0a;
const HEADER_BYTES = 9; // 8 hex digits of the CRC and a space

export const JOURNAL_DEFAULTS = {
  segmentBytes: 8 * 1024 * 1024,
  maxBytes: 2 * 1024 * 1024 * 1024,
  syncIntervalMs: 1_000,
} as const;

/** Append-only, segmented, checksummed journal of stream events; read back in order. */
export class DiskJournal {
  private readonly segments: Segment[];
  private nextSeq: number;
  private active: { readonly segment: Segment; readonly fd: number } | null = null;
  private dirty = false;
  private cursor: JournalPosition;
  /** the head segment's bytes, read once when replay reaches it */
  private loaded: { readonly seq: number; readonly data: Buffer } | null = null;
  private bytesOnDisk: number;
  private readonly timer: NodeJS.Timeout;
  private readonly segmentBytes: number;
  readonly maxBytes: number;

  private constructor(
    private readonly options: DiskJournalOptions,
    found: Segment[],
  ) {
    this.segmentBytes = options.segmentBytes ?? JOURNAL_DEFAULTS.segmentBytes;
    this.maxBytes = options.maxBytes ?? JOURNAL_DEFAULTS.maxBytes;
    this.segments = found;
    this.nextSeq = (found.at(-1)?.seq ?? 0) + 1;
    this.cursor = { segment: found[0]?.seq ?? this.nextSeq, offset: 0 };
    this.bytesOnDisk = found.reduce((n, s) => n + s.size, 0);
    this.timer = setInterval(() => void this.sync(), options.syncIntervalMs ?? JOURNAL_DEFAULTS.syncIntervalMs);
    this.timer.unref();
  }

  /** Opens (creating it if need be) the journal directory; segments left by an earlier run are kept, to be read first. */
  static async open(options: DiskJournalOptions): Promise<DiskJournal> {
    await mkdir(options.dir, { recursive: true });
    const found: Segment[] = [];
    for (const name of await readdir(options.dir)) {
      const match = SEGMENT_NAME.exec(name);
      if (!match) continue;
      const path = join(options.dir, name);
      found.push({ seq: Number(match[1]), path, size: (await stat(path)).size });
    }
    found.sort((a, b) => a.seq - b.seq);
    const journal = new DiskJournal(options, found);
    if (found.length > 0) {
      options.logger.info('journal left by an earlier run: it is replayed before anything new', {
        dir: options.dir,
        segments: found.length,
        bytes: journal.bytes,
      });
    }
    return journal;
  }

  get dir(): string {
    return this.options.dir;
  }

  /** Bytes of every segment on disk (read or not yet deleted included). */
  get bytes(): number {
    return this.bytesOnDisk;
  }

  /** Bytes not yet read and committed. */
  get unreadBytes(): number {
    let n = 0;
    for (const s of this.segments) {
      if (s.seq > this.cursor.segment) n += s.size;
      else if (s.seq === this.cursor.segment) n += Math.max(0, s.size - this.cursor.offset);
    }
    return n;
  }

  get isEmpty(): boolean {
    return this.unreadBytes === 0;
  }

  /**
   * Appends the events as one entry, after every entry before it. Returns the position after it.
   * Throws JournalFullError past the cap and JournalWriteError when the disk fails (nothing is
   * then in the journal, but a torn line may be, which replay skips).
   */
  append(events: readonly StreamEvent[]): JournalPosition {
    const body = encodeEvents(events);
    const line = Buffer.allocUnsafe(HEADER_BYTES + body.byteLength + 1);
    line.write(crc32(body).toString(16).padStart(8, '0'), 0, 'latin1');
    line[8] = 0x20;
    line.set(body, HEADER_BYTES);
    line[line.length - 1] = NEWLINE;
    if (this.bytesOnDisk + line.length > this.maxBytes) {
      throw new JournalFullError(
        `journal ${this.options.dir} holds ${this.bytesOnDisk} bytes of its cap of ${this.maxBytes}: ${events.length} events refused`,
      );
    }
    if (this.active && this.active.segment.size > 0 && this.active.segment.size + line.length > this.segmentBytes) this.roll();
    const { segment, fd } = this.active ?? this.create();
    let written = 0;
    try {
      while (written < line.length) written += writeSync(fd, line, written, line.length - written);
    } catch (error) {
      // what did land is a torn line at the segment's end; a fresh segment keeps it there
      segment.size += written;
      this.bytesOnDisk += written;
      this.roll();
      throw new JournalWriteError(`journal ${this.options.dir}: writing ${events.length} events failed: ${describe(error)}`, { cause: error });
    }
    segment.size += line.length;
    this.bytesOnDisk += line.length;
    this.dirty = true;
    this.options.counters.add('journal_bytes', line.length);
    return { segment: segment.seq, offset: segment.size };
  }

  /**
   * Reads whole entries from the head, up to `maxEvents` events (at least one entry), without
   * consuming them: commit `end` once they are published. Corrupt entries and exhausted segments
   * at the head are skipped (and counted) as they are met. Null when nothing is left.
   */
  read(maxEvents: number): JournalRead | null {
    const events: StreamEvent[] = [];
    let entries = 0;
    let pos = this.cursor;
    for (;;) {
      const segment = this.segments.find((s) => s.seq === pos.segment) ?? this.segments.find((s) => s.seq > pos.segment);
      if (!segment) break;
      if (segment.seq !== pos.segment) pos = { segment: segment.seq, offset: 0 };
      if (pos.offset >= segment.size) {
        if (this.active?.segment === segment) break; // caught up with the writer
        const next = this.segments.find((s) => s.seq > segment.seq);
        if (!next) break;
        pos = { segment: next.seq, offset: 0 };
        if (entries === 0) this.commit(pos);
        continue;
      }
      if (this.active?.segment === segment) {
        if (entries > 0) break; // enough for now: the writer keeps its segment
        // the writer moves on to a new segment, so the one read is complete and stays as read
        this.roll();
      }
      const data = this.load(segment);
      const end = data.indexOf(NEWLINE, pos.offset);
      const lineEnd = end === -1 ? data.length : end;
      const decoded = this.decode(segment, data, pos.offset, lineEnd, end === -1);
      if (decoded instanceof JournalCorruptError) {
        if (entries > 0) break; // met again at the head of the next read, and skipped there
        this.options.counters.add('journal_corrupt_entries');
        this.options.logger.error('journal entry cannot be replayed; skipped', { error: decoded, segment: decoded.segment, offset: decoded.offset });
        pos = { segment: segment.seq, offset: end === -1 ? data.length : end + 1 };
        this.commit(pos);
        continue;
      }
      if (entries > 0 && events.length + decoded.length > maxEvents) break;
      for (const e of decoded) events.push(e);
      entries += 1;
      pos = { segment: segment.seq, offset: lineEnd + 1 };
      if (events.length >= maxEvents) break;
    }
    return entries === 0 ? null : { events, entries, end: pos };
  }

  /** Marks everything before `position` as published; deletes the segments that are done. */
  commit(position: JournalPosition): void {
    this.cursor = position;
    for (;;) {
      const head = this.segments[0];
      if (!head || head === this.active?.segment) break;
      const done = head.seq < position.segment || (head.seq === position.segment && position.offset >= head.size);
      if (!done) break;
      this.segments.shift();
      this.bytesOnDisk -= head.size;
      if (this.loaded?.seq === head.seq) this.loaded = null;
      try {
        unlinkSync(head.path);
      } catch (error) {
        this.options.logger.warn('journal segment could not be deleted', { segment: head.path, error });
      }
    }
  }

  /** fsyncs the segment being written, if it changed since the last sync. */
  async sync(): Promise<void> {
    if (!this.active || !this.dirty) return;
    const { fd } = this.active;
    this.dirty = false;
    await new Promise<void>((resolve) =>
      fsync(fd, (error) => {
        // EBADF: the segment was closed (and synced) meanwhile
        if (error && error.code !== 'EBADF') this.options.logger.warn('journal fsync failed', { error });
        resolve();
      }),
    );
  }

  /**
   * Closes the segment being written after an fsync; a later append opens a new one. Segments
   * already published are deleted, and the directory too when nothing is left in it.
   */
  close(): void {
    clearInterval(this.timer);
    if (this.active) {
      const { fd } = this.active;
      this.active = null;
      this.dirty = false;
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    this.commit(this.cursor);
    if (this.segments.length === 0) {
      try {
        rmdirSync(this.options.dir);
      } catch {
        // other files in it, or already gone: it stays
      }
    }
    syncDir(this.options.dir);
  }

  private create(): { segment: Segment; fd: number } {
    const seq = this.nextSeq++;
    const path = join(this.options.dir, `${String(seq).padStart(16, '0')}.journal`);
    let fd: number;
    try {
      // close() removes an empty directory
      mkdirSync(this.options.dir, { recursive: true });
      // wx: a segment is never written by two journals
      fd = openSync(path, 'wx');
    } catch (error) {
      throw new JournalWriteError(`journal ${this.options.dir}: cannot create ${path}: ${describe(error)}`, { cause: error });
    }
    const segment: Segment = { seq, path, size: 0 };
    this.segments.push(segment);
    this.active = { segment, fd };
    syncDir(this.options.dir);
    return this.active;
  }

  /** Closes the segment being written (fsync'd on the thread pool); the next append starts a new one. */
  private roll(): void {
    if (!this.active) return;
    const { fd, segment } = this.active;
    this.active = null;
    this.dirty = false;
    try {
      // the size on disk, in case a failed write left less (or more) than counted
      const size = fstatSync(fd).size;
      this.bytesOnDisk += size - segment.size;
      segment.size = size;
    } catch {
      // keep the count
    }
    fsync(fd, () => closeFd(fd, () => undefined));
  }

  private load(segment: Segment): Buffer {
    if (this.loaded?.seq !== segment.seq) this.loaded = { seq: segment.seq, data: readFileSync(segment.path) };
    return this.loaded.data;
  }

  private decode(segment: Segment, data: Buffer, start: number, end: number, torn: boolean): readonly StreamEvent[] | JournalCorruptError {
    const corrupt = (why: string, cause?: unknown) =>
      new JournalCorruptError(`journal segment ${segment.path} at byte ${start}: ${why}`, segment.path, start, cause === undefined ? undefined : { cause });
    if (torn) return corrupt(`torn entry of ${end - start} bytes at the end of the segment (a crash mid-write?)`);
    if (end - start < HEADER_BYTES + 2 || data[start + 8] !== 0x20) return corrupt('not an entry (no checksum header)');
    const expected = Number.parseInt(data.toString('latin1', start, start + 8), 16);
    const body = data.subarray(start + HEADER_BYTES, end);
    if (!Number.isFinite(expected) || crc32(body) !== expected) return corrupt('checksum mismatch');
    try {
      const { events, rejected } = decodeStreamEvents(body);
      if (rejected.length > 0) return corrupt(`${rejected.length} events fail validation: ${rejected[0]!.reason}`);
      return events;
    } catch (error) {
      return corrupt(describe(error), error);
    }
  }
}

/** fsyncs a directory so created and deleted segment names survive a crash (best effort). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on a directory; the data itself is synced per segment
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
