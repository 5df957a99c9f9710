import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Logger } from '../observability/logger.js';
import type { LedgerReader } from '../ports/index.js';
import type { McpMetrics } from './metrics.js';
import type { MarketQueryService } from '../query/market-query.js';
import { registerTools } from './tools/index.js';

/** Name the server reports in `initialize`. */
export const MCP_SERVER_NAME = 'qicore-crypto-platform';

/** What the MCP server needs; add fields here (optional ones first) as tools grow. */
export interface McpDeps {
  readonly query: MarketQueryService;
  /** reported as serverInfo.version */
  readonly version: string;
  /** where unexpected tool failures are logged; stderr JSON lines when omitted */
  readonly logger?: Logger;
  /** tool call counts and latency, when the operator exposes metrics */
  readonly metrics?: McpMetrics;
  /** the collectors' completeness ledger; get_data_health is offered when present */
  readonly ledger?: LedgerReader;
}

/** Tool arguments are a handful of scalars; this caps what one call may make the server walk. */
const MAX_TOOL_INPUT_ELEMENTS = 64;

const INSTRUCTIONS = `Read-only crypto market data (trades, tickers, order book snapshots, candles) collected from exchanges via ccxt and stored by this platform.

How to start:
1. Call list_markets first. It lists the exchanges and symbols held, which channels each has, and how fresh each channel is (ageMs). Only these exchange/symbol values work in the other tools.
2. Then use the market tools:
   - get_ticker: latest price, best bid/ask and 24h stats of one market.
   - get_market_snapshot: price, 24h change/volume, best bid/ask and spread of several symbols across exchanges, each figure with its age.
   - get_order_book: latest stored top-N order book snapshot (bids/asks, mid, spread).
   - get_trades: individual trades; most recent by default, or forward from since.
   - get_candles: OHLCV candles, 1m to 1w (default 1m); closed=false marks a candle still forming.
   - get_data_health: per feed status (ok, degraded, stale), gaps detected, filled and left unfilled; check it before trusting a market's data.
   - compute_indicators: RSI, EMA, SMA, MACD, Bollinger Bands, ATR, ADX, Stochastic, OBV and VWAP computed on the server from stored candles (TA-Lib conventions).

Conventions: exchange ids are ccxt ids (binance, okx); symbols are ccxt unified symbols (BTC/USDT spot, BTC/USDT:USDT perpetual). Timestamps are ms since the Unix epoch (UTC); since/until also accept ISO-8601 strings. Every answer has freshness {asOf, newestTs, ageMs}: check ageMs before treating data as live. Lists are paged: pass nextCursor back unchanged (with the same other arguments) for the next page; null means there is no more. Errors say how to recover, e.g. which exchanges or symbols are known.`;

/** A new MCP server with every market tool. Build one per session: a server and its transport are never shared between clients. */
export function buildServer(deps: McpDeps): McpServer {
  const server = new McpServer(
    { name: MCP_SERVER_NAME, title: 'QiCore crypto market data', version: deps.version },
    { instructions: INSTRUCTIONS, maxToolInputElements: MAX_TOOL_INPUT_ELEMENTS },
  );
  registerTools(server, deps);
  return server;
}
