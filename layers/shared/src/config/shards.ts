/**
 * Scale-out: one market set split across collector processes, `--shard INDEX/COUNT` (SHARD=INDEX/COUNT).
 *
 * INDEX counts from 0, as Kinesis shard ids, Kafka partitions and ECS service names here do: four
 * shards are 0/4, 1/4, 2/4 and 3/4. (Test runners such as vitest count `--shard` from 1; this does not.)
 *
 * The rule (rendezvous, or highest-random-weight, hashing): market `exchange:symbol` goes to the
 * shard j in [0, COUNT) with the highest score (shardScore: SHA-256 of j and `exchange:symbol`), the
 * lower j on a tie. Every process of every shard computes it alone from the same MARKETS, so:
 * - each market is collected by exactly one shard, with no coordination;
 * - adding or removing a market moves no other market (a market's shard depends on its key alone);
 * - going from n to n+1 shards moves only the markets whose new score (seed n) beats their old best,
 *   about 1/(n+1) of them, all into the new shard; going back moves exactly those back.
 * Shares are even in count, in expectation (binomial: COUNT shards of M markets hold M/COUNT each,
 * give or take sqrt(M/COUNT)), not in message rate: a busy market weighs what a quiet one does.
 * A small set can leave a shard empty; deployment checks that at synth (shardSizes).
 *
 * The hash and the key are a contract between processes: changing either reshuffles every market.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../domain/errors.js';

/** One shard of COUNT: this process collects the markets whose rendezvous winner is INDEX. */
export interface Shard {
  /** 0 <= index < count */
  readonly index: number;
  readonly count: number;
}

/** The whole set in one process: what a collector without SHARD runs. */
export const SINGLE_SHARD: Shard = { index: 0, count: 1 };

/** Upper bound on COUNT: far past what one stack deploys, low enough that a typo (`0/40000`) is caught. */
export const MAX_SHARDS = 1024;

const SHARD_PATTERN = /^(\d{1,7})\/(\d{1,7})$/;

/** `INDEX/COUNT` of a shard, as parseShard reads it. */
export function formatShard(shard: Shard): string {
  return `${shard.index}/${shard.count}`;
}

/** What a valid INDEX/COUNT is for `count` shards, for error messages. */
function validFor(count: number): string {
  if (count === 1) return '0/1';
  if (count > 4) return `0/${count}, 1/${count}, ... or ${count - 1}/${count}`;
  const all = Array.from({ length: count }, (_, i) => `${i}/${count}`);
  return `${all.slice(0, -1).join(', ')} or ${all.at(-1)!}`;
}

/** Parses `INDEX/COUNT` (INDEX from 0); anything else is a ConfigError saying what is valid. */
export function parseShard(text: string): Shard {
  const trimmed = text.trim();
  const match = SHARD_PATTERN.exec(trimmed);
  if (!match) {
    throw new ConfigError(
      `shard '${text}' should be INDEX/COUNT in whole numbers, INDEX counting from 0: e.g. 0/4, 1/4, 2/4 and 3/4 for four shards, 0/1 for one`,
    );
  }
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (count < 1 || count > MAX_SHARDS) {
    throw new ConfigError(`shard '${text}': COUNT must be 1 to ${MAX_SHARDS}, got ${count} (0/1 collects every market in one process)`);
  }
  if (index >= count) {
    throw new ConfigError(`shard '${text}': INDEX counts from 0, so with ${count} shard${count === 1 ? '' : 's'} it is ${validFor(count)}`);
  }
  return { index, count };
}

/** SHARD in an environment schema: `INDEX/COUNT`, parsed to a Shard; the message of parseShard on bad input. */
export const ShardSchema = z.string().transform((text, ctx): Shard => {
  try {
    return parseShard(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

/**
 * Score of `key` for shard `j`: the first 4 bytes of SHA-256 over `j` and the key. Any hash would
 * do if every process agrees; node:crypto's is at hand everywhere, and at 1-2 µs a score, a start-up
 * split of 5000 markets over 100 shards costs well under a second.
 */
export function shardScore(key: string, j: number): number {
  return createHash('sha256').update(`${j}\n${key}`).digest().readUInt32BE(0);
}

/** The rendezvous key of a market: the ccxt exchange id and unified symbol as configured. */
export function shardKey(exchange: string, symbol: string): string {
  return `${exchange}:${symbol}`;
}

/** Index of the shard, out of `count`, that collects `exchange`'s `symbol`. */
export function shardOfMarket(exchange: string, symbol: string, count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`shard count must be a whole number >= 1, got ${count}`);
  const key = shardKey(exchange, symbol);
  let best = 0;
  let bestScore = -1;
  for (let j = 0; j < count; j++) {
    const score = shardScore(key, j);
    if (score > bestScore) {
      best = j;
      bestScore = score;
    }
  }
  return best;
}

/** The part of `markets` that `shard` collects: exchanges in their order, symbols in theirs; exchanges left with none are left out. */
export function shardMarkets(markets: ReadonlyMap<string, readonly string[]>, shard: Shard): Map<string, string[]> {
  const mine = new Map<string, string[]>();
  for (const [exchange, symbols] of markets) {
    const kept = shard.count === 1 ? [...symbols] : symbols.filter((s) => shardOfMarket(exchange, s, shard.count) === shard.index);
    if (kept.length > 0) mine.set(exchange, kept);
  }
  return mine;
}

/** The MARKETS spec of `markets` (`exchange:SYM,SYM;exchange:SYM`), as parseMarkets reads it back: what a deployment hands one shard. */
export function formatMarkets(markets: ReadonlyMap<string, readonly string[]>): string {
  return [...markets].map(([exchange, symbols]) => `${exchange}:${symbols.join(',')}`).join(';');
}

/** Every shard's part of `markets` at once (index i: shard i/count), one score per market and shard: for deployment, which needs them all. */
export function splitMarkets(markets: ReadonlyMap<string, readonly string[]>, count: number): Map<string, string[]>[] {
  const parts = Array.from({ length: count }, () => new Map<string, string[]>());
  for (const [exchange, symbols] of markets) {
    for (const s of symbols) {
      const part = parts[shardOfMarket(exchange, s, count)]!;
      const list = part.get(exchange);
      if (list) list.push(s);
      else part.set(exchange, [s]);
    }
  }
  return parts;
}

/** How many markets each of `count` shards collects (index i: shard i/count): for checks before deploying. */
export function shardSizes(markets: ReadonlyMap<string, readonly string[]>, count: number): number[] {
  return splitMarkets(markets, count).map((part) => [...part.values()].reduce((n, symbols) => n + symbols.length, 0));
}
