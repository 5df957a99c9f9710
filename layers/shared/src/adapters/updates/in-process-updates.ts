import type { Counters } from '../../observability/counters.js';
import type { Logger } from '../../observability/logger.js';
import type { MarketUpdate, MarketUpdateListener, MarketUpdates, MarketUpdatesCounter } from '../../ports/market-updates.js';

export interface InProcessUpdatesOptions {
  readonly logger?: Logger;
  readonly counters?: Counters<MarketUpdatesCounter>;
}

/** The hub of the embedded platform: writer and MCP server share one process, so a listener list is enough. */
export class InProcessUpdates implements MarketUpdates {
  private readonly listeners = new Set<MarketUpdateListener>();
  private closed = false;

  constructor(private readonly options: InProcessUpdatesOptions = {}) {}

  publish(updates: readonly MarketUpdate[]): Promise<void> {
    if (this.closed || updates.length === 0) return Promise.resolve();
    this.options.counters?.add('published', updates.length);
    deliver(this.listeners, updates, this.options);
    return Promise.resolve();
  }

  subscribe(listener: MarketUpdateListener): () => void {
    // a distinct entry per call, so the same function subscribed twice is also stopped twice
    const entry: MarketUpdateListener = (updates) => listener(updates);
    if (!this.closed) this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    return Promise.resolve();
  }
}

/** Calls every listener; one that throws is logged and counted, and the others still run. */
export function deliver(
  listeners: Iterable<MarketUpdateListener>,
  updates: readonly MarketUpdate[],
  options: { readonly logger?: Logger | undefined; readonly counters?: Counters<MarketUpdatesCounter> | undefined },
): void {
  for (const listener of [...listeners]) {
    try {
      listener(updates);
    } catch (error) {
      options.counters?.add('listener_failures');
      options.logger?.warn('market update listener failed', { error });
    }
  }
}
