/**
 * Best bid/ask always (issue #6): while the collector stores a book snapshot at most once a minute,
 * every change of the top of book the simulated Binance makes reaches the stream as a quote, in
 * order and never repeated; the quotes are stored (PGlite, PostgreSQL and ClickHouse when up), a
 * replayed batch stores each once, and get_order_book / get_market_snapshot serve the newest one.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { BookFeed } from '../../layers/shared/src/collector/book-feed.js';
import { FeedLedger } from '../../layers/shared/src/collector/feed-ledger.js';
import type { OrderBook, Quote, StreamEvent } from '../../layers/shared/src/domain/index.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import type { CcxtOrderBookLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { SimulatedMarket, type TopOfBook } from '../../local/sim/market.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { waitFor } from '../support/pipeline.js';
import { describeWithService } from '../support/services.js';

const SYMBOL = 'BTC/USDT';
/** taker orders sent one at a time, each applied by the collector's book before the next */
const ORDERS = 40;

type Top = Pick<Quote, 'bid' | 'bidSize' | 'ask' | 'askSize' | 'seq'>;
const topOf = (q: Quote): Top => ({ bid: q.bid, bidSize: q.bidSize, ask: q.ask, askSize: q.askSize, seq: q.seq });
const simTop = (t: TopOfBook): Top => ({ bid: t.bid.price, bidSize: t.bid.amount, ask: t.ask.price, askSize: t.ask.amount, seq: t.lastUpdateId });
const sameTop = (a: Top, b: Top) => a.bid === b.bid && a.bidSize === b.bidSize && a.ask === b.ask && a.askSize === b.askSize;

const quotesOf = (events: readonly StreamEvent[]): Quote[] => events.filter((e): e is Quote => e.type === 'quote');
const booksOf = (events: readonly StreamEvent[]): OrderBook[] => events.filter((e): e is OrderBook => e.type === 'book');

