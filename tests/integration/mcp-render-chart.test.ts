import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { CANDLE_COLORS } from '../../layers/shared/src/charts/candle-chart-svg.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { registerRenderChartTool } from '../../layers/shared/src/mcp/tools/render-chart.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { candle } from '../fixtures/events.js';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 5, 0, 0);
const MINUTES = 240;
/** Minutes without any candle: a hole the chart must leave empty. */
const HOLE = [200, 201, 202, 203, 204];
const NOW = T0 + MINUTES * MIN + 10 * MIN;
const closeAt = (i: number) => 3_000 + 40 * Math.sin(i / 9) + (i % 4 === 0 ? -3 : 3);

interface Image { type: 'image'; data: string; mimeType: string }
interface Text { type: 'text'; text: string }

/**
 * render_chart through the SDK's Client over Streamable HTTP with an HS256 JWT, on a server built
 * here with only that tool, reading 1m exchange candles from PGlite through MarketQueryService.
 */
describe('render_chart over MCP (HTTP + JWT), from stored candles', () => {
  let store: PostgresMarketStore;
  let http: McpHttpServer;
  let client: Client;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    store = new PostgresMarketStore(db);
    const events = [];
    for (let i = 0; i < MINUTES; i++) {
      if (HOLE.includes(i)) continue;
      const open = closeAt(i - 1);
      const close = closeAt(i);
      events.push(
        candle({ ts: T0 + i * MIN, open, close, high: Math.max(open, close) + 2, low: Math.min(open, close) - 2, volume: 5 + (i % 11), source: 'exchange' }),
      );
    }
    await store.writeEvents(events);
    const query = new MarketQueryService(store, { now: () => NOW });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      buildServer: () => {
        const server = new McpServer({ name: 'render-chart-test', version: '0.0.0' });
        registerRenderChartTool(server, { query, logger: silentLogger });
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

  async function call(args: Record<string, unknown>): Promise<CallToolResult> {
    return (await client.callTool({ name: 'render_chart', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', ...args } })) as CallToolResult;
  }
  async function chart(args: Record<string, unknown>): Promise<{ text: string; image: Image; png: PNG; structured: Record<string, unknown> }> {
    const r = await call(args);
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    const text = (r.content.find((c) => c.type === 'text') as Text).text;
    const image = r.content.find((c) => c.type === 'image') as Image;
    return { text, image, png: PNG.sync.read(Buffer.from(image.data, 'base64')), structured: r.structuredContent! };
  }
  const colourCount = (png: PNG, hex: string) => {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
    let n = 0;
    for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === r && png.data[i + 1] === g && png.data[i + 2] === b) n++;
    return n;
  };

  it('is listed as a read-only tool taking the chart inputs', async () => {
    const { tools } = await client.listTools();
    const tool = tools.find((t) => t.name === 'render_chart')!;
    expect(tool.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false });
    // the picture's facts as data (checked by the SDK client against this schema on every call)
    expect(Object.keys(tool.outputSchema?.properties ?? {})).toEqual(expect.arrayContaining(['window', 'missingBuckets', 'last', 'freshness']));
    const props = tool.inputSchema.properties as Record<string, { enum?: string[]; items?: { enum?: string[] }; default?: unknown }>;
    expect(Object.keys(props).sort()).toEqual(['exchange', 'height', 'limit', 'overlays', 'symbol', 'timeframe', 'until', 'width']);
    expect(props.overlays!.items!.enum).toEqual(expect.arrayContaining(['sma20', 'ema21', 'bbands', 'vwap']));
    expect(props.timeframe!.default).toBe('1h');
  });

  it('returns a PNG of the requested size with both candle colours, and says what it drew', async () => {
    const { text, image, png, structured } = await chart({ limit: 60, overlays: ['sma20', 'bbands', 'vwap'], width: 800, height: 400 });
    expect(image.mimeType).toBe('image/png');
    expect([png.width, png.height]).toEqual([800, 400]);
    expect(colourCount(png, CANDLE_COLORS.up)).toBeGreaterThan(50);
    expect(colourCount(png, CANDLE_COLORS.down)).toBeGreaterThan(50);
    // the newest 60 minutes: 180..239, of which 200..204 hold nothing
    expect(text).toContain('binance BTC/USDT 1m candle chart, 800x400 PNG');
    expect(text).toContain(`opening ${new Date(T0 + 180 * MIN).toISOString()} to ${new Date(T0 + 239 * MIN).toISOString()}`);
    expect(text).toContain('55 candles, 5 buckets without data left empty');
    expect(text).toContain(`Last close ${closeAt(239)} (candle opening ${new Date(T0 + 239 * MIN).toISOString()})`);
    expect(text).toContain('Overlays: SMA 20, BB 20, 2, VWAP (day).');
    // 180 minutes before the window cover SMA 20 and BB 20, and VWAP's session starts with the data
    expect(text).not.toContain('history before the chart is shorter');
    expect(text).toContain('Newest data is 660 s old');
    expect(structured).toMatchObject({
      exchange: 'binance',
      symbol: 'BTC/USDT',
      timeframe: '1m',
      image: { width: 800, height: 400, mimeType: 'image/png', bytes: Buffer.from(image.data, 'base64').length },
      window: { from: T0 + 180 * MIN, to: T0 + 240 * MIN },
      candles: 55,
      missingBuckets: 5,
      last: { ts: T0 + 239 * MIN, close: closeAt(239), closed: true },
      overlays: ['SMA 20', 'BB 20, 2', 'VWAP (day)'],
      overlaysShortOfHistory: [],
      freshness: { newestTs: T0 + 239 * MIN, ageMs: 11 * MIN },
    }); // the newest candle opened at 03:59, now is 04:10
  });

  it('draws the same bytes for the same call, and other bytes for other overlays', async () => {
    const args = { limit: 100, overlays: ['ema21', 'sma50'], width: 640, height: 360 };
    const a = await chart(args);
    const b = await chart(args);
    expect(b.image.data).toBe(a.image.data);
    const c = await chart({ ...args, overlays: ['ema21'] });
    expect(c.image.data).not.toBe(a.image.data);
  });

  it('ends the chart before until, and rolls minutes up to the timeframe asked', async () => {
    const { text } = await chart({ limit: 30, until: new Date(T0 + 100 * MIN).toISOString(), width: 320, height: 200 });
    expect(text).toContain(`opening ${new Date(T0 + 70 * MIN).toISOString()} to ${new Date(T0 + 99 * MIN).toISOString()}`);
    expect(text).toContain(`Last close ${closeAt(99)} `);
    expect(text).toContain('30 candles.');
    const short = await chart({ limit: 30, until: T0 + 40 * MIN, overlays: ['sma20', 'sma50', 'vwap'] });
    expect(short.text).toContain('Stored history before the chart is shorter than SMA 20, SMA 50 need:'); // 10 minutes before it; VWAP's day starts with the data
    const fives = await chart({ timeframe: '5m', limit: 20 });
    expect(fives.text).toContain('binance BTC/USDT 5m candle chart, 1000x600 PNG');
    // minutes 200-204 are one whole 5m bucket
    expect(fives.text).toContain('19 candles, 1 buckets without data left empty');
    expect([fives.png.width, fives.png.height]).toEqual([1000, 600]);
  });

  it('says how to recover from an unknown market, no stored candles, or an empty window', async () => {
    const unknown = await call({ symbol: 'DOGE/USDT' });
    expect(unknown.isError).toBe(true);
    expect((unknown.content[0] as Text).text).toMatch(/BTC\/USDT.*list_markets/s);

    const before = await call({ until: T0 - 60 * MIN });
    expect(before.isError).toBe(true);
    expect((before.content[0] as Text).text).toContain(`No 1m candles are stored for binance BTC/USDT before ${new Date(T0 - 60 * MIN).toISOString()}`);

    // until far after the data: the window of 20 buckets before it holds nothing
    const after = await call({ until: T0 + 2 * MINUTES * MIN, limit: 20 });
    expect(after.isError).toBe(true);
    expect((after.content[0] as Text).text).toContain(`the newest before them opens at ${new Date(T0 + (MINUTES - 1) * MIN).toISOString()}`);

    const badTime = await call({ until: 'yesterday' });
    expect(badTime.isError).toBe(true);
    expect((badTime.content[0] as Text).text).toContain('Accepted formats');

    const tooWide = await call({ width: 5000 });
    expect(tooWide.isError).toBe(true);
    expect(tooWide.content.some((c) => c.type === 'image')).toBe(false);
  });
});
