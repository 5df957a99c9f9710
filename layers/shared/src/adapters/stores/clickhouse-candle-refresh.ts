/**
 * Candles of collected trades, rebuilt off the write path (sql/clickhouse/0006): the 1m candles,
 * hours and days of every minute marked in `candle_marks` since the refresher's watermark, with
 * the same INSERT ... SELECT over the deduplicated trades (then minutes) the inline writer runs.
 *
 * Exact and idempotent: a rebuild reads every stored copy of a minute's trades and keeps one per
 * key, so a batch delivered twice, a late trade, or a refresh run twice or cut short and run again
 * all end in the candle the trades imply. The watermark only moves past marks whose minutes were
 * rebuilt, and each run re-reads the marks of the last OVERLAP_SECONDS before it, which covers a
 * mark stamped (server now()) just before the previous run read and made visible just after.
 */
import type { Trade } from '../../domain/index.js';
import type { ClickHouseExecutor } from './clickhouse-client.js';
import { rollupRebuild, type TouchedMarket } from './clickhouse-candle-rollups.js';
import { joinSql, sql, trustedSql, type Sql } from './clickhouse-sql.js';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY_S = 86_400;

/** Marks re-read before the watermark on every run: covers a mark that became visible late. */
export const OVERLAP_SECONDS = 30;
/** At most this many marks are rebuilt per statement pair, and the watermark saved after each. */
export const CHUNK_MARKS = 5_000;
/** Runs of minutes per statement: keeps one statement well under max_query_size (256 KiB). */
const MAX_RANGES = 2_000;
const STATE = 'candles';
const FEEDS_STATE = 'feeds';

/**
 * Versions of rebuilt 'trades' minutes sit above every streamed candle's (write time in µs,
 * ~2^51), so once a minute has collected trades its candle is what they imply.
 */
const REBUILD_VERSION_BASE = trustedSql('toUInt64(4611686018427387904)');

/** The minutes (ms epoch, minute starts) of one market to rebuild. */
export interface MarketMinutes {
  readonly exchange: string;
  readonly symbol: string;
  readonly minutes: readonly number[];
}

/** What one refresh did. */
export interface RefreshReport {
  /** (market, minute) pairs rebuilt, summed over chunks */
  readonly minutes: number;
  /** statement pairs run (1m, then hours and days) */
  readonly chunks: number;
  /** first mark second read (the previous watermark less the overlap), unix seconds */
  readonly from: number;
  /** the watermark saved: every mark stamped at or before it is refreshed, unix seconds */
  readonly watermark: number;
  /** every mark stamped at or before this is folded into feeds, unix seconds */
  readonly feedsWatermark: number;
  /** day partitions of candle_marks dropped (YYYYMMDD) */
  readonly droppedPartitions: readonly string[];
}

export interface RefreshOptions {
  /** marks per chunk (default CHUNK_MARKS) */
  readonly chunkMarks?: number;
  /** seconds re-read before the watermark (default OVERLAP_SECONDS) */
  readonly overlapSeconds?: number;
}

type U64 = string | number;

let lastVersion = 0;
/** Strictly increasing write time in µs (rollup versions: a later rebuild read what an earlier one read). */
export function nextRebuildVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

/** The minutes of each market these trades fall in. */
export function marketMinutesOf(trades: readonly Trade[]): MarketMinutes[] {
  const markets = new Map<string, { exchange: string; symbol: string; minutes: Set<number> }>();
  for (const t of trades) {
    const key = `${t.exchange}|${t.symbol}`;
    let m = markets.get(key);
    if (!m) markets.set(key, (m = { exchange: t.exchange, symbol: t.symbol, minutes: new Set() }));
    m.minutes.add(Math.floor(t.ts / MINUTE) * MINUTE);
  }
  return [...markets.values()].map((m) => ({ exchange: m.exchange, symbol: m.symbol, minutes: [...m.minutes] }));
}

