import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { KillSwitchState } from '../../../ports/agent-store.js';
import { callerOf } from '../../caller.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../../tool-result.js';
import { nowOf, type AgentToolDeps } from './deps.js';

const KillSwitchOutput = z
  .object({
    engaged: z.boolean().describe('true: agents must not act. Runs stop at their next check and place_paper_order refuses every order.'),
    reason: z.string().nullable().describe('Why it was last engaged or released; null when it never changed.'),
    since: z.number().nullable().describe('When it last changed, ms epoch; null when it never changed.'),
    by: z.string().nullable().describe('Principal (token identity) that last changed it; null when it never changed.'),
  })
  .describe('The kill switch of every agent.');

const Output = { killSwitch: KillSwitchOutput };

export function controlsOut(killSwitch: KillSwitchState): { killSwitch: z.infer<typeof KillSwitchOutput> } {
  return { killSwitch: { engaged: killSwitch.engaged, reason: killSwitch.reason, since: killSwitch.since, by: killSwitch.by } };
}

/** Registers `get_agent_controls`: the kill switch, which agents check before every run and action. */
export function registerGetAgentControlsTool(server: McpServer, deps: AgentToolDeps): void {
  server.registerTool(
    'get_agent_controls',
    {
      title: 'Agent controls',
      description:
        'Returns the agents\' kill switch: engaged (true means stop: take no action, place no order, end the run cleanly after recording why), ' +
        'the reason given, since when (ms epoch) and who set it. Agents call it before every run and before every action; ' +
        'the server checks it too on place_paper_order.',
      inputSchema: {},
      outputSchema: Output,
      annotations: readOnlyAnnotations('Agent controls'),
    },
    () => runTool('get_agent_controls', deps, async () => toolSuccess(controlsOut(await deps.agents.store.killSwitch()))),
  );
}

/** Registers `set_kill_switch`: engages or releases the kill switch, recording the caller. */
export function registerSetKillSwitchTool(server: McpServer, deps: AgentToolDeps): void {
  server.registerTool(
    'set_kill_switch',
    {
      title: 'Set kill switch',
      description:
        'Engages (engaged=true) or releases (engaged=false) the kill switch of every agent, with a reason of 1-500 characters. ' +
        'While engaged, agent runs stop at their next check and place_paper_order refuses every order; record_decision still works. ' +
        'You are recorded as who changed it (from your access token). Returns the switch as it now is.',
      inputSchema: {
        engaged: z.boolean().describe('true to stop every agent, false to let them run again.'),
        reason: z.string().trim().min(1).max(500).describe('Why, 1-500 characters: shown to agents and operators with the switch.'),
      },
      outputSchema: Output,
      // changes shared state, but setting the same value twice leaves it as it was
      annotations: { title: 'Set kill switch', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args, extra) =>
      runTool('set_kill_switch', deps, async () => {
        const caller = callerOf(extra);
        const state = await deps.agents.store.setKillSwitch({ engaged: args.engaged, reason: args.reason, by: caller.principal, ts: nowOf(deps) });
        deps.logger?.warn(state.engaged ? 'agent kill switch engaged' : 'agent kill switch released', { by: caller.name });
        return toolSuccess(controlsOut(state));
      }),
  );
}
