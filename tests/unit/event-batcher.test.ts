import { describe, expect, it } from 'vitest';
import { MemoryStream } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { EventBatcher, type BatcherCounter } from '../../layers/shared/src/collector/event-batcher.js';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
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
  const sub = stream.subscribe();
  const out: string[] = [];
  for (;;) {
    const batch = await sub.poll(100, 0);
    if (batch.length === 0) return out;
    for (const r of batch) out.push(...decodeEvents(r.data).events.map((e) => (e.type === 'trade' ? e.id : '')));
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

  it('bounds memory: past maxBuffered the oldest events are dropped and counted', async () => {
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
