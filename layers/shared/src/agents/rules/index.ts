import type { Timeframe } from '../../domain/index.js';
import type { MarketRef } from '../contracts.js';
import type { RulesOrModelSteps } from '../agent-steps.js';
import { createMarketMonitor } from './market-monitor.js';
import { createPaperExecutor } from './paper-executor.js';
import { createRiskManager } from './risk-manager.js';
import { createTechnicalAnalyst } from './technical-analyst.js';

/** The deterministic rules steps for one configuration (markets filter, analysis timeframe). */
export function createRulesSteps(options: { readonly markets?: readonly MarketRef[]; readonly timeframe?: Timeframe } = {}): RulesOrModelSteps {
  return {
    monitor: createMarketMonitor({ ...(options.markets && { markets: options.markets }) }),
    analyst: createTechnicalAnalyst({ ...(options.timeframe && { timeframe: options.timeframe }) }),
    risk: createRiskManager(),
    execute: createPaperExecutor(),
  };
}