/** Sorted minutes as runs [from, to) of consecutive minutes: a backfilled month is one range. */
export function minuteRuns(minutes: readonly number[]): Array<readonly [number, number]> {
  const sorted = [...new Set(minutes)].sort((a, b) => a - b);
  const runs: Array<[number, number]> = [];
  for (const m of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[1] === m) last[1] = m + MINUTE;
    else runs.push([m, m + MINUTE]);
  }
  return runs;
}

/**
 * The statement rebuilding the 1m 'trades' candle of these minutes from the deduplicated trades
 * stored for them, server side. Open and close follow the trade order of the read path:
 * (ts, length(id), id). Copies of a trade are the same trade, so LIMIT 1 BY keeps any one of them
 * (measured cheaper than GROUP BY + any on 18.16).
 */
export function minuteRebuild(markets: readonly MarketMinutes[]): Sql {
  const where = markets.map((m) => {
    const runs = minuteRuns(m.minutes).map(([from, to]) => sql`(ts >= ${from} AND ts < ${to})`);
    return sql`(exchange = ${m.exchange} AND symbol = ${m.symbol} AND (${joinSql(runs, ' OR ')}))`;
  });
  return sql`INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades, version)
      SELECT exchange, symbol, '1m', minute, 'trades',
             argMin(price, k), max(price), min(price), argMax(price, k),
             sum(amount_dec), count(), ${REBUILD_VERSION_BASE} + count()
      FROM (
        SELECT exchange, symbol, price, amount_dec,
               intDiv(ts, ${MINUTE}) * ${MINUTE} AS minute, (ts, lengthUTF8(trade_id), trade_id) AS k
        FROM trades WHERE ${joinSql(where, ' OR ')}
        LIMIT 1 BY exchange, symbol, ts, trade_id
      )
      GROUP BY exchange, symbol, minute`;
}

/** Splits markets into groups of at most MAX_RANGES runs of minutes (one statement each). */
function statementGroups(markets: readonly MarketMinutes[]): MarketMinutes[][] {
  const groups: MarketMinutes[][] = [];
  let group: MarketMinutes[] = [];
  let ranges = 0;
  for (const m of markets) {
    const runs = minuteRuns(m.minutes);
    for (let i = 0; i < runs.length; i += MAX_RANGES) {
      const part = runs.slice(i, i + MAX_RANGES);
      if (ranges + part.length > MAX_RANGES && group.length) {
        groups.push(group);
        group = [];
        ranges = 0;
      }
      const minutes = part.flatMap(([from, to]) => Array.from({ length: (to - from) / MINUTE }, (_, k) => from + k * MINUTE));
      group.push({ exchange: m.exchange, symbol: m.symbol, minutes });
      ranges += part.length;
    }
  }
  if (group.length) groups.push(group);
  return groups;
}

/** The hours holding these minutes, per market (their days follow in rollupRebuild). */
function hoursOf(markets: readonly MarketMinutes[]): TouchedMarket[] {
  const byMarket = new Map<string, { exchange: string; symbol: string; hours: Set<number> }>();
  for (const m of markets) {
    const key = `${m.exchange}|${m.symbol}`;
    let t = byMarket.get(key);
    if (!t) byMarket.set(key, (t = { exchange: m.exchange, symbol: m.symbol, hours: new Set() }));
    for (const minute of m.minutes) t.hours.add(Math.floor(minute / HOUR) * HOUR);
  }
  return [...byMarket.values()].map((t) => ({ exchange: t.exchange, symbol: t.symbol, hours: [...t.hours] }));
}

/**
 * Rebuilds the 1m candles of these minutes from their trades, then the hours and days holding them
 * from the minutes (a minute without collected trades, e.g. one an exchange candle marked, only
 * has its hour and day rebuilt). Idempotent; the caller decides which minutes.
 */
export async function rebuildMinutes(ch: ClickHouseExecutor, markets: readonly MarketMinutes[]): Promise<void> {
  const nonEmpty = markets.filter((m) => m.minutes.length > 0);
  if (nonEmpty.length === 0) return;
  await rebuildMinuteCandles(ch, nonEmpty);
  // hours and days read the minutes just rebuilt, so they follow them
  await ch.command(rollupRebuild(hoursOf(nonEmpty), nextRebuildVersion()));
}

