import type { Logger } from '../../../observability/logger.js';
import type { AgentStore } from '../../../ports/agent-store.js';
import type { Clock } from '../../../ports/clock.js';
import type { MarketQueryService } from '../../../query/market-query.js';
import type { McpMetrics } from '../../metrics.js';

/** Paper trading settings of a deployment. */
export interface PaperSettings {
  /** taker fee of every paper fill, bps of the notional; default 10 */
  readonly feeBps?: number;
  /** cash a paper account starts with, quote units; default 10 000 */
  readonly initialCash?: number;
  /** a book older than this (exchange time) is not traded against, ms; default 10 000 */
  readonly maxBookAgeMs?: number;
}

/** What the agent toolset needs (McpDeps.agents): the store, and the time the server goes by. */
export interface AgentServices {
  readonly store: AgentStore;
  /** default: the system clock */
  readonly clock?: Clock;
  readonly paper?: PaperSettings;
}

export interface AgentToolDeps {
  readonly agents: AgentServices;
  readonly query: MarketQueryService;
  readonly logger?: Logger | undefined;
  readonly metrics?: McpMetrics | undefined;
}

export const PAPER_DEFAULTS = { feeBps: 10, initialCash: 10_000, maxBookAgeMs: 10_000 } as const;

export function nowOf(deps: AgentToolDeps): number {
  return deps.agents.clock ? deps.agents.clock.now() : Date.now();
}

export function paperSettings(deps: AgentToolDeps): Required<PaperSettings> {
  return { ...PAPER_DEFAULTS, ...deps.agents.paper };
}
