import { describe, expect, it } from 'vitest';
import {
  NormalizationError,
  normalizeOrderBook,
  normalizeTicker,
  normalizeTrade,
} from '../../layers/shared/src/normalize/ccxt-normalizer.js';

const NOW = Date.UTC(2026, 0, 5, 12);

// Shapes as ccxt 4.5 returns them for binance (captured from the simulator session).
const ccxtTrade = {
  info: { e: 'trade', t: 12345 },
  id: '12345',
  order: undefined,
  timestamp: NOW - 20,
  datetime: new Date(NOW - 20).toISOString(),
  symbol: 'BTC/USDT',
  type: undefined,
  side: 'sell',
  takerOrMaker: 'taker',
  price: 64250.1,
  amount: 0.0123,
  cost: 790.28,
  fee: undefined,
};

describe('ccxt normalizer', () => {
  it('maps a ccxt trade, keeping exchange and receipt time and the taker side', () => {
    expect(normalizeTrade('binance', ccxtTrade, NOW)).toEqual({
      type: 'trade',
      exchange: 'binance',
      symbol: 'BTC/USDT',
      id: '12345',
      ts: NOW - 20,
      localTs: NOW,
      price: 64250.1,
      amount: 0.0123,
      side: 'sell',
    });
  });

  it('rejects a trade without id, time or a positive price with a named error', () => {
    expect(() => normalizeTrade('binance', { ...ccxtTrade, id: undefined }, NOW)).toThrow(NormalizationError);
    expect(() => normalizeTrade('binance', { ...ccxtTrade, timestamp: undefined }, NOW)).toThrow(/ts/);
    expect(() => normalizeTrade('binance', { ...ccxtTrade, price: 0 }, NOW)).toThrow(/price/);
    expect(() => normalizeTrade('binance', { ...ccxtTrade, timestamp: Math.floor((NOW - 20) / 1000) }, NOW)).toThrow(/after 2009/);
    expect(() => normalizeTrade('binance', { ...ccxtTrade, symbol: 'BTCUSDT' }, NOW)).toThrow(/unified symbol/);
  });

  it('maps a ticker; missing figures stay null and a missing time falls back to receipt time', () => {
    const t = normalizeTicker(
      'kraken',
      { symbol: 'BTC/USD', timestamp: undefined, bid: 10, ask: 11, last: 10.5, high: 12, low: 9, open: 10, baseVolume: 5, quoteVolume: undefined, percentage: 5 },
      NOW,
    );
    expect(t).toMatchObject({ ts: NOW, localTs: NOW, bid: 10, ask: 11, bidSize: null, quoteVolume24h: null, change24hPct: 5 });
  });

  it('cuts a book to the requested depth and keeps its sequence', () => {
    const ob = {
      symbol: 'BTC/USDT',
      timestamp: NOW - 5,
      nonce: 987654321,
      bids: [
        [100, 1],
        [99, 2],
        [98, 3],
      ],
      asks: [
        [101, 1],
        [102, 2],
        [103, 3],
      ],
    };
    const book = normalizeOrderBook('binance', ob, 2, NOW);
    expect(book.seq).toBe(987654321);
    expect(book.bids).toEqual([
      [100, 1],
      [99, 2],
    ]);
    expect(book.asks).toHaveLength(2);
    expect(() => normalizeOrderBook('binance', { ...ob, bids: [[Number.NaN, 1]] }, 2, NOW)).toThrow(NormalizationError);
  });
});
