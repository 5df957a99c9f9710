/**
 * Trades travel as RowBinary straight into `trades`: every double bit for bit, every id byte for
 * byte, amount_dec as Postgres' numeric makes it, and nothing reaches the server when a value
 * cannot be encoded.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { decimalText } from '../../layers/shared/src/adapters/stores/clickhouse-encoding.js';
import { ClickHouseMarketStore, TRADE_COLUMNS, encodeTrades } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { sql } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import type { Trade } from '../../layers/shared/src/domain/index.js';
import { createClickHouseTestDatabase, type TestClickHouse } from '../support/clickhouse.js';
import { describeWithService } from '../support/services.js';
import { T0, trade } from '../fixtures/events.js';

/** Ids that break naive encodings: quotes, backslashes, control bytes, multi-byte UTF-8, 128 chars. */
const nastyId = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => !/\p{Cs}/u.test(s)),
  fc.constantFrom("'", '\\', '\t', '\n', '\0', '"', '😀', 'é', '\u2028', 'x'.repeat(128), "1' OR 1=1 --"),
);
/** Any finite double, subnormals and -0 included (what a price column must keep). */
const anyDouble = fc.double({ noNaN: true, noDefaultInfinity: true });
/** Amounts whose sums stay inside Decimal128(18) in the rebuilt minutes. */
const amount = fc.oneof(fc.double({ min: 1e-8, max: 1e12, noNaN: true }), fc.constantFrom(0.1, 0.2, 1.88455995, 1e-8, 123456.123456789));

describeWithService('clickhouse', 'ClickHouse trades as RowBinary', (url) => {
  let database: TestClickHouse;
  let ch: ClickHouseExecutor;
  let store: ClickHouseMarketStore;

  beforeAll(async () => {
    database = await createClickHouseTestDatabase(url);
    ({ ch, store } = database);
  });
  afterAll(() => database?.dispose());

  it('reads back exactly what was written: any double, any id, any ms epoch, amount_dec as decimalText', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.record({ id: nastyId, dt: fc.integer({ min: 0, max: 3 * 60_000 }) }), { minLength: 1, maxLength: 30, selector: (r) => `${r.dt}|${r.id}` }),
        fc.array(fc.tuple(anyDouble, amount, fc.boolean(), fc.integer({ min: 0, max: 10_000 })), { minLength: 30, maxLength: 30 }),
        async (keys, values) => {
          const symbol = `RB${run++}/USDT`;
          const trades: Trade[] = keys.map((k, i) => {
            const [price, qty, buy, lag] = values[i]!;
            return trade({ symbol, id: k.id, ts: T0 + k.dt, localTs: T0 + k.dt + lag, price, amount: qty, side: buy ? 'buy' : 'sell' });
          });
          await store.writeEvents(trades);
          const stored = await store.trades({ exchange: 'binance', symbol, limit: 100 });
          const byKey = (t: Trade) => `${t.ts}|${t.id}`;
          const want = new Map(trades.map((t) => [byKey(t), t]));
          expect(stored).toHaveLength(trades.length);
          for (const t of stored) {
            const w = want.get(byKey(t))!;
            expect(t).toEqual(w);
            expect(Object.is(t.price, w.price)).toBe(true); // -0 stays -0
          }
          const decimals = await ch.query<{ ts: string; id: string; dec: string }>(
            sql`SELECT ts, trade_id AS id, toString(amount_dec) AS dec FROM trades WHERE symbol = ${symbol}`,
          );
          expect(decimals).toHaveLength(trades.length);
          for (const d of decimals) {
            const w = want.get(`${d.ts}|${d.id}`)!;
            // toString(Decimal128(18)) prints all 18 decimals
            expect(d.dec.replace(/\.?0+$/, '')).toBe(decimalText(w.amount));
          }
        },
      ),
      { numRuns: 30 },
    );
  }, 120_000);

  it('counts every delivered trade in the feed figures, replays included', async () => {
    const symbol = 'FEED/USDT';
    const batch = [1, 2, 3].map((i) => trade({ symbol, id: String(i), ts: T0 + i, localTs: T0 + 100 + i }));
    await store.writeEvents(batch);
    await store.writeEvents(batch);
    const feed = (await store.listFeeds()).find((f) => f.symbol === symbol);
    expect(feed).toEqual({ exchange: 'binance', symbol, channel: 'trades', firstTs: T0 + 1, lastTs: T0 + 3, lastLocalTs: T0 + 103, events: 6 });
  });

  it('a batch with a value the columns cannot hold is refused before anything is sent', async () => {
    const symbol = 'BAD/USDT';
    const bad = [trade({ symbol, id: '1' }), trade({ symbol, id: '2', amount: 1e21 })];
    await expect(store.writeEvents(bad)).rejects.toThrow(/Decimal128/);
    await expect(store.writeEvents([trade({ symbol, id: '\ud800' })])).rejects.toThrow(/surrogate/);
    expect(await database.rawCount('trades', symbol)).toBe(0);
    expect((await store.listFeeds()).some((f) => f.symbol === symbol)).toBe(false);
  });

  it('encodeTrades fills exactly the columns TRADE_COLUMNS names, in their order', async () => {
    const t = trade({ symbol: 'COL/USDT', id: 'c1', price: 5e-324, amount: 2.5, side: 'sell' });
    await ch.insertRowBinary('trades', TRADE_COLUMNS, encodeTrades([t]), 1);
    const [row] = await ch.query<Record<string, unknown>>(
      sql`SELECT exchange, symbol, ts, trade_id, price, amount, side, local_ts, toString(amount_dec) AS amount_dec FROM trades WHERE symbol = 'COL/USDT'`,
    );
    expect(row).toEqual({
      exchange: 'binance',
      symbol: 'COL/USDT',
      ts: String(t.ts),
      trade_id: 'c1',
      price: 5e-324,
      amount: 2.5,
      side: 'sell',
      local_ts: String(t.localTs),
      amount_dec: '2.500000000000000000',
    });
  });
});
