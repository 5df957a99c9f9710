import type { CallToolResult, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { ValidationError } from '../domain/errors.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { InvalidCursorError } from '../query/cursor.js';
import { UnknownMarketError } from '../query/market-query.js';
import type { McpMetrics } from './metrics.js';

/** How many known exchanges/symbols an error lists; the rest is only counted, so errors stay small. */
export const KNOWN_SHOWN = 50;

/** Where unexpected tool failures are logged when the caller gives no logger (stderr: stdout may carry MCP stdio). */
const fallbackLogger = createLogger({ fields: { component: 'mcp-tools' } });

/** Annotations of a tool that only reads this platform's own store: safe to call and to repeat. */
export function readOnlyAnnotations(title: string): ToolAnnotations {
  return { title, readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
}

/**
 * A successful answer: `structuredContent`, plus the same data as text for clients without
 * structured output (and for the model, which reads the text). `text` replaces the default JSON
 * copy where a table says the same in a third of the bytes (see `tableText`).
 */
export function toolSuccess(structured: Record<string, unknown>, text?: string): CallToolResult {
  return { content: [{ type: 'text', text: text ?? JSON.stringify(structured) }], structuredContent: structured };
}

/** A column of a text table: a field name, or a name and how to read it from a row. */
export type TableColumn<Row> = keyof Row & string | readonly [name: string, value: (row: Row) => unknown];

/**
 * Rows as CSV under a header line: the long arrays of an answer (candles, trades, indicator
 * points) cost a few dozen bytes a row instead of a repeated JSON object. null is an empty cell.
 */
export function csvTable<Row>(columns: readonly TableColumn<Row>[], rows: readonly Row[]): string {
  const names = columns.map((c) => (typeof c === 'string' ? c : c[0]));
  const getters = columns.map((c) => (typeof c === 'string' ? (row: Row) => (row as Record<string, unknown>)[c] : c[1]));
  let out = names.join(',');
  for (const row of rows) {
    out += '\n';
    for (let i = 0; i < getters.length; i++) out += (i === 0 ? '' : ',') + csvCell(getters[i]!(row));
  }
  return out;
}

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  // numbers and booleans never need quoting: most cells of a table, so no pattern test for them
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  // objects go in as JSON, which holds quotes and commas: quoted like any other text
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * The text of an answer with one long array: the rest of the answer as JSON, then the array as a
 * CSV table with the same fields as structuredContent.
 */
export function tableText<Row>(structured: Record<string, unknown>, key: string, columns: readonly TableColumn<Row>[], rows: readonly Row[]): string {
  const { [key]: _table, ...rest } = structured;
  return `${JSON.stringify(rest)}\n${key} (${rows.length}, CSV, same fields as structuredContent.${key}):\n${csvTable(columns, rows)}`;
}

/**
 * A failure the model can recover from. No `structuredContent`: clients validate it against the
 * tool's output schema even on errors, and an error has the wrong shape.
 */
export function toolFailure(message: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: message }] };
}

/** Runs a tool body; expected failures become recovery hints, anything else a generic error logged to stderr. */
export async function runTool(
  tool: string,
  deps: { readonly logger?: Logger | undefined; readonly metrics?: McpMetrics | undefined },
  body: () => Promise<CallToolResult>,
): Promise<CallToolResult> {
  const started = performance.now();
  let result: CallToolResult;
  let outcome: 'ok' | 'error' | 'internal';
  try {
    result = await body();
    outcome = result.isError ? 'error' : 'ok';
  } catch (error) {
    ({ result, outcome } = failureFor(tool, error, deps.logger ?? fallbackLogger));
  }
  deps.metrics?.toolCall(tool, outcome, (performance.now() - started) / 1000);
  return result;
}

function failureFor(tool: string, error: unknown, logger: Logger): { result: CallToolResult; outcome: 'error' | 'internal' } {
  if (error instanceof UnknownMarketError) return { result: toolFailure(unknownMarketMessage(error)), outcome: 'error' };
  if (error instanceof InvalidCursorError) {
    const result = toolFailure(
      `Invalid cursor: pass the nextCursor of this same tool's previous answer unchanged, with the same ` +
        `other arguments. Repeat the call without cursor to start from the first page.`,
    );
    return { result, outcome: 'error' };
  }
  // ValidationError messages are written by this platform for callers (bad since/until and the like).
  if (error instanceof ValidationError) return { result: toolFailure(error.message), outcome: 'error' };
  // Never echo an unexpected error: it may carry SQL, hosts or connection strings.
  logger.error('mcp tool failed', { tool, error, stack: error instanceof Error ? error.stack : undefined });
  const result = toolFailure(
    `Internal error while running ${tool}; nothing was changed. Retry shortly; if it keeps failing, ` +
      `the market data store may be unavailable.`,
  );
  return { result, outcome: 'internal' };
}

function unknownMarketMessage(error: UnknownMarketError): string {
  const ofSymbols = error.kind === 'symbol';
  const what = ofSymbols ? 'symbols on this exchange' : 'exchanges';
  const shown = error.known.slice(0, KNOWN_SHOWN);
  const list =
    error.known.length === 0
      ? `The store holds no ${what} yet.`
      : `Known ${what} (${error.known.length}${error.known.length > shown.length ? `, first ${shown.length} shown` : ''}): ` +
        `${shown.join(', ')}.`;
  const hint = ofSymbols
    ? 'Retry with one of these symbols (ccxt unified form, e.g. BTC/USDT, or BTC/USDT:USDT for a perpetual), or call list_markets with this exchange to see every symbol and its freshness.'
    : 'Retry with one of these exchange ids, or call list_markets to see every market held.';
  return `${capitalize(error.message)}. ${list} ${hint}`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
