import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { PlatformError, ValidationError } from '../domain/errors.js';
import type { Signal, SignalDirection } from '../domain/index.js';
import { SignalDirectionSchema, SignalSchema, TIMEFRAMES, TimeframeSchema, UNIFIED_SYMBOL } from '../domain/index.js';
import type { Logger } from '../observability/logger.js';
import type { Clock, MarketWriter, StreamBus } from '../ports/index.js';
import type { SignalQuery, SignalReader } from '../ports/signal-reader.js';
import { decodeCursor, encodeCursor, InvalidCursorError } from './cursor.js';
import type { Freshness } from './market-query.js';

/** A signal that cannot be published as given; the message names every bad field and what it must be. */
export class SignalValidationError extends ValidationError {}

/** A publisher sent more signals than its window allows; `retryAfterMs` says when one more fits. */
export class SignalRateLimitError extends PlatformError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

export interface SignalLimits {
  /** page size of list() when none is asked for */
  readonly defaultLimit: number;
  readonly maxLimit: number;
  /** signals one publisher may publish per `rateWindowMs` */
  readonly perPublisher: number;
  readonly rateWindowMs: number;
}

export const DEFAULT_SIGNAL_LIMITS: SignalLimits = { defaultLimit: 50, maxLimit: 500, perPublisher: 60, rateWindowMs: 60_000 };

/** Longest publisher name (the signals.publisher column and SignalSchema). */
const MAX_PUBLISHER = 128;
/** Publishers whose rate windows are kept before idle ones are swept (bounded memory). */
const MAX_TRACKED_PUBLISHERS = 10_000;

/** Who publishes: the identity of the caller's token, never an argument. */
export interface SignalPublisher {
  /** stored as the signal's publisher */
  readonly name: string;
  /** stable key of the identity for the rate window; `name` when absent */
  readonly principal?: string;
}

/** What a publisher says about a market (publish_signal's arguments). */
export interface SignalInput {
  readonly symbol: string;
  readonly exchange?: string | null | undefined;
  readonly direction: string;
  readonly strength: number;
  readonly confidence: number;
  readonly horizon: string;
  readonly rationale: string;
}

export interface PublishedSignal {
  readonly signal: Signal;
  /** false when there is no stream, or the stream refused it (the signal is stored all the same) */
  readonly streamed: boolean;
}

export interface SignalFilters {
  readonly exchange?: string | undefined;
  readonly symbol?: string | undefined;
  readonly publisher?: string | undefined;
  readonly direction?: SignalDirection | undefined;
  /** inclusive, ms epoch */
  readonly since?: number | undefined;
  /** exclusive, ms epoch */
  readonly until?: number | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
}

export interface SignalsPage {
  /** newest first */
  readonly signals: readonly Signal[];
  readonly nextCursor: string | null;
  /** age of the newest signal matching the filters (since, until and cursor aside) */
  readonly freshness: Freshness;
}

export interface SignalServiceDeps {
  /** the operational store: a published signal is written at once, so list() sees it */
  readonly writer: Pick<MarketWriter, 'writeSignals'>;
  readonly reader: SignalReader;
  readonly clock: Clock;
  /** when given, every published signal also goes on the stream for its consumers */
  readonly bus?: StreamBus | undefined;
  readonly logger?: Logger | undefined;
  readonly limits?: Partial<SignalLimits> | undefined;
}

const SYMBOL_RULE = 'must be a ccxt unified symbol such as BTC/USDT (spot) or BTC/USDT:USDT (perpetual)';
const EXCHANGE_RULE = 'must be a ccxt exchange id such as binance, okx or kraken';
const EXCHANGE_ID = /^[a-z][a-z0-9]{1,31}$/;
const unit = (field: string) =>
  z
    .number({ error: `${field} must be a number from 0 to 1` })
    .min(0, `${field} must be from 0 to 1`)
    .max(1, `${field} must be from 0 to 1`);

const symbolField = z.string({ error: SYMBOL_RULE }).trim().toUpperCase().regex(UNIFIED_SYMBOL, SYMBOL_RULE);
const exchangeField = z.string({ error: EXCHANGE_RULE }).trim().toLowerCase().regex(EXCHANGE_ID, EXCHANGE_RULE);
const directionField = z.enum(SignalDirectionSchema.options, { error: 'must be one of long, short, flat' });
/** PostgreSQL text cannot hold U+0000: refused here with a clear message, not failed in the database. */
const NO_NUL: [(s: string) => boolean, string] = [(s) => !s.includes('\u0000'), 'must not contain the NUL character (U+0000)'];

