import { describe, expect, it } from 'vitest';
import { MemoryStream, StreamFullError } from '../../layers/shared/src/adapters/stream/memory-stream-bus.js';
import type { StreamRecord } from '../../layers/shared/src/ports/index.js';
import { decodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { trade } from '../fixtures/events.js';

const ids = (records: readonly StreamRecord[]) => records.flatMap((r) => decodeEvents(r.data).events.map((e) => (e.type === 'trade' ? e.id : '?')));

describe('MemoryStream', () => {
  it('keeps one partition key on one shard, in order, several events per record', async () => {
    const stream = new MemoryStream({ shards: 4, maxEventsPerRecord: 3 });
    const events = Array.from({ length: 10 }, (_, i) => trade({ id: String(i), symbol: i % 2 ? 'BTC/USDT' : 'ETH/USDT' }));
    const receipt = await stream.publish(events);
    expect(receipt).toMatchObject({ events: 10, records: 4 });
    const sub = stream.subscribe();
    const seen = new Map<string, string[]>();
    for (let i = 0; i < 4; i++) {
      const batch = await sub.poll(100, 0);
      for (const r of batch) {
        expect(r.partitionKey).toMatch(/^binance:(BTC|ETH)\/USDT$/);
        const list = seen.get(r.partitionKey) ?? [];
        list.push(...ids([r]));
        seen.set(r.partitionKey, list);
        if (batch.length) await sub.checkpoint(r.shardId, r.sequenceNumber);
      }
    }
    expect(seen.get('binance:BTC/USDT')).toEqual(['1', '3', '5', '7', '9']);
    expect(seen.get('binance:ETH/USDT')).toEqual(['0', '2', '4', '6', '8']);
    expect(stream.backlog).toBe(0);
  });

  it('redelivers from a rewound sequence number', async () => {
    const stream = new MemoryStream({ shards: 1, maxEventsPerRecord: 1 });
    await stream.publish([trade({ id: '1' }), trade({ id: '2' }), trade({ id: '3' })]);
    const sub = stream.subscribe();
    const first = await sub.poll(10, 0);
    expect(ids(first)).toEqual(['1', '2', '3']);
    await sub.checkpoint(first[0]!.shardId, first[0]!.sequenceNumber);
    sub.rewind(first[1]!.shardId, first[1]!.sequenceNumber);
    expect(ids(await sub.poll(10, 0))).toEqual(['2', '3']);
    expect(stream.backlog).toBe(2);
  });

  it('makes publishers wait while full and fails with StreamFullError if nobody drains', async () => {
    const stream = new MemoryStream({ shards: 1, capacity: 2, publishTimeoutMs: 50, maxEventsPerRecord: 1 });
    await stream.publish([trade({ id: '1' }), trade({ id: '2' })]);
    await expect(stream.publish([trade({ id: '3' })])).rejects.toThrow(StreamFullError);

    const sub = stream.subscribe();
    const pending = stream.publish([trade({ id: '4' })]);
    const [r1] = await sub.poll(1, 0);
    await sub.checkpoint(r1!.shardId, r1!.sequenceNumber);
    await expect(pending).resolves.toMatchObject({ events: 1 });
  });

  it('wakes a waiting poll when records arrive', async () => {
    const stream = new MemoryStream();
    const sub = stream.subscribe();
    const polled = sub.poll(10, 5_000);
    await stream.publish([trade({ id: '7' })]);
    expect(ids(await polled)).toEqual(['7']);
  });
});
