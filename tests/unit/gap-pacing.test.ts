import { describe, expect, it } from 'vitest';
import { SubscriptionPacer, subscriptionLimitsFor } from '../../layers/shared/src/collector/subscription-pacer.js';

/** A clock that only moves when the pacer sleeps: waits are computed, never spent. */
function fakeTime() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
    sleeps,
  };
}

describe('SubscriptionPacer', () => {
  it('lets a burst up to the limit through, then spaces starts by the window', async () => {
    const time = fakeTime();
    const pacer = new SubscriptionPacer([{ limit: 4, perMs: 1_000 }], time.now, time.sleep);
    const at: number[] = [];
    await Promise.all(Array.from({ length: 10 }, () => pacer.take().then(() => at.push(time.now()))));
    expect(at).toEqual([0, 0, 0, 0, 1_000, 1_000, 1_000, 1_000, 2_000, 2_000]);
  });

  it('honours every window: a second-rate and a longer cap together', async () => {
    const time = fakeTime();
    const pacer = new SubscriptionPacer(
      [
        { limit: 3, perMs: 1_000 },
        { limit: 5, perMs: 60_000 },
      ],
      time.now,
      time.sleep,
    );
    const at: number[] = [];
    for (let i = 0; i < 7; i++) {
      await pacer.take();
      at.push(time.now());
    }
    expect(at).toEqual([0, 0, 0, 1_000, 1_000, 60_000, 60_000]);
  });

  it('knows the documented limits of Binance and OKX and is conservative elsewhere', () => {
    expect(subscriptionLimitsFor('binance')[0]).toEqual({ limit: 4, perMs: 1_000 });
    expect(subscriptionLimitsFor('okx')).toContainEqual({ limit: 400, perMs: 3_600_000 });
    expect(subscriptionLimitsFor('kraken')).toEqual([{ limit: 2, perMs: 1_000 }]);
  });
});
