import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DiskJournal, type DiskJournalOptions } from '../../layers/shared/src/collector/disk-journal.js';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { EventBatcher, type BatcherCounter } from '../../layers/shared/src/collector/event-batcher.js';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { createLogger, silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { PublishReceipt, StreamBus } from '../../layers/shared/src/ports/index.js';
import { decodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { trade } from '../fixtures/events.js';

/** The in-process stream behind a switch that makes publishes fail, as a stream outage would. */
class OutageBus implements StreamBus {
  down = true;
  attempts = 0;
  constructor(readonly inner: MemoryStream) {}
  publish(events: readonly MarketEvent[]): Promise<PublishReceipt> {
    this.attempts += 1;
    if (this.down) return Promise.reject(new Error('stream unavailable'));
    return this.inner.publish(events);
  }
  close() {
    return this.inner.close();
  }
}

async function readAll(stream: MemoryStream): Promise<string[]> {
  return [...(await readByKey(stream)).values()].flat();
}

/** Trade ids per partition key, in stream order (order is kept per key, not across keys). */
async function readByKey(stream: MemoryStream): Promise<Map<string, string[]>> {
  const sub = stream.subscribe();
  const out = new Map<string, string[]>();
  for (;;) {
    const batch = await sub.poll(100, 0);
    if (batch.length === 0) return out;
    for (const r of batch) {
      const list = out.get(r.partitionKey) ?? [];
      out.set(r.partitionKey, list);
      list.push(...decodeEvents(r.data).events.map((e) => (e.type === 'trade' ? e.id : '')));
    }
    await sub.checkpoint(batch[0]!.shardId, batch.at(-1)!.sequenceNumber);
  }
}

describe('EventBatcher', () => {
  it('publishes in batches of at most maxEvents', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const counters = new Counters<BatcherCounter>();
    const batcher = new EventBatcher({ bus: stream, logger: silentLogger, counters, maxEvents: 4, maxDelayMs: 5 });
    batcher.add(Array.from({ length: 10 }, (_, i) => trade({ id: String(i) })));
    await batcher.flush();
    expect(await readAll(stream)).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(counters.get('published_events')).toBe(10);
    expect(counters.get('published_records')).toBe(3);
  });

  it('keeps events through a stream outage and publishes them in order afterwards', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const bus = new OutageBus(stream);
    const counters = new Counters<BatcherCounter>();
    const batcher = new EventBatcher({ bus, logger: silentLogger, counters, maxEvents: 3, maxDelayMs: 5 });
    batcher.add([trade({ id: '1' }), trade({ id: '2' })]);
    await expect.poll(() => counters.get('publish_failures')).toBeGreaterThan(1);
    batcher.add([trade({ id: '3' }), trade({ id: '4' })]);
    expect(batcher.pending).toBe(4);
    bus.down = false;
    await batcher.flush();
    expect(await readAll(stream)).toEqual(['1', '2', '3', '4']);
    expect(batcher.pending).toBe(0);
    batcher.stop();
  });

  it('without a journal, bounds memory by dropping the oldest events past maxBuffered (counted)', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const bus = new OutageBus(stream);
    const counters = new Counters<BatcherCounter>();
    const batcher = new EventBatcher({ bus, logger: silentLogger, counters, maxBuffered: 5, maxDelayMs: 1_000 });
    batcher.add(Array.from({ length: 8 }, (_, i) => trade({ id: String(i) })));
    expect(batcher.pending).toBe(5);
    expect(counters.get('dropped_events')).toBe(3);
    bus.down = false;
    await batcher.flush();
    expect(await readAll(stream)).toEqual(['3', '4', '5', '6', '7']);
    batcher.stop();
  });
});

