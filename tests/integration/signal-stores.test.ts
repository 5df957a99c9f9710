import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseSignalReader } from '../../layers/shared/src/adapters/stores/clickhouse-signal-reader.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { writeRecords, type IncomingRecord, type StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import type { Signal, StreamEvent } from '../../layers/shared/src/domain/index.js';
import { partitionKeyOf } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { MarketWriter } from '../../layers/shared/src/ports/index.js';
import type { SignalQuery, SignalReader } from '../../layers/shared/src/ports/signal-reader.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, trade } from '../fixtures/events.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { createTestStore, type TestStore } from '../support/databases.js';
import { describeWithService } from '../support/services.js';
import { forEachStoreBackend } from '../support/store-backends.js';

interface SignalBackend {
  readonly writer: MarketWriter;
  readonly reader: SignalReader;
  /** rows physically held for `id` (copies not merged yet included) */
  rawRows(id: string): Promise<number>;
}

let n = 0;
/** A signal with a fresh id; ids are lowercase UUIDs whose order follows `n` within a millisecond. */
function signal(overrides: Partial<Signal> = {}): Signal {
  n += 1;
  return {
    type: 'signal',
    id: `${n.toString(16).padStart(8, '0')}-1111-4111-8111-${'0'.repeat(12)}`,
    ts: T0,
    publisher: 'agent-alice',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    direction: 'long',
    strength: 0.1,
    confidence: 1 / 3,
    horizon: '4h',
    rationale: 'RSI(14) < 30',
    ...overrides,
  };
}

const record = (id: string, events: readonly StreamEvent[]): IncomingRecord => ({
  id,
  partitionKey: partitionKeyOf(events[0]!),
  data: encodeEvents(events),
});

/** Newest first, ties by id descending: the order every reader must give. */
const newestFirst = (signals: readonly Signal[]) => [...signals].sort((a, b) => b.ts - a.ts || (a.id < b.id ? 1 : -1));

