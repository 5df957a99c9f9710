import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { SignalDirectionSchema, TIMEFRAMES, TimeframeSchema, type Signal } from '../../domain/index.js';
import type { Logger } from '../../observability/logger.js';
import { SignalRateLimitError, type SignalService } from '../../query/signal-service.js';
import { callerOf } from '../caller.js';
import type { McpMetrics } from '../metrics.js';
import { runTool, toolFailure, toolSuccess } from '../tool-result.js';
import { iso } from './schemas.js';

export interface SignalToolDeps {
  readonly signals: SignalService;
  readonly logger?: Logger | undefined;
  readonly metrics?: McpMetrics | undefined;
}

/** A signal as the signal tools return it. */
export const SignalOutput = z.object({
  id: z.string().describe('Signal id (UUID), assigned by the server.'),
  ts: z.number().describe('When the server accepted it, ms epoch.'),
  iso: z.string().describe('ts as ISO-8601 UTC.'),
  publisher: z.string().describe('Who published it: the identity (subject) of the access token used, set by the server.'),
  exchange: z.string().nullable().describe('ccxt exchange id the signal is about, or null when it is about the symbol on any exchange.'),
  symbol: z.string().describe('ccxt unified symbol.'),
  direction: SignalDirectionSchema.describe('long, short, or flat (no position).'),
  strength: z.number().describe('How strong the move is expected to be, 0 to 1.'),
  confidence: z.number().describe("The publisher's confidence, 0 to 1."),
  horizon: z.string().describe('Time frame the signal is meant for (ccxt timeframe).'),
  rationale: z.string().describe('Why, in the publisher\'s words.'),
});

/** A signal in the output shape. */
export function signalOut(s: Signal): z.infer<typeof SignalOutput> {
  return {
    id: s.id,
    ts: s.ts,
    iso: iso(s.ts),
    publisher: s.publisher,
    exchange: s.exchange,
    symbol: s.symbol,
    direction: s.direction,
    strength: s.strength,
    confidence: s.confidence,
    horizon: s.horizon,
    rationale: s.rationale,
  };
}

const Input = {
  symbol: z
    .string()
    .min(1)
    .max(64)
    .describe("ccxt unified symbol the signal is about: 'BTC/USDT' for spot, 'BTC/USDT:USDT' for a USDT-margined perpetual."),
  exchange: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe("ccxt exchange id when the signal is about one exchange's market, e.g. 'binance'; omit when it holds on any exchange."),
  direction: SignalDirectionSchema.describe('long (expect up), short (expect down), or flat (no position: exit or stay out).'),
  strength: z.number().min(0).max(1).describe('Expected size of the move, 0 (none) to 1 (very large).'),
  confidence: z.number().min(0).max(1).describe('How sure you are, 0 to 1.'),
  horizon: TimeframeSchema.describe(`Time frame the signal is meant for, a ccxt timeframe: ${TIMEFRAMES.join(', ')}.`),
  rationale: z
    .string()
    .min(1)
    .max(4000)
    .describe('Why, in 1 to 4000 characters: the evidence (indicators, levels, data health) that other agents can check.'),
};

const Output = {
  signal: SignalOutput,
  streamed: z
    .boolean()
    .describe('true when the signal was also put on the platform stream for its consumers; false when this deployment has none or it refused (the signal is stored and readable anyway: do not publish it again).'),
};

/** Registers `publish_signal`: an agent publishes a trading signal about one market, under its token's identity. */
export function registerPublishSignalTool(server: McpServer, deps: SignalToolDeps): void {
  server.registerTool(
    'publish_signal',
    {
      title: 'Publish signal',
      description:
        'Publishes a trading signal about one market (symbol, optional exchange): direction long/short/flat, strength and confidence from 0 to 1, ' +
        'a horizon (ccxt timeframe) and a rationale. The server assigns the id and time, and records you as the publisher from your access token ' +
        '(it cannot be set by argument). The signal is readable at once with get_signals and reaches the platform\'s stream consumers. ' +
        'Every call publishes a new signal: to change your view, publish another one rather than repeating this call. Publishers are rate limited.',
      inputSchema: Input,
      outputSchema: Output,
      // a new signal on every call, stored by this platform only
      annotations: { title: 'Publish signal', readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    (args, extra) =>
      runTool('publish_signal', deps, async () => {
        const caller = callerOf(extra);
        try {
          const { signal, streamed } = await deps.signals.publish(args, { name: caller.name, principal: caller.principal });
          return toolSuccess({ signal: signalOut(signal), streamed });
        } catch (error) {
          if (error instanceof SignalRateLimitError) return toolFailure(error.message);
          throw error;
        }
      }),
  );
}
