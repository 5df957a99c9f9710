import middy from '@middy/core';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import type { AlertCounter, AlertEngine, AlertFiring } from '../alerts/alert-engine.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import { decodeStreamEvents } from '../stream/event-codec.js';
import type { KinesisBatchHandler } from './timescale-writer.js';

export interface AlertsConsumerDeps {
  readonly engine: AlertEngine;
  readonly counters: Counters<AlertCounter>;
  readonly logger: Logger;
  /** records whose firings wait for a retry, at most (oldest forgotten first) */
  readonly maxPendingRecords?: number;
}

/**
 * The alerts Lambda handler: evaluates every event of the batch in order and publishes what fires.
 * When a publish fails (store down) it stops and reports that record in `batchItemFailures`; the
 * engine has already moved past its events, so the firings still owed are kept by record id and
 * published when the record comes back, instead of evaluating it a second time. Bad records and
 * events are skipped and counted (the store writers dead-letter them), never fail a batch.
 * stale_feed is checked after each batch (see AlertEngine.checkStale; a timer runs it locally).
 */
export function createAlertsConsumerHandler(deps: AlertsConsumerDeps): KinesisBatchHandler {
  const { engine, counters, logger } = deps;
  const maxPending = deps.maxPendingRecords ?? 1_000;
  const pending = new Map<string, AlertFiring[]>();

  const handle = async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
    for (const r of event.Records) {
      const id = r.kinesis.sequenceNumber;
      let firings = pending.get(id);
      pending.delete(id);
      if (!firings) {
        counters.add('records');
        firings = [];
        try {
          const { events, rejected } = decodeStreamEvents(Buffer.from(r.kinesis.data, 'base64'));
          counters.add('events_rejected', rejected.length);
          for (const e of events) firings.push(...engine.evaluate(e));
        } catch (error) {
          counters.add('records_unreadable');
          logger.warn('unreadable record skipped', { id, error });
        }
      }
      for (let i = 0; i < firings.length; i++) {
        try {
          await engine.publish(firings[i]!);
        } catch (error) {
          logger.error('alert signal not published; record reported for retry', { id, rule: firings[i]!.rule.id, error });
          if (pending.size >= maxPending) pending.delete(pending.keys().next().value!);
          pending.set(id, firings.slice(i));
          return { batchItemFailures: [{ itemIdentifier: id }] };
        }
      }
    }
    await publishStale(deps);
    return { batchItemFailures: [] };
  };
  return middy<KinesisStreamEvent, KinesisStreamBatchResponse>().handler(handle);
}

/** Runs stale_feed and publishes what fired; a failed publish is logged and counted, never thrown (no record to retry). */
export async function publishStale(deps: Pick<AlertsConsumerDeps, 'engine' | 'logger'>, now?: number): Promise<number> {
  let published = 0;
  for (const f of deps.engine.checkStale(now)) {
    try {
      if (await deps.engine.publish(f)) published += 1;
    } catch (error) {
      deps.logger.error('stale_feed signal not published', { rule: f.rule.id, exchange: f.exchange, symbol: f.symbol, error });
    }
  }
  return published;
}
