/**
 * The ClickHouse candle refresher: one idempotent function (refreshCandles), run on a schedule,
 * that rebuilds the candles of the minutes writers in 'refresher' mode marked since its watermark.
 * On AWS an EventBridge rule invokes the Lambda every minute (cdk/lib/constructs/clickhouse-refresher.ts);
 * locally startClickHouseRefresher runs it on an interval. A failed run leaves the watermark where
 * the last finished chunk put it: the next run redoes the rest, so nothing is lost while ClickHouse
 * is down, only late.
 */
import type { ClickHouseExecutor } from '../adapters/stores/clickhouse-client.js';
import { refreshCandles, type RefreshOptions, type RefreshReport } from '../adapters/stores/clickhouse-candle-refresh.js';
import type { Logger } from '../observability/logger.js';

export { ClickHouseRefresherEnvSchema } from './clickhouse-writer.js';

export interface ClickHouseRefresherDeps {
  readonly ch: ClickHouseExecutor;
  readonly logger: Logger;
  readonly options?: RefreshOptions;
}

/** Runs one refresh and logs what it did; throws (after logging) when it fails. */
export async function runClickHouseRefresh(deps: ClickHouseRefresherDeps): Promise<RefreshReport> {
  const started = Date.now();
  try {
    const report = await refreshCandles(deps.ch, deps.options);
    deps.logger.info('candles refreshed', { ...report, droppedPartitions: report.droppedPartitions.length, ms: Date.now() - started });
    return report;
  } catch (error) {
    deps.logger.error('candle refresh failed; the next run resumes from the last saved watermark', { error });
    throw error;
  }
}

/** The scheduled Lambda handler: one refresh per invocation (a failure fails the invocation). */
export function createClickHouseRefresherHandler(deps: ClickHouseRefresherDeps): () => Promise<RefreshReport> {
  return () => runClickHouseRefresh(deps);
}

export interface RunningRefresher {
  /** Stops the interval and waits for a refresh in progress. */
  stop(): Promise<void>;
}

/**
 * Runs a refresh every `intervalMs` (local runner, embedded platform), never two at once: the next
 * one is scheduled when the previous one ends. A failed run is logged and retried at the next tick.
 */
export function startClickHouseRefresher(deps: ClickHouseRefresherDeps & { readonly intervalMs: number }): RunningRefresher {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let stopped = false;
  const tick = () => {
    running = runClickHouseRefresh(deps)
      .catch(() => undefined)
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, deps.intervalMs);
      });
  };
  timer = setTimeout(tick, deps.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
