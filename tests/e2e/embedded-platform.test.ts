import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bucketStart } from '../../layers/shared/src/domain/index.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { parseAlertRules } from '../../layers/shared/src/alerts/alert-rules.js';
import { startLocalPlatform, type LocalPlatform } from '../../local/platform.js';
import type { PrintedTrade } from '../../local/sim/market.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';

const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];

interface ToolAnswer {
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
  content?: { type: string; text?: string }[];
}

/**
 * simulator -> ccxt.pro collector -> in-process stream -> Lambda-shaped timescale-writer ->
 * PGlite -> MCP server over HTTP with a JWT -> SDK client.
 */
forEachStoreBackend('platform end to end', (backend, serverUrl) => {
  let platform: LocalPlatform;
  let database: TestDatabase | undefined;
  let client: Client;
  let dataDir: string;
  const printed = new Map<string, readonly PrintedTrade[]>();

  const call = async (name: string, args: Record<string, unknown>) => {
    const answer = (await client.callTool({ name, arguments: args })) as ToolAnswer;
    expect(answer.isError, JSON.stringify(answer.content)).toBeFalsy();
    return answer.structuredContent as Record<string, unknown>;
  };

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'qicore-e2e-'));
    if (backend === 'postgres') database = await createTestDatabase('postgres', serverUrl);
    platform = await startLocalPlatform({
      databaseUrl: database?.url ?? undefined,
      source: 'sim',
      markets: new Map([['binance', SYMBOLS]]),
      dataDir,
      host: '127.0.0.1',
      port: 0,
      stdio: false,
      simSeed: 7,
      simTps: 25,
      logger: silentLogger,
      ephemeral: true,
      bookIntervalMs: 200,
      // a market named but never collected: its feed is stale from the start
      alertRules: parseAlertRules([{ id: 'doge-silent', kind: 'stale_feed', exchange: 'binance', symbol: 'DOGE/USDT', afterMs: 1_000 }]),
    });
    const sim = platform.sim!;
    // let the market trade for a while, then stop it and wait until the platform has it all
    await new Promise((r) => setTimeout(r, 4_000));
    sim.market.stop();
    for (const s of SYMBOLS) printed.set(s, sim.printedTrades(s));
    const total = [...printed.values()].reduce((n, list) => n + list.length, 0);
    expect(total).toBeGreaterThan(100);
    const stored = async () => {
      await platform.drain();
      const rows = await Promise.all(SYMBOLS.map((s) => platform.store.trades({ exchange: 'binance', symbol: s, limit: 100_000 })));
      return rows.reduce((n, r) => n + r.length, 0);
    };
    const deadline = Date.now() + 15_000;
    while ((await stored()) < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));

    client = new Client({ name: 'e2e', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(platform.mcpUrl!), {
        requestInit: { headers: { Authorization: `Bearer ${platform.devToken}` } },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await platform?.stop();
    await database?.dispose();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('lists the tools and the markets collected', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(['list_markets', 'get_ticker', 'get_trades', 'get_candles', 'get_order_book']),
    );
    const markets = (await call('list_markets', {})) as { markets: { exchange: string; symbol: string; channels: Record<string, unknown> }[] };
    for (const symbol of SYMBOLS) {
      const m = markets.markets.find((x) => x.exchange === 'binance' && x.symbol === symbol);
      expect(m, symbol).toBeDefined();
      expect(Object.keys(m!.channels)).toEqual(expect.arrayContaining(['trades', 'tickers', 'books']));
    }
  });

  it('returns every printed trade exactly once through get_trades', async () => {
    for (const symbol of SYMBOLS) {
      const expected = printed.get(symbol)!;
      const got: { id: string; ts: number; price: number; amount: number; side: string }[] = [];
      let cursor: string | undefined;
      do {
        const page = (await call('get_trades', {
          exchange: 'binance',
          symbol,
          since: expected[0]!.ts,
          limit: 1000,
          ...(cursor && { cursor }),
        })) as { trades: typeof got; nextCursor: string | null };
        got.push(...page.trades);
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
      expect(got.map((t) => t.id)).toEqual(expected.map((t) => String(t.id)));
      expect(new Set(got.map((t) => t.id)).size).toBe(got.length);
      expect(got.map((t) => [t.ts, t.price, t.amount, t.side])).toEqual(expected.map((t) => [t.ts, t.price, t.amount, t.side]));
    }
  });

  it('returns the 1m OHLCV those trades imply through get_candles', async () => {
    for (const symbol of SYMBOLS) {
      const trades = printed.get(symbol)!;
      const byMinute = new Map<number, PrintedTrade[]>();
      for (const t of trades) {
        const m = bucketStart(t.ts, '1m');
        byMinute.set(m, [...(byMinute.get(m) ?? []), t]);
      }
      const expected = [...byMinute].map(([ts, list]) => ({
        ts,
        open: list[0]!.price,
        high: Math.max(...list.map((t) => t.price)),
        low: Math.min(...list.map((t) => t.price)),
        close: list.at(-1)!.price,
        volume: list.reduce((v, t) => v + t.amount, 0),
        trades: list.length,
      }));
      const answer = (await call('get_candles', {
        exchange: 'binance',
        symbol,
        timeframe: '1m',
        since: expected[0]!.ts,
      })) as { candles: { ts: number; open: number; high: number; low: number; close: number; volume: number; trades: number; closed: boolean; source: string }[] };
      expect(answer.candles.map((c) => [c.ts, c.open, c.high, c.low, c.close, c.trades])).toEqual(
        expected.map((c) => [c.ts, c.open, c.high, c.low, c.close, c.trades]),
      );
      answer.candles.forEach((c, i) => expect(c.volume).toBeCloseTo(expected[i]!.volume, 9));
      expect(answer.candles.every((c) => c.source === 'trades')).toBe(true);
    }
  });

  it('runs the alert rules as data arrives and serves their signals through get_signals', async () => {
    const out = await call('get_signals', { publisher: 'alerts' });
    const signals = out['signals'] as { symbol: string; direction: string; rationale: string }[];
    // once, for the silent market (the rule's cooldown holds it back after that), none for the live ones
    expect(signals.map((x) => [x.symbol, x.direction])).toEqual([['DOGE/USDT', 'flat']]);
    expect(signals[0]!.rationale).toContain('doge-silent');
  });

  it('serves the latest ticker with its age', async () => {
    const answer = (await call('get_ticker', { exchange: 'binance', symbol: 'BTC/USDT' })) as {
      ticker: { last: number; bid: number | null; ask: number | null } | null;
      freshness: { ageMs: number | null };
    };
    expect(answer.ticker?.last).toBeGreaterThan(0);
    expect(answer.ticker!.bid).toBeGreaterThan(0);
    expect(answer.ticker!.ask).toBeGreaterThan(answer.ticker!.bid!);
    expect(answer.freshness.ageMs).toBeGreaterThanOrEqual(0);
  });

  it('keeps the completeness ledger in the store: every feed, no gap left open or unfilled', async () => {
    const health = await platform.ledger.feedHealth({ exchange: 'binance' });
    for (const symbol of SYMBOLS) {
      const channels = health.filter((h) => h.symbol === symbol).map((h) => h.channel);
      expect(channels.sort(), symbol).toEqual(['books', 'tickers', 'trades']);
    }
    expect(health.every((h) => h.gapsUnfilled === 0 && h.gapsOpen === 0)).toBe(true);
    expect(await platform.ledger.gaps({ exchange: 'binance', status: 'unfilled' })).toEqual([]);
  });
});