/** A stream whose publishes wait at a gate while `held`, then succeed or fail as told. */
class GateBus implements StreamBus {
  held = false;
  private waiting: { release: (ok: boolean) => void }[] = [];
  constructor(readonly inner: MemoryStream) {}
  async publish(events: readonly MarketEvent[]): Promise<PublishReceipt> {
    if (this.held) {
      const ok = await new Promise<boolean>((release) => this.waiting.push({ release }));
      if (!ok) throw new Error('stream unavailable');
    }
    return this.inner.publish(events);
  }
  get waitingPublishes(): number {
    return this.waiting.length;
  }
  /** Lets the waiting publishes go, succeeding or failing. */
  open(ok: boolean) {
    this.held = false;
    for (const w of this.waiting.splice(0)) w.release(ok);
  }
  close() {
    return this.inner.close();
  }
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function openJournal(counters: Counters<BatcherCounter>, options: Partial<DiskJournalOptions> = {}, dir?: string) {
  const d = dir ?? mkdtempSync(join(tmpdir(), 'qicore-batcher-'));
  if (!dir) dirs.push(d);
  return DiskJournal.open({ dir: d, logger: silentLogger, counters, ...options });
}

const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => String(from + i));
/** Trades `from`..`from+n-1`: odd ids on BTC/USDT, even ids on ETH/USDT (two partition keys). */
const trades = (from: number, n: number) => ids(from, n).map((id) => trade({ id, symbol: Number(id) % 2 ? 'BTC/USDT' : 'ETH/USDT' }));
/** What the stream must hold for trades 1..n: each key's ids in order. */
const expected = (n: number) =>
  new Map([
    ['binance:BTC/USDT', ids(1, n).filter((id) => Number(id) % 2 === 1)],
    ['binance:ETH/USDT', ids(1, n).filter((id) => Number(id) % 2 === 0)],
  ]);

