// The collector's Prometheus metrics, read from a collector's state (a real FeedLedger and Counters) on
// a clock the test moves: feed age and staleness per feed, counters, the staleness log line, and the
// /metrics and /healthz server.
import { afterEach, describe, expect, it } from 'vitest';
import { CollectorMetrics, COLLECTOR_STALENESS_MSG, serveCollectorMetrics, type CollectorMetricsServer } from '../../layers/shared/src/collector/collector-metrics.js';
import type { BatcherCounter } from '../../layers/shared/src/collector/event-batcher.js';
import { FeedLedger } from '../../layers/shared/src/collector/feed-ledger.js';
import type { CollectorCounter } from '../../layers/shared/src/collector/market-collector.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { createLogger, silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { Clock } from '../../layers/shared/src/ports/index.js';
import { parseExposition, type Series } from '../support/prometheus.js';

class TestClock implements Clock {
  constructor(public ms: number) {}
  now(): number {
    return this.ms;
  }
}

const START = 1_700_000_000_000;

/** A collector's state as CollectorMetrics reads it: two markets, trades, tickers and books each. */
function collectorState() {
  const clock = new TestClock(START);
  const ledger = new FeedLedger(clock, () => undefined, 'run-1');
  const feeds = ['BTC/USDT', 'ETH/USDT'].flatMap((symbol) => (['trades', 'tickers', 'books'] as const).map((channel) => ledger.feed('binance', symbol, channel)));
  // the exchange-wide entry of the ledger is not a feed: the collector's `feeds` leave it out, as here
  ledger.feed('binance', '*', 'all');
  const counters = { collector: new Counters<CollectorCounter>(), batcher: new Counters<BatcherCounter>() };
  const batcher = { pending: 0, journalBytes: 0, streamDown: false };
  const source = { counters, collector: { feeds, ledger }, batcher };
  return { clock, ledger, feeds, counters, batcher, source };
}

