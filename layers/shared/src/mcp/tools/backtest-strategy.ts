import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { TimeframeSchema } from '../../domain/index.js';
import type { Logger } from '../../observability/logger.js';
import type { LedgerReader } from '../../ports/index.js';
import { BACKTEST_CONVENTIONS, BACKTEST_LIMITS, Backtester, type BacktestTrade } from '../../query/backtester.js';
import type { MarketQueryService } from '../../query/market-query.js';
import type { McpMetrics } from '../metrics.js';
import { readOnlyAnnotations, runTool, tableText, toolSuccess, type TableColumn } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso, marketInput, normalizeMarket, parseTimeRange } from './schemas.js';
import { Condition } from './scan-markets.js';

export interface BacktestStrategyDeps {
  readonly query: MarketQueryService;
  /** the completeness ledger: without it empty buckets cannot be told from lost data, and ranges with any are refused */
  readonly ledger?: LedgerReader;
  readonly logger?: Logger;
  readonly metrics?: McpMetrics;
}


const rules = (what: string, min: number, match: 'all' | 'any') =>
  z
    .object({
      conditions: z.array(Condition).min(min).max(BACKTEST_LIMITS.maxConditions).describe(`Conditions ${what}, evaluated on each closed candle.`),
      match: z.enum(['all', 'any']).default(match).describe("'all': every condition must hold; 'any': at least one."),
    })
    .describe(`When to ${what}.`);

const TradeOutput = z.object({
  side: z.enum(['long', 'short']),
  signalTs: z.number().describe('Close time of the candle whose close gave the entry signal, ms epoch.'),
  entryTs: z.number().describe('Open time of the candle whose open filled the entry, ms epoch.'),
  entryIso: z.string(),
  entryPrice: z.number().describe('Entry fill, slippage included.'),
  exitTs: z.number().describe('Open time of the candle the exit filled in, ms epoch.'),
  exitIso: z.string(),
  exitPrice: z.number().describe('Exit fill, slippage included.'),
  exitReason: z.enum(['signal', 'stop_loss', 'take_profit', 'end_of_range']),
  quantity: z.number().describe('Base-currency quantity.'),
  fees: z.number().describe('Entry and exit fees, quote currency.'),
  pnl: z.number().describe('Net profit or loss, quote currency, fees and slippage included.'),
  returnPct: z.number().describe('pnl / equity allocated at entry, %.'),
  bars: z.number().int().describe('Candles from the entry fill to the exit, both counted.'),
});

const Output = {
  exchange: z.string(),
  symbol: z.string(),
  timeframe: TimeframeSchema,
  range: z
    .object({ from: z.number(), to: z.number(), fromIso: z.string(), toIso: z.string() })
    .describe('Tested buckets, [from, to) in open times; the forming candle is never tested.'),
  bars: z.number().int().describe('Closed candles tested.'),
  quietBuckets: z.number().int().describe('Buckets of the range without trades (a quiet market, no feed gap): skipped, not filled with flat candles.'),
  warmup: z
    .object({
      bars: z.number().int().describe('Candles read before the range for the indicators only (no trading there).'),
      needed: z.number().int().describe('Candles the series need before the range to have settled values from its first candle.'),
    })
    .describe('Indicator warm-up before the range.'),
  signalsComplete: z
    .boolean()
    .describe('false when some series had no value on some candles of the range (too little history before it): conditions there counted as false.'),
  metrics: z.object({
    initialCapital: z.number(),
    finalEquity: z.number(),
    totalReturnPct: z.number(),
    maxDrawdownPct: z.number().describe('Largest fall of closing equity from its running peak, %.'),
    sharpe: z.number().nullable().describe('Annualized Sharpe of per-candle equity returns, risk-free 0; null when equity never moved.'),
    winRatePct: z.number().nullable().describe('Trades with positive net pnl / trades, %; null without trades.'),
    trades: z.number().int(),
    wins: z.number().int(),
    losses: z.number().int(),
    exposurePct: z.number().describe("Share of the range's candles closing with a position, %."),
    feesPaid: z.number(),
    buyAndHoldReturnPct: z.number().describe("First candle's open to last candle's close, no fees, %: the benchmark."),
  }),
  trades: z.array(TradeOutput).describe('Trades, oldest first (at most maxTrades; see tradesOmitted).'),
  tradesOmitted: z.number().int().describe('Newest trades left out by maxTrades; the metrics count them.'),
  conventions: z
    .object({ execution: z.string(), costs: z.string(), stops: z.string(), metrics: z.string(), gaps: z.string() })
    .describe('How fills, costs and metrics are computed.'),
  ledger: z.enum(['checked', 'absent']).describe("Whether the completeness ledger was consulted to tell quiet buckets from lost data."),
  freshness: FreshnessOutput,
};

type TradeOut = z.infer<typeof TradeOutput>;
const TRADE_COLUMNS = Object.keys(TradeOutput.shape) as (keyof TradeOut)[] as TableColumn<TradeOut>[];

