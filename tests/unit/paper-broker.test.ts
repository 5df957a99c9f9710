import { describe, expect, it } from 'vitest';
import { BookNotTradableError, fillAgainstBook, InsufficientFundsError, PaperPortfolio } from '../../layers/shared/src/agents/paper-broker.js';
import { ValidationError } from '../../layers/shared/src/domain/errors.js';
import type { OrderBook } from '../../layers/shared/src/domain/index.js';

const NOW = 1_800_000_000_000;
const book = (over: Partial<OrderBook> = {}): OrderBook => ({
  type: 'book',
  exchange: 'binance',
  symbol: 'BTC/USDT',
  ts: NOW - 1_000,
  localTs: NOW - 990,
  seq: 42,
  depth: 3,
  asks: [[100, 1], [101, 2], [103, 5]],
  bids: [[99, 1.5], [98, 1], [95, 10]],
  health: 'healthy',
  ...over,
});
const opts = { feeBps: 10, now: NOW };
const order = (side: 'buy' | 'sell', amount: { quantity?: number; notional?: number }) => ({ exchange: 'binance', symbol: 'BTC/USDT', side, ...amount });

describe('paper fills against a stored book', () => {
  it('takes levels from the best price on, at their volume-weighted price, with the fee and slippage against the touch', () => {
    const buy = fillAgainstBook(order('buy', { quantity: 2 }), book(), opts);
    // 1 at 100 and 1 at 101
    expect(buy).toMatchObject({ quantity: 2, notional: 201, price: 100.5, levels: 2, partial: false, touch: 100, bookTs: NOW - 1_000, bookHealth: 'healthy' });
    expect(buy.fee).toBeCloseTo(0.201, 12);
    expect(buy.slippageBps).toBeCloseTo(50, 9);

    // 1.5 at 99 and 0.5 at 98
    const sell = fillAgainstBook(order('sell', { quantity: 2 }), book(), opts);
    expect(sell).toMatchObject({ quantity: 2, notional: 197.5, price: 98.75, levels: 2, partial: false, touch: 99 });
    expect(sell.slippageBps).toBeCloseTo(((99 - 98.75) / 99) * 10_000, 9);
  });

  it('spends a quote amount exactly, and fills only what the book holds', () => {
    // 100 at the first level, the other 200 at 101
    const byNotional = fillAgainstBook(order('buy', { notional: 300 }), book(), opts);
    expect(byNotional.notional).toBeCloseTo(300, 9);
    expect(byNotional.quantity).toBeCloseTo(1 + 200 / 101, 12);
    expect(byNotional).toMatchObject({ levels: 2, partial: false });

    const tooBig = fillAgainstBook(order('buy', { quantity: 10 }), book(), opts);
    expect(tooBig).toMatchObject({ quantity: 8, notional: 100 + 202 + 515, levels: 3, partial: true });
  });

  it('refuses books it cannot trust, and malformed orders', () => {
    expect(() => fillAgainstBook(order('buy', { quantity: 1 }), book({ health: 'resyncing' }), opts)).toThrow(BookNotTradableError);
    expect(() => fillAgainstBook(order('buy', { quantity: 1 }), book({ health: 'stale' }), opts)).toThrow(/stale: not traded against/);
    expect(() => fillAgainstBook(order('buy', { quantity: 1 }), book({ ts: NOW - 60_000 }), opts)).toThrow(/60000 ms old/);
    expect(() => fillAgainstBook(order('buy', { quantity: 1 }), book({ asks: [] }), opts)).toThrow(/no asks/);
    expect(() => fillAgainstBook(order('buy', { quantity: 1, notional: 5 }), book(), opts)).toThrow(ValidationError);
    expect(() => fillAgainstBook(order('buy', { quantity: -1 }), book(), opts)).toThrow(ValidationError);
    expect(() => fillAgainstBook({ ...order('buy', { quantity: 1 }), symbol: 'ETH/USDT' }, book(), opts)).toThrow(ValidationError);
  });
});

describe('paper portfolio', () => {
  it('keeps cash, average cost and realized/unrealized P&L with fees, worked by hand', () => {
    const p = new PaperPortfolio(1_000);
    p.apply(fillAgainstBook(order('buy', { quantity: 2 }), book(), opts)); // pays 201 + 0.201
    expect(p.cash).toBeCloseTo(798.799, 9);
    expect(p.holdings()).toEqual([{ exchange: 'binance', symbol: 'BTC/USDT', quantity: 2, averageCost: 100.6005 }]);

    p.apply(fillAgainstBook(order('sell', { quantity: 1 }), book(), opts)); // receives 99 - 0.099
    expect(p.cash).toBeCloseTo(897.7, 9);
    const v = p.value(new Map([['binance', new Map([['BTC/USDT', 102]])]]));
    expect(v.realizedPnl).toBeCloseTo(98.901 - 100.6005, 9);
    expect(v.positionsValue).toBe(102);
    expect(v.unrealizedPnl).toBeCloseTo(102 - 100.6005, 9);
    expect(v.equity).toBeCloseTo(897.7 + 102, 9);
    expect(v.feesPaid).toBeCloseTo(0.3, 12);
    // equity = start + realized + unrealized
    expect(v.equity).toBeCloseTo(1_000 + v.realizedPnl + v.unrealizedPnl, 9);
  });

  it('refuses a buy beyond its cash and a sell beyond its holdings (no shorts)', () => {
    const p = new PaperPortfolio(150);
    expect(() => p.apply(fillAgainstBook(order('buy', { quantity: 2 }), book(), opts))).toThrow(InsufficientFundsError);
    expect(() => p.apply(fillAgainstBook(order('sell', { quantity: 1 }), book(), opts))).toThrow(/holds 0/);
    expect(p.cash).toBe(150);
    expect(() => new PaperPortfolio(-1)).toThrow(ValidationError);
  });
});
