import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import type { Candle, MarketEvent, Quote } from '../../layers/shared/src/domain/index.js';
import { INDICATORS, type Bar } from '../../layers/shared/src/indicators/indicators.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { registerCompareExchangesTool } from '../../layers/shared/src/mcp/tools/compare-exchanges.js';
import { registerDetectPatternsTool } from '../../layers/shared/src/mcp/tools/detect-patterns.js';
import { registerScanMarketsTool } from '../../layers/shared/src/mcp/tools/scan-markets.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { candle, ticker } from '../fixtures/events.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 5, 0, 0);
/** every seeded series ends at minute BARS - 1 */
const BARS = 40;
const tsOf = (i: number) => T0 + i * MIN;
/** 30 s into the minute after the last candle: the last candle is still forming (closed 60 s after its end), the one before is closed */
const NOW = tsOf(BARS) + 30_000;
const LAST = BARS - 1;

type Ohlcv = { open: number; high: number; low: number; close: number; volume: number };
const candles = (exchange: string, symbol: string, bars: Map<number, Ohlcv>): Candle[] =>
  [...bars].map(([i, b]) => candle({ exchange, symbol, ts: tsOf(i), ...b, source: 'exchange' }));

/**
 * binance BTC/USDT for detect_patterns: alternating white/black candles of body 1 and range 2 (no pattern
 * of their own), a hammer at minute HAMMER, a bullish engulfing on the last (forming) candle, and an
 * engulfing straddling the missing minute GAP (not to be reported).
 */
const HAMMER = 20;
const GAP = 30;
function patternSeries(): Map<number, Ohlcv> {
  const bars = new Map<number, Ohlcv>();
  for (let i = 0; i < BARS; i++) {
    bars.set(i, i % 2 === 0 ? { open: 100, high: 101.5, low: 99.5, close: 101, volume: 10 } : { open: 101, high: 101.5, low: 99.5, close: 100, volume: 10 });
  }
  // small body at the previous low, lower shadow 1.5 (> body 0.2), no upper shadow
  bars.set(HAMMER, { open: 99.7, high: 99.9, low: 98.2, close: 99.9, volume: 10 });
  // black at GAP-1 (odd), nothing at GAP, a white body engulfing it at GAP+1
  bars.delete(GAP);
  bars.set(GAP + 1, { open: 99.8, high: 101.6, low: 99.6, close: 101.3, volume: 10 });
  // the last candle (odd index would be black): LAST-1 is white... make LAST-1 black and LAST engulf it
  bars.set(LAST - 1, { open: 101, high: 101.5, low: 99.5, close: 100, volume: 10 });
  bars.set(LAST, { open: 99.8, high: 101.6, low: 99.6, close: 101.3, volume: 10 });
  return bars;
}

/** `n` candles ending at LAST with the given closes (open = previous close) and volumes. */
function closesSeries(closes: readonly number[], volumes: readonly number[]): Map<number, Ohlcv> {
  const bars = new Map<number, Ohlcv>();
  const start = BARS - closes.length;
  closes.forEach((close, j) => {
    const open = j === 0 ? close + 0.5 : closes[j - 1]!;
    bars.set(start + j, { open, high: Math.max(open, close) + 0.1, low: Math.min(open, close) - 0.1, close, volume: volumes[j]! });
  });
  return bars;
}
const falling = (n: number) => Array.from({ length: n }, (_, j) => 200 - j);
/** falling, but one rise in the middle: RSI above 0 yet low */
const mostlyFalling = (n: number) => falling(n).map((c, j) => (j === 15 ? c + 3 : c));
const rising = (n: number) => Array.from({ length: n }, (_, j) => 100 + j);
/** volume 10, then `closedVolume` on the last closed candle and `formingVolume` on the forming one */
const volumes = (n: number, closedVolume: number, formingVolume: number) =>
  Array.from({ length: n }, (_, j) => (j === n - 2 ? closedVolume : j === n - 1 ? formingVolume : 10));

const quote = (o: Partial<Quote>): Quote => ({
  type: 'quote',
  exchange: 'binance',
  symbol: 'BTC/USDT',
  ts: NOW,
  localTs: NOW,
  bid: 100,
  bidSize: 1,
  ask: 101,
  askSize: 1,
  seq: null,
  health: 'healthy',
  ...o,
});

