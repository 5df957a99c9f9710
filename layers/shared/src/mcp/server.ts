import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Logger } from '../observability/logger.js';
import type { AgentMemory } from '../ports/agent-memory.js';
import type { LedgerReader } from '../ports/index.js';
import type { MarketUpdates } from '../ports/market-updates.js';
import type { McpMetrics } from './metrics.js';
import type { MarketQueryService } from '../query/market-query.js';
import type { SignalService } from '../query/signal-service.js';
import { LOCAL_CALLER, type McpCaller } from './caller.js';
import { registerPrompts } from './prompts.js';
import { registerMarketResources } from './resources/market-resources.js';
import { TOOLSET_NAMES, toolFilter, type ToolsetName } from './toolsets.js';
import type { AgentServices } from './tools/agent-tools.js';
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
  /** agents' signals; get_signals and publish_signal are offered when present */
  readonly signals?: SignalService;
  /** agents' private key/value memory; remember, recall and forget are offered when present */
  readonly memory?: AgentMemory;
  /** toolsets this deployment exposes (MCP_TOOLSETS); all by default */
  readonly toolsets?: readonly ToolsetName[];
  /** where the store writers announce new data; the market resources are subscribable when present */
  readonly updates?: MarketUpdates;
  /** agents' kill switch, audit log and paper trading; the agent toolset is offered when present */
  readonly agents?: AgentServices;
}

/**
 * Caps what one call's arguments may make the server walk. Market tools take a handful of scalars;
 * a `remember` value (at most 16 KiB of JSON) may hold a few thousand; the 100 KB body limit
 * bounds the rest.
 */
const MAX_TOOL_INPUT_ELEMENTS = 4096;

const INSTRUCTIONS = `Crypto market data (trades, tickers, order books, best bid/ask, candles) collected from exchanges via ccxt and stored by this platform, with analysis tools, agents' trading signals and a private memory per caller.

How to start:
1. Call list_markets first. It lists the exchanges and symbols held, which channels each has, and how fresh each channel is (ageMs). Only these exchange/symbol values work in the other tools.
2. Then use the market tools:
   - get_ticker: latest price, best bid/ask and 24h stats of one market.
   - get_market_snapshot: price, 24h change/volume, best bid/ask and spread of several symbols across exchanges, each figure with its age.
   - get_order_book: latest stored top-N order book snapshot (bids/asks, mid, spread) and the book's health.
   - get_trades: individual trades; most recent by default, or forward from since.
   - get_candles: OHLCV candles, 1m to 1w (default 1m); closed=false marks a candle still forming; missing buckets are listed as gaps.
   - get_data_health: per feed status (ok, degraded, stale), gaps detected, filled and left unfilled; check it before trusting a market's data.
   - compute_indicators: RSI, EMA, SMA, MACD, Bollinger Bands, ATR, ADX, Stochastic, OBV and VWAP computed on the server from stored candles (TA-Lib conventions).
3. Analysis (when offered): detect_patterns (candlestick patterns, TA-Lib definitions), scan_markets (screen every market by indicator conditions), compare_exchanges (cross-exchange divergence and spreads), render_chart (a PNG of candles with overlays and volume), backtest_strategy (a rule strategy over stored candles with fees and slippage; refuses ranges with lost data).
4. Signals (when offered): get_signals lists trading signals agents published (newest first; filter by symbol, publisher, direction); publish_signal publishes yours, always under your token's identity.
5. Memory (when offered): remember / recall / forget keep a small private key/value memory of your own (JSON values, default TTL 7 days); no other caller can read it. recall with a prefix lists what you hold.
6. Agents (when offered): get_agent_controls shows the kill switch (engaged: take no action); set_kill_switch sets it; record_decision appends a decision with its inputs to the audit log, get_audit_log reads it; place_paper_order fills a simulated market order against the stored order book (idempotent per clientOrderId), get_paper_portfolio shows cash, positions and P&L.
Which tools you see depends on this deployment's toolsets and your token's scopes. Resources market://{exchange}/{symbol}/ticker and market://{exchange}/{symbol}/candles/{timeframe} (symbol percent-encoded, BTC%2FUSDT) can be subscribed to for updates as new data lands. Prompts market_analysis and risk_review give step plans over these tools.

Conventions: exchange ids are ccxt ids (binance, okx); symbols are ccxt unified symbols (BTC/USDT spot, BTC/USDT:USDT perpetual). Timestamps are ms since the Unix epoch (UTC); since/until also accept ISO-8601 strings. Every answer has freshness {asOf, newestTs, ageMs}: check ageMs before treating data as live. Lists are paged: pass nextCursor back unchanged (with the same other arguments) for the next page; null means there is no more. Long lists also come as CSV tables in the text content. Errors say how to recover, e.g. which exchanges or symbols are known.`;

/**
 * A new MCP server for one session: the tools of the enabled toolsets that `caller`'s token has
 * the scopes for, and the prompts over them. A server and its transport are never shared between
 * clients. Without an authenticated caller (stdio) every scope counts as granted.
 */
export function buildServer(deps: McpDeps, caller: McpCaller = LOCAL_CALLER): McpServer {
  const allows = toolFilter(deps.toolsets ?? TOOLSET_NAMES, caller.authenticated ? caller.scopes : 'all');
  const server = new McpServer(
    { name: MCP_SERVER_NAME, title: 'QiCore crypto market data', version: deps.version },
    { instructions: INSTRUCTIONS, maxToolInputElements: MAX_TOOL_INPUT_ELEMENTS },
  );
  skipServerSideOutputValidation(server);
  const offered = registerTools(server, deps, allows);
  // the market resources read what get_ticker and get_candles read: offered with them
  if (offered.has('get_ticker')) {
    registerMarketResources(server, { query: deps.query, updates: deps.updates, ledger: deps.ledger, logger: deps.logger });
  }
  registerPrompts(server, offered);
  return server;
}

/**
 * The SDK parses every structuredContent against the tool's output schema once more on the server
 * before sending it: a zod pass that copies the whole answer, about a tenth of a 200-candle
 * get_candles call's CPU. The answers here are built by typed code from those same schemas, and
 * the client parses them on receipt anyway (the SDK's Client does, and rejects a mismatch exactly
 * as the server would), so the server skips its pass. The tests call every tool through the SDK's
 * Client, which is where a mismatch would show.
 */
function skipServerSideOutputValidation(server: McpServer): void {
  const internals = server as unknown as { validateToolOutput?: unknown };
  if (typeof internals.validateToolOutput === 'function') internals.validateToolOutput = async () => undefined;
}
