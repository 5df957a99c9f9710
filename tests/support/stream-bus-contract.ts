import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import type { StreamBus, StreamRecord, StreamSubscription } from '../../layers/shared/src/ports/index.js';
import { decodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, book, trade } from '../fixtures/events.js';

/** What an adapter's test provides: a fresh, empty stream (topic) with its producer and a consumer. */
export interface StreamUnderTest {
  readonly bus: StreamBus;
  /** a new consumer positioned at the start of the stream (or after its last checkpoint) */
  subscribe(): Promise<StreamSubscription>;
  dispose(): Promise<void>;
}

type Keyed = { key: string; id: string };

async function readUntil(sub: StreamSubscription, count: number, timeoutMs: number, checkpoint = true): Promise<{ seen: Keyed[]; records: StreamRecord[] }> {
  const seen: Keyed[] = [];
  const records: StreamRecord[] = [];
  const deadline = Date.now() + timeoutMs;
  while (seen.length < count && Date.now() < deadline) {
    const batch = await sub.poll(500, 200);
    for (const r of batch) {
      records.push(r);
      for (const e of decodeEvents(r.data).events) seen.push({ key: r.partitionKey, id: e.type === 'trade' ? e.id : e.type });
    }
    if (checkpoint && batch.length > 0) {
      for (const [shard, last] of lastPerShard(batch)) await sub.checkpoint(shard, last);
    }
  }
  return { seen, records };
}

function lastPerShard(batch: readonly StreamRecord[]): Map<string, string> {
  const last = new Map<string, string>();
  for (const r of batch) last.set(r.shardId, r.sequenceNumber);
  return last;
}

/**
 * The behaviour every StreamBus adapter must have (in-process, Kinesis, Kafka): keys, order per key,
 * several events per record, at-least-once redelivery from a checkpoint.
 */
export function defineStreamBusContract(name: string, open: () => Promise<StreamUnderTest>, options: { timeoutMs?: number } = {}): void {
  const timeoutMs = options.timeoutMs ?? 20_000;
  describe(`StreamBus contract: ${name}`, () => {
    let stream: StreamUnderTest;
    beforeAll(async () => {
      stream = await open();
    }, 60_000);
    afterAll(() => stream?.dispose());

    it('delivers every event once per read, keyed exchange:symbol, in order per key', async () => {
      const events: MarketEvent[] = [];
      for (let i = 0; i < 300; i++) {
        const symbol = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'][i % 3]!;
        events.push(trade({ id: String(i), symbol, ts: T0 + i }));
      }
      const receipt = await stream.bus.publish(events);
      expect(receipt.events).toBe(300);
      // many events per record: far fewer records than events
      expect(receipt.records).toBeLessThan(30);
      const sub = await stream.subscribe();
      const { seen } = await readUntil(sub, 300, timeoutMs);
      await sub.close();
      expect(seen).toHaveLength(300);
      for (const symbol of ['BTC/USDT', 'ETH/USDT', 'SOL/USDT']) {
        const key = `binance:${symbol}`;
        const expected = events.filter((e) => e.symbol === symbol).map((e) => (e.type === 'trade' ? e.id : ''));
        expect(seen.filter((s) => s.key === key).map((s) => s.id)).toEqual(expected);
      }
    }, timeoutMs + 10_000);

    it('redelivers from a rewound position and resumes after the last checkpoint', async () => {
      const sub = await stream.subscribe();
      // drain what the previous test left unacknowledged in this consumer's view
      await readUntil(sub, Number.MAX_SAFE_INTEGER, 1_500);
      await stream.bus.publish([book({ symbol: 'XRP/USDT', ts: T0 + 1 }), trade({ id: 'r1', symbol: 'XRP/USDT', ts: T0 + 2 })]);
      const first = await readUntil(sub, 2, timeoutMs, false);
      expect(first.seen.map((s) => s.id)).toEqual(['book', 'r1']);
      const record = first.records[0]!;
      sub.rewind(record.shardId, record.sequenceNumber);
      const again = await readUntil(sub, 2, timeoutMs, false);
      expect(again.seen.map((s) => s.id)).toEqual(['book', 'r1']);
      for (const [shard, last] of lastPerShard(again.records)) await sub.checkpoint(shard, last);
      await sub.close();

      await stream.bus.publish([trade({ id: 'r2', symbol: 'XRP/USDT', ts: T0 + 3 })]);
      const next = await stream.subscribe();
      const after = await readUntil(next, 1, timeoutMs);
      await next.close();
      expect(after.seen.map((s) => s.id)).toEqual(['r2']);
    }, 3 * timeoutMs);
  });
}