describe('analysis tools over MCP (HTTP + JWT) against a seeded store', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let client: Client;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    const events: MarketEvent[] = [
      ...candles('binance', 'BTC/USDT', patternSeries()),
      ...candles('binance', 'ETH/USDT', closesSeries(falling(30), volumes(30, 100, 1))),
      ...candles('okx', 'ETH/USDT', closesSeries(falling(30), volumes(30, 5, 5))),
      ...candles('okx', 'SOL/USDT', closesSeries(mostlyFalling(30), volumes(30, 50, 50))),
      ...candles('okx', 'BTC/USDT', closesSeries(rising(30), volumes(30, 100, 100))),
      ...candles('binance', 'SOL/USDT', closesSeries(falling(10), volumes(10, 100, 100))),
      // compare_exchanges: binance's bid/ask from its quote (newer than its ticker), bybit's ticker 5 minutes old
      ticker({ exchange: 'binance', symbol: 'BTC/USDT', ts: NOW - 2_000, localTs: NOW - 2_000, last: 100.1, bid: 100, ask: 100.2 }),
      quote({ exchange: 'binance', symbol: 'BTC/USDT', ts: NOW - 1_000, bid: 100.05, ask: 100.15 }),
      ticker({ exchange: 'okx', symbol: 'BTC/USDT', ts: NOW - 3_000, localTs: NOW - 3_000, last: 100.5, bid: 100.4, ask: 100.6 }),
      ticker({ exchange: 'bybit', symbol: 'BTC/USDT', ts: NOW - 300_000, localTs: NOW - 300_000, last: 99, bid: 98.9, ask: 99.1 }),
    ];
    await store.writeEvents(events);
    const query = new MarketQueryService(store, { now: () => NOW });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => {
        const server = new McpServer({ name: 'analysis-test', version: '0.0.0' });
        const deps = { query, logger: silentLogger };
        registerDetectPatternsTool(server, deps);
        registerScanMarketsTool(server, deps);
        registerCompareExchangesTool(server, deps);
        return server;
      },
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger: silentLogger,
    });
    const token = await issueDevToken(secret, { subject: 'agent', scopes: ['market:read'], issuer: 'test', audience: 'mcp' });
    client = new Client({ name: 'test', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(http.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
  });

  afterAll(async () => {
    await client?.close();
    await http?.close();
    await store?.close();
  });

  async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }
  async function ok<T>(name: string, args: Record<string, unknown>): Promise<T> {
    const r = await call(name, args);
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    return r.structuredContent as T;
  }
  async function failure(name: string, args: Record<string, unknown>): Promise<string> {
    const r = await call(name, args);
    expect(r.isError).toBe(true);
    return (r.content as { text: string }[])[0]!.text;
  }

  describe('detect_patterns', () => {
    interface Match { ts: number; pattern: string; direction: string; signal: number; closed: boolean; candles: { ts: number; open: number; close: number }[]; context: number }
    interface Answer {
      matches: Match[];
      patterns: { pattern: string; convention: string }[];
      gaps: { from: number; to: number; buckets: number }[];
      missingBars: number;
      acrossGaps: number;
      window: { candles: number; from: number; to: number };
      warmupBars: number;
      unevaluated: { pattern: string; from: number | null }[];
      omitted: number;
    }
    const args = { exchange: 'Binance', symbol: 'btc/usdt', timeframe: '1m', patterns: ['hammer', 'engulfing'] };

    it('finds the seeded hammer and engulfing at their candles, newest first, and not the one across the gap', async () => {
      const a = await ok<Answer>('detect_patterns', { ...args, lookback: 100 });
      expect(a.matches.map((m) => [m.pattern, m.ts])).toEqual([
        ['engulfing', tsOf(LAST)],
        ['hammer', tsOf(HAMMER)],
      ]);
      const [engulfing, hammer] = a.matches;
      expect(engulfing).toMatchObject({ direction: 'bullish', signal: 100, closed: false, context: 0 });
      expect(engulfing!.candles.map((c) => [c.ts, c.open, c.close])).toEqual([
        [tsOf(LAST - 1), 101, 100],
        [tsOf(LAST), 99.8, 101.3],
      ]);
      expect(hammer).toMatchObject({ direction: 'bullish', signal: 100, closed: true, context: 1 });
      expect(hammer!.candles.map((c) => c.ts)).toEqual([tsOf(HAMMER - 1), tsOf(HAMMER)]);
      // the engulfing whose two candles straddle the missing minute is counted, not reported
      expect(a.acrossGaps).toBe(1);
      expect(a.gaps).toEqual([{ from: tsOf(GAP), to: tsOf(GAP + 1), buckets: 1 }]);
      expect(a.missingBars).toBe(1);
      expect(a.window).toEqual({ candles: BARS - 1, from: tsOf(0), to: tsOf(LAST) });
      // 39 candles held: the hammer's averages need 11 candles before the first one it can be judged on, engulfing 2
      expect(a.warmupBars).toBe(0);
      expect(a.unevaluated).toEqual([
        { pattern: 'hammer', from: tsOf(11) },
        { pattern: 'engulfing', from: tsOf(2) },
      ]);
      expect(a.patterns.map((p) => p.pattern)).toEqual(['hammer', 'engulfing']);
      expect(a.patterns[0]!.convention).toMatch(/CDLHAMMER.*previous 10/);
    });

    it('lookback bounds the candles searched and limit the matches returned (the rest counted)', async () => {
      const recent = await ok<Answer>('detect_patterns', { ...args, lookback: 5 });
      expect(recent.matches.map((m) => m.pattern)).toEqual(['engulfing']);
      expect(recent.window).toEqual({ candles: 5, from: tsOf(LAST - 4), to: tsOf(LAST) });
      expect(recent.warmupBars).toBe(11);
      const one = await ok<Answer>('detect_patterns', { ...args, lookback: 100, limit: 1 });
      expect(one.matches.map((m) => m.pattern)).toEqual(['engulfing']);
      expect(one.omitted).toBe(1);
    });

    it('an unknown pattern or market is an error naming what is valid', async () => {
      expect(await failure('detect_patterns', { ...args, patterns: ['hammer', 'dragon'] })).toMatch(/shooting_star/);
      expect(await failure('detect_patterns', { ...args, symbol: 'DOGE/USDT' })).toMatch(/Known symbols on this exchange .*BTC\/USDT/);
    });
  });

  describe('scan_markets', () => {
    interface Match { exchange: string; symbol: string; ts: number; closed: boolean; values: Record<string, number>; held: boolean[]; settled: boolean }
    interface Answer {
      matches: Match[];
      matched: number;
      scanned: number;
      totalMarkets: number;
      notScanned: number;
      skipped: { exchange: string; symbol: string; reason: string; detail: string }[];
      sortBy: string;
    }
    const oversoldOnVolume = [
      { series: 'rsi:14', op: '<', value: 30 },
      { series: 'volume', op: '>', value: 'volume_sma:20' },
    ];
    const rsiOf = (closes: number[]) => {
      const bars: Bar[] = closes.map((close, i) => ({ ts: i, open: close, high: close, low: close, close, volume: 0 }));
      return INDICATORS.rsi.compute(bars, { period: 14 }).value!.at(-1)!;
    };

    it('returns exactly the markets whose last closed candle meets every condition, sorted, with the values behind them', async () => {
      const a = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: oversoldOnVolume });
      expect(a.matches.map((m) => `${m.exchange} ${m.symbol}`)).toEqual(['binance ETH/USDT', 'okx SOL/USDT']);
      expect(a.matched).toBe(2);
      expect(a.sortBy).toBe('rsi:14');
      const [eth, sol] = a.matches;
      // every change a loss: RSI 0; volume 100 against the mean of the 20 candles ending there: (19 x 10 + 100) / 20
      expect(eth).toMatchObject({ ts: tsOf(LAST - 1), closed: true, held: [true, true], settled: false });
      expect(eth!.values['rsi:14']).toBe(0);
      expect(eth!.values['volume']).toBe(100);
      expect(eth!.values['volume_sma:20']).toBeCloseTo(14.5, 12);
      const solCloses = mostlyFalling(30).slice(0, -1);
      expect(sol!.values['rsi:14']).toBeCloseTo(rsiOf(solCloses), 9);
      expect(sol!.values['rsi:14']).toBeGreaterThan(0);
      expect(sol!.values['volume_sma:20']).toBeCloseTo((19 * 10 + 50) / 20, 12);
      // 7 markets held; two cannot be evaluated, each with its reason
      expect(a.totalMarkets).toBe(7);
      expect(a.scanned).toBe(7);
      expect(a.notScanned).toBe(0);
      expect(a.skipped.map((s) => [s.exchange, s.symbol, s.reason])).toEqual([
        ['binance', 'SOL/USDT', 'not_enough_candles'],
        ['bybit', 'BTC/USDT', 'no_candles'],
      ]);
      expect(a.skipped[0]!.detail).toMatch(/needs at least 20 1m candles, the store has 9/);
    });

    it("at='latest' evaluates the forming candle; 'any' needs one condition; order and maxMarkets are honoured", async () => {
      // binance ETH/USDT's forming candle has volume 1: it drops out
      const latest = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: oversoldOnVolume, at: 'latest' });
      expect(latest.matches.map((m) => `${m.exchange} ${m.symbol}`)).toEqual(['okx SOL/USDT']);
      expect(latest.matches[0]!.closed).toBe(false);
      // rsi > 70 or volume above its mean: the rising market, the two high-volume fallers
      const any = await ok<Answer>('scan_markets', {
        timeframe: '1m',
        match: 'any',
        conditions: [{ series: 'rsi:14', op: '>', value: 70 }, oversoldOnVolume[1]],
        sortBy: 'volume',
        order: 'desc',
      });
      expect(any.matches.map((m) => [`${m.exchange} ${m.symbol}`, m.held])).toEqual([
        ['binance ETH/USDT', [false, true]],
        ['okx BTC/USDT', [true, true]],
        ['okx SOL/USDT', [false, true]],
      ]);
      const bounded = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: oversoldOnVolume, maxMarkets: 2 });
      expect(bounded).toMatchObject({ scanned: 2, totalMarkets: 7, notScanned: 5 });
      const okxOnly = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: oversoldOnVolume, exchanges: ['OKX'] });
      expect(okxOnly.matches.map((m) => m.symbol)).toEqual(['SOL/USDT']);
      expect(okxOnly.totalMarkets).toBe(3);
    });

    it('crosses_above compares the previous candle too', async () => {
      // binance BTC/USDT: the black candle before the last closes under EMA(3), the engulfing one above it
      const a = await ok<Answer>('scan_markets', {
        timeframe: '1m',
        conditions: [{ series: 'close', op: 'crosses_above', value: 'ema:3' }],
        at: 'latest',
      });
      expect(a.matches.map((m) => `${m.exchange} ${m.symbol}`)).toEqual(['binance BTC/USDT']);
      const v = a.matches[0]!.values;
      expect(v['close@prev']).toBe(100);
      expect(v['close@prev']!).toBeLessThanOrEqual(v['ema:3@prev']!);
      expect(v['close']).toBe(101.3);
      expect(v['close']!).toBeGreaterThan(v['ema:3']!);
      const closedOnly = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: [{ series: 'close', op: 'crosses_above', value: 'ema:3' }] });
      expect(closedOnly.matches).toEqual([]);
      const rising = await ok<Answer>('scan_markets', { timeframe: '1m', conditions: [{ series: 'close', op: '>', value: 'ema:3' }] });
      expect(rising.matches.map((m) => `${m.exchange} ${m.symbol}`)).toEqual(['okx BTC/USDT']);
      expect(rising.matches[0]!.values).toHaveProperty('ema:3');
    });

    it('bad conditions are errors that say how to write them', async () => {
      const unknown = await failure('scan_markets', { conditions: [{ series: 'rsx:14', op: '<', value: 30 }] });
      expect(unknown).toMatch(/conditions\[0\]\.series: unknown series 'rsx'.*volume_sma:N.*rsi:N/);
      expect(await failure('scan_markets', { conditions: [{ series: 'rsi:0', op: '<', value: 30 }] })).toMatch(/conditions\[0\]\.series: rsi parameters \(period\)/);
      expect(await failure('scan_markets', { conditions: [{ series: 'macd.hist', op: '>', value: 0 }] })).toMatch(/macd has outputs macd, signal, histogram/);
      expect(await failure('scan_markets', { conditions: [{ series: 'rsi', op: '<', value: 'volume_sma' }] })).toMatch(
        /conditions\[0\]\.value: 'volume_sma' takes one period/,
      );
      expect(await failure('scan_markets', { conditions: [{ series: 'rsi', op: '=<', value: 30 }] })).toMatch(/crosses_above/);
      expect(await failure('scan_markets', { conditions: oversoldOnVolume, exchanges: ['kraken'] })).toMatch(/Known exchanges.*binance/);
    });
  });

  describe('compare_exchanges', () => {
    interface Figure { value: number; ts: number; ageMs: number; source: string; stale: boolean }
    interface Row { exchange: string; last: Figure | null; bid: Figure | null; ask: Figure | null; divergenceBps: number | null; staleSides: string[] }
    interface Answer {
      symbols: { symbol: string; exchanges: Row[]; medianPrice: number | null; medianOf: number; bestSpread: { buyExchange: string; ask: number; sellExchange: string; bid: number; bps: number } | null }[];
      missing: string[];
      freshness: { newestTs: number | null; ageMs: number | null };
    }

    it('prices, bid/ask and their ages per exchange, divergence from the median of fresh prices, and the best fresh cross spread', async () => {
      const a = await ok<Answer>('compare_exchanges', { symbols: ['btc/usdt', 'PEPE/USDT'], staleAfterMs: 60_000 });
      expect(a.missing).toEqual(['PEPE/USDT']);
      expect(a.freshness).toMatchObject({ newestTs: NOW - 1_000, ageMs: 1_000 });
      const [btc] = a.symbols;
      const row = (e: string) => btc!.exchanges.find((r) => r.exchange === e)!;
      expect(btc!.exchanges.map((r) => r.exchange)).toEqual(['binance', 'bybit', 'okx']);
      // binance: bid/ask from the quote (1 s old), newer than its ticker (2 s)
      expect(row('binance').bid).toEqual({ value: 100.05, ts: NOW - 1_000, ageMs: 1_000, source: 'quote', stale: false });
      expect(row('binance').ask).toMatchObject({ value: 100.15, source: 'quote' });
      expect(row('binance').last).toEqual({ value: 100.1, ts: NOW - 2_000, ageMs: 2_000, source: 'ticker', stale: false });
      expect(row('bybit').staleSides).toEqual(['last', 'bid', 'ask']);
      expect(row('bybit').last).toMatchObject({ ageMs: 300_000, stale: true });
      // median of the fresh prices 100.1 and 100.5
      expect(btc!.medianPrice).toBeCloseTo(100.3, 12);
      expect(btc!.medianOf).toBe(2);
      expect(row('binance').divergenceBps).toBeCloseTo(((100.1 - 100.3) / 100.3) * 10_000, 9);
      expect(row('okx').divergenceBps).toBeCloseTo(((100.5 - 100.3) / 100.3) * 10_000, 9);
      expect(row('bybit').divergenceBps).toBeCloseTo(((99 - 100.3) / 100.3) * 10_000, 9);
      // buy binance's ask 100.15, sell okx's bid 100.4; bybit's stale ask 99.1 would have looked far better
      expect(btc!.bestSpread).toMatchObject({ buyExchange: 'binance', ask: 100.15, sellExchange: 'okx', bid: 100.4 });
      expect(btc!.bestSpread!.bps).toBeCloseTo(((100.4 - 100.15) / 100.15) * 10_000, 9);
    });

    it('a wider staleness threshold lets the old quote in', async () => {
      const a = await ok<Answer>('compare_exchanges', { symbols: ['BTC/USDT'], staleAfterMs: 600_000 });
      const [btc] = a.symbols;
      expect(btc!.medianPrice).toBe(100.1);
      expect(btc!.exchanges.every((r) => r.staleSides.length === 0)).toBe(true);
      expect(btc!.bestSpread).toMatchObject({ buyExchange: 'bybit', ask: 99.1, sellExchange: 'okx', bid: 100.4 });
      expect(btc!.bestSpread!.bps).toBeCloseTo(((100.4 - 99.1) / 99.1) * 10_000, 9);
    });

    it('one exchange only: no cross spread; unknown exchanges are an error naming the known ones', async () => {
      const a = await ok<Answer>('compare_exchanges', { symbols: ['BTC/USDT'], exchanges: ['okx'] });
      expect(a.symbols[0]!.bestSpread).toBeNull();
      expect(a.symbols[0]!.exchanges[0]!.divergenceBps).toBe(0);
      expect(await failure('compare_exchanges', { symbols: ['BTC/USDT'], exchanges: ['kraken'] })).toMatch(/Known exchanges.*okx/);
    });
  });
});
