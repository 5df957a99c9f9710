import type { MarketEvent } from '../domain/index.js';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import type { Channel, WriteSummary } from '../ports/index.js';
import type { MarketUpdate, MarketUpdates } from '../ports/market-updates.js';

export type UpdateNotifierCounter = 'updates_announced' | 'announce_failures';

export interface UpdateNotifierDeps {
  readonly updates: MarketUpdates;
  readonly logger: Logger;
  readonly counters?: Counters<UpdateNotifierCounter>;
}

const CHANNEL_OF: Record<MarketEvent['type'], Channel> = {
  trade: 'trades',
  ticker: 'tickers',
  book: 'books',
  quote: 'quotes',
  candle: 'candles',
};

const SUMMARY_OF: Record<Channel, keyof WriteSummary> = {
  trades: 'trades',
  tickers: 'tickers',
  books: 'books',
  quotes: 'quotes',
  candles: 'candles',
};

/**
 * The store writer's `onWritten` hook that announces what a committed batch stored: one update
 * per (exchange, symbol, channel) with its newest exchange time. Channels the batch added nothing
 * to (a replay of rows already held) are left out. The announcement is not awaited and never
 * throws: the batch is stored whatever the hub does.
 */
export function createUpdateNotifier(deps: UpdateNotifierDeps): (events: readonly MarketEvent[], summary: WriteSummary) => void {
  return (events, summary) => {
    const updates = collapseUpdates(events, summary);
    if (updates.length === 0) return;
    deps.counters?.add('updates_announced', updates.length);
    let pending: Promise<void>;
    try {
      pending = deps.updates.publish(updates);
    } catch (error) {
      pending = Promise.reject(error);
    }
    pending.catch((error: unknown) => {
      deps.counters?.add('announce_failures');
      deps.logger.warn('market updates could not be announced', { error, updates: updates.length });
    });
  };
}

/** One update per (exchange, symbol, channel) of `events`, newest ts each, skipping channels `summary` says stored nothing. */
export function collapseUpdates(events: readonly MarketEvent[], summary?: WriteSummary): MarketUpdate[] {
  const byKey = new Map<string, MarketUpdate>();
  for (const e of events) {
    const channel = CHANNEL_OF[e.type];
    if (summary && summary[SUMMARY_OF[channel]] === 0) continue;
    const key = `${e.exchange}\u0000${e.symbol}\u0000${channel}`;
    const seen = byKey.get(key);
    if (!seen || e.ts > seen.ts) byKey.set(key, { exchange: e.exchange, symbol: e.symbol, channel, ts: e.ts });
  }
  return [...byKey.values()];
}
