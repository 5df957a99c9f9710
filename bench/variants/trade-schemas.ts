/**
 * Variants of the domain Trade validation, for the benchmarks. Each accepts and rejects exactly what
 * TradeSchema does (the validate bench's check proves it on valid and invalid samples) and returns
 * the same value; they differ only in how zod is asked.
 */
import { z } from 'zod';
import { EpochMsSchema, ExchangeIdSchema, SymbolSchema, TradeSchema, UNIFIED_SYMBOL, type Trade } from '../../layers/shared/src/domain/index.js';
import { formatIssues } from '../../layers/shared/src/domain/issues.js';
import { NormalizationError, type CcxtTradeLike } from '../../layers/shared/src/normalize/ccxt-normalizer.js';

// the pieces of layers/shared/src/domain/events.ts (not exported there), rebuilt identically
const Price = z.number().finite().positive();
const Amount = z.number().finite().nonnegative();
const fields = {
  type: z.literal('trade'),
  exchange: ExchangeIdSchema,
  symbol: SymbolSchema,
  ts: EpochMsSchema,
  localTs: EpochMsSchema,
  id: z.string().min(1).max(128),
  price: Price,
  amount: Amount.refine((a) => a > 0, 'trade amount must be positive'),
  side: z.enum(['buy', 'sell']),
};
/** `.positive()` where TradeSchema has `.nonnegative().refine(a > 0)`: same rule, no refinement callback. */
const positiveAmount = { ...fields, amount: z.number().finite().positive() };

export interface SchemaLike {
  safeParse(value: unknown): { success: true; data: unknown } | { success: false; error: { issues: z.core.$ZodIssue[] } };
}

/** One schema per variant; all validate one candidate event. */
export const TRADE_SCHEMAS = {
  /** the platform's TradeSchema: z.object(...).readonly(), amount refined */
  current: TradeSchema,
  noReadonly: z.object(fields),
  strictObject: z.strictObject(fields).readonly(),
  positiveAmount: z.object(positiveAmount).readonly(),
  /** no .readonly(), no refinement */
  lean: z.object(positiveAmount),
  /** zod 4.6's z.compile: generated parser, runtime parser as fallback (issues come from the runtime) */
  compiled: z.compile(TradeSchema),
  compiledLean: z.compile(z.object(positiveAmount)),
} satisfies Record<string, SchemaLike>;

export type TradeSchemaVariant = keyof typeof TRADE_SCHEMAS;

/** A batch validated by one array schema: one call instead of one per trade. */
export const TRADE_BATCH_SCHEMAS = {
  array: z.array(TradeSchema),
  compiledArray: z.compile(z.array(TradeSchema)),
} satisfies Record<string, SchemaLike>;

/** The candidate normalizeTrade builds from a ccxt trade, key for key. */
export function tradeCandidate(exchange: string, t: CcxtTradeLike, localTs: number): Record<string, unknown> {
  return {
    type: 'trade',
    exchange,
    symbol: t.symbol,
    id: t.id ?? undefined,
    ts: t.timestamp,
    localTs,
    price: t.price,
    amount: t.amount,
    side: t.side,
  };
}

/** normalizeTrade with another schema (same candidate, same error). */
export function normalizeTradeWith(schema: SchemaLike): (exchange: string, t: CcxtTradeLike, localTs: number) => Trade {
  return (exchange, t, localTs) => {
    const parsed = schema.safeParse(tradeCandidate(exchange, t, localTs));
    if (parsed.success) return parsed.data as Trade;
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`);
    throw new NormalizationError(`${exchange} trade is not valid: ${formatIssues(parsed.error.issues)}`, issues);
  };
}

/**
 * Validates a whole batch with one array schema; if anything in it is invalid, falls back to one
 * item at a time so the valid ones are kept and each bad one is reported (as the collector does).
 */
export function validateBatch(batchSchema: SchemaLike, candidates: readonly unknown[]): { events: Trade[]; rejected: number } {
  const all = batchSchema.safeParse(candidates);
  if (all.success) return { events: all.data as Trade[], rejected: 0 };
  const events: Trade[] = [];
  let rejected = 0;
  for (const c of candidates) {
    const one = TradeSchema.safeParse(c);
    if (one.success) events.push(one.data);
    else rejected += 1;
  }
  return { events, rejected };
}

// ---- the floor: a hand-written check of the same rules (zod only to word a rejection) -------------

const EXCHANGE_ID = /^[a-z][a-z0-9]{1,31}$/;
const epoch = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1_230_768_000_000 && (v as number) <= 4_102_444_800_000;
const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;

/**
 * Not a proposal (it restates the schema's rules, which then drift apart): the lower bound of what
 * validating these nine fields can cost in JS.
 */
export function handValidateTrade(c: Record<string, unknown>): Trade | undefined {
  const { exchange, symbol, ts, localTs, id, price, amount, side } = c;
  if (
    c['type'] === 'trade' &&
    typeof exchange === 'string' &&
    EXCHANGE_ID.test(exchange) &&
    typeof symbol === 'string' &&
    UNIFIED_SYMBOL.test(symbol) &&
    epoch(ts) &&
    epoch(localTs) &&
    typeof id === 'string' &&
    id.length >= 1 &&
    id.length <= 128 &&
    positive(price) &&
    positive(amount) &&
    (side === 'buy' || side === 'sell')
  ) {
    return Object.freeze({ type: 'trade', exchange, symbol, ts, localTs, id, price, amount, side });
  }
  return undefined;
}

export const handSchema: SchemaLike = {
  safeParse(value) {
    const ok = typeof value === 'object' && value !== null ? handValidateTrade(value as Record<string, unknown>) : undefined;
    if (ok) return { success: true, data: ok };
    const parsed = TradeSchema.safeParse(value);
    return parsed.success ? { success: true, data: parsed.data } : { success: false, error: { issues: parsed.error.issues } };
  },
};
