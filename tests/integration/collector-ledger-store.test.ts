/**
 * The completeness ledger and funding snapshots on their way from the stream to the store: the
 * store writer routes each event type to the store that keeps it, the ledger store is idempotent
 * (replays, reordering, a stale `open` after `filled`), and the reader sums feed health over runs.
 */
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { StoreWriterCounter } from '../../layers/shared/src/consumers/store-writer.js';
import { createTimescaleWriterHandler } from '../../layers/shared/src/consumers/timescale-writer.js';
import { createClickHouseWriterHandler } from '../../layers/shared/src/consumers/clickhouse-writer.js';
import type { FeedStatus, FundingEvent, GapEvent } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, kinesisEvent, trade } from '../fixtures/events.js';
import { createClickHouseTestDatabase } from '../support/clickhouse.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { describeWithService } from '../support/services.js';

const ctx = {} as Context;

function status(overrides: Partial<FeedStatus> = {}): FeedStatus {
  return {
    type: 'feed_status',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    channel: 'trades',
    runId: 'run-1',
    startedAt: T0,
    ts: T0 + 5_000,
    messages: 100,
    events: 100,
    rejected: 1,
    malformed: 2,
    duplicates: 3,
    reordered: 0,
    gapsDetected: 1,
    gapsFilled: 1,
    gapsUnfilled: 0,
    tradesRecovered: 7,
    reconnects: 1,
    resubscribes: 0,
    watchErrors: 1,
    lastMessageTs: T0 + 4_000,
    lastMessageLocalTs: T0 + 4_010,
    lastError: null,
    malformedSample: '{"e":"trade","p":"abc"}',
    ...overrides,
  };
}

function gap(overrides: Partial<GapEvent> = {}): GapEvent {
  return {
    type: 'gap',
    exchange: 'binance',
    symbol: 'BTC/USDT',
    channel: 'trades',
    gapId: 'run-1:binance:BTC/USDT:1',
    runId: 'run-1',
    kind: 'id',
    reason: 'sequence',
    status: 'open',
    fromId: '101',
    toId: '107',
    fromTs: T0 + 1_000,
    toTs: T0 + 2_000,
    missing: 7,
    recovered: 0,
    detectedAt: T0 + 2_100,
    resolvedAt: null,
    detail: null,
    ts: T0 + 2_100,
    ...overrides,
  };
}

const filled = (overrides: Partial<GapEvent> = {}) =>
  gap({ status: 'filled', recovered: 7, resolvedAt: T0 + 2_500, ts: T0 + 2_500, detail: 'filled from REST', ...overrides });

function funding(overrides: Partial<FundingEvent> = {}): FundingEvent {
  return {
    type: 'funding',
    exchange: 'okx',
    symbol: 'BTC/USDT:USDT',
    ts: T0,
    localTs: T0 + 3,
    fundingRate: 0.0001,
    nextFundingTs: T0 + 8 * 3_600_000,
    markPrice: 65_000.5,
    indexPrice: 65_001,
    openInterest: null,
    openInterestValue: null,
    ...overrides,
  };
}

