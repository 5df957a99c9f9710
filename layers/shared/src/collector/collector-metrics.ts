import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Counters } from '../observability/counters.js';
import type { Logger } from '../observability/logger.js';
import type { Clock } from '../ports/index.js';
import type { CollectorService } from './collector-service.js';
import type { FeedState } from './feed-ledger.js';
import { DEFAULT_STALE_AFTER_MS, type CollectorChannel } from './market-collector.js';

/** The log line of the staleness summary (one a shard a period): CloudWatch metric filters read it. */
export const COLLECTOR_STALENESS_MSG = 'collector staleness';

/** Funding is polled every minute by default: three missed polls make it stale. */
const DEFAULT_FUNDING_STALE_AFTER_MS = 180_000;

/** What the metrics read of a running collector: its counters, its feeds and its batcher, at scrape time. */
export type CollectorMetricsSource = Pick<CollectorService, 'counters'> & {
  readonly collector: { readonly feeds: readonly FeedState[]; readonly ledger: { readonly startedAt: number } };
  readonly batcher: { readonly pending: number; readonly journalBytes: number; readonly streamDown: boolean };
};

export interface CollectorMetricsOptions {
  /** the shard label, as SHARD gives it (`0/1` when unsharded) */
  readonly shard: string;
  readonly clock: Clock;
  /** the collector's watchdog windows (default: its defaults); a feed quiet past its window counts as stale */
  readonly staleAfterMs?: Partial<Record<CollectorChannel, number>>;
  /** Node process metrics (default true; off in tests that build several registries) */
  readonly processMetrics?: boolean;
}

/** One feed's staleness, as of a moment. */
export interface FeedAge {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: string;
  /** seconds since the feed's last message (since the collector started, before the first one) */
  readonly ageSeconds: number;
  readonly stale: boolean;
}

/** The staleness of a shard's feeds in one line: what the periodic log line carries. */
export interface StalenessSummary {
  readonly shard: string;
  readonly feeds: number;
  readonly staleFeeds: number;
  readonly maxFeedAgeSeconds: number;
  /** `exchange symbol channel` of the oldest feed, or null without feeds */
  readonly oldestFeed: string | null;
}

/**
 * Prometheus metrics of one collector process. Every value is read from the collector's own state
 * when scraped (no timers): its counters, and per configured feed how long it has been quiet. Labels
 * come from the configured markets only (exchange, symbol, channel) plus the shard.
 */
export class CollectorMetrics {
  readonly registry = new Registry();
  private readonly staleAfter: Readonly<Record<CollectorChannel, number>>;

