import { z } from 'zod';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** ccxt timeframes with a fixed length. Calendar months are not supported (variable length). */
export const TIMEFRAME_MS = {
  '1m': MINUTE,
  '3m': 3 * MINUTE,
  '5m': 5 * MINUTE,
  '15m': 15 * MINUTE,
  '30m': 30 * MINUTE,
  '1h': HOUR,
  '2h': 2 * HOUR,
  '4h': 4 * HOUR,
  '6h': 6 * HOUR,
  '8h': 8 * HOUR,
  '12h': 12 * HOUR,
  '1d': DAY,
  '3d': 3 * DAY,
  '1w': 7 * DAY,
} as const;

export type Timeframe = keyof typeof TIMEFRAME_MS;
export const TIMEFRAMES = Object.keys(TIMEFRAME_MS) as Timeframe[];
export const TimeframeSchema = z.enum(TIMEFRAMES as [Timeframe, ...Timeframe[]]);

/** Weeks open on Monday 00:00 UTC as on the exchanges; the epoch was a Thursday. */
const WEEK_OFFSET_MS = 4 * DAY;

export function timeframeMs(tf: Timeframe): number {
  return TIMEFRAME_MS[tf];
}

/** Offset added before flooring so buckets align the way exchanges align them. */
export function timeframeOffsetMs(tf: Timeframe): number {
  return tf === '1w' ? -WEEK_OFFSET_MS : 0;
}

/** Open time of the bucket of `tf` that contains `ts` (ms epoch, UTC). */
export function bucketStart(ts: number, tf: Timeframe): number {
  const size = TIMEFRAME_MS[tf];
  const offset = timeframeOffsetMs(tf);
  return Math.floor((ts + offset) / size) * size - offset;
}
