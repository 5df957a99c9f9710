import middy from '@middy/core';
import type { Context, KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { writeKinesisBatch, type StoreWriterDeps } from './store-writer.js';

export type KinesisBatchHandler = (event: KinesisStreamEvent, context: Context) => Promise<KinesisStreamBatchResponse>;

/** The timescale-writer Lambda handler over the given dependencies (the local runner passes its own). */
export function createTimescaleWriterHandler(deps: StoreWriterDeps): KinesisBatchHandler {
  return middy<KinesisStreamEvent, KinesisStreamBatchResponse>().handler((event) => writeKinesisBatch(event, deps));
}
