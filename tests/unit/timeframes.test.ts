import { describe, expect, it } from 'vitest';
import { TimeframeSchema, bucketStart, timeframeMs } from '../../layers/shared/src/domain/index.js';

describe('timeframes', () => {
  it('floors to the bucket open in UTC', () => {
    const t = Date.UTC(2026, 2, 4, 13, 47, 31, 250);
    expect(bucketStart(t, '1m')).toBe(Date.UTC(2026, 2, 4, 13, 47));
    expect(bucketStart(t, '15m')).toBe(Date.UTC(2026, 2, 4, 13, 45));
    expect(bucketStart(t, '4h')).toBe(Date.UTC(2026, 2, 4, 12));
    expect(bucketStart(t, '1d')).toBe(Date.UTC(2026, 2, 4));
  });

  it('opens weeks on Monday as the exchanges do', () => {
    // 2026-03-04 is a Wednesday; its week opened on Monday 2026-03-02
    expect(bucketStart(Date.UTC(2026, 2, 4, 10), '1w')).toBe(Date.UTC(2026, 2, 2));
    expect(bucketStart(Date.UTC(2026, 2, 2), '1w')).toBe(Date.UTC(2026, 2, 2));
    expect(bucketStart(Date.UTC(2026, 2, 1, 23, 59), '1w')).toBe(Date.UTC(2026, 1, 23));
    expect(new Date(bucketStart(Date.UTC(2026, 6, 9), '1w')).getUTCDay()).toBe(1);
  });

  it('accepts ccxt timeframes only', () => {
    expect(TimeframeSchema.safeParse('1h').success).toBe(true);
    expect(TimeframeSchema.safeParse('60m').success).toBe(false);
    expect(TimeframeSchema.safeParse('1M').success).toBe(false);
    expect(timeframeMs('1h')).toBe(3_600_000);
  });
});