/** The same contract on every store: exact round trip, filters, keyset pages, redelivery read once. */
function signalContract(open: () => Promise<SignalBackend & { dispose(): Promise<void> }>, counts: 'new rows' | 'rows sent') {
  let backend: SignalBackend & { dispose(): Promise<void> };
  const all: Signal[] = [];

  beforeAll(async () => {
    backend = await open();
    all.push(
      signal({ ts: T0, rationale: "quotes ' and \\ and \n newlines; -- DROP TABLE signals; ✓ 🚀" }),
      signal({ ts: T0, exchange: null, direction: 'flat', strength: 0, confidence: 1 }),
      signal({ ts: T0, publisher: 'agent-bob', direction: 'short' }),
      signal({ ts: T0 + 1000, symbol: 'ETH/USDT', exchange: 'okx', strength: 0.3, confidence: 0.7 }),
      signal({ ts: T0 + 1000, symbol: 'BTC/USDT:USDT', publisher: 'agent-bob', horizon: '1d' }),
      signal({ ts: T0 + 2000, direction: 'short', rationale: 'x'.repeat(4000) }),
      signal({ ts: T0 + 3000, exchange: null, publisher: 'agent-carol' }),
    );
    await backend.writer.writeSignals(all);
  });
  afterAll(async () => backend?.dispose());

  const read = (q: Partial<SignalQuery> = {}) => backend.reader.readSignals({ limit: 100, ...q });

  it('reads every field back exactly, newest first with ties by id', async () => {
    expect(await read()).toEqual(newestFirst(all));
  });

  it('filters by exchange, symbol, publisher, direction and a [since, until) range, alone and together', async () => {
    const ids = async (q: Partial<SignalQuery>) => (await read(q)).map((s) => s.id);
    const expected = (keep: (s: Signal) => boolean) => newestFirst(all.filter(keep)).map((s) => s.id);
    expect(await ids({ exchange: 'binance' })).toEqual(expected((s) => s.exchange === 'binance'));
    expect(await ids({ symbol: 'BTC/USDT' })).toEqual(expected((s) => s.symbol === 'BTC/USDT'));
    expect(await ids({ publisher: 'agent-bob' })).toEqual(expected((s) => s.publisher === 'agent-bob'));
    expect(await ids({ direction: 'short' })).toEqual(expected((s) => s.direction === 'short'));
    expect(await ids({ since: T0 + 1000, until: T0 + 3000 })).toEqual(expected((s) => s.ts >= T0 + 1000 && s.ts < T0 + 3000));
    expect(await ids({ symbol: 'BTC/USDT', direction: 'short', publisher: 'agent-alice' })).toEqual(
      expected((s) => s.symbol === 'BTC/USDT' && s.direction === 'short' && s.publisher === 'agent-alice'),
    );
    expect(await ids({ symbol: 'SOL/USDT' })).toEqual([]);
  });

  it('pages with the keyset cursor through every signal once, also inside one millisecond', async () => {
    const service = new SignalService({ writer: backend.writer, reader: backend.reader, clock: { now: () => T0 + 10_000 } });
    for (const limit of [1, 2, 3]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await service.list({ limit, cursor });
        expect(page.freshness.newestTs).toBe(T0 + 3000);
        seen.push(...page.signals.map((s) => s.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(seen, `limit ${limit}`).toEqual(newestFirst(all).map((s) => s.id));
    }
    // freshness follows the filters, not the page
    const bob = await service.list({ publisher: 'agent-bob', until: T0 + 500 });
    expect(bob.signals).toHaveLength(1);
    expect(bob.freshness.newestTs).toBe(T0 + 1000);
  });

  it(`stores a signal delivered twice once (counted as ${counts}), beside the trade of the same record`, async () => {
    const again = signal({ ts: T0 + 5000, symbol: 'DOGE/USDT', publisher: 'agent-dave' });
    const counters = new Counters<StoreWriterCounter>();
    const deps = { writer: backend.writer, logger: silentLogger, counters, source: 'test' };
    const batch = [record('1', [trade({ symbol: 'DOGE/USDT', id: 'd1', ts: T0 + 5000 }), again]), record('2', [again])];
    expect(await writeRecords(batch, deps)).toEqual([]);
    expect(await writeRecords(batch, deps)).toEqual([]); // the whole batch redelivered
    expect(counters.get('trades_written')).toBeGreaterThanOrEqual(1);
    expect(counters.get('dead_lettered')).toBe(0);
    expect(counters.get('signals_written')).toBe(counts === 'new rows' ? 1 : 4);
    expect(await read({ publisher: 'agent-dave' })).toEqual([again]);
    expect(await backend.rawRows(again.id)).toBe(counts === 'new rows' ? 1 : 4);
  });
}

forEachStoreBackend('signals', (kind, serverUrl) => {
  signalContract(async () => {
    const test: TestStore = await createTestStore(kind, serverUrl);
    return {
      writer: test.store,
      reader: new PostgresSignalReader(test.db),
      rawRows: async (id) => (await test.db.query<{ n: number }>('SELECT count(*)::int AS n FROM signals WHERE id = $1::uuid', [id])).rows[0]!.n,
      dispose: () => test.dispose(),
    };
  }, 'new rows');

  describe('the reads use the signal indexes', () => {
    let test: TestStore;
    beforeAll(async () => {
      test = await createTestStore(kind, serverUrl);
    });
    afterAll(async () => test?.dispose());

    it('creates the symbol and publisher indexes (0010_signal_reads.sql)', async () => {
      const { rows } = await test.db.query<{ indexname: string }>(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'signals' AND indexname LIKE 'signals_%_ts' ORDER BY indexname",
      );
      expect(rows.map((r) => r.indexname)).toEqual(['signals_publisher_ts', 'signals_symbol_ts']);
    });
  });
});

describeWithService('clickhouse', 'signals on ClickHouse', (url) => {
  signalContract(async () => {
    const test: TestClickHouse = await createClickHouseTestDatabase(url);
    // copies of a redelivered signal must stay unmerged, so the read's own deduplication is what is tested
    await test.stopMerges(['signals']);
    return {
      writer: test.store,
      reader: new ClickHouseSignalReader(test.ch),
      rawRows: async (id) => Number((await test.ch.query<{ n: string }>(sql`SELECT count() AS n FROM signals WHERE id = ${id}`))[0]!.n),
      dispose: () => test.dispose(),
    };
  }, 'rows sent');
});