/** publish() input: case normalized the way ccxt ids and unified symbols are stored. */
const PublishInputSchema = z.object({
  symbol: symbolField,
  exchange: exchangeField.nullish(),
  direction: directionField,
  strength: unit('strength'),
  confidence: unit('confidence'),
  horizon: z.enum(TimeframeSchema.options, { error: `must be a ccxt timeframe: ${TIMEFRAMES.join(', ')}` }),
  rationale: z
    .string({ error: 'must be a text of 1 to 4000 characters' })
    .trim()
    .min(1, 'must not be empty: say why, briefly')
    .max(4000, 'must be at most 4000 characters')
    .refine(...NO_NUL),
});

const FiltersSchema = z.object({
  symbol: symbolField.optional(),
  exchange: exchangeField.optional(),
  publisher: z
    .string()
    .min(1, 'must not be empty')
    .max(MAX_PUBLISHER, `must be at most ${MAX_PUBLISHER} characters`)
    .refine(...NO_NUL)
    .optional(),
  direction: directionField.optional(),
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Agents' signals: publish() validates one, stamps it (id, time, the caller's identity as
 * publisher), writes it to the store at once and puts it on the stream; list() reads them back
 * newest first, filtered and paged. The store write is idempotent on the id, so the stream's copy
 * reaching the same store later changes nothing.
 */
export class SignalService {
  private readonly limits: SignalLimits;
  /** publish times per publisher within the rate window, oldest first */
  private readonly recent = new Map<string, number[]>();

  constructor(private readonly deps: SignalServiceDeps) {
    this.limits = { ...DEFAULT_SIGNAL_LIMITS, ...deps.limits };
  }

  /** Publishes one signal as `publisher`; throws SignalValidationError or SignalRateLimitError. */
  async publish(input: unknown, publisher: SignalPublisher): Promise<PublishedSignal> {
    const parsed = PublishInputSchema.safeParse(input);
    if (!parsed.success) throw invalid('Invalid signal', parsed.error.issues, input);
    const name = publisher.name;
    if (name.length === 0 || name.length > MAX_PUBLISHER || name.includes('\u0000')) {
      throw new SignalValidationError(
        `The publisher is the subject of your access token, and it must be 1 to ${MAX_PUBLISHER} characters long, without NUL characters; ` +
          `this one is ${name.length}. Ask for a token with a shorter subject.`,
      );
    }
    const now = this.deps.clock.now();
    this.takeRateSlot(publisher.principal ?? name, now);
    const { exchange, ...fields } = parsed.data;
    const signal = SignalSchema.parse({
      type: 'signal',
      id: randomUUID(),
      ts: now,
      publisher: name,
      exchange: exchange ?? null,
      ...fields,
    });
    await this.deps.writer.writeSignals([signal]);
    return { signal, streamed: await this.stream(signal) };
  }

  /** Signals matching `filters`, newest first, paged by an opaque cursor. */
  async list(filters: SignalFilters): Promise<SignalsPage> {
    const parsed = FiltersSchema.safeParse(filters);
    if (!parsed.success) throw invalid('Invalid filter', parsed.error.issues, filters);
    const f = parsed.data;
    const { since, until } = filters;
    if (since !== undefined && until !== undefined && since >= until) {
      throw new SignalValidationError('since must be earlier than until.');
    }
    const match = {
      ...(f.exchange !== undefined && { exchange: f.exchange }),
      ...(f.symbol !== undefined && { symbol: f.symbol }),
      ...(f.publisher !== undefined && { publisher: f.publisher }),
      ...(f.direction !== undefined && { direction: f.direction }),
    };
    const scope = scopeOf({ ...match, since: since ?? null, until: until ?? null });
    const after = filters.cursor !== undefined ? decodeSignalCursor(filters.cursor, scope) : undefined;
    const limit = this.limit(filters.limit);
    const query: SignalQuery = {
      ...match,
      ...(since !== undefined && { since }),
      ...(until !== undefined && { until }),
      ...(after && { after }),
      limit: limit + 1,
    };
    const rows = await this.deps.reader.readSignals(query);
    const page = rows.slice(0, limit);
    const edge = page.at(-1);
    // Without a cursor or an upper bound, the first row is the newest match; otherwise ask for it.
    const newest =
      after === undefined && until === undefined && page.length > 0
        ? page[0]!.ts
        : ((await this.deps.reader.readSignals({ ...match, limit: 1 }))[0]?.ts ?? null);
    const asOf = this.deps.clock.now();
    return {
      signals: page,
      nextCursor: rows.length > limit && edge ? encodeCursor('signals', scope, { ts: edge.ts, id: edge.id, newestFirst: true }) : null,
      freshness: { asOf, newestTs: newest, ageMs: newest === null ? null : Math.max(0, asOf - newest) },
    };
  }

  private async stream(signal: Signal): Promise<boolean> {
    if (!this.deps.bus) return false;
    try {
      await this.deps.bus.publish([signal]);
      return true;
    } catch (error) {
      // Stored already and readable: a retry by the caller would publish a second signal.
      this.deps.logger?.warn('signal stored but not streamed', { id: signal.id, error });
      return false;
    }
  }

  private takeRateSlot(key: string, now: number): void {
    const { perPublisher, rateWindowMs } = this.limits;
    const start = now - rateWindowMs;
    if (this.recent.size > MAX_TRACKED_PUBLISHERS) {
      for (const [k, times] of this.recent) if ((times.at(-1) ?? 0) <= start) this.recent.delete(k);
    }
    const times = (this.recent.get(key) ?? []).filter((t) => t > start);
    if (times.length >= perPublisher) {
      const retryAfterMs = Math.max(1, times[0]! + rateWindowMs - now);
      this.recent.set(key, times);
      throw new SignalRateLimitError(
        `Too many signals: at most ${perPublisher} per ${rateWindowMs / 1000} s per publisher. ` +
          `Publish again in ${Math.ceil(retryAfterMs / 1000)} s; meanwhile combine views into fewer, stronger signals.`,
        retryAfterMs,
      );
    }
    times.push(now);
    this.recent.set(key, times);
  }

  private limit(requested: number | undefined): number {
    const n = requested === undefined || !Number.isFinite(requested) ? this.limits.defaultLimit : Math.floor(requested);
    return Math.min(Math.max(1, n), this.limits.maxLimit);
  }
}

type Issue = { readonly path: readonly PropertyKey[]; readonly message: string; readonly code: string };

/** One error naming every bad field (`strength must be from 0 to 1; horizon is required`). */
function invalid(what: string, issues: readonly Issue[], input: unknown): SignalValidationError {
  const given = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  const fields = issues.map((i) => {
    const field = i.path.map(String).join('.') || '(input)';
    const rule = i.message.startsWith(`${field} `) ? i.message.slice(field.length + 1) : i.message;
    // zod reports a missing field as a wrong type or value; say it is missing, and what it takes
    const missing = i.path.length === 1 && given[String(i.path[0])] === undefined;
    return `${field} ${missing ? `is required (${rule})` : rule}`;
  });
  return new SignalValidationError(`${what}: ${fields.join('; ')}. Correct ${fields.length > 1 ? 'these fields' : 'this field'} and try again.`, fields);
}

/** The filters a cursor was issued for, hashed so a cursor stays short whatever the filters. */
function scopeOf(filters: Record<string, unknown>): string {
  return `signals:${createHash('sha256').update(JSON.stringify(filters)).digest('base64url').slice(0, 22)}`;
}

/** The keyset position of a get_signals cursor; InvalidCursorError for anything else. */
function decodeSignalCursor(cursor: string, scope: string): { ts: number; id: string } {
  let value: { ts: number; id: string };
  try {
    // same shape as a trades cursor (ts, id); the scope keeps the two apart
    value = decodeCursor(cursor, 'signals', scope);
  } catch (error) {
    if (!(error instanceof InvalidCursorError)) throw error;
    throw new InvalidCursorError('cursor does not belong to this get_signals query; repeat the query without it', [], { cause: error });
  }
  if (!Number.isSafeInteger(value.ts) || !UUID.test(value.id)) {
    throw new InvalidCursorError('cursor does not belong to this get_signals query; repeat the query without it');
  }
  return { ts: value.ts, id: value.id };
}
