import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerGetAuditLogTool, registerRecordDecisionTool } from './agents/audit.js';
import { registerGetAgentControlsTool, registerSetKillSwitchTool } from './agents/controls.js';
import type { AgentToolDeps } from './agents/deps.js';
import { registerGetPaperPortfolioTool, registerPlacePaperOrderTool } from './agents/paper.js';

export type { AgentServices, AgentToolDeps, PaperSettings } from './agents/deps.js';

/**
 * The agent toolset (issue #9): agents are MCP clients, so their kill switch, audit log and paper
 * trading are tools; names and scopes are those of AGENT_TOOLS in agents/contracts.ts.
 */
export function agentToolRegistrations(server: McpServer, deps: AgentToolDeps): Record<string, () => void> {
  return {
    get_agent_controls: () => registerGetAgentControlsTool(server, deps),
    set_kill_switch: () => registerSetKillSwitchTool(server, deps),
    record_decision: () => registerRecordDecisionTool(server, deps),
    get_audit_log: () => registerGetAuditLogTool(server, deps),
    place_paper_order: () => registerPlacePaperOrderTool(server, deps),
    get_paper_portfolio: () => registerGetPaperPortfolioTool(server, deps),
  };
}
