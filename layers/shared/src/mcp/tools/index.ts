import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { McpDeps } from '../server.js';
import { agentToolRegistrations } from './agent-tools.js';
import { registerBacktestStrategyTool } from './backtest-strategy.js';
import { registerCompareExchangesTool } from './compare-exchanges.js';
import { registerComputeIndicatorsTool } from './compute-indicators.js';
import { registerDetectPatternsTool } from './detect-patterns.js';
import { registerGetCandlesTool } from './get-candles.js';
import { registerGetDataHealthTool } from './get-data-health.js';
import { registerGetMarketSnapshotTool } from './get-market-snapshot.js';
import { registerGetOrderBookTool } from './get-order-book.js';
import { registerGetSignalsTool } from './get-signals.js';
import { registerGetTickerTool } from './get-ticker.js';
import { registerGetTradesTool } from './get-trades.js';
import { registerListMarketsTool } from './list-markets.js';
import { registerForgetTool, registerRecallTool, registerRememberTool } from './memory.js';
import { registerPublishSignalTool } from './publish-signal.js';
import { registerRenderChartTool } from './render-chart.js';
import { registerScanMarketsTool } from './scan-markets.js';

/** Each tool's registration; `undefined` where the deployment lacks what the tool needs. */
function registrations(server: McpServer, deps: McpDeps): Record<string, (() => void) | undefined> {
  const { ledger, signals, memory, agents } = deps;
  const agentTools = agents && agentToolRegistrations(server, { ...deps, agents });
  return {
    list_markets: () => registerListMarketsTool(server, deps),
    get_ticker: () => registerGetTickerTool(server, deps),
    get_market_snapshot: () => registerGetMarketSnapshotTool(server, deps),
    get_order_book: () => registerGetOrderBookTool(server, deps),
    get_trades: () => registerGetTradesTool(server, deps),
    get_candles: () => registerGetCandlesTool(server, deps),
    compute_indicators: () => registerComputeIndicatorsTool(server, deps),
    get_data_health: ledger && (() => registerGetDataHealthTool(server, { ...deps, ledger })),
    detect_patterns: () => registerDetectPatternsTool(server, deps),
    scan_markets: () => registerScanMarketsTool(server, deps),
    compare_exchanges: () => registerCompareExchangesTool(server, deps),
    render_chart: () => registerRenderChartTool(server, deps),
    backtest_strategy: () => registerBacktestStrategyTool(server, deps),
    get_signals: signals && (() => registerGetSignalsTool(server, { ...deps, signals })),
    publish_signal: signals && (() => registerPublishSignalTool(server, { ...deps, signals })),
    remember: memory && (() => registerRememberTool(server, { ...deps, memory })),
    recall: memory && (() => registerRecallTool(server, { ...deps, memory })),
    forget: memory && (() => registerForgetTool(server, { ...deps, memory })),
    get_agent_controls: agentTools?.['get_agent_controls'],
    set_kill_switch: agentTools?.['set_kill_switch'],
    record_decision: agentTools?.['record_decision'],
    get_audit_log: agentTools?.['get_audit_log'],
    place_paper_order: agentTools?.['place_paper_order'],
    get_paper_portfolio: agentTools?.['get_paper_portfolio'],
  };
}

/** Registers the tools `allows` admits and the deployment can serve; returns their names. */
export function registerTools(server: McpServer, deps: McpDeps, allows: (tool: string) => boolean = () => true): ReadonlySet<string> {
  const offered = new Set<string>();
  for (const [name, register] of Object.entries(registrations(server, deps))) {
    if (!register || !allows(name)) continue;
    register();
    offered.add(name);
  }
  return offered;
}