/** The 1m half of rebuildMinutes: the candles of these minutes from their trades, nothing rolled up. */
export async function rebuildMinuteCandles(ch: ClickHouseExecutor, markets: readonly MarketMinutes[]): Promise<void> {
  for (const group of statementGroups(markets.filter((m) => m.minutes.length > 0))) await ch.command(minuteRebuild(group));
}

/** Marks as markets' minutes. */
function groupMarks(rows: readonly { exchange: string; symbol: string; minute: U64 }[]): MarketMinutes[] {
  const markets = new Map<string, { exchange: string; symbol: string; minutes: number[] }>();
  for (const r of rows) {
    const key = `${r.exchange}|${r.symbol}`;
    let m = markets.get(key);
    if (!m) markets.set(key, (m = { exchange: r.exchange, symbol: r.symbol, minutes: [] }));
    m.minutes.push(Number(r.minute));
  }
  return [...markets.values()];
}

/** The refresher's watermarks and the server's clock, unix seconds. */
async function readState(ch: ClickHouseExecutor): Promise<{ now: number; watermark: number; feeds: number }> {
  const [row] = await ch.query<{ now: U64; watermark: U64; feeds: U64 }>(
    sql`SELECT toUInt32(now()) AS now,
               (SELECT toUInt32(max(watermark)) FROM candle_refresh_state WHERE name = ${STATE}) AS watermark,
               (SELECT toUInt32(max(watermark)) FROM candle_refresh_state WHERE name = ${FEEDS_STATE}) AS feeds`,
  );
  return { now: Number(row?.now ?? 0), watermark: Number(row?.watermark ?? 0), feeds: Number(row?.feeds ?? 0) };
}

async function saveWatermark(ch: ClickHouseExecutor, seconds: number, name = STATE): Promise<void> {
  await ch.command(sql`INSERT INTO candle_refresh_state (name, watermark) SELECT ${name}, toDateTime(${seconds})`);
}

/**
 * Folds the feed figures of the trades marks stamped in (after, upto] into feeds (through
 * feed_updates, as every writer's figures), then moves the feeds watermark to `upto`.
 */
async function foldFeeds(ch: ClickHouseExecutor, after: number, upto: number): Promise<void> {
  await ch.command(
    sql`INSERT INTO feed_updates (exchange, symbol, channel, first_ts, last_ts, last_local_ts, events)
        SELECT exchange, symbol, 'trades', min(first_ts), max(last_ts), max(last_local_ts), sum(events)
        FROM candle_marks
        WHERE marked_at > toDateTime(${after}) AND marked_at <= toDateTime(${upto}) AND events > 0
        GROUP BY exchange, symbol`,
  );
  await saveWatermark(ch, upto, FEEDS_STATE);
}

/**
 * Feed figures of the trades marked after the feeds watermark (not folded into feeds yet), per
 * market, in listFeeds' column order (no alias may repeat a column name: 18.16 would substitute it in WHERE).
 */
export function unfoldedTradeFeeds(): Sql {
  return sql`SELECT exchange, symbol, 'trades' AS channel, min(first_ts) AS firstTs, max(last_ts) AS lastTs,
                    max(last_local_ts) AS lastLocalTs, sum(events) AS markedEvents
             FROM candle_marks
             WHERE marked_at > (SELECT max(watermark) FROM candle_refresh_state WHERE name = ${FEEDS_STATE}) AND events > 0
             GROUP BY exchange, symbol`;
}

/** YYYYMMDD (UTC) of a unix second. */
function utcDay(seconds: number): number {
  const d = new Date(seconds * 1000);
  return d.getUTCFullYear() * 10_000 + (d.getUTCMonth() + 1) * 100 + d.getUTCDate();
}

/**
 * One refresh: rebuilds every minute marked since the watermark (less the overlap), chunk by
 * chunk in mark order, saving the watermark after each chunk, so a run cut short resumes where it
 * stopped; then drops day partitions of marks older than the day before. Run one at a time (the
 * schedule's concurrency of 1); two at once are still correct, only wasteful.
 */
