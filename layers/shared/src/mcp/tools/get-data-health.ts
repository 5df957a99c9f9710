import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { FeedChannelSchema, GapStatusSchema } from '../../domain/index.js';
import type { FeedHealth, GapRecord, LedgerReader } from '../../ports/index.js';
import type { McpDeps } from '../server.js';
import { readOnlyAnnotations, runTool, toolFailure, toolSuccess } from '../tool-result.js';
import { FreshnessOutput, freshnessOut, iso } from './schemas.js';

const MAX_FEEDS = 500;
const DEFAULT_GAPS = 20;
const MAX_GAPS = 200;

/** A feed is stale when nothing arrived for this long. */
const STALE_AFTER_MS = 60_000;

const FeedOutput = z.object({
  exchange: z.string(),
  symbol: z.string().describe("Symbol, or '*' for exchange-wide counts (frames naming no market)."),
  channel: z.string(),
  status: z
    .enum(['ok', 'degraded', 'stale', 'silent'])
    .describe("ok; degraded: gaps left unfilled or open; stale: no message for over a minute; silent: no message ever."),
  lastMessageAgeMs: z.number().nullable().describe('Since the newest message was received, ms; null when none.'),
  lastMessageIso: z.string().nullable(),
  messages: z.number().int(),
  events: z.number().int(),
  rejected: z.number().int().describe('Items that broke the schema (skipped).'),
  malformed: z.number().int().describe('Frames the exchange client could not read (skipped).'),
  duplicates: z.number().int().describe('Trades dropped because their id was already seen.'),
  gapsDetected: z.number().int(),
  gapsFilled: z.number().int().describe('Filled from the exchange REST API in the live id space.'),
  gapsUnfilled: z.number().int().describe('Holes that could not be filled: the data there is missing.'),
  gapsOpen: z.number().int().describe('Being filled now.'),
  tradesRecovered: z.number().int(),
  reconnects: z.number().int(),
  resubscribes: z.number().int().describe('Resubscriptions by the stale-feed watchdog.'),
  lastError: z.string().nullable(),
});

const GapOutput = z.object({
  exchange: z.string(),
  symbol: z.string(),
  status: GapStatusSchema,
  reason: z.string().describe('sequence (an id jump), reconnect, resubscribe or startup.'),
  fromId: z.string().nullable(),
  toId: z.string().nullable(),
  fromTs: z.number().nullable(),
  toTs: z.number().nullable(),
  missing: z.number().nullable().describe('Trades missing when detected, where ids tell.'),
  recovered: z.number().int(),
  detectedAt: z.number(),
  resolvedAt: z.number().nullable(),
});

const Output = {
  summary: z.object({
    feeds: z.number().int(),
    ok: z.number().int(),
    degraded: z.number().int(),
    stale: z.number().int(),
    silent: z.number().int(),
  }),
  feeds: z.array(FeedOutput).describe(`Per exchange, symbol and channel (at most ${MAX_FEEDS}).`),
  gaps: z.array(GapOutput).describe('Recent gaps, newest first.'),
  freshness: FreshnessOutput,
};

function statusOf(f: FeedHealth): z.infer<typeof FeedOutput>['status'] {
  if (f.lastMessageAgeMs === null) return 'silent';
  if (f.lastMessageAgeMs > STALE_AFTER_MS) return 'stale';
  return f.gapsUnfilled > 0 || f.gapsOpen > 0 ? 'degraded' : 'ok';
}

