import type { Context } from 'aws-lambda';
import type { StreamRecord, StreamSubscription } from '../../layers/shared/src/ports/index.js';
import type { Logger } from '../../layers/shared/src/observability/logger.js';

/** What every local event source polls and how. */
export interface PollingOptions {
  readonly subscription: StreamSubscription;
  readonly logger: Logger;
  /** records per invocation, as the event source mapping's BatchSize */
  readonly batchSize?: number;
  /** how long a poll waits for records */
  readonly pollWaitMs?: number;
}

/**
 * The loop Lambda's event source mappings run, for the local runner: poll a subscription and hand
 * each batch to `invoke`, which builds the transport's event, calls the handler and checkpoints.
 */
export abstract class PollingEventSource {
  private running = false;
  private loop: Promise<void> | null = null;
  /** handler invocations so far */
  invocations = 0;

  protected constructor(private readonly polling: PollingOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the invocation in flight; unhandled records stay in the stream. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Handles everything the subscription has now (waiting up to waitMs for each next batch), then returns. */
  async drain(waitMs = 0): Promise<void> {
    for (;;) {
      const records = await this.polling.subscription.poll(this.polling.batchSize ?? 100, waitMs);
      if (records.length === 0) return;
      await this.invoke(records);
    }
  }

  /** Invokes the handler for one batch and checkpoints, rewinds or gives up as the mapping would. */
  protected abstract invoke(records: readonly StreamRecord[]): Promise<void>;

  private async run(): Promise<void> {
    const { subscription, batchSize = 100, pollWaitMs = 250, logger } = this.polling;
    while (this.running) {
      try {
        const records = await subscription.poll(batchSize, pollWaitMs);
        if (records.length > 0) await this.invoke(records);
      } catch (error) {
        logger.error('event source loop error', { error });
        await sleep(500);
      }
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A Lambda context for one local invocation (60 s budget). */
export function localContext(): Context {
  const start = Date.now();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'local',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:local:000000000000:function:local',
    memoryLimitInMB: '512',
    awsRequestId: crypto.randomUUID(),
    logGroupName: 'local',
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, 60_000 - (Date.now() - start)),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
