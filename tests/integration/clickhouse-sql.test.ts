import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openClickHouse, type ClickHouseExecutor } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { floatLiteral, intLiteral, joinSql, sql, stringLiteral } from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';
import { describeWithService } from '../support/services.js';

// Strings made of the characters that break naive escaping, mixed with random Unicode.
const nasty = fc.constantFrom("'", '\\', "\\'", "''", '\n', '\r', '\0', '\t', '\b', '\f', '\x1b', '\x7f', '"', '`', ';', '--', '/*', '*/', '?', '{x:String}', 'é', '😀', '\u2028', '\ufeff', '\\x41', '\\0');
const nastyString = fc.array(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary-ascii' }), nasty), { maxLength: 10 }).map((p) => p.join(''));

const INJECTIONS = [
  "' OR 1=1 --",
  "x', (SELECT name FROM system.tables LIMIT 1), '",
  "\\'; DROP TABLE t; --",
  "\\\\' UNION ALL SELECT 'pwned",
  "'/*",
  "\u0000' , 1) --",
];

describeWithService('clickhouse', 'clickhouse-sql against the real server', (url) => {
  let ch: ClickHouseExecutor;
  beforeAll(() => {
    ch = openClickHouse(url);
  });
  afterAll(() => ch.close());

  /** The server reads each literal back; one round trip per batch of values. */
  async function roundTrip(values: readonly string[]): Promise<string[]> {
    const items = joinSql(values.map(stringLiteral), ', ');
    const [row] = await ch.query<{ v: string[] }>(sql`SELECT [${items}] AS v`);
    return row!.v;
  }

  it('random strings come back exactly', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(nastyString, { minLength: 1, maxLength: 25 }), async (values) => {
        expect(await roundTrip(values)).toEqual(values);
      }),
      { numRuns: 300 },
    );
  });

  it('injection attempts come back as their literal text', async () => {
    expect(await roundTrip(INJECTIONS)).toEqual(INJECTIONS);
    for (const attempt of INJECTIONS) {
      // one column, one row: nothing escaped the literal into the statement
      const rows = await ch.query<Record<string, unknown>>(sql`SELECT ${attempt} AS v`);
      expect(rows).toEqual([{ v: attempt }]);
    }
  });

  it('finite doubles and safe integers come back exactly', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 25 }),
        fc.array(fc.maxSafeInteger(), { minLength: 1, maxLength: 25 }),
        async (doubles, ints) => {
          const [row] = await ch.query<{ d: number[]; i: string[] }>(
            sql`SELECT [${joinSql(doubles.map(floatLiteral), ', ')}] AS d, [${joinSql(ints.map((n) => sql`toInt64(${intLiteral(n)})`), ', ')}] AS i`,
          );
          expect(row!.d).toHaveLength(doubles.length);
          row!.d.forEach((d, k) => expect(Object.is(d, doubles[k]) || d === doubles[k]).toBe(true));
          expect(row!.i.map(Number)).toEqual(ints);
        },
      ),
      { numRuns: 200 },
    );
  });
});
