import { PlatformError, ValidationError } from '../domain/errors.js';
import type { BookHealth, OrderBook } from '../domain/index.js';

/**
 * Paper execution: a market order filled against a stored order book, level by level, and a
 * portfolio that keeps cash, positions (average cost) and P&L. Pure: the caller reads the book
 * (get_order_book's store read) and decides what to do with a partial fill.
 */

/** The book cannot be traded against: wrong health, too old, or empty on the side the order takes. */
export class BookNotTradableError extends PlatformError {}

/** The portfolio cannot take the fill: not enough cash for a buy, or selling more than is held (no shorts). */
export class InsufficientFundsError extends PlatformError {}

export interface PaperOrder {
  readonly exchange: string;
  readonly symbol: string;
  readonly side: 'buy' | 'sell';
  /** base-currency amount; give this or `notional` */
  readonly quantity?: number;
  /** quote-currency amount to spend (buy) or receive (sell); give this or `quantity` */
  readonly notional?: number;
}

export interface FillOptions {
  /** taker fee in basis points of the notional */
  readonly feeBps: number;
  /** `now`, to judge the book's age */
  readonly now: number;
  /** a book older than this is not traded against (ms); default 10 s */
  readonly maxBookAgeMs?: number;
  /** book health states that may be traded against; default healthy and unverified */
  readonly tradableHealth?: readonly BookHealth[];
}

export interface PaperFill {
  readonly exchange: string;
  readonly symbol: string;
  readonly side: 'buy' | 'sell';
  /** base amount filled (less than asked when the book's depth ran out) */
  readonly quantity: number;
  /** quote amount exchanged before fees */
  readonly notional: number;
  /** volume-weighted price of the levels taken */
  readonly price: number;
  readonly fee: number;
  /** levels of the book the order took */
  readonly levels: number;
  /** true when the book held less than asked: the rest is not filled */
  readonly partial: boolean;
  /** the book's exchange time and health when filled */
  readonly bookTs: number;
  readonly bookHealth: BookHealth;
  /** best price of the side taken, to measure the fill's slippage against */
  readonly touch: number;
  /** (price - touch) / touch in bps, adverse positive */
  readonly slippageBps: number;
}

const DEFAULT_MAX_BOOK_AGE_MS = 10_000;
const DEFAULT_TRADABLE: readonly BookHealth[] = ['healthy', 'unverified'];
/** amounts below this are rounding left-overs, not a level's remaining size */
const EPSILON = 1e-12;

/** Fills `order` against `book`: a buy takes the asks from the best up, a sell the bids from the best down. */
export function fillAgainstBook(order: PaperOrder, book: OrderBook, options: FillOptions): PaperFill {
  if ((order.quantity === undefined) === (order.notional === undefined)) {
    throw new ValidationError('a paper order needs exactly one of quantity (base) or notional (quote)');
  }
  const wanted = order.quantity ?? order.notional!;
  if (!(wanted > 0) || !Number.isFinite(wanted)) throw new ValidationError('a paper order amount must be a positive number');
  if (book.exchange !== order.exchange || book.symbol !== order.symbol) {
    throw new ValidationError(`the book is ${book.exchange} ${book.symbol}, the order ${order.exchange} ${order.symbol}`);
  }
  const tradable = options.tradableHealth ?? DEFAULT_TRADABLE;
  if (!tradable.includes(book.health)) {
    throw new BookNotTradableError(`the ${book.exchange} ${book.symbol} book is ${book.health}: not traded against until it is ${tradable.join(' or ')}`);
  }
  const age = options.now - book.ts;
  const maxAge = options.maxBookAgeMs ?? DEFAULT_MAX_BOOK_AGE_MS;
  if (age > maxAge) throw new BookNotTradableError(`the ${book.exchange} ${book.symbol} book is ${age} ms old (at most ${maxAge})`);
  const levels = order.side === 'buy' ? book.asks : book.bids;
  if (levels.length === 0) throw new BookNotTradableError(`the ${book.exchange} ${book.symbol} book has no ${order.side === 'buy' ? 'asks' : 'bids'}`);

  let quantity = 0;
  let notional = 0;
  let taken = 0;
  for (const [price, amount] of levels) {
    const left = order.quantity !== undefined ? order.quantity - quantity : (order.notional! - notional) / price;
    if (left <= EPSILON) break;
    const take = Math.min(amount, left);
    quantity += take;
    notional += take * price;
    taken += 1;
  }
  const price = notional / quantity;
  const touch = levels[0]![0];
  const partial = order.quantity !== undefined ? order.quantity - quantity > EPSILON : order.notional! - notional > EPSILON * touch;
  return {
    exchange: order.exchange,
    symbol: order.symbol,
    side: order.side,
    quantity,
    notional,
    price,
    fee: (notional * options.feeBps) / 10_000,
    levels: taken,
    partial,
    bookTs: book.ts,
    bookHealth: book.health,
    touch,
    slippageBps: ((order.side === 'buy' ? price - touch : touch - price) / touch) * 10_000,
  };
}