export async function refreshCandles(ch: ClickHouseExecutor, options: RefreshOptions = {}): Promise<RefreshReport> {
  const chunkMarks = options.chunkMarks ?? CHUNK_MARKS;
  const overlap = options.overlapSeconds ?? OVERLAP_SECONDS;
  const { now, watermark: previous, feeds } = await readState(ch);
  const from = Math.max(0, previous - overlap);
  const seconds = await ch.query<{ s: U64; n: U64 }>(
    sql`SELECT toUInt32(marked_at) AS s, count() AS n FROM candle_marks
        WHERE marked_at >= toDateTime(${from}) AND marked_at <= toDateTime(${now})
        GROUP BY s ORDER BY s`,
  );
  // consecutive seconds, whole, up to chunkMarks marks per chunk (a second alone may hold more)
  const chunks: Array<[number, number]> = [];
  let count = 0;
  for (const { s, n } of seconds) {
    const second = Number(s);
    const last = chunks[chunks.length - 1];
    if (last && count + Number(n) <= chunkMarks) {
      last[1] = second;
      count += Number(n);
    } else {
      chunks.push([second, second]);
      count = Number(n);
    }
  }
  let minutes = 0;
  for (const [a, b] of chunks) {
    const marks = await ch.query<{ exchange: string; symbol: string; minute: U64 }>(
      sql`SELECT exchange, symbol, minute FROM candle_marks
          WHERE marked_at >= toDateTime(${a}) AND marked_at <= toDateTime(${b})
          GROUP BY exchange, symbol, minute`,
    );
    await rebuildMinutes(ch, groupMarks(marks));
    minutes += marks.length;
    if (b > previous) await saveWatermark(ch, b);
  }
  if (now > previous && now > (chunks[chunks.length - 1]?.[1] ?? 0)) await saveWatermark(ch, now);
  const watermark = Math.max(previous, now);
  // every mark stamped `overlap` before the clock is visible: fold up to there, never twice
  const foldUpto = now - overlap;
  if (foldUpto > feeds) await foldFeeds(ch, feeds, foldUpto);
  const feedsWatermark = Math.max(feeds, foldUpto);
  const droppedPartitions = await dropOldMarks(ch, utcDay(Math.min(watermark - overlap, feedsWatermark) - DAY_S));
  return { minutes, chunks: chunks.length, from, watermark, feedsWatermark, droppedPartitions };
}

/** Drops the day partitions of candle_marks before `keepFromDay` (YYYYMMDD): refreshed, and a day old. */
async function dropOldMarks(ch: ClickHouseExecutor, keepFromDay: number): Promise<string[]> {
  const rows = await ch.query<{ partition: string }>(
    sql`SELECT DISTINCT partition FROM system.parts
        WHERE database = currentDatabase() AND table = 'candle_marks' AND active`,
  );
  const old = rows.map((r) => r.partition).filter((p) => /^\d{8}$/.test(p) && Number(p) < keepFromDay).sort();
  // the partition value (toYYYYMMDD) is an integer: it is bound as an integer literal
  for (const p of old) await ch.command(sql`ALTER TABLE candle_marks DROP PARTITION ${Number(p)}`);
  return old;
}

/**
 * Minutes of one market in [since, until) marked after the refresher's watermark: written by a
 * writer that leaves candles to the refresher, and not refreshed yet. Empty unless such a writer
 * wrote there in the last refresh interval.
 */
export async function pendingMinutes(
  ch: ClickHouseExecutor,
  market: { readonly exchange: string; readonly symbol: string },
  since: number | undefined,
  until: number | undefined,
): Promise<number[]> {
  const where: Sql[] = [sql`exchange = ${market.exchange}`, sql`symbol = ${market.symbol}`];
  if (since !== undefined) where.push(sql`minute >= ${since}`);
  if (until !== undefined) where.push(sql`minute < ${until}`);
  const rows = await ch.query<{ minute: U64 }>(
    sql`SELECT DISTINCT minute FROM candle_marks
        WHERE marked_at >= (SELECT max(watermark) FROM candle_refresh_state WHERE name = ${STATE})
          AND ${joinSql(where, ' AND ')}`,
  );
  return rows.map((r) => Number(r.minute));
}
