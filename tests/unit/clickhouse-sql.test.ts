import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitStatements } from '../../layers/shared/src/adapters/stores/clickhouse-migrations.js';
import {
  SqlBindError,
  columnList,
  databaseName,
  floatLiteral,
  intLiteral,
  joinSql,
  sql,
  stringLiteral,
  table,
  type ClickHouseTable,
} from '../../layers/shared/src/adapters/stores/clickhouse-sql.js';

/** One quoted token: quote, then only plain characters or backslash escapes, then quote. */
const ONE_LITERAL = /^'(?:[^'\\\u0000-\u001f\u007f]|\\[\\'nrtbf0]|\\x[0-9a-f]{2})*'$/u;

const nasty = fc.constantFrom("'", '\\', '\n', '\r', '\0', '\t', '\x1b', '\x7f', '"', '`', ';', '--', '/*', '*/', '{a:String}', 'é', '😀', '\u2028', '\ufeff');
const nastyString = fc.array(fc.oneof(fc.string({ unit: 'binary' }), nasty), { maxLength: 12 }).map((parts) => parts.join(''));

describe('clickhouse-sql: string literals', () => {
  it('always form exactly one literal token, whatever the string', () => {
    fc.assert(
      fc.property(nastyString, (s) => {
        expect(stringLiteral(s).text).toMatch(ONE_LITERAL);
      }),
      { numRuns: 2_000 },
    );
  });

  it('escape the characters that end or bend a literal', () => {
    expect(stringLiteral("a'b\\c\nd\0e\x01").text).toBe("'a\\'b\\\\c\\nd\\0e\\x01'");
    expect(stringLiteral("' OR 1=1 --").text).toBe("'\\' OR 1=1 --'");
  });

  it('refuse lone surrogates, which have no UTF-8 form', () => {
    expect(() => stringLiteral('a\ud800b')).toThrow(SqlBindError);
    expect(stringLiteral('😀').text).toBe("'😀'");
  });
});

describe('clickhouse-sql: numbers, identifiers and the sql tag', () => {
  it('accepts only finite numbers and safe integers', () => {
    expect(intLiteral(-42).text).toBe('-42');
    for (const bad of [Number.NaN, Infinity, -Infinity, 2 ** 53, 1.5]) expect(() => intLiteral(bad)).toThrow(SqlBindError);
    for (const bad of [Number.NaN, Infinity, -Infinity]) expect(() => floatLiteral(bad)).toThrow(SqlBindError);
    expect(floatLiteral(0.1).text).toBe('toFloat64(0.1)');
    expect(floatLiteral(-0).text).toBe("reinterpretAsFloat64(unhex('0000000000000080'))");
    expect(floatLiteral(5e-324).text).toBe("reinterpretAsFloat64(unhex('0100000000000000'))");
  });

  it('names only whitelisted tables and plain database names', () => {
    expect(table('trades').text).toBe('trades');
    expect(() => table('trades; DROP TABLE x' as ClickHouseTable)).toThrow(SqlBindError);
    expect(databaseName('qicore_t_ab12').text).toBe('qicore_t_ab12');
    for (const bad of ['a-b', 'a b', '1a', "a'", '']) expect(() => databaseName(bad)).toThrow(SqlBindError);
  });

  it('lists only plain column names', () => {
    expect(columnList(['exchange', 'amount_dec']).text).toBe('(exchange, amount_dec)');
    for (const bad of ['a-b', 'a b', 'A', '1a', 'x) FORMAT', "a'", '`a`', '']) expect(() => columnList([bad])).toThrow(SqlBindError);
    expect(() => columnList([])).toThrow(SqlBindError);
  });

  it('binds every interpolated value through the escapers', () => {
    const q = sql`SELECT * FROM ${table('trades')} WHERE symbol = ${"x'y"} AND ts >= ${5} AND p < ${0.5} AND m IN (${[1, 2]})`;
    expect(q.text).toBe("SELECT * FROM trades WHERE symbol = 'x\\'y' AND ts >= 5 AND p < toFloat64(0.5) AND m IN (1, 2)");
    expect(joinSql([sql`a = ${1}`, sql`b = ${'2'}`], ' AND ').text).toBe("a = 1 AND b = '2'");
    expect(() => sql`x IN (${[]})`).toThrow(SqlBindError);
    expect(() => sql`x = ${{ text: 'raw' } as never}`).toThrow(SqlBindError);
  });
});

describe('splitStatements', () => {
  it('splits on semicolons outside quotes and comments', () => {
    const script = "-- head; comment\nCREATE TABLE a (s String DEFAULT ';') ENGINE = Memory;\n\nSELECT 'it\\'s; fine' -- tail;\n;";
    expect(splitStatements(script)).toEqual([
      "CREATE TABLE a (s String DEFAULT ';') ENGINE = Memory",
      "SELECT 'it\\'s; fine'",
    ]);
  });
});