/** What booking a fill needs of it. */
export type BookedAmounts = Pick<PaperFill, 'exchange' | 'symbol' | 'side' | 'quantity' | 'notional' | 'fee'>;

export interface PaperPosition {
  readonly exchange: string;
  readonly symbol: string;
  /** base amount held (long only) */
  readonly quantity: number;
  /** average cost per unit, fees of the buys included */
  readonly averageCost: number;
}

export interface PortfolioValue {
  readonly cash: number;
  /** positions at the marks given; a position without a mark is valued at its cost */
  readonly positionsValue: number;
  readonly equity: number;
  readonly realizedPnl: number;
  readonly unrealizedPnl: number;
  readonly feesPaid: number;
}

/** Cash, long positions at average cost, and realized P&L (fees included) of applied fills. */
export class PaperPortfolio {
  private cashBalance: number;
  private readonly positions = new Map<string, { exchange: string; symbol: string; quantity: number; cost: number }>();
  private realized = 0;
  private fees = 0;

  constructor(initialCash: number) {
    if (!(initialCash >= 0) || !Number.isFinite(initialCash)) throw new ValidationError('a paper portfolio starts with a non-negative amount of cash');
    this.cashBalance = initialCash;
  }

  get cash(): number {
    return this.cashBalance;
  }

  /**
   * Books a fill: a buy pays notional + fee, a sell receives notional - fee and realizes P&L against
   * the average cost. Only the amounts count, so stored fills can be replayed without their book.
   */
  apply(fill: BookedAmounts): void {
    const key = `${fill.exchange}\u0000${fill.symbol}`;
    const held = this.positions.get(key) ?? { exchange: fill.exchange, symbol: fill.symbol, quantity: 0, cost: 0 };
    if (fill.side === 'buy') {
      const pay = fill.notional + fill.fee;
      if (pay > this.cashBalance + EPSILON) throw new InsufficientFundsError(`buying costs ${pay}, the portfolio holds ${this.cashBalance} in cash`);
      this.cashBalance -= pay;
      this.positions.set(key, { ...held, quantity: held.quantity + fill.quantity, cost: held.cost + pay });
    } else {
      if (fill.quantity > held.quantity + EPSILON) {
        throw new InsufficientFundsError(`selling ${fill.quantity} ${fill.symbol}, the portfolio holds ${held.quantity}`);
      }
      const costOfSold = held.quantity === 0 ? 0 : (held.cost * fill.quantity) / held.quantity;
      const receive = fill.notional - fill.fee;
      this.cashBalance += receive;
      this.realized += receive - costOfSold;
      const quantity = held.quantity - fill.quantity;
      if (quantity <= EPSILON) this.positions.delete(key);
      else this.positions.set(key, { ...held, quantity, cost: held.cost - costOfSold });
    }
    this.fees += fill.fee;
  }

  holdings(): PaperPosition[] {
    return [...this.positions.values()].map((p) => ({ exchange: p.exchange, symbol: p.symbol, quantity: p.quantity, averageCost: p.cost / p.quantity }));
  }

  /** Values the portfolio at `marks` (exchange -> symbol -> price, e.g. the book's mid). */
  value(marks: ReadonlyMap<string, ReadonlyMap<string, number>>): PortfolioValue {
    let positionsValue = 0;
    let unrealizedPnl = 0;
    for (const p of this.positions.values()) {
      const mark = marks.get(p.exchange)?.get(p.symbol);
      const value = mark === undefined ? p.cost : p.quantity * mark;
      positionsValue += value;
      unrealizedPnl += value - p.cost;
    }
    return {
      cash: this.cashBalance,
      positionsValue,
      equity: this.cashBalance + positionsValue,
      realizedPnl: this.realized,
      unrealizedPnl,
      feesPaid: this.fees,
    };
  }
}