/** Registers `get_data_health` when the deployment has a completeness ledger. */
export function registerGetDataHealthTool(server: McpServer, deps: McpDeps & { readonly ledger: LedgerReader }): void {
  server.registerTool(
    'get_data_health',
    {
      title: 'Data health per feed',
      description:
        'Reports, per exchange/symbol/channel, whether the collected data can be trusted: status (ok, degraded, stale, silent), ' +
        'age of the newest message, messages, rejected and malformed items, duplicates dropped, gaps detected, filled from REST and left ' +
        'unfilled, reconnects and watchdog resubscriptions; plus recent gaps with their id/time ranges. ' +
        'Check it before trusting candles or trades of a market: an unfilled gap means trades are missing there.',
      inputSchema: {
        exchange: z.string().min(1).max(64).optional().describe('Only this ccxt exchange id.'),
        symbol: z.string().min(1).max(64).optional().describe('Only this ccxt unified symbol.'),
        channel: FeedChannelSchema.optional().describe('Only this channel.'),
        gapStatus: GapStatusSchema.optional().describe('Only gaps in this state; all states when omitted.'),
        gapLimit: z.number().int().min(0).max(MAX_GAPS).default(DEFAULT_GAPS).describe(`Recent gaps to list (default ${DEFAULT_GAPS}).`),
      },
      outputSchema: Output,
      annotations: readOnlyAnnotations('Data health per feed'),
    },
    (args) =>
      runTool('get_data_health', deps, async () => {
        const exchange = args.exchange?.trim().toLowerCase();
        const symbol = args.symbol?.trim().toUpperCase();
        const asOf = Date.now();
        const [health, gaps] = await Promise.all([
          deps.ledger.feedHealth({ ...(exchange && { exchange }), ...(symbol && { symbol }), ...(args.channel && { channel: args.channel }), asOf }),
          args.gapLimit === 0
            ? Promise.resolve([] as GapRecord[])
            : deps.ledger.gaps({ ...(exchange && { exchange }), ...(symbol && { symbol }), ...(args.gapStatus && { status: args.gapStatus }), limit: args.gapLimit }),
        ]);
        if (health.length === 0 && (exchange || symbol)) {
          const all = await deps.ledger.feedHealth({ asOf });
          const known = [...new Set(all.map((f) => `${f.exchange} ${f.symbol}`))].slice(0, 50);
          return toolFailure(
            `No feed matches${exchange ? ` exchange '${exchange}'` : ''}${symbol ? ` symbol '${symbol}'` : ''}. ` +
              (known.length ? `Feeds with health data: ${known.join(', ')}.` : 'No collector has reported yet.') +
              ' Retry without the filter to see every feed.',
          );
        }
        const feeds = health.slice(0, MAX_FEEDS).map((f) => ({
          exchange: f.exchange,
          symbol: f.symbol,
          channel: f.channel,
          status: statusOf(f),
          lastMessageAgeMs: f.lastMessageAgeMs,
          lastMessageIso: f.lastMessageLocalTs === null ? null : iso(f.lastMessageLocalTs),
          messages: f.messages,
          events: f.events,
          rejected: f.rejected,
          malformed: f.malformed,
          duplicates: f.duplicates,
          gapsDetected: f.gapsDetected,
          gapsFilled: f.gapsFilled,
          gapsUnfilled: f.gapsUnfilled,
          gapsOpen: f.gapsOpen,
          tradesRecovered: f.tradesRecovered,
          reconnects: f.reconnects,
          resubscribes: f.resubscribes,
          lastError: f.lastError,
        }));
        const count = (s: string) => feeds.filter((f) => f.status === s).length;
        const newest = Math.max(...health.map((f) => f.lastMessageLocalTs ?? -Infinity));
        return toolSuccess({
          summary: { feeds: feeds.length, ok: count('ok'), degraded: count('degraded'), stale: count('stale'), silent: count('silent') },
          feeds,
          gaps: gaps.map((g) => ({
            exchange: g.exchange,
            symbol: g.symbol,
            status: g.status,
            reason: g.reason,
            fromId: g.fromId,
            toId: g.toId,
            fromTs: g.fromTs,
            toTs: g.toTs,
            missing: g.missing,
            recovered: g.recovered,
            detectedAt: g.detectedAt,
            resolvedAt: g.resolvedAt,
          })),
          freshness: freshnessOut({
            asOf,
            newestTs: Number.isFinite(newest) ? newest : null,
            ageMs: Number.isFinite(newest) ? Math.max(0, asOf - newest) : null,
          }),
        });
      }),
  );
}
