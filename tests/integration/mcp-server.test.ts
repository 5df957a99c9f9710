import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { MarketEvent, Trade } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer, MCP_SERVER_NAME } from '../../layers/shared/src/mcp/server.js';
import { serveStdio } from '../../layers/shared/src/mcp/stdio.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { T0, book, ticker, trade } from '../fixtures/events.js';
import { expectTextTwin } from '../support/tool-text.js';

const MIN = 60_000;
const TRADES = 1005;
/** Server time of every answer: 9.4s after the last seeded trade. */
const NOW = T0 + 160_000;

/** 1005 trades 150ms apart: 400 in the first minute, 400 in the second, 205 in the third (still forming). */
const seededTrades: Trade[] = Array.from({ length: TRADES }, (_, i) =>
  trade({
    id: String(i + 1),
    ts: T0 + i * 150,
    localTs: T0 + i * 150 + 7,
    price: 100 + (i % 7),
    amount: 1 + (i % 3) * 0.5,
    side: i % 2 === 0 ? 'buy' : 'sell',
  }),
);
const seededTicker = ticker({ ts: T0 + 100_000, localTs: T0 + 100_020, last: 104 });
const seededBook = book({
  ts: T0 + 120_000,
  localTs: T0 + 120_003,
  depth: 5,
  bids: [[99.5, 2], [99, 1], [98.5, 3], [98, 4], [97.5, 5]],
  asks: [[100.5, 3], [101, 4], [101.5, 1], [102, 2], [102.5, 6]],
});
const bybitSymbols = Array.from({ length: 60 }, (_, i) => `C${String(i).padStart(2, '0')}/USDT`);

type Json = Record<string, unknown>;
interface Freshness { asOf: number; asOfIso: string; newestTs: number | null; newestIso: string | null; ageMs: number | null }
interface TradesOut { exchange: string; symbol: string; trades: Json[]; count: number; nextCursor: string | null; freshness: Freshness }

