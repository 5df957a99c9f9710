import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { BookNotTradableError, fillAgainstBook, InsufficientFundsError, PaperPortfolio, type PaperFill } from '../../../agents/paper-broker.js';
import type { PaperFillRecord } from '../../../ports/agent-store.js';
import { UnknownMarketError } from '../../../query/market-query.js';
import { callerOf } from '../../caller.js';
import { readOnlyAnnotations, runTool, toolFailure, toolSuccess } from '../../tool-result.js';
import { iso, marketInput, normalizeMarket } from '../schemas.js';
import { nowOf, paperSettings, type AgentToolDeps } from './deps.js';

const DAY_MS = 86_400_000;
const RECENT_FILLS = 20;

const accountInput = z
  .string()
  .min(1)
  .max(64)
  .default('default')
  .describe("Paper account, 1-64 characters (default 'default'). A new account starts with the deployment's initial cash on first use.");

const PositionOutput = z.object({
  exchange: z.string().describe('ccxt exchange id.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  quantity: z.number().describe('Base amount held (long only).'),
  averageCost: z.number().describe('Average cost per unit, buy fees included.'),
  markPrice: z.number().nullable().describe('Price the position is valued at: mid of the stored order book, else the last stored trade; null when neither is held.'),
  markTs: z.number().nullable().describe('Exchange time of the mark, ms epoch; null without a mark.'),
  value: z.number().describe('quantity * markPrice; at cost when there is no mark.'),
  unrealizedPnl: z.number().describe('value - cost of the position.'),
});

const FillOutput = z.object({
  clientOrderId: z.string().describe('The client order id the order was placed with.'),
  ts: z.number().describe('When it was booked, ms epoch.'),
  iso: z.string().describe('ts as ISO-8601 UTC.'),
  exchange: z.string(),
  symbol: z.string(),
  side: z.enum(['buy', 'sell']),
  quantity: z.number().describe('Base amount filled.'),
  vwap: z.number().describe('Volume-weighted price of the levels taken.'),
  notional: z.number().describe('Quote amount exchanged before the fee.'),
  fee: z.number().describe('Fee paid, quote currency.'),
  signalId: z.string().nullable().describe('Signal the order acted on, if given.'),
});

const PortfolioOutput = z.object({
  account: z.string().describe('Paper account.'),
  initialCash: z.number().describe('Cash the account started with, quote units.'),
  cash: z.number().describe('Cash now.'),
  equity: z.number().describe('cash + positions at their marks.'),
  peakEquity: z.number().describe('Highest equity: initial cash, after each fill valued at fill prices, and now.'),
  drawdownPct: z.number().describe('How far equity is below its peak, %.'),
  realizedPnl: z.number().describe('P&L of closed amounts, fees included.'),
  unrealizedPnl: z.number().describe('P&L of open positions at their marks.'),
  feesPaid: z.number().describe('Fees paid in total.'),
  dailyNotional: z.number().describe('Notional traded since 00:00 UTC today, all markets.'),
  positions: z.array(PositionOutput).describe('Open positions.'),
  recentFills: z.array(FillOutput).describe(`Up to ${RECENT_FILLS} fills, newest first.`),
});
type PortfolioOut = z.infer<typeof PortfolioOutput>;

const OrderOutput = z.object({
  clientOrderId: z.string(),
  status: z.enum(['filled', 'partial']).describe('partial: the stored book held less than asked; the rest was not filled (and not left open).'),
  side: z.enum(['buy', 'sell']),
  quantity: z.number().describe('Base amount filled.'),
  vwap: z.number().describe('Volume-weighted price of the levels taken.'),
  notional: z.number().describe('Quote amount exchanged before the fee.'),
  fee: z.number().describe('Fee paid, quote currency.'),
  slippageBps: z.number().describe('vwap against the best price of the side taken, bps, adverse positive.'),
  levels: z.number().int().describe('Book levels taken.'),
  bookTs: z.number().describe('Exchange time of the order book filled against, ms epoch.'),
  bookAgeMs: z.number().describe('Age of that book when the order was filled, ms.'),
});

/** The portfolio of an account now: its fills replayed, positions at their marks. */
async function portfolioOf(deps: AgentToolDeps, account: string): Promise<PortfolioOut> {
  const stored = await deps.agents.store.account(account);
  const fills = stored ? await deps.agents.store.fills(account) : [];
  return valuePortfolio(deps, account, stored?.initialCash ?? paperSettings(deps).initialCash, fills);
}

/** The fills replayed through a PaperPortfolio; throws what booking them throws. */
function replay(initialCash: number, fills: readonly PaperFillRecord[], onFill?: (p: PaperPortfolio, f: PaperFillRecord) => void): PaperPortfolio {
  const portfolio = new PaperPortfolio(initialCash);
  for (const f of fills) {
    portfolio.apply(f);
    onFill?.(portfolio, f);
  }
  return portfolio;
}

async function valuePortfolio(deps: AgentToolDeps, account: string, initialCash: number, fills: readonly PaperFillRecord[]): Promise<PortfolioOut> {
  const now = nowOf(deps);
  // the equity curve at fill prices: each market valued at its latest fill
  const fillMarks = new Map<string, Map<string, number>>();
  let peakEquity = initialCash;
  const portfolio = replay(initialCash, fills, (p, f) => {
    const ofExchange = fillMarks.get(f.exchange) ?? new Map<string, number>();
    ofExchange.set(f.symbol, f.vwap);
    fillMarks.set(f.exchange, ofExchange);
    peakEquity = Math.max(peakEquity, p.value(fillMarks).equity);
  });
  const holdings = portfolio.holdings();
  const marks = await Promise.all(holdings.map((h) => markOf(deps, h.exchange, h.symbol)));
  const markMap = new Map<string, Map<string, number>>();
  holdings.forEach((h, i) => {
    const mark = marks[i];
    if (!mark) return;
    const ofExchange = markMap.get(h.exchange) ?? new Map<string, number>();
    ofExchange.set(h.symbol, mark.price);
    markMap.set(h.exchange, ofExchange);
  });
  const value = portfolio.value(markMap);
  peakEquity = Math.max(peakEquity, value.equity);
  const dayStart = Math.floor(now / DAY_MS) * DAY_MS;
  return {
    account,
    initialCash,
    cash: value.cash,
    equity: value.equity,
    peakEquity,
    drawdownPct: peakEquity > 0 ? Math.max(0, ((peakEquity - value.equity) / peakEquity) * 100) : 0,
    realizedPnl: value.realizedPnl,
    unrealizedPnl: value.unrealizedPnl,
    feesPaid: value.feesPaid,
    dailyNotional: fills.filter((f) => f.ts >= dayStart && f.ts <= now).reduce((sum, f) => sum + f.notional, 0),
    positions: holdings.map((h, i) => {
      const mark = marks[i] ?? null;
      const cost = h.quantity * h.averageCost;
      const positionValue = mark ? h.quantity * mark.price : cost;
      return {
        exchange: h.exchange,
        symbol: h.symbol,
        quantity: h.quantity,
        averageCost: h.averageCost,
        markPrice: mark?.price ?? null,
        markTs: mark?.ts ?? null,
        value: positionValue,
        unrealizedPnl: positionValue - cost,
      };
    }),
    recentFills: fills
      .slice(-RECENT_FILLS)
      .reverse()
      .map((f) => ({
        clientOrderId: f.clientOrderId,
        ts: f.ts,
        iso: iso(f.ts),
        exchange: f.exchange,
        symbol: f.symbol,
        side: f.side,
        quantity: f.quantity,
        vwap: f.vwap,
        notional: f.notional,
        fee: f.fee,
        signalId: f.signalId,
      })),
  };
}

/** Mid of the stored book, else the last stored trade; null when the market has neither. */
async function markOf(deps: AgentToolDeps, exchange: string, symbol: string): Promise<{ price: number; ts: number } | null> {
  try {
    const { book } = await deps.query.getOrderBook(exchange, symbol);
    const bid = book?.bids[0]?.[0];
    const ask = book?.asks[0]?.[0];
    if (book && bid !== undefined && ask !== undefined) return { price: (bid + ask) / 2, ts: book.ts };
    const { trades } = await deps.query.getTrades({ exchange, symbol, limit: 1 });
    const last = trades.at(-1);
    return last ? { price: last.price, ts: last.ts } : null;
  } catch (error) {
    if (error instanceof UnknownMarketError) return null;
    throw error;
  }
}

function orderOut(f: PaperFillRecord): z.infer<typeof OrderOutput> {
  return {
    clientOrderId: f.clientOrderId,
    status: f.partial ? 'partial' : 'filled',
    side: f.side,
    quantity: f.quantity,
    vwap: f.vwap,
    notional: f.notional,
    fee: f.fee,
    slippageBps: f.slippageBps,
    levels: f.levels,
    bookTs: f.bookTs,
    bookAgeMs: f.bookAgeMs,
  };
}

const PlaceInput = {
  account: accountInput,
  ...marketInput,
  side: z.enum(['buy', 'sell']).describe('buy (take the asks) or sell (take the bids). Spot, long only: you can sell only what the account holds.'),
  quantity: z.number().positive().optional().describe('Base amount to buy or sell, e.g. 0.01 (BTC). Give exactly one of quantity and notional.'),
  notional: z.number().positive().optional().describe('Quote amount to spend (buy) or receive (sell), e.g. 500 (USDT). Give exactly one of quantity and notional.'),
  clientOrderId: z
    .string()
    .min(1)
    .max(100)
    .describe('Your id for this order, 1-100 characters, unique per account: sending the same id again returns the first result (duplicate: true) and books nothing. Use e.g. the run id and signal id.'),
  signalId: z.string().min(1).max(100).optional().describe('The signal this order acts on (get_signals id), kept with the fill.'),
  maxSlippageBps: z
    .number()
    .min(0)
    .max(10_000)
    .optional()
    .describe('Refuse the order (nothing booked) when its vwap would be more than this many bps worse than the best price.'),
};

const PlaceOutput = {
  order: OrderOutput.describe('The fill.'),
  portfolio: PortfolioOutput.describe('The account after the fill (as get_paper_portfolio returns it).'),
  duplicate: z.boolean().describe('true when this clientOrderId was booked before: order is that first fill, and nothing new was booked.'),
};

/** Registers `place_paper_order`: a simulated market order filled against the stored order book. */
export function registerPlacePaperOrderTool(server: McpServer, deps: AgentToolDeps): void {
  const settings = paperSettings(deps);
  server.registerTool(
    'place_paper_order',
    {
      title: 'Place paper order',
      description:
        'Places a simulated market order in a paper account (no real order is sent anywhere): filled at once against the latest stored order book ' +
        `(as get_order_book returns it), level by level, with a ${settings.feeBps} bps fee. Give quantity (base) or notional (quote), not both, ` +
        'and a clientOrderId: a repeated id returns the first result with duplicate=true and books nothing. ' +
        `Refused (nothing booked) when the kill switch is engaged, when the book is absent, older than ${settings.maxBookAgeMs} ms, resyncing or stale, ` +
        'when slippage would exceed maxSlippageBps, when cash does not cover a buy and its fee, or when selling more than the account holds (spot, long only). ' +
        'A book too thin for the whole amount gives a partial fill (status partial); the rest is not left open. Returns the fill and the portfolio after it.',
      inputSchema: PlaceInput,
      outputSchema: PlaceOutput,
      annotations: { title: 'Place paper order', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args, extra) =>
      runTool('place_paper_order', deps, async () => {
        const store = deps.agents.store;
        // checked here as well as by the agents: a stopped platform books nothing whoever asks
        const killSwitch = await store.killSwitch();
        if (killSwitch.engaged) {
          return toolFailure(
            `Refused: the agents' kill switch is engaged (${killSwitch.reason ?? 'no reason given'}; since ` +
              `${killSwitch.since === null ? 'unknown' : iso(killSwitch.since)}). No paper order is placed while it is. ` +
              'Do not retry: record the stop with record_decision and end the run; an operator releases the switch.',
          );
        }
        if ((args.quantity === undefined) === (args.notional === undefined)) {
          return toolFailure('Give exactly one of quantity (base amount, e.g. 0.01) or notional (quote amount, e.g. 500), then retry.');
        }
        const { exchange, symbol } = normalizeMarket(args);
        const previous = await store.fill(args.account, args.clientOrderId);
        if (previous) return toolSuccess({ order: orderOut(previous), portfolio: await portfolioOf(deps, args.account), duplicate: true });

        const now = nowOf(deps);
        const { book } = await deps.query.getOrderBook(exchange, symbol);
        if (!book) {
          return toolFailure(
            `Refused: no order book is stored for ${exchange} ${symbol}, so there is nothing to fill against. ` +
              'Trade a market whose list_markets channels include books.',
          );
        }
        let fill: PaperFill;
        try {
          fill = fillAgainstBook(
            { exchange, symbol, side: args.side, ...(args.quantity !== undefined ? { quantity: args.quantity } : { notional: args.notional! }) },
            book,
            { feeBps: settings.feeBps, now, maxBookAgeMs: settings.maxBookAgeMs },
          );
        } catch (error) {
          if (!(error instanceof BookNotTradableError)) throw error;
          return toolFailure(
            `Refused, nothing booked: ${error.message}. Check get_data_health and get_order_book for this market; retry once the book is fresh ` +
              'and healthy, or skip this order.',
          );
        }
        if (args.maxSlippageBps !== undefined && fill.slippageBps > args.maxSlippageBps) {
          return toolFailure(
            `Refused, nothing booked: filling would cost ${fill.slippageBps.toFixed(2)} bps of slippage (vwap ${fill.price} against best ${fill.touch}, ` +
              `${fill.levels} levels), over maxSlippageBps ${args.maxSlippageBps}. Retry with a smaller amount or a higher maxSlippageBps.`,
          );
        }
        const caller = callerOf(extra);
        try {
          const booked = await store.bookFill(
            { account: args.account, initialCash: settings.initialCash, clientOrderId: args.clientOrderId, ts: now },
            (account, fills) => {
              replay(account.initialCash, fills).apply(fill);
              return {
                ts: now,
                exchange,
                symbol,
                side: fill.side,
                quantity: fill.quantity,
                vwap: fill.price,
                notional: fill.notional,
                fee: fill.fee,
                slippageBps: fill.slippageBps,
                levels: fill.levels,
                partial: fill.partial,
                bookTs: fill.bookTs,
                bookAgeMs: Math.max(0, now - fill.bookTs),
                signalId: args.signalId ?? null,
                principal: caller.principal,
              };
            },
          );
          return toolSuccess({ order: orderOut(booked.fill), portfolio: await portfolioOf(deps, args.account), duplicate: booked.duplicate });
        } catch (error) {
          if (!(error instanceof InsufficientFundsError)) throw error;
          const hint =
            args.side === 'buy'
              ? 'Retry with a smaller quantity or notional (the fee is paid on top), or sell a position first; get_paper_portfolio shows the cash.'
              : 'Paper trading is spot and long only: sell at most the quantity held (get_paper_portfolio shows positions); there is no short selling.';
          return toolFailure(`Refused, nothing booked: ${error.message}. ${hint}`);
        }
      }),
  );
}

/** Registers `get_paper_portfolio`: cash, positions at their marks, P&L and recent fills of a paper account. */
export function registerGetPaperPortfolioTool(server: McpServer, deps: AgentToolDeps): void {
  server.registerTool(
    'get_paper_portfolio',
    {
      title: 'Paper portfolio',
      description:
        'Returns a paper account: initial cash, cash, equity, peak equity and drawdown %, realized and unrealized P&L, fees paid, notional traded ' +
        'since 00:00 UTC today, open positions valued at the mid of the stored order book (else the last trade), and the latest fills. ' +
        `An account never traded shows its initial cash (${paperSettings(deps).initialCash} quote units).`,
      inputSchema: { account: accountInput },
      outputSchema: PortfolioOutput.shape,
      annotations: readOnlyAnnotations('Paper portfolio'),
    },
    (args) => runTool('get_paper_portfolio', deps, async () => toolSuccess(await portfolioOf(deps, args.account))),
  );
}
