import { ConfigError } from '../domain/errors.js';
import { hasScope, TOOL_SCOPES } from './scopes.js';

/**
 * Tools grouped so an operator can expose only some (MCP_TOOLSETS). A group whose backing service
 * is not configured (no signal store, no memory, no agent store) is left out whatever the setting says.
 */
export const TOOLSETS = {
  market: ['list_markets', 'get_ticker', 'get_market_snapshot', 'get_order_book', 'get_trades', 'get_candles', 'compute_indicators', 'get_data_health'],
  analysis: ['detect_patterns', 'scan_markets', 'compare_exchanges', 'render_chart', 'backtest_strategy'],
  signals: ['get_signals', 'publish_signal'],
  memory: ['remember', 'recall', 'forget'],
  agents: ['get_agent_controls', 'set_kill_switch', 'record_decision', 'get_audit_log', 'place_paper_order', 'get_paper_portfolio'],
} as const satisfies Record<string, readonly (keyof typeof TOOL_SCOPES)[]>;

export type ToolsetName = keyof typeof TOOLSETS;
export const TOOLSET_NAMES = Object.keys(TOOLSETS) as ToolsetName[];

/** `market,signals` -> the named toolsets; `all` or empty -> every toolset. Unknown names are a ConfigError. */
export function parseToolsets(value: string | undefined): readonly ToolsetName[] {
  const names = (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0 || (names.length === 1 && names[0] === 'all')) return TOOLSET_NAMES;
  const unknown = names.filter((n) => !(n in TOOLSETS));
  if (unknown.length > 0) {
    throw new ConfigError(`MCP_TOOLSETS: unknown toolset ${unknown.join(', ')}; known: all, ${TOOLSET_NAMES.join(', ')}`);
  }
  return [...new Set(names)] as ToolsetName[];
}

/**
 * Which tools one session lists: those of the enabled toolsets whose scopes the caller's token
 * holds. A tool hidden for lack of scope would be refused with 403 anyway; hiding it keeps the
 * model from planning with it.
 */
export function toolFilter(toolsets: readonly ToolsetName[], scopes: readonly string[] | 'all'): (tool: string) => boolean {
  const enabled = new Set<string>(toolsets.flatMap((t) => TOOLSETS[t]));
  return (tool) => enabled.has(tool) && (scopes === 'all' || (TOOL_SCOPES[tool] ?? []).every((s) => hasScope(scopes, s)));
}
