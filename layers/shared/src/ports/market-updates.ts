import type { Channel } from './market-store.js';

/** New data of one market and channel has been stored (the writer's batch is committed). */
export interface MarketUpdate {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: Channel;
  /** exchange time of the newest event of this channel in the batch, ms epoch */
  readonly ts: number;
}

/** Receives every update published anywhere on the hub, in batches as they were published. */
export type MarketUpdateListener = (updates: readonly MarketUpdate[]) => void;

/**
 * The "new data landed" hub between the store writers and the MCP servers: in process when they
 * share one (embedded mode), Redis pub/sub when they run as separate tasks (service mode).
 * Delivery is best effort: an update lost only delays a client's notification to the next one.
 */
export interface MarketUpdates {
  /** Announces stored data; never rejects for hub trouble (it is logged and counted instead). */
  publish(updates: readonly MarketUpdate[]): Promise<void>;
  /** Calls `listener` for every update published from now on; returns the function that stops it. */
  subscribe(listener: MarketUpdateListener): () => void;
  close(): Promise<void>;
}

/** Counters of a hub adapter: what it published and received, and the trouble it survived. */
export type MarketUpdatesCounter = 'published' | 'publish_failures' | 'received' | 'rejected' | 'listener_failures';
