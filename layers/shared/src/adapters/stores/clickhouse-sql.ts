/**
 * The one place where values become ClickHouse SQL text.
 *
 * ClickHouse 18.16 (the local and CI server) has no server-side query parameters ({name:Type}),
 * so values have to be written into the statement. Every value goes through this module: strings
 * become quoted literals with every byte that could end or bend the literal escaped, numbers must
 * be finite (integers safe), identifiers come from a whitelist. Statements are `Sql` values, built
 * only by the `sql` tag, so a plain string cannot reach a query by accident. Rows for INSERT never
 * pass through here: they travel in the request body (JSONEachRow, or RowBinary for trades).
 */
import { PlatformError } from '../../domain/errors.js';

/** A value that cannot be bound into SQL (non-finite number, unsafe integer, unknown identifier...). */
export class SqlBindError extends PlatformError {}

const SQL = Symbol('clickhouse-sql');

/** A fragment of SQL whose every value was escaped by this module. */
export interface Sql {
  readonly [SQL]: true;
  readonly text: string;
}

function fragment(text: string): Sql {
  return { [SQL]: true, text };
}

/** True for a fragment made by this module. */
export function isSql(value: unknown): value is Sql {
  return typeof value === 'object' && value !== null && (value as Partial<Sql>)[SQL] === true;
}

/** Tables and columns statements may name; anything else is refused. */
export const CLICKHOUSE_TABLES = [
  'trades',
  'trades_in',
  'trades_ingest',
  'tickers',
  'tickers_in',
  'book_snapshots',
  'book_snapshots_in',
  'quotes',
  'quotes_in',
  'candles',
  'candles_in',
  'candle_rollups',
  'candle_marks',
  'candle_marks_in',
  'candle_refresh_state',
  'signals',
  'signals_in',
  'feed_updates',
  'feeds',
  'dead_letters',
  'schema_migrations',
] as const;
export type ClickHouseTable = (typeof CLICKHOUSE_TABLES)[number];

// Two-character escapes ClickHouse's string literal parser understands; everything else below
// 0x20 (and DEL) is written as \xHH, so a literal is always one line of printable ASCII plus
// whatever non-ASCII UTF-8 the string holds.
const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\\\',
  "'": "\\'",
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
  '\0': '\\0',
};
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[\\'\u0000-\u001f\u007f]/g;
// With the u flag a surrogate pair is one code point, so \p{Cs} matches only lone halves.
const LONE_SURROGATE = /\p{Cs}/u;

/** A quoted ClickHouse string literal of `value`, exact for any string (lone surrogates refused). */
export function stringLiteral(value: string): Sql {
  if (typeof value !== 'string') throw new SqlBindError(`expected a string, got ${typeof value}`);
  // A lone UTF-16 surrogate has no UTF-8 form: sent as is it would reach the server as U+FFFD and
  // come back as a different string, so it is refused rather than silently changed.
  if (LONE_SURROGATE.test(value)) throw new SqlBindError('string holds a lone UTF-16 surrogate (not valid Unicode)');
  const body = value.replace(
    NEEDS_ESCAPE,
    (c) => SHORT_ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return fragment(`'${body}'`);
}

/** A safe integer as a SQL number literal. */
export function intLiteral(value: number): Sql {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new SqlBindError(`expected a safe integer, got ${String(value)}`);
  }
  return fragment(String(value));
}

/** A finite number as a Float64 literal that reads back as exactly the same double. */
export function floatLiteral(value: number): Sql {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new SqlBindError(`expected a finite number, got ${String(value)}`);
  }
  // 18.16's parser refuses subnormal literals (5e-324) and its string cast flushes some to 0;
  // -0 prints as "0". Those few go bit-exact: the IEEE 754 bytes, little-endian, as hex.
  if (Object.is(value, -0) || (value !== 0 && Math.abs(value) < 2.2250738585072014e-308)) {
    const bytes = Buffer.alloc(8);
    bytes.writeDoubleLE(value);
    return fragment(`reinterpretAsFloat64(unhex('${bytes.toString('hex')}'))`);
  }
  return fragment(`toFloat64(${String(value)})`);
}

/** A whitelisted table name. */
export function table(name: ClickHouseTable): Sql {
  if (!(CLICKHOUSE_TABLES as readonly string[]).includes(name)) throw new SqlBindError(`unknown table ${String(name)}`);
  return fragment(name);
}

/** A column list `(a, b, c)` of plain lowercase identifiers (the code's own column names). */
export function columnList(names: readonly string[]): Sql {
  if (names.length === 0) throw new SqlBindError('an empty column list');
  for (const name of names) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new SqlBindError(`not a plain column name: ${name}`);
  }
  return fragment(`(${names.join(', ')})`);
}

/** A database name: letters, digits and underscores, as `createClickHouseDatabase` makes them. */
export function databaseName(name: string): Sql {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new SqlBindError(`not a plain database name: ${name}`);
  return fragment(name);
}

/** Bound values: numbers (integer or float literal), strings, fragments, and lists of them (comma-joined). */
export type SqlValue = number | string | Sql | readonly SqlValue[];

function bind(value: SqlValue): string {
  if (isSql(value)) return value.text;
  if (typeof value === 'string') return stringLiteral(value).text;
  if (typeof value === 'number') return (Number.isSafeInteger(value) ? intLiteral(value) : floatLiteral(value)).text;
  if (Array.isArray(value)) {
    if (value.length === 0) throw new SqlBindError('an empty list cannot be bound (IN () is not SQL)');
    return value.map(bind).join(', ');
  }
  throw new SqlBindError(`cannot bind a value of type ${typeof value}`);
}

/** Tagged template: the literal parts are trusted SQL, every `${value}` is escaped by `bind`. */
export function sql(parts: TemplateStringsArray, ...values: readonly SqlValue[]): Sql {
  let text = parts[0] ?? '';
  for (let i = 0; i < values.length; i++) text += bind(values[i]!) + (parts[i + 1] ?? '');
  return fragment(text);
}

/** Joins fragments with a trusted separator (e.g. ' AND ', ' OR '). */
export function joinSql(items: readonly Sql[], separator: ' AND ' | ' OR ' | ', '): Sql {
  if (items.length === 0) throw new SqlBindError('nothing to join');
  return fragment(items.map((i) => i.text).join(separator));
}

/** Trusted SQL text written in this code base (migration files, constant clauses): never user input. */
export function trustedSql(text: string): Sql {
  return fragment(text);
}
