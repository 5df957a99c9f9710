import type { Clock, FeedCoverage, LedgerReader, MarketReader } from '../ports/index.js';

/**
 * A MarketReader whose `listFeeds` answer is reused for `ttlMs`. Every tool call checks that its
 * market exists and reads its freshness from the feeds list: one query more per call, a sizeable
 * share of a small read. Concurrent callers share one query in flight. The cost is freshness seen
 * up to `ttlMs` late (an age reported up to that much too old; never too young), and a market that
 * appears in the store is known to the tools up to `ttlMs` later.
 */
export function cacheFeeds<R extends MarketReader>(reader: R, clock: Clock, ttlMs = 1_000): R {
  if (ttlMs <= 0) return reader;
  let cached: { at: number; feeds: Promise<readonly FeedCoverage[]> } | null = null;
  const listFeeds = (): Promise<readonly FeedCoverage[]> => {
    const now = clock.now();
    if (cached && now - cached.at < ttlMs) return cached.feeds;
    const feeds = reader.listFeeds();
    const entry = { at: now, feeds };
    cached = entry;
    // a failed read is not kept: the next call asks again
    feeds.catch(() => {
      if (cached === entry) cached = null;
    });
    return feeds;
  };
  return overriding(reader, { listFeeds });
}

/**
 * A LedgerReader whose answers are reused for `ttlMs`, per query (at most `maxEntries` kept).
 * get_candles asks the ledger about the gaps of its window on every call; the ledger changes when
 * a collector detects or fills a gap, so an answer up to `ttlMs` old misses at most that much.
 */
export function cacheLedger(ledger: LedgerReader, clock: Clock, ttlMs = 1_000, maxEntries = 1_000): LedgerReader {
  if (ttlMs <= 0) return ledger;
  const read = ttlCache(clock, ttlMs, maxEntries);
  return {
    feedHealth: (query) => read(`h${JSON.stringify(query ?? {})}`, () => ledger.feedHealth(query)),
    gaps: (query) => read(`g${JSON.stringify(query ?? {})}`, () => ledger.gaps(query)),
  };
}

/**
 * A MarketReader whose candle reads (`candles`, `candleMinutes`) are reused for `ttlMs`, per query
 * (at most `maxEntries` kept). Agents ask for the same popular series (the newest 200 hourly BTC
 * candles) over and over; within the window they share one database read, and concurrent callers
 * one query in flight. The cost is the forming candle seen up to `ttlMs` late, the same bound
 * cacheFeeds puts on freshness (whose newest time also decides the queries' ranges, so the keys
 * repeat). Use it over cacheFeeds: `cacheCandles(cacheFeeds(reader, clock), clock)`.
 */
export function cacheCandles<R extends MarketReader>(reader: R, clock: Clock, ttlMs = 1_000, maxEntries = 500): R {
  if (ttlMs <= 0) return reader;
  const read = ttlCache(clock, ttlMs, maxEntries);
  const candleMinutes = reader.candleMinutes?.bind(reader);
  return overriding(reader, {
    candles: (query: Parameters<MarketReader['candles']>[0]) => read(`c${JSON.stringify(query)}`, () => reader.candles(query)),
    ...(candleMinutes && {
      candleMinutes: (query: Parameters<NonNullable<MarketReader['candleMinutes']>>[0]) => read(`m${JSON.stringify(query)}`, () => candleMinutes(query)),
    }),
  });
}

/** Answers kept per key for `ttlMs` (oldest dropped past `maxEntries`); a failed load is not kept. */
function ttlCache(clock: Clock, ttlMs: number, maxEntries: number): <T>(key: string, load: () => Promise<T>) => Promise<T> {
  const cached = new Map<string, { at: number; answer: Promise<unknown> }>();
  return <T>(key: string, load: () => Promise<T>): Promise<T> => {
    const now = clock.now();
    const hit = cached.get(key);
    if (hit && now - hit.at < ttlMs) return hit.answer as Promise<T>;
    const answer = load();
    const entry = { at: now, answer };
    cached.delete(key);
    cached.set(key, entry);
    if (cached.size > maxEntries) cached.delete(cached.keys().next().value!);
    answer.catch(() => {
      if (cached.get(key) === entry) cached.delete(key);
    });
    return answer;
  };
}

/** `target` with some members replaced; every other method is the target's own, bound once (not on every call). */
function overriding<R extends object>(target: R, overrides: Record<string, unknown>): R {
  const bound = new Map<PropertyKey, unknown>(Object.entries(overrides));
  return new Proxy(target, {
    get(t, property, receiver) {
      if (bound.has(property)) return bound.get(property);
      const value = Reflect.get(t, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const method = (value as (...a: unknown[]) => unknown).bind(t);
      bound.set(property, method);
      return method;
    },
  });
}
