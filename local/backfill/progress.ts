/**
 * Backfill progress for people, on stderr: a bar redrawn in place on a terminal, plain lines
 * (at most one every few seconds per job, and one at its end) when stderr is a file or a pipe.
 * Written here rather than taken from a package: none is installed, and this is all it needs.
 */

/** Where a job stands after a page. */
export interface JobProgress {
  /** e.g. `binance BTC/USDT candles 1m` */
  readonly label: string;
  /** 1-based position of the job in the run, and how many jobs there are */
  readonly index: number;
  readonly jobs: number;
  readonly pages: number;
  readonly rows: number;
  /** share of the job's time range done, 0..1 */
  readonly fraction: number;
  /** when the job started (ms epoch) and the share done then (a resumed job starts above 0) */
  readonly startedAt: number;
  readonly startFraction: number;
  /** rows written this run, for the rate */
  readonly rowsThisRun: number;
}

/** Receives progress; the CLI's is a ProgressDisplay, tests may collect. */
export interface ProgressListener {
  page(progress: JobProgress): void;
  /** a job finished, stopped or was skipped; `line` says how */
  jobDone(progress: JobProgress, line: string): void;
  /** a message between progress updates */
  note(line: string): void;
}

/** The minimum of a writable terminal/file stream this needs. */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

const BAR_WIDTH = 24;

/** Renders progress on a stream: a bar on a TTY, plain lines otherwise. */
export class ProgressDisplay implements ProgressListener {
  private readonly lastPlain = new Map<string, number>();
  private barShown = false;

  constructor(
    private readonly out: ProgressStream,
    private readonly now: () => number = Date.now,
    private readonly plainEveryMs = 5_000,
  ) {}

  page(p: JobProgress): void {
    if (this.out.isTTY) {
      const line = formatBar(p, this.now());
      const width = Math.max(20, (this.out.columns ?? 100) - 1);
      this.out.write(`\r${line.slice(0, width).padEnd(width)}`);
      this.barShown = true;
      return;
    }
    const now = this.now();
    const last = this.lastPlain.get(p.label);
    if (last !== undefined && now - last < this.plainEveryMs) return;
    this.lastPlain.set(p.label, now);
    this.out.write(`${formatPlain(p, now)}\n`);
  }

  jobDone(p: JobProgress, line: string): void {
    this.clearBar();
    this.out.write(`[${p.index}/${p.jobs}] ${p.label}: ${line}\n`);
  }

  note(line: string): void {
    this.clearBar();
    this.out.write(`${line}\n`);
  }

  private clearBar(): void {
    if (!this.barShown) return;
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    this.out.write(`\r${' '.repeat(width)}\r`);
    this.barShown = false;
  }
}

/** rows/s and the ETA of a job from what it did this run. */
export function rates(p: JobProgress, now: number): { rowsPerSec: number; etaMs: number | null } {
  const elapsed = Math.max(1, now - p.startedAt);
  const rowsPerSec = (p.rowsThisRun * 1000) / elapsed;
  const done = p.fraction - p.startFraction;
  const etaMs = done > 0 && p.fraction < 1 ? (elapsed * (1 - p.fraction)) / done : p.fraction >= 1 ? 0 : null;
  return { rowsPerSec, etaMs };
}

/** `1:02:03` / `2:03` for a duration in ms. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const pct = (f: number) => `${(Math.min(1, Math.max(0, f)) * 100).toFixed(1)}%`;
const count = (n: number) => n.toLocaleString('en-US');

/** One terminal line: `[1/2] binance BTC/USDT candles 1m [#####-----] 42.0% | 12 pages | 11,000 rows | 950 rows/s | ETA 0:42`. */
export function formatBar(p: JobProgress, now: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, p.fraction)) * BAR_WIDTH);
  const { rowsPerSec, etaMs } = rates(p, now);
  return (
    `[${p.index}/${p.jobs}] ${p.label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${pct(p.fraction)} | ` +
    `${count(p.pages)} pages | ${count(p.rows)} rows | ${count(Math.round(rowsPerSec))} rows/s | ETA ${etaMs === null ? '-' : formatDuration(etaMs)}`
  );
}

/** One log line: `[1/2] binance BTC/USDT candles 1m: 42.0% of the range, 12 pages, 11,000 rows, 950 rows/s, ETA 0:42`. */
export function formatPlain(p: JobProgress, now: number): string {
  const { rowsPerSec, etaMs } = rates(p, now);
  return (
    `[${p.index}/${p.jobs}] ${p.label}: ${pct(p.fraction)} of the range, ${count(p.pages)} pages, ${count(p.rows)} rows, ` +
    `${count(Math.round(rowsPerSec))} rows/s, ETA ${etaMs === null ? '-' : formatDuration(etaMs)}`
  );
}