describe('completeness ledger in PostgreSQL (PGlite)', () => {
  let database: TestDatabase;
  let store: PostgresMarketStore;
  let ledger: PostgresLedgerStore;
  let counters: Counters<StoreWriterCounter>;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    store = new PostgresMarketStore(database.db);
    ledger = new PostgresLedgerStore(database.db, () => T0 + 10_000);
  });
  afterAll(() => database?.dispose());
  beforeEach(async () => {
    await database.db.exec('TRUNCATE trades, feeds, funding_open_interest, feed_status, feed_gaps, dead_letters');
    counters = new Counters();
  });

  it('routes trades to the market store, funding to writeFunding and ledger events to the ledger', async () => {
    const handler = createTimescaleWriterHandler({ writer: store, ledger, logger: silentLogger, counters, source: 'test' });
    const record = encodeEvents([trade({ id: '1' }), funding(), funding({ ts: T0 + 60_000, fundingRate: null, openInterest: 1234.5, openInterestValue: 8e7 }), status(), gap()]);
    expect((await handler(kinesisEvent([record]), ctx)).batchItemFailures).toEqual([]);
    expect(await store.trades({ exchange: 'binance', symbol: 'BTC/USDT', limit: 10 })).toHaveLength(1);
    const rows = await store.funding({ exchange: 'okx', symbol: 'BTC/USDT:USDT', limit: 10 });
    expect(rows.map((r) => [r.fundingRate, r.openInterest])).toEqual([
      [0.0001, null],
      [null, 1234.5],
    ]);
    expect(await ledger.gaps()).toMatchObject([{ gapId: 'run-1:binance:BTC/USDT:1', status: 'open', fromId: '101', toId: '107', missing: 7 }]);
    expect(counters.get('funding_written')).toBe(2);
    expect(counters.get('ledger_written')).toBe(2);
    expect(counters.get('dead_lettered')).toBe(0);
  });

  it('keeps the final state of a gap: a replayed or late `open` never reopens it', async () => {
    await ledger.writeLedger([gap()]);
    await ledger.writeLedger([filled()]);
    await ledger.writeLedger([gap()]);
    // both states in one batch, in either order
    await ledger.writeLedger([filled({ gapId: 'g2' }), gap({ gapId: 'g2' })]);
    await ledger.writeLedger([gap({ gapId: 'g3' }), gap({ gapId: 'g3', status: 'unfilled', detail: 'REST returned 0 of 7', resolvedAt: T0 + 9_000, ts: T0 + 9_000 })]);
    const byId = new Map((await ledger.gaps()).map((g) => [g.gapId, g]));
    expect(byId.get('run-1:binance:BTC/USDT:1')).toMatchObject({ status: 'filled', recovered: 7, resolvedAt: T0 + 2_500, detail: 'filled from REST' });
    expect(byId.get('g2')).toMatchObject({ status: 'filled', recovered: 7 });
    expect(byId.get('g3')).toMatchObject({ status: 'unfilled', detail: 'REST returned 0 of 7' });
    expect((await ledger.gaps({ status: 'unfilled' })).map((g) => g.gapId)).toEqual(['g3']);
    expect((await ledger.gaps({ since: T0 + 3_000 })).length).toBe(0);
  });

  it('keeps the greatest counters of a run, sums runs, and ages the last message from asOf', async () => {
    await ledger.writeLedger([status({ messages: 200, ts: T0 + 10_000, lastMessageLocalTs: T0 + 9_000 })]);
    // an older snapshot of the same run, replayed late, changes nothing
    await ledger.writeLedger([status()]);
    // a second run (the collector restarted) counts from zero
    await ledger.writeLedger([status({ runId: 'run-2', messages: 5, gapsDetected: 2, gapsFilled: 1, gapsUnfilled: 1, lastError: 'NetworkError: boom', ts: T0 + 20_000, lastMessageLocalTs: T0 + 19_000 })]);
    await ledger.writeLedger([status({ channel: 'all', symbol: '*', messages: 0, malformed: 4 }), gap({ gapId: 'open-one' })]);
    const [trades] = await ledger.feedHealth({ exchange: 'binance', symbol: 'BTC/USDT', channel: 'trades', asOf: T0 + 21_000 });
    expect(trades).toMatchObject({
      messages: 205,
      gapsDetected: 3,
      gapsFilled: 2,
      gapsUnfilled: 1,
      gapsOpen: 1,
      runs: 2,
      lastMessageLocalTs: T0 + 19_000,
      lastMessageAgeMs: 2_000,
      lastError: 'NetworkError: boom',
      malformedSample: '{"e":"trade","p":"abc"}',
      reportedAt: T0 + 20_000,
    });
    const all = await ledger.feedHealth();
    expect(all.map((h) => [h.symbol, h.channel])).toEqual([
      ['*', 'all'],
      ['BTC/USDT', 'trades'],
    ]);
    expect(all[0]).toMatchObject({ malformed: 4, gapsOpen: 0 });
  });

  it('skips ledger events, counted, when the writer has no ledger', async () => {
    const handler = createTimescaleWriterHandler({ writer: store, logger: silentLogger, counters, source: 'test' });
    await handler(kinesisEvent([encodeEvents([trade({ id: '1' }), status(), gap()])]), ctx);
    expect(counters.get('events_skipped')).toBe(2);
    expect(counters.get('trades_written')).toBe(1);
    expect(await ledger.gaps()).toEqual([]);
  });
});

describeWithService('clickhouse', 'ClickHouse writer with ledger and funding events', (url) => {
  it('writes the market events and skips funding and ledger events, counted', async () => {
    const ch = await createClickHouseTestDatabase(url);
    try {
      const counters = new Counters<StoreWriterCounter>();
      const handler = createClickHouseWriterHandler({ writer: ch.store, logger: silentLogger, counters, source: 'test' });
      const response = await handler(kinesisEvent([encodeEvents([trade({ id: '1' }), funding(), status(), gap()])]), ctx);
      expect(response.batchItemFailures).toEqual([]);
      expect(counters.get('trades_written')).toBe(1);
      expect(counters.get('events_skipped')).toBe(3);
      expect(counters.get('dead_lettered')).toBe(0);
      expect(await ch.rawCount('trades')).toBe(1);
    } finally {
      await ch.dispose();
    }
  });
});