describe('MCP server over Streamable HTTP', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let client: Client;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    const events: MarketEvent[] = [
      ...seededTrades,
      seededTicker,
      seededBook,
      ticker({ symbol: 'ETH/USDT', ts: T0 + 50_000, last: 3000 }),
      trade({ exchange: 'okx', symbol: 'BTC/USDT:USDT', id: 'x1', ts: T0 + 1_000 }),
      ...bybitSymbols.map((symbol) => ticker({ exchange: 'bybit', symbol })),
    ];
    await store.writeEvents(events);

    const query = new MarketQueryService(store, { now: () => NOW });
    const secret = new Uint8Array(randomBytes(32));
    const verifier = createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' });
    http = await startMcpHttpServer({
      buildServer: () => buildServer({ query, version: '1.2.3', logger: silentLogger }),
      verifier,
      logger: silentLogger,
    });
    const token = await issueDevToken(secret, { subject: 'agent', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'test-client', version: '0.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
    );
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await store?.close();
  });

  async function call(name: string, args: Json = {}): Promise<CallToolResult> {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }

  /** The structured answer of a successful call; also checks the text twin says the same. */
  async function ok<T = Json>(name: string, args: Json = {}): Promise<T> {
    const result = await call(name, args);
    expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
    const text = result.content[0];
    expect(text?.type).toBe('text');
    expectTextTwin((text as { text: string }).text, result.structuredContent as Json);
    return result.structuredContent as T;
  }

  async function failure(name: string, args: Json): Promise<string> {
    const result = await call(name, args);
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toBeUndefined();
    return (result.content[0] as { text: string }).text;
  }

  function expectFresh(f: Freshness, newestTs: number): void {
    expect(f).toEqual({
      asOf: NOW,
      asOfIso: new Date(NOW).toISOString(),
      newestTs,
      newestIso: new Date(newestTs).toISOString(),
      ageMs: NOW - newestTs,
    });
  }

  const BTC = { exchange: 'binance', symbol: 'BTC/USDT' };
  const projected = (t: Trade) => ({ id: t.id, ts: t.ts, localTs: t.localTs, price: t.price, amount: t.amount, side: t.side });

  it('introduces itself with instructions that start from list_markets', () => {
    expect(client.getServerVersion()).toMatchObject({ name: MCP_SERVER_NAME, version: '1.2.3' });
    expect(client.getInstructions()).toMatch(/list_markets first/);
  });

  it('lists every tool with a description, described inputs, an output schema and read-only annotations', async () => {
    const { tools } = await client.listTools();
    // no ledger, signal store or memory here: the tools that need them are not offered
    expect(tools.map((t) => t.name).sort()).toEqual([
      'backtest_strategy', 'compare_exchanges', 'compute_indicators', 'detect_patterns', 'get_candles', 'get_market_snapshot', 'get_order_book',
      'get_ticker', 'get_trades', 'list_markets', 'render_chart', 'scan_markets',
    ]);
    for (const tool of tools) {
      expect(tool.description?.length, tool.name).toBeGreaterThan(100);
      const props = (tool.inputSchema.properties ?? {}) as Record<string, { description?: string }>;
      expect(Object.keys(props).length, tool.name).toBeGreaterThan(0);
      for (const [field, schema] of Object.entries(props)) expect(schema.description, `${tool.name}.${field}`).toBeTruthy();
      expect(tool.outputSchema?.type).toBe('object');
      expect(Object.keys(tool.outputSchema?.properties ?? {})).toContain('freshness');
      expect(tool.annotations).toMatchObject({ readOnlyHint: true, idempotentHint: true, openWorldHint: false, destructiveHint: false });
    }
    const trades = tools.find((t) => t.name === 'get_trades')!;
    expect(trades.inputSchema.required?.sort()).toEqual(['exchange', 'symbol']);
    expect(trades.inputSchema.properties?.['limit']).toMatchObject({ maximum: 1000, default: 100 });
  });

  it('list_markets shows markets, channels with ranges and age, paged', async () => {
    const all = await ok<{ markets: Json[]; total: number; count: number; nextCursor: string | null; freshness: Freshness }>('list_markets', { limit: 1000 });
    expect(all.total).toBe(63);
    expect(all.count).toBe(63);
    expect(all.nextCursor).toBeNull();
    const btc = all.markets.find((m) => m['exchange'] === 'binance' && m['symbol'] === 'BTC/USDT');
    const lastTrade = seededTrades.at(-1)!.ts;
    expect(btc?.['channels']).toEqual({
      trades: { firstTs: T0, lastTs: lastTrade, ageMs: NOW - lastTrade, events: TRADES },
      tickers: { firstTs: seededTicker.ts, lastTs: seededTicker.ts, ageMs: NOW - seededTicker.ts, events: 1 },
      books: { firstTs: seededBook.ts, lastTs: seededBook.ts, ageMs: NOW - seededBook.ts, events: 1 },
    });
    expectFresh(all.freshness, lastTrade);

    const okx = await ok<{ markets: Json[]; total: number }>('list_markets', { exchange: 'OKX' });
    expect(okx.markets.map((m) => [m['exchange'], m['symbol']])).toEqual([['okx', 'BTC/USDT:USDT']]);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { markets: Json[]; nextCursor: string | null } = await ok('list_markets', { limit: 25, ...(cursor && { cursor }) });
      expect(page.markets.length).toBeLessThanOrEqual(25);
      seen.push(...page.markets.map((m) => `${m['exchange']} ${m['symbol']}`));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(all.markets.map((m) => `${m['exchange']} ${m['symbol']}`));
  });

  it('get_ticker returns the latest ticker with freshness', async () => {
    const out = await ok<{ ticker: Json; freshness: Freshness }>('get_ticker', { exchange: 'Binance', symbol: 'btc/usdt' });
    const { type: _t, exchange: _e, symbol: _s, ...fields } = seededTicker;
    expect(out).toMatchObject(BTC);
    expect(out.ticker).toEqual({ ...fields, tsIso: new Date(seededTicker.ts).toISOString() });
    expectFresh(out.freshness, seededTicker.ts);
  });

  it('get_order_book returns the latest snapshot, cut to depth on request', async () => {
    const full = await ok<{ book: Json; freshness: Freshness }>('get_order_book', BTC);
    expect(full.book).toMatchObject({
      ts: seededBook.ts,
      localTs: seededBook.localTs,
      seq: 42,
      storedDepth: 5,
      bids: seededBook.bids,
      asks: seededBook.asks,
      bestBid: 99.5,
      bestAsk: 100.5,
      mid: 100,
      spread: 1,
    });
    expectFresh(full.freshness, seededBook.ts);
    const top2 = await ok<{ book: { bids: unknown[]; asks: unknown[] } }>('get_order_book', { ...BTC, depth: 2 });
    expect(top2.book.bids).toEqual(seededBook.bids.slice(0, 2));
    expect(top2.book.asks).toEqual(seededBook.asks.slice(0, 2));

    const noBook = await ok<{ book: unknown; freshness: Freshness }>('get_order_book', { exchange: 'binance', symbol: 'ETH/USDT' });
    expect(noBook.book).toBeNull();
    expect(noBook.freshness).toMatchObject({ newestTs: null, ageMs: null });
  });

  it('get_trades pages forward from since through every trade exactly once, at most 1000 per answer', async () => {
    const first = await ok<TradesOut>('get_trades', { ...BTC, since: T0, limit: 1000 });
    expect(first.count).toBe(1000);
    expect(first.nextCursor).toBeTruthy();
    const second = await ok<TradesOut>('get_trades', { ...BTC, since: T0, limit: 1000, cursor: first.nextCursor });
    expect(second.count).toBe(5);
    expect(second.nextCursor).toBeNull();
    expect([...first.trades, ...second.trades]).toEqual(seededTrades.map(projected));
    expectFresh(first.freshness, seededTrades.at(-1)!.ts);

    const tooMany = await failure('get_trades', { ...BTC, limit: 1001 });
    expect(tooMany).toMatch(/limit/);
  });

  it('get_trades without since returns the newest, oldest first, and pages back in time', async () => {
    const newest = await ok<TradesOut>('get_trades', BTC);
    expect(newest.trades).toEqual(seededTrades.slice(-100).map(projected));
    const older = await ok<TradesOut>('get_trades', { ...BTC, cursor: newest.nextCursor });
    expect(older.trades).toEqual(seededTrades.slice(-200, -100).map(projected));
  });

  it('get_trades accepts ISO-8601 and ms epoch bounds, and explains bad ones', async () => {
    const ranged = await ok<TradesOut>('get_trades', { ...BTC, since: new Date(T0 + 1_500).toISOString(), until: T0 + 3_000 });
    expect(ranged.trades.map((t) => t['id'])).toEqual(['11', '12', '13', '14', '15', '16', '17', '18', '19', '20']);
    const noOffset = await ok<TradesOut>('get_trades', { ...BTC, since: '2026-01-05T12:00:01.500', until: String(T0 + 3_000) });
    expect(noOffset.trades).toEqual(ranged.trades);

    expect(await failure('get_trades', { ...BTC, since: 'yesterday' })).toMatch(/ISO-8601/);
    expect(await failure('get_trades', { ...BTC, since: Math.floor(T0 / 1000) })).toMatch(/seconds/);
    expect(await failure('get_trades', { ...BTC, since: '2026-02-30T00:00:00Z' })).toMatch(/ms epoch/);
    expect(await failure('get_trades', { ...BTC, since: T0 + 5_000, until: T0 })).toMatch(/earlier than until/);
  });

  it('get_candles returns candles as the store computes them, closed or forming', async () => {
    const expected = [0, 1, 2].map((minute) => {
      const ts = T0 + minute * MIN;
      const inside = seededTrades.filter((t) => t.ts >= ts && t.ts < ts + MIN);
      const prices = inside.map((t) => t.price);
      return {
        ts,
        open: prices[0],
        high: Math.max(...prices),
        low: Math.min(...prices),
        close: prices.at(-1),
        volume: inside.reduce((sum, t) => sum + t.amount, 0),
        trades: inside.length,
        closed: minute < 2,
        source: 'trades',
        // every minute holds trades, and this server has no ledger to report feed gaps from
        missingMinutes: 0,
        feedGap: null,
        complete: true,
      };
    });
    const out = await ok<{ timeframe: string; candles: Json[]; gaps: Json[]; missingBuckets: number; ledger: string; nextCursor: string | null; freshness: Freshness }>('get_candles', BTC);
    expect(out.timeframe).toBe('1m');
    expect(out.candles).toEqual(expected);
    expect(out.gaps).toEqual([]);
    expect(out.missingBuckets).toBe(0);
    expect(out.ledger).toBe('absent');
    expect(out.nextCursor).toBeNull();
    expectFresh(out.freshness, seededTrades.at(-1)!.ts);

    const stored = await store.candles({ ...BTC, timeframe: '1m', limit: 10 });
    expect(out.candles.map(({ closed: _c, missingMinutes: _m, feedGap: _f, complete: _x, ...c }) => c)).toEqual(
      stored.map(({ exchange: _e, symbol: _s, timeframe: _t, minutes: _n, ...c }) => c),
    );

    // the forming 5m candle: minutes 0 and 1 have ended and hold trades, minute 2 is forming
    const fiveMin = await ok<{ candles: Json[] }>('get_candles', { ...BTC, timeframe: '5m' });
    expect(fiveMin.candles).toEqual([
      {
        ts: T0,
        open: 100,
        high: 106,
        low: 100,
        close: expected[2]!.close,
        volume: expected.reduce((s, c) => s + c.volume, 0),
        trades: TRADES,
        closed: false,
        source: 'trades',
        missingMinutes: 0,
        feedGap: null,
        complete: true,
      },
    ]);

    const paged = await ok<{ candles: Json[]; nextCursor: string }>('get_candles', { ...BTC, limit: 2 });
    expect(paged.candles.map((c) => c['ts'])).toEqual([T0 + MIN, T0 + 2 * MIN]);
    const rest = await ok<{ candles: Json[]; nextCursor: string | null }>('get_candles', { ...BTC, limit: 2, cursor: paged.nextCursor });
    expect(rest.candles.map((c) => c['ts'])).toEqual([T0]);
    expect(rest.nextCursor).toBeNull();

    expect(await failure('get_candles', { ...BTC, timeframe: '1M' })).toMatch(/timeframe/);
  });

  it('get_market_snapshot gives each figure its time, age and source, newest source winning', async () => {
    interface Figure { value: number; ts: number; ageMs: number; source: string }
    const out = await ok<{ snapshots: Record<string, Figure | string | null>[]; missing: string[]; freshness: Freshness }>('get_market_snapshot', {
      symbols: ['btc/usdt', 'ETH/USDT', 'XRP/USDT'],
    });
    expect(out.missing).toEqual(['XRP/USDT']);
    expect(out.snapshots.map((s) => `${s.exchange as string} ${s.symbol as string}`)).toEqual(['binance BTC/USDT', 'binance ETH/USDT']);
    const [btc, eth] = out.snapshots;
    const last = seededTrades.at(-1)!;
    // the last trade is newer than the ticker; the book snapshot is newer than the ticker
    expect(btc!.price).toEqual({ value: last.price, ts: last.ts, ageMs: NOW - last.ts, source: 'trade' });
    expect(btc!.bid).toMatchObject({ value: 99.5, ts: seededBook.ts, source: 'book' });
    expect(btc!.spread).toMatchObject({ value: 1, source: 'book' });
    expect((btc!.spreadBps as Figure).value).toBeCloseTo(100, 9);
    expect(btc!.change24hPct).toMatchObject({ value: seededTicker.change24hPct, ts: seededTicker.ts, source: 'ticker' });
    expect(eth!.price).toMatchObject({ value: 3000, source: 'ticker' });
    expect(eth!.ask).toMatchObject({ source: 'ticker' });
    expectFresh(out.freshness, last.ts);

    const none = await failure('get_market_snapshot', { symbols: ['XRP/USDT'] });
    expect(none).toMatch(/BTC\/USDT/);
    const badExchange = await failure('get_market_snapshot', { symbols: ['BTC/USDT'], exchanges: ['nope'] });
    expect(badExchange).toMatch(/binance/);
  });

  it('unknown exchanges and symbols fail with what is known', async () => {
    const exchange = await failure('get_ticker', { exchange: 'kraken', symbol: 'BTC/USDT' });
    expect(exchange).toMatch(/kraken/);
    expect(exchange).toMatch(/Known exchanges \(3\): binance, bybit, okx\./);
    expect(exchange).toMatch(/list_markets/);

    const symbol = await failure('get_trades', { exchange: 'binance', symbol: 'DOGE/USDT' });
    expect(symbol).toMatch(/Known symbols on this exchange \(2\): BTC\/USDT, ETH\/USDT\./);

    const many = await failure('get_candles', { exchange: 'bybit', symbol: 'BTC/USDT' });
    expect(many).toMatch(/\(60, first 50 shown\)/);
    expect(many).toContain('C49/USDT');
    expect(many).not.toContain('C50/USDT');

    expect(await failure('list_markets', { exchange: 'kraken' })).toMatch(/binance, bybit, okx/);
  });

  it('a cursor that is not this tool’s fails with advice to repeat without it', async () => {
    expect(await failure('get_trades', { ...BTC, cursor: 'not-a-cursor' })).toMatch(/without cursor/);
    const candles = await ok<{ nextCursor: string }>('get_candles', { ...BTC, limit: 1 });
    expect(await failure('get_trades', { ...BTC, cursor: candles.nextCursor })).toMatch(/without cursor/);
  });

  it('serves the same tools over stdio', async () => {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const query = new MarketQueryService(store, { now: () => NOW });
    const session = await serveStdio(buildServer({ query, version: '1.2.3', logger: silentLogger }), { stdin, stdout });
    const lines: Json[] = [];
    stdout.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as Json)));
    const send = (message: Json) => stdin.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
    const reply = async (id: number) => {
      await expect.poll(() => lines.find((l) => l['id'] === id)).toBeTruthy();
      return lines.find((l) => l['id'] === id)!;
    };
    send({ id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } } });
    expect(await reply(1)).toMatchObject({ result: { serverInfo: { name: MCP_SERVER_NAME } } });
    send({ method: 'notifications/initialized' });
    send({ id: 2, method: 'tools/call', params: { name: 'get_ticker', arguments: BTC } });
    expect(await reply(2)).toMatchObject({ result: { structuredContent: { ticker: { last: 104 } } } });
    stdin.end();
    await session.closed;
  });
});
