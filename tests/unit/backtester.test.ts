import { describe, expect, it } from 'vitest';
import type { Bar } from '../../layers/shared/src/indicators/indicators.js';
import { runBacktest, sharpe, warmupBarsFor, type BacktestStrategy } from '../../layers/shared/src/query/backtester.js';

const H = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 0, 0, 0);
const YEAR_HOURS = 365.25 * 24;

/** Hourly bars from [open, high, low, close] rows, volume 1. */
function bars(rows: readonly (readonly [number, number, number, number])[], from = T0): Bar[] {
  return rows.map(([open, high, low, close], i) => ({ ts: from + i * H, open, high, low, close, volume: 1 }));
}

function strategy(overrides: Partial<BacktestStrategy>): BacktestStrategy {
  return {
    side: 'long',
    entry: { conditions: [], match: 'all' },
    exit: { conditions: [], match: 'any' },
    positionFraction: 1,
    feeBps: 0,
    slippageBps: 0,
    initialCapital: 10_000,
    ...overrides,
  };
}

/** Max fall from a running peak (initial capital included), as a fraction. */
function drawdown(initial: number, equity: readonly number[]): number {
  let peak = initial;
  let worst = 0;
  for (const e of equity) {
    peak = Math.max(peak, e);
    worst = Math.max(worst, (peak - e) / peak);
  }
  return worst;
}