describe('quotes from the simulated Binance book, snapshots throttled to one a minute', () => {
  let sim: SimulatedExchange;
  let pipeline: CollectorPipeline;
  /** the simulator's top of book after each order (and before the first), consecutive repeats collapsed */
  const expected: Top[] = [];
  let quotes: Quote[] = [];

  beforeAll(async () => {
    sim = await startSimulatedExchange({ seed: 91, symbols: [SYMBOL], autoRun: false, protocols: [binanceProtocol()] });
    pipeline = await startCollectorPipeline({
      markets: new Map([['binance', [SYMBOL]]]),
      endpoints: { binance: { rest: sim.httpUrl, ws: sim.wsUrl } },
      channels: ['books'],
      bookIntervalMs: 60_000,
    });
    const exchange = pipeline.service.exchanges[0]!.exchange as unknown as { orderbooks: Record<string, { nonce?: number } | undefined> };
    const feed = pipeline.service.collector.feeds.find((f) => f.channel === 'books')!;
    // the first book, verified against REST (its health change is the last snapshot published)
    await waitFor('a verified book', () => feed.bookHealth, (h) => h === 'healthy', { timeoutMs: 15_000 });
    const push = (top: Top) => {
      if (!expected.at(-1) || !sameTop(expected.at(-1)!, top)) expected.push(top);
    };
    push(simTop(sim.market.topOfBook(SYMBOL)));
    for (let i = 0; i < ORDERS; i++) {
      sim.market.step(1, SYMBOL);
      const id = sim.market.lastUpdateId(SYMBOL);
      push(simTop(sim.market.topOfBook(SYMBOL)));
      await waitFor(`the collector's book to apply order ${i}`, () => exchange.orderbooks[SYMBOL]?.nonce ?? 0, (n) => n >= id, { timeoutMs: 5_000, intervalMs: 5 });
    }
    await pipeline.settle();
    quotes = quotesOf(pipeline.published);
  }, 60_000);

  afterAll(async () => {
    await pipeline?.close();
    await sim?.close();
  });

  it('every top-of-book change arrives as a quote, in order, none repeated, between throttled snapshots', () => {
    expect(expected.length).toBeGreaterThan(ORDERS / 2);
    // the first quote is the top the book was built with; each after it, one order's change
    expect(quotes.map(topOf)).toEqual(expected);
    for (let i = 1; i < quotes.length; i++) {
      expect(sameTop(quotes[i]!, quotes[i - 1]!), `quote ${i} repeats the one before`).toBe(false);
      expect(quotes[i]!.seq!).toBeGreaterThan(quotes[i - 1]!.seq!);
      expect(quotes[i]!.ts).toBeGreaterThanOrEqual(quotes[i - 1]!.ts);
    }
    expect(quotes.every((q) => q.exchange === 'binance' && q.symbol === SYMBOL)).toBe(true);
    // the changes after verification carry the book's health
    expect(quotes.at(-1)!.health).toBe('healthy');
    // the snapshots: the first book and its health change, nothing at the one-minute throttle
    const books = booksOf(pipeline.published);
    expect(books.length).toBeLessThanOrEqual(3);
    expect(books.at(-1)!.health).toBe('healthy');
    expect(pipeline.service.collector.feeds.find((f) => f.channel === 'books')!.rejected).toBe(0);
  });

  it('are stored in PostgreSQL (PGlite) in order; the batch replayed twice stores each once', async () => {
    const q = { exchange: 'binance', symbol: SYMBOL, limit: 1_000 };
    expect(await pipeline.store.quotes(q)).toEqual(quotes);
    expect(await pipeline.store.latestQuote('binance', SYMBOL)).toEqual(quotes.at(-1));
    for (let i = 0; i < 2; i++) expect((await pipeline.store.writeEvents(quotes)).quotes).toBe(0);
    expect(await pipeline.store.quotes(q)).toEqual(quotes);
    expect(await pipeline.store.quotes({ ...q, newestFirst: true, limit: 3 })).toEqual(quotes.slice(-3).reverse());
    expect(await pipeline.store.quotes({ ...q, since: quotes[1]!.ts, until: quotes.at(-1)!.ts })).toEqual(quotes.filter((x) => x.ts >= quotes[1]!.ts && x.ts < quotes.at(-1)!.ts));
    const feeds = await pipeline.store.listFeeds();
    expect(feeds.find((f) => f.channel === 'quotes')).toMatchObject({ exchange: 'binance', symbol: SYMBOL, firstTs: quotes[0]!.ts, lastTs: quotes.at(-1)!.ts });
  });

  it('get_order_book returns the newest quote next to the older snapshot; get_market_snapshot takes bid/ask from it', async () => {
    const query = new MarketQueryService(pipeline.store, systemClock);
    const last = quotes.at(-1)!;
    const { book, quote, freshness } = await query.getOrderBook('binance', SYMBOL);
    expect(quote).toEqual(last);
    expect(last.ts).toBeGreaterThan(book!.ts);
    expect(freshness.newestTs).toBe(last.ts);
    const snapshot = (await query.getMarketSnapshot({ symbols: [SYMBOL] })).snapshots[0]!;
    expect(snapshot.bid).toMatchObject({ value: last.bid, ts: last.ts, source: 'quote' });
    expect(snapshot.ask).toMatchObject({ value: last.ask, ts: last.ts, source: 'quote' });

    // through an MCP client: the tools' outputSchemas hold the quote
    const server = buildServer({ query, version: 'test', logger: silentLogger });
    const client = new Client({ name: 'book-quotes', version: '1.0.0' });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    await client.connect(clientSide);
    try {
      const call = async (name: string, args: Record<string, unknown>) => {
        const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
        expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
        return result.structuredContent as Record<string, any>;
      };
      const out = await call('get_order_book', { exchange: 'binance', symbol: SYMBOL, depth: 1 });
      const top = sim.market.topOfBook(SYMBOL);
      expect(out['quote']).toEqual({
        ts: last.ts,
        tsIso: new Date(last.ts).toISOString(),
        localTs: last.localTs,
        seq: last.seq,
        bid: top.bid.price,
        bidSize: top.bid.amount,
        ask: top.ask.price,
        askSize: top.ask.amount,
        mid: (top.bid.price + top.ask.price) / 2,
        spread: top.ask.price - top.bid.price,
        health: 'healthy',
      });
      expect(out['freshness'].newestTs).toBe(last.ts);
      const snap = await call('get_market_snapshot', { symbols: [SYMBOL] });
      expect(snap['snapshots'][0].bid).toMatchObject({ value: top.bid.price, ts: last.ts, source: 'quote' });
    } finally {
      await client.close();
      await server.close();
    }
  });

  describeWithService('postgres', 'stored in PostgreSQL', (url) => {
    let database: TestDatabase;
    beforeAll(async () => {
      database = await createTestDatabase('postgres', url);
    });
    afterAll(() => database?.dispose());

    it('a batch written twice stores each quote once, read back exactly', async () => {
      const store = new PostgresMarketStore(database.db);
      expect((await store.writeEvents(quotes)).quotes).toBe(quotes.length);
      expect((await store.writeEvents([...quotes, ...quotes])).quotes).toBe(0);
      expect(await store.quotes({ exchange: 'binance', symbol: SYMBOL, limit: 1_000 })).toEqual(quotes);
      expect(await store.latestQuote('binance', SYMBOL)).toEqual(quotes.at(-1));
      const { rows } = await database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM quotes');
      expect(rows[0]!.n).toBe(quotes.length);
    });
  });

  describeWithService('clickhouse', 'stored in ClickHouse', (url) => {
    let ch: TestClickHouse;
    beforeAll(async () => {
      ch = await createClickHouseTestDatabase(url);
      // copies stay until read: the reads must deduplicate themselves
      await ch.stopMerges(['quotes']);
    });
    afterAll(() => ch?.dispose());

    it('a batch written twice is held twice and read once, bit-exact, in order', async () => {
      await ch.store.writeEvents(quotes);
      await ch.store.writeEvents(quotes);
      const [raw] = await ch.ch.query<{ n: string }>(sql`SELECT count() AS n FROM quotes`);
      expect(Number(raw!.n)).toBe(2 * quotes.length);
      const q = { exchange: 'binance', symbol: SYMBOL, limit: 1_000 };
      expect(await ch.store.quotes(q)).toEqual(quotes);
      expect(await ch.store.quotes({ ...q, newestFirst: true, limit: 3 })).toEqual(quotes.slice(-3).reverse());
      expect(await ch.store.latestQuote('binance', SYMBOL)).toEqual(quotes.at(-1));
      expect((await ch.store.listFeeds()).find((f) => f.channel === 'quotes')).toMatchObject({ firstTs: quotes[0]!.ts, lastTs: quotes.at(-1)!.ts });
    });

    it('a quote without an update id keeps a null seq', async () => {
      const q: Quote = { ...quotes[0]!, symbol: 'ETH/USDT', seq: null, health: 'unverified' };
      await ch.store.writeEvents([q, q]);
      expect(await ch.store.quotes({ exchange: 'binance', symbol: 'ETH/USDT', limit: 10 })).toEqual([q]);
    });
  });
});