describe('EventBatcher with a disk journal', () => {
  it('spills to the journal once the stream has been down for spillAfterMs, and replays it in order when it is back', async () => {
    const stream = new MemoryStream({ shards: 2 });
    const bus = new OutageBus(stream);
    const counters = new Counters<BatcherCounter>();
    const journal = await openJournal(counters);
    const batcher = new EventBatcher({ bus, logger: silentLogger, counters, journal, maxEvents: 10, maxDelayMs: 5, spillAfterMs: 50 });
    batcher.add(trades(1, 5));
    await expect.poll(() => batcher.streamDown).toBe(true);
    for (let i = 0; i < 10; i++) batcher.add(trades(6 + i * 10, 10));
    // the stream is down: events went to disk, not memory
    expect(counters.get('journaled_events')).toBeGreaterThanOrEqual(100);
    expect(batcher.pending).toBe(0);
    expect(journal.bytes).toBeGreaterThan(0);
    bus.down = false;
    batcher.add(trades(106, 3));
    await batcher.flush();
    expect(await readByKey(stream)).toEqual(expected(108));
    expect(counters.get('replayed_events')).toBeGreaterThanOrEqual(100);
    expect(counters.get('dropped_events')).toBe(0);
    expect(journal.isEmpty).toBe(true);
    // published segments are deleted (the one being written may stay, empty of unread entries)
    expect(readdirSync(journal.dir).length).toBeLessThanOrEqual(1);
    batcher.stop();
    journal.close();
  });

  it('bounds memory: past maxBuffered events go to the journal, none is dropped, order holds', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const bus = new OutageBus(stream);
    const counters = new Counters<BatcherCounter>();
    const journal = await openJournal(counters);
    // spillAfterMs far away: only the memory cap sends events to disk
    const batcher = new EventBatcher({ bus, logger: silentLogger, counters, journal, maxBuffered: 20, maxEvents: 7, maxDelayMs: 5, spillAfterMs: 60_000 });
    for (let i = 0; i < 30; i++) batcher.add(trades(1 + i * 3, 3));
    expect(batcher.peakPending).toBeLessThanOrEqual(20);
    expect(counters.get('journaled_events')).toBeGreaterThan(0);
    bus.down = false;
    await batcher.flush();
    expect(await readByKey(stream)).toEqual(expected(90));
    expect(counters.get('dropped_events')).toBe(0);
    batcher.stop();
    journal.close();
  });

  it('a batch in flight when memory spills is journaled ahead of the rest: no loss or reordering whether its publish then fails or succeeds', async () => {
    for (const outcome of [false, true]) {
      const stream = new MemoryStream({ shards: 1 });
      const bus = new GateBus(stream);
      const counters = new Counters<BatcherCounter>();
      const journal = await openJournal(counters);
      const batcher = new EventBatcher({ bus, logger: silentLogger, counters, journal, maxBuffered: 10, maxEvents: 4, maxDelayMs: 1, spillAfterMs: 60_000 });
      bus.held = true;
      batcher.add(trades(1, 4));
      await expect.poll(() => bus.waitingPublishes).toBe(1);
      // events 1-4 are in flight; 5-15 pass the memory cap: 1-4 are journaled first, then 5-15
      batcher.add(trades(5, 11));
      expect(batcher.pending).toBe(0);
      expect(counters.get('journaled_events')).toBe(15);
      bus.open(outcome);
      batcher.add(trades(16, 2));
      await batcher.flush();
      // a publish that succeeded after all: its journal copy is skipped, nothing is published twice
      expect(await readByKey(stream), `in-flight publish ${outcome ? 'succeeded' : 'failed'}`).toEqual(expected(17));
      batcher.stop();
      journal.close();
    }
  });

  it('publishes a journal left by an earlier run before anything new', async () => {
    const counters = new Counters<BatcherCounter>();
    const dir = mkdtempSync(join(tmpdir(), 'qicore-batcher-'));
    dirs.push(dir);
    const before = await openJournal(counters, {}, dir);
    before.append(trades(1, 6));
    before.close();

    const stream = new MemoryStream({ shards: 1 });
    const journal = await openJournal(counters, {}, dir);
    const batcher = new EventBatcher({ bus: stream, logger: silentLogger, counters, journal, maxEvents: 4, maxDelayMs: 5 });
    batcher.add(trades(7, 3));
    await batcher.flush();
    expect(await readByKey(stream)).toEqual(expected(9));
    expect(counters.get('replayed_events')).toBe(6);
    expect(journal.isEmpty).toBe(true);
    batcher.stop();
    journal.close();
  });

  it('close() with the stream down journals what is in memory at once (no waiting out the deadline) and fsyncs it for the next run', async () => {
    const counters = new Counters<BatcherCounter>();
    const dir = mkdtempSync(join(tmpdir(), 'qicore-batcher-'));
    dirs.push(dir);
    const stream = new MemoryStream({ shards: 1 });
    const bus = new OutageBus(stream);
    const journal = await openJournal(counters, {}, dir);
    const batcher = new EventBatcher({ bus, logger: silentLogger, counters, journal, maxEvents: 50, maxDelayMs: 1, spillAfterMs: 30 });
    batcher.add(trades(1, 20));
    await expect.poll(() => batcher.streamDown).toBe(true);
    batcher.add(trades(21, 5));
    const summary = await batcher.close(60_000);
    expect(summary.dropped).toBe(0);
    expect(counters.get('journaled_events')).toBe(25);
    expect(summary.journalBytes).toBeGreaterThan(0);
    expect(batcher.pending).toBe(0);

    // the next run, stream back: everything, in order
    bus.down = false;
    const next = await openJournal(new Counters<BatcherCounter>(), {}, dir);
    const second = new EventBatcher({ bus, logger: silentLogger, counters: new Counters<BatcherCounter>(), journal: next, maxDelayMs: 1 });
    await second.flush();
    expect(await readByKey(stream)).toEqual(expected(25));
    second.stop();
    next.close();
  });

  it('close() with the stream up publishes everything and leaves an empty journal', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const counters = new Counters<BatcherCounter>();
    const journal = await openJournal(counters);
    const batcher = new EventBatcher({ bus: stream, logger: silentLogger, counters, journal, maxDelayMs: 1_000 });
    batcher.add(trades(1, 12));
    expect(await batcher.close()).toEqual({ journaled: 0, dropped: 0, journalBytes: 0 });
    expect(await readByKey(stream)).toEqual(expected(12));
  });

  it('drops events only when the journal is at its cap: counted and logged as errors, the rest delivered in order', async () => {
    const stream = new MemoryStream({ shards: 1 });
    const bus = new OutageBus(stream);
    const counters = new Counters<BatcherCounter>();
    const journal = await openJournal(counters, { maxBytes: 2_000, segmentBytes: 1_024 });
    const lines: { level: string; msg: string }[] = [];
    const logger = createLogger({ sink: (l) => lines.push(JSON.parse(l) as { level: string; msg: string }) });
    const batcher = new EventBatcher({ bus, logger, counters, journal, maxBuffered: 10, maxEvents: 5, maxDelayMs: 1, spillAfterMs: 60_000 });
    for (let i = 0; i < 20; i++) batcher.add(trades(1 + i * 5, 5));
    const dropped = counters.get('dropped_events');
    expect(dropped).toBeGreaterThan(0);
    expect(lines.some((l) => l.level === 'error' && l.msg.includes('EVENTS LOST'))).toBe(true);
    bus.down = false;
    await batcher.flush();
    const got = await readByKey(stream);
    expect([...got.values()].flat().length + dropped).toBe(100);
    // what was kept is in order per key, and starts at the beginning: the journal refuses the newest
    for (const [key, list] of got) {
      expect(list, key).toEqual([...list].sort((a, b) => Number(a) - Number(b)));
      expect(Number(list[0]), key).toBeLessThanOrEqual(2);
    }
    batcher.stop();
    journal.close();
  });
});