describe('runBacktest (hand-checked)', () => {
  it('long on close > 105, out on close < 100: fills at the next open with slippage and fees, closes what is open at the end', () => {
    const series = bars([
      [100, 101, 99, 100], // 0
      [100, 106, 100, 106], // 1: entry signal at the close
      [107, 110, 106, 109], // 2: buy at the open
      [109, 109, 98, 99], // 3: exit signal
      [98, 99, 97, 98], // 4: sell at the open
      [98, 104, 97, 106], // 5: entry signal
      [110, 112, 108, 111], // 6: buy at the open
      [111, 113, 110, 112], // 7: last candle: closed at its close
    ]);
    const run = runBacktest(
      series,
      0,
      strategy({
        entry: { conditions: [{ series: 'close', op: '>', value: 105 }], match: 'all' },
        exit: { conditions: [{ series: 'close', op: '<', value: 100 }], match: 'any' },
        feeBps: 10,
        slippageBps: 50,
      }),
      '1h',
    );
    // by hand: fee 0.1%, slippage 0.5% against each fill; the allocation (all equity) pays price x qty + fee
    const buy1 = 107 * 1.005; // 107.535
    const qty1 = 10_000 / (buy1 * 1.001);
    const fee1in = qty1 * buy1 * 0.001;
    const sell1 = 98 * 0.995; // 97.51
    const fee1out = qty1 * sell1 * 0.001;
    const cash1 = qty1 * sell1 - fee1out;
    const buy2 = 110 * 1.005; // 110.55
    const qty2 = cash1 / (buy2 * 1.001);
    const fee2in = qty2 * buy2 * 0.001;
    const sell2 = 112 * 0.995; // 111.44
    const fee2out = qty2 * sell2 * 0.001;
    const cash2 = qty2 * sell2 - fee2out;

    expect(run.trades.map((t) => [t.signalTs, t.entryTs, t.exitTs, t.exitReason, t.bars])).toEqual([
      [T0 + 2 * H, T0 + 2 * H, T0 + 4 * H, 'signal', 3],
      [T0 + 6 * H, T0 + 6 * H, T0 + 7 * H, 'end_of_range', 2],
    ]);
    const [t1, t2] = run.trades;
    expect(t1!.entryPrice).toBeCloseTo(107.535, 10);
    expect(t1!.exitPrice).toBeCloseTo(97.51, 10);
    expect(t1!.quantity).toBeCloseTo(qty1, 10);
    expect(t1!.fees).toBeCloseTo(fee1in + fee1out, 10);
    expect(t1!.pnl).toBeCloseTo(cash1 - 10_000, 8);
    expect(t1!.pnl).toBeCloseTo(-950.372, 3); // 92.90008 x 97.51 x 0.999 - 10000
    expect(t1!.returnPct).toBeCloseTo(((cash1 - 10_000) / 10_000) * 100, 8);
    expect(t2!.entryPrice).toBeCloseTo(110.55, 10);
    expect(t2!.exitPrice).toBeCloseTo(111.44, 10);
    expect(t2!.fees).toBeCloseTo(fee2in + fee2out, 10);
    expect(t2!.pnl).toBeCloseTo(cash2 - cash1, 8);

    const equity = [10_000, 10_000, qty1 * 109, qty1 * 99, cash1, cash1, qty2 * 111, cash2];
    run.equity.forEach((e, i) => expect(e).toBeCloseTo(equity[i]!, 8));
    const m = run.metrics;
    expect(m.finalEquity).toBeCloseTo(cash2, 8);
    expect(m.totalReturnPct).toBeCloseTo((cash2 / 10_000 - 1) * 100, 8);
    expect(m.totalReturnPct).toBeCloseTo(-8.9574, 3);
    // peak qty1 x 109 at candle 2, trough cash1 at candle 4
    expect(m.maxDrawdownPct).toBeCloseTo(((qty1 * 109 - cash1) / (qty1 * 109)) * 100, 8);
    expect(m.maxDrawdownPct).toBeCloseTo(10.6308, 3);
    expect(m.trades).toBe(2);
    expect(m.wins).toBe(1); // trade 2: 111.44 x 0.999 > 110.55 x 1.001
    expect(m.winRatePct).toBe(50);
    expect(m.exposurePct).toBe((3 / 8) * 100); // candles 2, 3 and 6 close with a position
    expect(m.feesPaid).toBeCloseTo(fee1in + fee1out + fee2in + fee2out, 10);
    expect(m.buyAndHoldReturnPct).toBeCloseTo((112 / 100 - 1) * 100, 10);
    const returns = equity.map((e, i) => e / (i === 0 ? 10_000 : equity[i - 1]!) - 1);
    expect(m.sharpe).toBeCloseTo(sharpe(returns, YEAR_HOURS)!, 8);
    expect(run.signalsComplete).toBe(true);
  });

  it('short with stop-loss and take-profit: stop first when both are touched, a gap through the target fills at the open, no fill after the last candle', () => {
    const series = bars([
      [100, 100, 99, 99], // 0
      [99, 99, 94, 94], // 1: entry signal (close < 95)
      [94, 95, 93, 94.5], // 2: sell short at 94; stop 95.88, target 91.18: neither touched
      [94, 97, 90, 96], // 3: both touched: stop first, bought back at 95.88
      [96, 96, 93, 93], // 4: entry signal
      [90, 91, 89, 90], // 5: short at 90; stop 91.8, target 87.3
      [86, 88, 85, 87], // 6: opens below the target: bought back at the open, 86 (87 is no entry: not > 88)
      [87, 89, 86, 89], // 7: entry signal on the last candle: nothing to fill at
    ]);
    const run = runBacktest(
      series,
      0,
      strategy({
        side: 'short',
        entry: {
          conditions: [
            { series: 'close', op: '<', value: 95 },
            { series: 'close', op: '>', value: 88 },
          ],
          match: 'all',
        },
        stopLossPct: 2,
        takeProfitPct: 3,
        positionFraction: 0.5,
        initialCapital: 1_000,
      }),
      '1h',
    );
    expect(run.trades.map((t) => [t.entryTs, t.exitTs, t.exitReason, t.bars])).toEqual([
      [T0 + 2 * H, T0 + 3 * H, 'stop_loss', 2],
      [T0 + 5 * H, T0 + 6 * H, 'take_profit', 2],
    ]);
    const [t1, t2] = run.trades;
    expect(t1!.entryPrice).toBe(94);
    expect(t1!.exitPrice).toBeCloseTo(95.88, 10);
    expect(t1!.quantity).toBeCloseTo(500 / 94, 12);
    expect(t1!.pnl).toBeCloseTo(-10, 10); // (94 - 95.88) x 500/94
    expect(t1!.returnPct).toBeCloseTo(-2, 10);
    expect(t2!.entryPrice).toBe(90);
    expect(t2!.exitPrice).toBe(86);
    expect(t2!.quantity).toBeCloseTo(5.5, 12); // half of 990 at 90
    expect(t2!.pnl).toBeCloseTo(22, 10);

    const equity = [1000, 1000, 1000 + 500 - (500 / 94) * 94.5, 990, 990, 990, 1012, 1012];
    run.equity.forEach((e, i) => expect(e).toBeCloseTo(equity[i]!, 10));
    const m = run.metrics;
    expect(m.totalReturnPct).toBeCloseTo(1.2, 10);
    expect(m.maxDrawdownPct).toBeCloseTo(1, 10); // 1000 -> 990
    expect(m.maxDrawdownPct).toBeCloseTo(drawdown(1000, equity) * 100, 10);
    expect(m.winRatePct).toBe(50);
    expect(m.exposurePct).toBe(25);
    expect(m.feesPaid).toBe(0);
    expect(m.buyAndHoldReturnPct).toBeCloseTo(-11, 10);
  });

  it('reads indicators over the warm-up but trades only in the range, and says when warm-up was short', () => {
    // closes 10 10 10 | 10 12 9 13 13: close crosses above sma:3 at candles 4 (12 > 10.67) and 6 (13 > 11.33)
    const closes = [10, 10, 10, 10, 12, 9, 13, 13];
    const series = bars(closes.map((c) => [c, c, c, c] as const));
    const s = strategy({
      entry: { conditions: [{ series: 'close', op: 'crosses_above', value: 'sma:3' }], match: 'all' },
      exit: { conditions: [{ series: 'close', op: 'crosses_below', value: 'sma:3' }], match: 'any' },
    });
    expect(warmupBarsFor(s)).toBe(3); // sma:3 needs 2 candles before its first value, the crossing one more
    const run = runBacktest(series, 3, s, '1h');
    // signal at 4 -> in at candle 5's open (9); 5 crosses below (9 < 10.33) -> out at 6's open (13); 6 crosses above -> in at 7, closed at the end
    expect(run.trades.map((t) => [t.entryTs, t.entryPrice, t.exitTs, t.exitPrice, t.exitReason])).toEqual([
      [T0 + 5 * H, 9, T0 + 6 * H, 13, 'signal'],
      [T0 + 7 * H, 13, T0 + 7 * H, 13, 'end_of_range'],
    ]);
    expect(run.equity).toHaveLength(5); // candles 3..7 only
    expect(run.metrics.totalReturnPct).toBeCloseTo((13 / 9 - 1) * 100, 10);
    expect(run.metrics.buyAndHoldReturnPct).toBeCloseTo(30, 10); // 10 -> 13
    expect(run.signalsComplete).toBe(true);
    // without warm-up the first candles have no sma: their conditions count as false, and that is said
    expect(runBacktest(series, 0, s, '1h').signalsComplete).toBe(false);
  });

  it('a flat run has no Sharpe and no win rate', () => {
    const run = runBacktest(bars([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]), 0, strategy({ entry: { conditions: [{ series: 'close', op: '>', value: 2 }], match: 'all' } }), '1h');
    expect(run.trades).toEqual([]);
    expect(run.metrics).toMatchObject({ sharpe: null, winRatePct: null, totalReturnPct: 0, maxDrawdownPct: 0, exposurePct: 0 });
  });
});