describe('a quote is the top of a book that is neither crossed nor one-sided', () => {
  it('an unchanged top is not repeated; a crossed or empty side is rejected with its reason, once', () => {
    const market = new SimulatedMarket({ seed: 5, symbols: [SYMBOL], autoRun: false });
    market.step(20);
    const held = market.book(SYMBOL, 5);
    const levels = (side: typeof held.bids) => side.map((l) => [l.price, l.amount]);
    let book: CcxtOrderBookLike = { symbol: SYMBOL, timestamp: held.ts, nonce: held.lastUpdateId, bids: levels(held.bids), asks: levels(held.asks) };
    const ledger = new FeedLedger(systemClock, () => undefined, 'test');
    const state = ledger.feed('binance', SYMBOL, 'books');
    const emitted: (OrderBook | Quote)[] = [];
    const rejected: string[] = [];
    const feed = new BookFeed({
      exchange: 'binance',
      symbol: SYMBOL,
      state,
      clock: systemClock,
      logger: silentLogger,
      depth: 5,
      intervalMs: 60_000,
      crossCheck: null,
      current: () => book,
      resync: () => undefined,
      emit: (events) => emitted.push(...events),
      reject: (_sample, reason) => rejected.push(reason),
      setError: () => undefined,
      count: () => undefined,
    });
    const quotes = () => emitted.filter((e): e is Quote => e.type === 'quote');
    try {
      const now = held.ts + 5;
      feed.onBook(book, now);
      feed.onBook(book, now + 1);
      expect(quotes()).toEqual([
        {
          type: 'quote', exchange: 'binance', symbol: SYMBOL, ts: held.ts, localTs: now, seq: held.lastUpdateId,
          bid: held.bids[0]!.price, bidSize: held.bids[0]!.amount, ask: held.asks[0]!.price, askSize: held.asks[0]!.amount, health: 'unverified',
        },
      ]);
      // a size change at the touch is a change of the top
      const [bid, bidSize] = book.bids[0] as [number, number];
      book = { ...book, nonce: held.lastUpdateId + 1, bids: [[bid, bidSize + 1], ...book.bids.slice(1)] };
      feed.onBook(book, now + 2);
      expect(quotes().map((q) => [q.bidSize, q.seq])).toEqual([[bidSize, held.lastUpdateId], [bidSize + 1, held.lastUpdateId + 1]]);

      // one-sided: not a quote, rejected once while it stays so
      book = { ...book, nonce: held.lastUpdateId + 2, asks: [] };
      feed.onBook(book, now + 3);
      feed.onBook(book, now + 4);
      expect(rejected).toEqual(['binance quote is not valid: the book\'s ask side is empty']);
      // crossed: not a quote either (and the book breaks, as before)
      book = { ...book, nonce: held.lastUpdateId + 3, asks: [[bid, 1]] };
      feed.onBook(book, now + 5);
      expect(rejected.at(-1)).toMatch(/quote is not valid: ask: a quote is not crossed/);
      expect(rejected).toHaveLength(2);
      expect(state.bookBreaks).toBe(1);
      expect(quotes()).toHaveLength(2);
    } finally {
      feed.stop();
    }
  });
});
