import { AGENT_TOOLS } from '../agents/contracts.js';

/** OAuth scopes the MCP tools need. A tool missing here needs no scope beyond a valid token. */
export const SCOPES = {
  marketRead: 'market:read',
  signalsWrite: 'signals:write',
  memoryRead: 'memory:read',
  memoryWrite: 'memory:write',
  /** kill switch state, audit log and paper portfolios */
  agentsRead: 'agents:read',
  /** recording agents' decisions in the audit log */
  agentsWrite: 'agents:write',
  /** engaging and releasing the kill switch */
  agentsAdmin: 'agents:admin',
  /** placing paper orders */
  paperTrade: 'paper:trade',
} as const satisfies Record<string, string>;

export const ALL_SCOPES: readonly string[] = Object.values(SCOPES);

export const TOOL_SCOPES: Readonly<Record<string, readonly string[]>> = {
  list_markets: [SCOPES.marketRead],
  get_ticker: [SCOPES.marketRead],
  get_market_snapshot: [SCOPES.marketRead],
  get_order_book: [SCOPES.marketRead],
  get_trades: [SCOPES.marketRead],
  get_candles: [SCOPES.marketRead],
  compute_indicators: [SCOPES.marketRead],
  get_data_health: [SCOPES.marketRead],
  detect_patterns: [SCOPES.marketRead],
  scan_markets: [SCOPES.marketRead],
  compare_exchanges: [SCOPES.marketRead],
  render_chart: [SCOPES.marketRead],
  backtest_strategy: [SCOPES.marketRead],
  get_signals: [SCOPES.marketRead],
  publish_signal: [SCOPES.signalsWrite],
  recall: [SCOPES.memoryRead],
  remember: [SCOPES.memoryWrite],
  forget: [SCOPES.memoryWrite],
  // the agent toolset's scopes are part of the agents' contract
  ...Object.fromEntries(Object.entries(AGENT_TOOLS).map(([tool, scope]) => [tool, [scope]])),
};

/**
 * Whether `granted` holds `wanted`. Cognito prefixes custom scopes with its resource server
 * identifier (`https://mcp.example.com/market:read`), so a `<prefix>/` form counts too.
 */
export function hasScope(granted: readonly string[], wanted: string): boolean {
  return granted.some((s) => s === wanted || s.endsWith(`/${wanted}`));
}

/** Scopes a call of `tool` needs that `granted` lacks. */
export function missingToolScopes(tool: string, granted: readonly string[]): string[] {
  return (TOOL_SCOPES[tool] ?? []).filter((s) => !hasScope(granted, s));
}