/** Registers `backtest_strategy`: a rule-based strategy replayed over stored candles, refused over lost data. */
export function registerBacktestStrategyTool(server: McpServer, deps: BacktestStrategyDeps): void {
  const backtester = new Backtester(deps.query, deps.ledger);
  server.registerTool(
    'backtest_strategy',
    {
      title: 'Backtest a rule strategy',
      description:
        'Replays a rule-based strategy over one market\'s stored candles and returns its trades and metrics (total return, max drawdown, ' +
        'Sharpe, win rate, exposure, fees, buy-and-hold for comparison). Entry/exit rules use the scan_markets condition language, e.g. ' +
        "entry [{series:'rsi:14',op:'<',value:30}], exit [{series:'rsi:14',op:'>',value:70}]; optional stop-loss/take-profit in %. " +
        "Signals on each closed candle's close, fills at the next candle's open (no look-ahead), fees and adverse slippage on every fill. " +
        'Indicators are warmed up on candles before since. The range must be complete: if the ledger records lost or still-filling data ' +
        '(or cannot vouch for empty buckets) anywhere in it, the call is refused with the gap ranges rather than trading on invented prices; ' +
        `quiet buckets without trades are fine. At most ${BACKTEST_LIMITS.maxBars} candles per run. Computes only; stores nothing.`,
      inputSchema: {
        ...marketInput,
        timeframe: TimeframeSchema.default('1h').describe('Candle length, a ccxt timeframe: 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w.'),
        since: z
          .union([z.number(), z.string().max(64)])
          .describe("Open time of the first candle tested (a bucket boundary of timeframe): ms epoch or ISO-8601, e.g. '2026-01-05T00:00:00Z'."),
        until: z
          .union([z.number(), z.string().max(64)])
          .optional()
          .describe('End of the range, exclusive (ms epoch or ISO-8601); up to the last closed candle when omitted.'),
        side: z.enum(['long', 'short']).default('long').describe('long: buy on entry, sell on exit; short: the reverse.'),
        entry: rules('enter a position', 1, 'all'),
        exit: rules('close the position', 0, 'any').default({ conditions: [], match: 'any' }),
        stopLossPct: z.number().gt(0).max(100).optional().describe('Close when price moves this % against the entry fill.'),
        takeProfitPct: z.number().gt(0).max(1000).optional().describe('Close when price moves this % in favour of the entry fill.'),
        positionFraction: z.number().gt(0).max(1).default(1).describe('Share of equity put into each position, fee included (default 1 = all).'),
        feeBps: z.number().min(0).max(1000).default(10).describe('Fee per fill in basis points of its notional (default 10 = 0.1%).'),
        slippageBps: z.number().min(0).max(1000).default(5).describe('Adverse slippage per fill in basis points of the price (default 5).'),
        initialCapital: z.number().gt(0).max(1e12).default(10_000).describe('Starting equity in quote currency (default 10000).'),
        maxTrades: z
          .number()
          .int()
          .min(0)
          .max(BACKTEST_LIMITS.maxTrades)
          .default(BACKTEST_LIMITS.defaultMaxTrades)
          .describe(`Trades listed (default ${BACKTEST_LIMITS.defaultMaxTrades}, at most ${BACKTEST_LIMITS.maxTrades}); metrics count them all.`),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Backtest a rule strategy'),
    },
    (args) =>
      runTool('backtest_strategy', deps, async () => {
        const { exchange, symbol } = normalizeMarket(args);
        const { since, until } = parseTimeRange({ since: args.since, until: args.until });
        const answer = await backtester.run({
          exchange,
          symbol,
          timeframe: args.timeframe,
          since: since!,
          ...(until !== undefined && { until }),
          maxTrades: args.maxTrades,
          strategy: {
            side: args.side,
            entry: args.entry,
            exit: args.exit,
            positionFraction: args.positionFraction,
            feeBps: args.feeBps,
            slippageBps: args.slippageBps,
            initialCapital: args.initialCapital,
            ...(args.stopLossPct !== undefined && { stopLossPct: args.stopLossPct }),
            ...(args.takeProfitPct !== undefined && { takeProfitPct: args.takeProfitPct }),
          },
        });
        const trades = answer.trades.map(tradeOut);
        const structured = {
          exchange,
          symbol,
          timeframe: args.timeframe,
          range: { ...answer.range, fromIso: iso(answer.range.from), toIso: iso(answer.range.to) },
          bars: answer.bars,
          quietBuckets: answer.quietBuckets,
          warmup: { ...answer.warmup },
          signalsComplete: answer.signalsComplete,
          metrics: { ...answer.metrics },
          trades,
          tradesOmitted: answer.tradesOmitted,
          conventions: { ...BACKTEST_CONVENTIONS },
          ledger: answer.ledger,
          freshness: freshnessOut(answer.freshness),
        };
        return toolSuccess(structured, tableText(structured, 'trades', TRADE_COLUMNS, trades));
      }),
  );
}

/** In the output schema's field order, which the CSV text's columns follow. */
function tradeOut(t: BacktestTrade): TradeOut {
  return {
    side: t.side,
    signalTs: t.signalTs,
    entryTs: t.entryTs,
    entryIso: iso(t.entryTs),
    entryPrice: t.entryPrice,
    exitTs: t.exitTs,
    exitIso: iso(t.exitTs),
    exitPrice: t.exitPrice,
    exitReason: t.exitReason,
    quantity: t.quantity,
    fees: t.fees,
    pnl: t.pnl,
    returnPct: t.returnPct,
    bars: t.bars,
  };
}
