import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { McpDeps } from '../server.js';
import { registerComputeIndicatorsTool } from './compute-indicators.js';
import { registerGetCandlesTool } from './get-candles.js';
import { registerGetDataHealthTool } from './get-data-health.js';
import { registerGetMarketSnapshotTool } from './get-market-snapshot.js';
import { registerGetOrderBookTool } from './get-order-book.js';
import { registerGetTickerTool } from './get-ticker.js';
import { registerGetTradesTool } from './get-trades.js';
import { registerListMarketsTool } from './list-markets.js';

/** Registers every market data tool on `server`. */
export function registerTools(server: McpServer, deps: McpDeps): void {
  registerListMarketsTool(server, deps);
  registerGetTickerTool(server, deps);
  registerGetMarketSnapshotTool(server, deps);
  registerGetOrderBookTool(server, deps);
  registerGetTradesTool(server, deps);
  registerGetCandlesTool(server, deps);
  registerComputeIndicatorsTool(server, deps);
  if (deps.ledger) registerGetDataHealthTool(server, { ...deps, ledger: deps.ledger });
}