  constructor(
    private readonly source: CollectorMetricsSource,
    private readonly options: CollectorMetricsOptions,
  ) {
    this.staleAfter = { ...DEFAULT_STALE_AFTER_MS, funding: DEFAULT_FUNDING_STALE_AFTER_MS, ...definedOnly(options.staleAfterMs ?? {}) };
    const registers = [this.registry];
    const { shard } = options;
    const metrics = this;
    new Counter({
      name: 'collector_events_total',
      help: 'Collector counters by name: messages and events received, rejected, malformed and duplicate items, watch errors, reconnects, resubscribes, book breaks and resyncs.',
      labelNames: ['counter', 'shard'] as const,
      registers,
      collect() {
        setCounters(this, source.counters.collector, shard);
      },
    });
    new Counter({
      name: 'collector_stream_total',
      help: 'Stream publishing counters by name: events and records published, publish failures, events journaled, replayed from the journal and dropped.',
      labelNames: ['counter', 'shard'] as const,
      registers,
      collect() {
        setCounters(this, source.counters.batcher, shard);
      },
    });
    new Gauge({
      name: 'collector_feed_age_seconds',
      help: 'Seconds since the last message of a feed (since the collector started, before its first): its staleness.',
      labelNames: ['exchange', 'symbol', 'channel', 'shard'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of metrics.feedAges()) this.set({ exchange: f.exchange, symbol: f.symbol, channel: f.channel, shard }, f.ageSeconds);
      },
    });
    new Gauge({
      name: 'collector_feed_stale',
      help: "1 when a feed has been quiet longer than its watchdog window (the collector resubscribes it), else 0.",
      labelNames: ['exchange', 'symbol', 'channel', 'shard'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of metrics.feedAges()) this.set({ exchange: f.exchange, symbol: f.symbol, channel: f.channel, shard }, f.stale ? 1 : 0);
      },
    });
    new Gauge({
      name: 'collector_book_health',
      help: 'Order books: 1 for the health the book is in now (healthy, resyncing, stale, unverified), 0 for the others.',
      labelNames: ['exchange', 'symbol', 'shard', 'health'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of source.collector.feeds) {
          if (f.channel !== 'books' || f.bookHealth === null) continue;
          for (const health of ['healthy', 'resyncing', 'stale', 'unverified'] as const) {
            this.set({ exchange: f.exchange, symbol: f.symbol, shard, health }, f.bookHealth === health ? 1 : 0);
          }
        }
      },
    });
    new Gauge({
      name: 'collector_trade_gaps',
      help: 'Trade gaps of a market since the collector started, by outcome: detected, filled by REST, left unfilled.',
      labelNames: ['exchange', 'symbol', 'shard', 'outcome'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of source.collector.feeds) {
          if (f.channel !== 'trades') continue;
          const labels = { exchange: f.exchange, symbol: f.symbol, shard };
          this.set({ ...labels, outcome: 'detected' }, f.gapsDetected);
          this.set({ ...labels, outcome: 'filled' }, f.gapsFilled);
          this.set({ ...labels, outcome: 'unfilled' }, f.gapsUnfilled);
        }
      },
    });
    new Gauge({
      name: 'collector_buffered_events',
      help: 'Events held in memory, waiting for the stream.',
      labelNames: ['shard'] as const,
      registers,
      collect() {
        this.set({ shard }, source.batcher.pending);
      },
    });
    new Gauge({
      name: 'collector_journal_bytes',
      help: 'Bytes in the disk journal: events the stream has not taken yet.',
      labelNames: ['shard'] as const,
      registers,
      collect() {
        this.set({ shard }, source.batcher.journalBytes);
      },
    });
    new Gauge({
      name: 'collector_stream_down',
      help: '1 while publishing to the stream has been failing past the spill threshold (events go to the journal), else 0.',
      labelNames: ['shard'] as const,
      registers,
      collect() {
        this.set({ shard }, source.batcher.streamDown ? 1 : 0);
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** How long each configured feed has been quiet, as of now. */
  feedAges(): FeedAge[] {
    const now = this.options.clock.now();
    const startedAt = this.source.collector.ledger.startedAt;
    return this.source.collector.feeds.map((f) => {
      const quietMs = Math.max(0, now - (f.lastMessageAt ?? startedAt));
      const window = this.staleAfter[f.channel as CollectorChannel] ?? Number.POSITIVE_INFINITY;
      return { exchange: f.exchange, symbol: f.symbol, channel: f.channel, ageSeconds: quietMs / 1000, stale: quietMs > window };
    });
  }

  /** The shard's staleness in one record: how many feeds, how many stale, the oldest one. */
  staleness(): StalenessSummary {
    const ages = this.feedAges();
    const oldest = ages.reduce<FeedAge | null>((o, f) => (o === null || f.ageSeconds > o.ageSeconds ? f : o), null);
    return {
      shard: this.options.shard,
      feeds: ages.length,
      staleFeeds: ages.filter((f) => f.stale).length,
      maxFeedAgeSeconds: oldest ? Math.round(oldest.ageSeconds * 1000) / 1000 : 0,
      oldestFeed: oldest ? `${oldest.exchange} ${oldest.symbol} ${oldest.channel}` : null,
    };
  }

  /** Writes the staleness summary as one structured log line (read by CloudWatch metric filters). */
  logStaleness(logger: Logger): void {
    logger.info(COLLECTOR_STALENESS_MSG, { ...this.staleness() });
  }

  /** Text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export interface CollectorMetricsServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `/metrics` (Prometheus) and `/healthz` (200 while the process runs) on a port of its own,
 * as the MCP server does: nothing else is exposed.
 */
export async function serveCollectorMetrics(options: { metrics: CollectorMetrics; host: string; port: number; logger: Logger }): Promise<CollectorMetricsServer> {
  const { metrics, logger } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end();
    if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (path !== '/metrics') return void res.writeHead(404).end();
    metrics.render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (error: unknown) => {
        logger.warn('metrics rendering failed', { error });
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // a scraper's kept-alive connection would hold close() open
        server.closeAllConnections();
      }),
  };
}

/** Sets a counter's series to a Counters snapshot (prom-client counters only go up: reset, then add). */
function setCounters(counter: Counter<'counter' | 'shard'>, counters: Counters, shard: string): void {
  counter.reset();
  for (const [name, value] of Object.entries(counters.snapshot())) counter.inc({ counter: name, shard }, value);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
