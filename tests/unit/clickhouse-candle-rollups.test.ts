import { describe, expect, it } from 'vitest';
import { rollupRebuild, rollupSource, touchedDays } from '../../layers/shared/src/adapters/stores/clickhouse-candle-rollups.js';
import { TIMEFRAMES, timeframeMs, timeframeOffsetMs } from '../../layers/shared/src/domain/index.js';
import { candle, trade } from '../fixtures/events.js';

const H = 3_600_000;
const D = 24 * H;

describe('ClickHouse candle rollups', () => {
  it('picks the row set as PostgresMarketStore does: minutes below 1h, hours to 12h, days from 1d', () => {
    const picked = Object.fromEntries(TIMEFRAMES.map((tf) => [tf, rollupSource(timeframeMs(tf), timeframeOffsetMs(tf))]));
    expect(picked).toEqual({
      '1m': null, '3m': null, '5m': null, '15m': null, '30m': null,
      '1h': '1h', '2h': '1h', '4h': '1h', '6h': '1h', '8h': '1h', '12h': '1h',
      '1d': '1d', '3d': '1d', '1w': '1d',
    });
  });

  it('touches the hours of trades and of exchange 1m candles, per market; other timeframes touch nothing', () => {
    const t0 = Date.UTC(2026, 0, 5);
    const touched = touchedDays(
      [trade({ ts: t0 + 5 }), trade({ ts: t0 + H + 5 }), trade({ ts: t0 + H + 6, symbol: 'ETH/USDT' })],
      [candle({ ts: t0 + D + 60_000 }), candle({ ts: t0 + 3 * D, timeframe: '1h' })],
    );
    expect(touched).toEqual([
      { exchange: 'binance', symbol: 'BTC/USDT', hours: [t0, t0 + H, t0 + D] },
      { exchange: 'binance', symbol: 'ETH/USDT', hours: [t0 + H] },
    ]);
  });

  it('binds market names as escaped literals and reads only the touched days', () => {
    const t0 = Date.UTC(2026, 0, 5);
    const text = rollupRebuild([{ exchange: "o'kx", symbol: 'A\\B', hours: [t0 + H, t0 + D + 2 * H] }], 7).text;
    expect(text).toContain("exchange = 'o\\'kx'");
    expect(text).toContain("symbol = 'A\\\\B'");
    expect(text).toContain(`IN (${t0}, ${t0 + D})`);
    expect(text).toContain(`bucket IN (${t0 + H}, ${t0 + D + 2 * H})`);
  });
});
