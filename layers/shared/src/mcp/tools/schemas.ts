import { z } from 'zod';
import { EpochMsSchema, ValidationError } from '../../domain/index.js';
import type { Freshness } from '../../query/market-query.js';

/** Page size bounds of every list tool; the query service clamps to its own maximum as well. */
export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;

/** A `since`/`until` value that is neither a ms epoch nor an ISO-8601 time. */
export class TimeBoundError extends ValidationError {}

const ACCEPTED_TIMES =
  'Accepted formats: a ms epoch number such as 1767614400000, or an ISO-8601 string such as ' +
  '2026-01-05T12:00:00Z or 2026-01-05 (a time without offset is read as UTC).';

/** Input fields naming one market. Case is normalized by `normalizeMarket`, so 'Binance' and 'btc/usdt' work. */
export const marketInput = {
  exchange: z
    .string()
    .min(1)
    .max(64)
    .describe("ccxt exchange id, e.g. 'binance', 'okx', 'kraken'. list_markets shows which exchanges are held."),
  symbol: z
    .string()
    .min(1)
    .max(64)
    .describe(
      "ccxt unified symbol: 'BTC/USDT' for spot, 'BTC/USDT:USDT' for a USDT-margined perpetual. list_markets shows which symbols are held.",
    ),
};

/** Input fields of a paged list. */
export const pageInput = {
  limit: z
    .number()
    .int()
    .min(1)
    .max(MAX_LIMIT)
    .default(DEFAULT_LIMIT)
    .describe(`Most items to return (1-${MAX_LIMIT}, default ${DEFAULT_LIMIT}). Use nextCursor for more.`),
  cursor: z
    .string()
    .min(1)
    .max(1024)
    .optional()
    .describe(
      "nextCursor from this tool's previous answer, passed unchanged with the same other arguments, to get the next page. Omit for the first page.",
    ),
};

const timeBound = (what: string) =>
  z
    .union([z.number(), z.string().max(64)])
    .optional()
    .describe(`${what} Either a ms epoch number (e.g. 1767614400000) or an ISO-8601 string (e.g. '2026-01-05T12:00:00Z'); times without an offset are UTC.`);

/** Input fields bounding a time range. */
export const rangeInput = {
  since: timeBound('Start of the range, inclusive. When given, results run forward from here (oldest first) and nextCursor pages to newer items.'),
  until: timeBound('End of the range, exclusive. Without since, the answer holds the newest items before until and nextCursor pages to older items.'),
};

/** Normalizes case the way ccxt ids and unified symbols are stored: lowercase exchange, uppercase symbol. */
export function normalizeMarket(input: { exchange: string; symbol: string }): { exchange: string; symbol: string } {
  return { exchange: input.exchange.trim().toLowerCase(), symbol: input.symbol.trim().toUpperCase() };
}

/** Parses `since`/`until` into ms epoch; throws TimeBoundError saying which formats are accepted. */
export function parseTimeRange(input: { since?: number | string | undefined; until?: number | string | undefined }): {
  since?: number;
  until?: number;
} {
  const since = parseTimeBound('since', input.since);
  const until = parseTimeBound('until', input.until);
  if (since !== undefined && until !== undefined && since >= until) {
    throw new TimeBoundError(`since (${iso(since)}) must be earlier than until (${iso(until)}).`);
  }
  return { ...(since !== undefined && { since }), ...(until !== undefined && { until }) };
}

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?$/;

function parseTimeBound(field: 'since' | 'until', value: number | string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = typeof value === 'string' ? value.trim() : undefined;
  let ms: number | undefined;
  if (typeof value === 'number') ms = value;
  else if (text !== undefined && /^\d+(\.\d+)?$/.test(text)) ms = Number(text);
  else if (text !== undefined) ms = parseIso(text);
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new TimeBoundError(`${field} '${String(value).slice(0, 64)}' is not a time. ${ACCEPTED_TIMES}`);
  }
  ms = Math.floor(ms);
  if (!EpochMsSchema.safeParse(ms).success) {
    // A 10-digit number is almost always seconds; say so rather than just "out of range".
    const hint = ms > 1e9 && ms < 1e11 ? ' It looks like seconds; multiply by 1000.' : '';
    throw new TimeBoundError(`${field} ${ms} is outside 2009-2100 as a ms epoch timestamp.${hint} ${ACCEPTED_TIMES}`);
  }
  return ms;
}

/** ISO-8601 date or date-time to ms epoch (UTC unless an offset is given); undefined when not valid. */
function parseIso(text: string): number | undefined {
  const m = ISO_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', , sign, oh = '0', om = '0'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, Number(frac.padEnd(3, '0').slice(0, 3)));
  const check = new Date(utc);
  // Date.UTC rolls 2026-02-31 over into March; a round trip catches impossible dates and times.
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    Number(oh) > 23 ||
    Number(om) > 59
  ) {
    return undefined;
  }
  const offsetMs = sign ? (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om)) * 60_000 : 0;
  return utc - offsetMs;
}

/** Output: how fresh the data behind an answer is. */
export const FreshnessOutput = z
  .object({
    asOf: z.number().describe('Server time of this answer, ms epoch.'),
    asOfIso: z.string().describe('asOf as ISO-8601 UTC.'),
    newestTs: z.number().nullable().describe('Exchange time of the newest item held for this market/channel, ms epoch; null when none is held.'),
    newestIso: z.string().nullable().describe('newestTs as ISO-8601 UTC.'),
    ageMs: z.number().nullable().describe('asOf - newestTs: how old the newest data is. Large values mean the feed is stale or stopped.'),
  })
  .describe('Freshness of the data behind this answer.');

export type FreshnessOut = z.infer<typeof FreshnessOutput>;

/** Freshness in the output shape, with ISO strings beside the ms epochs. */
export function freshnessOut(f: Freshness): FreshnessOut {
  return {
    asOf: f.asOf,
    asOfIso: iso(f.asOf),
    newestTs: f.newestTs,
    newestIso: f.newestTs === null ? null : iso(f.newestTs),
    ageMs: f.ageMs,
  };
}

/** ms epoch as ISO-8601 UTC. */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Output: the paging fields of a list answer. */
export const pageOutput = {
  count: z.number().int().describe('Number of items in this answer.'),
  nextCursor: z
    .string()
    .nullable()
    .describe('Pass as cursor (with the same other arguments) to get the next page; null when there is no more.'),
};