function sample(series: Series[], name: string, labels: Record<string, string>): number | undefined {
  return series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function scrape(metrics: CollectorMetrics): Promise<Series[]> {
  return parseExposition((await metrics.render()).body);
}

describe('CollectorMetrics', () => {
  it('gives each configured feed its age: since the collector started, then since its last message', async () => {
    const { clock, feeds, source } = collectorState();
    const metrics = new CollectorMetrics(source, { shard: '1/3', clock, processMetrics: false });
    clock.ms = START + 4_000;
    let series = await scrape(metrics);
    const ages = series.filter((s) => s.name === 'collector_feed_age_seconds');
    // one series a feed, labelled with the configured markets and the shard; no `*` entry
    expect(ages.map((s) => `${s.labels.symbol} ${s.labels.channel}`).sort()).toEqual(
      ['BTC/USDT books', 'BTC/USDT tickers', 'BTC/USDT trades', 'ETH/USDT books', 'ETH/USDT tickers', 'ETH/USDT trades'],
    );
    expect(ages.every((s) => s.labels.shard === '1/3' && s.labels.exchange === 'binance' && s.value === 4)).toBe(true);

    // a message on BTC trades: its age starts again; the others keep growing
    feeds[0]!.lastMessageAt = START + 5_000;
    clock.ms = START + 7_500;
    series = await scrape(metrics);
    expect(sample(series, 'collector_feed_age_seconds', { symbol: 'BTC/USDT', channel: 'trades' })).toBe(2.5);
    expect(sample(series, 'collector_feed_age_seconds', { symbol: 'ETH/USDT', channel: 'trades' })).toBe(7.5);
  });

  it("marks a feed stale past its channel's watchdog window, and fresh again when it hears something", async () => {
    const { clock, feeds, source } = collectorState();
    const metrics = new CollectorMetrics(source, { shard: '0/1', clock, processMetrics: false, staleAfterMs: { trades: 10_000, tickers: 3_000 } });
    for (const f of feeds) f.lastMessageAt = START;
    clock.ms = START + 5_000;
    let series = await scrape(metrics);
    expect(sample(series, 'collector_feed_stale', { symbol: 'BTC/USDT', channel: 'tickers' })).toBe(1);
    expect(sample(series, 'collector_feed_stale', { symbol: 'BTC/USDT', channel: 'trades' })).toBe(0);
    // books keep the collector's default window (30 s)
    expect(sample(series, 'collector_feed_stale', { symbol: 'BTC/USDT', channel: 'books' })).toBe(0);
    expect(metrics.staleness()).toEqual({ shard: '0/1', feeds: 6, staleFeeds: 2, maxFeedAgeSeconds: 5, oldestFeed: 'binance BTC/USDT trades' });

    feeds[1]!.lastMessageAt = START + 4_900; // BTC tickers
    series = await scrape(metrics);
    expect(sample(series, 'collector_feed_stale', { symbol: 'BTC/USDT', channel: 'tickers' })).toBe(0);
    expect(sample(series, 'collector_feed_stale', { symbol: 'ETH/USDT', channel: 'tickers' })).toBe(1);
    expect(metrics.staleness().staleFeeds).toBe(1);
  });

  it('exports the collector and stream counters, book health, trade gaps and the batcher backlog as they are at the scrape', async () => {
    const { clock, feeds, counters, batcher, source } = collectorState();
    const metrics = new CollectorMetrics(source, { shard: '0/1', clock, processMetrics: false });
    counters.collector.add('messages', 120);
    counters.collector.add('events', 300);
    counters.collector.add('resubscribes', 2);
    counters.batcher.add('published_events', 290);
    counters.batcher.add('journaled_events', 10);
    feeds[2]!.bookHealth = 'resyncing';
    feeds[0]!.gapsDetected = 3;
    feeds[0]!.gapsFilled = 2;
    Object.assign(batcher, { pending: 42, journalBytes: 4096, streamDown: true });
    let series = await scrape(metrics);
    expect(sample(series, 'collector_events_total', { counter: 'messages', shard: '0/1' })).toBe(120);
    expect(sample(series, 'collector_events_total', { counter: 'events' })).toBe(300);
    expect(sample(series, 'collector_events_total', { counter: 'resubscribes' })).toBe(2);
    expect(sample(series, 'collector_stream_total', { counter: 'published_events' })).toBe(290);
    expect(sample(series, 'collector_stream_total', { counter: 'journaled_events' })).toBe(10);
    expect(sample(series, 'collector_book_health', { symbol: 'BTC/USDT', health: 'resyncing' })).toBe(1);
    expect(sample(series, 'collector_book_health', { symbol: 'BTC/USDT', health: 'healthy' })).toBe(0);
    // no health yet (no book): no series
    expect(sample(series, 'collector_book_health', { symbol: 'ETH/USDT' })).toBeUndefined();
    expect(sample(series, 'collector_trade_gaps', { symbol: 'BTC/USDT', outcome: 'detected' })).toBe(3);
    expect(sample(series, 'collector_trade_gaps', { symbol: 'BTC/USDT', outcome: 'filled' })).toBe(2);
    expect(sample(series, 'collector_trade_gaps', { symbol: 'BTC/USDT', outcome: 'unfilled' })).toBe(0);
    expect(sample(series, 'collector_buffered_events', {})).toBe(42);
    expect(sample(series, 'collector_journal_bytes', {})).toBe(4096);
    expect(sample(series, 'collector_stream_down', {})).toBe(1);

    // later counts replace the earlier ones (no double counting across scrapes)
    counters.collector.add('messages', 5);
    batcher.streamDown = false;
    series = await scrape(metrics);
    expect(sample(series, 'collector_events_total', { counter: 'messages' })).toBe(125);
    expect(sample(series, 'collector_stream_down', {})).toBe(0);
  });

  it('writes the staleness summary as one structured log line with the fields a metric filter reads', () => {
    const { clock, feeds, source } = collectorState();
    const lines: string[] = [];
    const logger = createLogger({ sink: (l) => lines.push(l), fields: { fn: 'collector' } });
    for (const f of feeds) f.lastMessageAt = START + 1_000;
    feeds[4]!.lastMessageAt = START; // ETH tickers
    clock.ms = START + 61_500;
    new CollectorMetrics(source, { shard: '2/4', clock, processMetrics: false }).logStaleness(logger);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 'info',
      msg: COLLECTOR_STALENESS_MSG,
      shard: '2/4',
      feeds: 6,
      // trades' window is 60 s, tickers' and books' 30 s
      staleFeeds: 6,
      maxFeedAgeSeconds: 61.5,
      oldestFeed: 'binance ETH/USDT tickers',
    });
  });
});

describe('serveCollectorMetrics', () => {
  let server: CollectorMetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves /metrics in the text format and /healthz, and nothing else', async () => {
    const { clock, counters, source } = collectorState();
    counters.collector.add('messages', 7);
    const metrics = new CollectorMetrics(source, { shard: '0/1', clock });
    server = await serveCollectorMetrics({ metrics, host: '127.0.0.1', port: 0, logger: silentLogger });
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const series = parseExposition(await res.text());
    expect(sample(series, 'collector_events_total', { counter: 'messages' })).toBe(7);
    // with process metrics by default
    expect(series.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});
