import { z } from 'zod';
import { ValidationError } from '../domain/errors.js';

const CURSORS = {
  markets: z.object({ offset: z.number().int().nonnegative() }),
  trades: z.object({ ts: z.number(), id: z.string(), newestFirst: z.boolean() }),
  candles: z.object({ ts: z.number(), newestFirst: z.boolean() }),
  signals: z.object({ ts: z.number(), id: z.string(), newestFirst: z.boolean() }),
} as const;

type CursorKind = keyof typeof CURSORS;
type CursorOf<K extends CursorKind> = z.infer<(typeof CURSORS)[K]>;

/** A cursor that was not issued by this server for this kind of list. */
export class InvalidCursorError extends ValidationError {}

/**
 * Opaque page cursor: base64url JSON tagged with the list it belongs to and the query's scope
 * (market, timeframe, filter), so a cursor reused on another query is refused, not misapplied.
 */
export function encodeCursor<K extends CursorKind>(kind: K, scope: string, value: CursorOf<K>): string {
  return Buffer.from(JSON.stringify({ k: kind, s: scope, v: value })).toString('base64url');
}

/** Decodes a cursor from `encodeCursor`, or throws InvalidCursorError. */
export function decodeCursor<K extends CursorKind>(cursor: string, kind: K, scope: string): CursorOf<K> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new InvalidCursorError('cursor is not one this server issued; repeat the query without it', [], { cause: error });
  }
  const envelope = z.object({ k: z.literal(kind), s: z.literal(scope), v: CURSORS[kind] }).safeParse(parsed);
  if (!envelope.success) {
    throw new InvalidCursorError(`cursor does not belong to this ${kind} query; repeat the query without it`);
  }
  return (envelope.data as { v: CursorOf<K> }).v;
}
