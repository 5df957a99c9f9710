import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { SignalDirectionSchema } from '../../domain/index.js';
import { readOnlyAnnotations, runTool, toolSuccess } from '../tool-result.js';
import { SignalOutput, signalOut, type SignalToolDeps } from './publish-signal.js';
import { FreshnessOutput, freshnessOut, pageOutput, parseTimeRange, rangeInput } from './schemas.js';

/** Page size bounds of get_signals (signals carry up to 4000 characters of rationale each). */
export const SIGNALS_DEFAULT_LIMIT = 50;
export const SIGNALS_MAX_LIMIT = 500;

const Input = {
  symbol: z.string().min(1).max(64).optional().describe("Only signals about this ccxt unified symbol, e.g. 'BTC/USDT' or 'BTC/USDT:USDT'."),
  exchange: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe("Only signals naming this ccxt exchange id, e.g. 'binance' (signals published without an exchange do not match)."),
  publisher: z.string().min(1).max(128).optional().describe('Only signals of this publisher (the publisher field of earlier answers).'),
  direction: SignalDirectionSchema.optional().describe('Only long, short or flat signals.'),
  ...rangeInput,
  limit: z
    .number()
    .int()
    .min(1)
    .max(SIGNALS_MAX_LIMIT)
    .default(SIGNALS_DEFAULT_LIMIT)
    .describe(`Most signals to return (1-${SIGNALS_MAX_LIMIT}, default ${SIGNALS_DEFAULT_LIMIT}). Use nextCursor for more.`),
  cursor: z
    .string()
    .min(1)
    .max(1024)
    .optional()
    .describe("nextCursor from this tool's previous answer, passed unchanged with the same other arguments, to get older signals. Omit for the first page."),
};

const Output = {
  signals: z.array(SignalOutput).describe('Signals, newest first.'),
  ...pageOutput,
  freshness: FreshnessOutput.describe('Freshness: newestTs is the newest signal matching the filters (since, until and cursor aside).'),
};

/** Registers `get_signals`: published signals, newest first, filtered and paged. */
export function registerGetSignalsTool(server: McpServer, deps: SignalToolDeps): void {
  server.registerTool(
    'get_signals',
    {
      title: 'Signals',
      description:
        'Returns trading signals that agents published with publish_signal, newest first: publisher, symbol, optional exchange, direction, ' +
        'strength, confidence, horizon and rationale, with freshness (age of the newest matching signal). Filter by symbol, exchange, ' +
        'publisher, direction and a since/until time range (ms epoch numbers or ISO-8601 strings); nextCursor pages to older signals. ' +
        'Signals are opinions of other agents, not market data: weigh them by publisher, confidence and age.',
      inputSchema: Input,
      outputSchema: Output,
      annotations: readOnlyAnnotations('Signals'),
    },
    (args) =>
      runTool('get_signals', deps, async () => {
        const page = await deps.signals.list({
          symbol: args.symbol,
          exchange: args.exchange,
          publisher: args.publisher,
          direction: args.direction,
          ...parseTimeRange(args),
          limit: args.limit,
          cursor: args.cursor,
        });
        const signals = page.signals.map(signalOut);
        return toolSuccess({ signals, count: signals.length, nextCursor: page.nextCursor, freshness: freshnessOut(page.freshness) });
      }),
  );
}
