/**
 * The zod validation of the Trade event alone, asked different ways, on the candidates
 * normalizeTrade builds from the ccxt trades of the frames (valid input: the path every trade takes).
 */
import { TradeSchema } from '../layers/shared/src/domain/index.js';
import { binanceTradeFrames, EXCHANGE_ID, offlineBinance } from './fixtures/binance-trades.js';
import { parseFrames } from './fixtures/collector-steps.js';
import { defineBench } from './lib/measure.js';
import { handSchema, TRADE_BATCH_SCHEMAS, TRADE_SCHEMAS, tradeCandidate, validateBatch, type SchemaLike } from './variants/trade-schemas.js';

const N = 1000;
const { frames, localTs } = binanceTradeFrames(N);
const ccxt = offlineBinance();
for (const f of frames) ccxt.client.onMessage({ data: f });
const candidates = ccxt.takeNewTrades().map((t) => tradeCandidate(EXCHANGE_ID, t, localTs));

function each(schema: SchemaLike) {
  return () => {
    const out: unknown[] = [];
    for (const c of candidates) {
      const r = schema.safeParse(c);
      if (r.success) out.push(r.data);
    }
    return out;
  };
}

const batch = (schema: SchemaLike) => () => validateBatch(schema, candidates).events;

const S = TRADE_SCHEMAS;
const perItem: [string, SchemaLike, string?][] = [
  ['TradeSchema.safeParse (current)', S.current],
  ['without .readonly()', S.noReadonly, 'readonly() freezes every event (Object.freeze)'],
  ['z.strictObject', S.strictObject],
  ['amount .positive() for .refine()', S.positiveAmount],
  ['no readonly, no refine', S.lean],
  ['z.compile(TradeSchema)', S.compiled, 'zod 4.6 AOT-compiled parser; runtime parser as fallback'],
  ['z.compile(no readonly, no refine)', S.compiledLean],
  ['hand-written check (floor)', handSchema, 'restates the rules by hand: a lower bound, not a proposal'],
];
const perBatch: [string, SchemaLike][] = [
  ['z.array(TradeSchema) per batch', TRADE_BATCH_SCHEMAS.array],
  ['z.compile(z.array(TradeSchema)) per batch', TRADE_BATCH_SCHEMAS.compiledArray],
];

/** Each variant must accept and reject the same candidates as TradeSchema. */
const INVALID: Record<string, unknown>[] = (() => {
  const ok = candidates[0]!;
  return [
    { ...ok, price: -1 },
    { ...ok, price: 0 },
    { ...ok, price: Number.NaN },
    { ...ok, price: Number.POSITIVE_INFINITY },
    { ...ok, amount: 0 },
    { ...ok, amount: -0.5 },
    { ...ok, symbol: 'btc/usdt' },
    { ...ok, symbol: undefined },
    { ...ok, exchange: 'Binance' },
    { ...ok, ts: 1_768_478_400 },
    { ...ok, ts: 1_768_478_400_000.5 },
    { ...ok, localTs: undefined },
    { ...ok, id: '' },
    { ...ok, id: undefined },
    { ...ok, id: 'x'.repeat(129) },
    { ...ok, side: 'maker' },
    { ...ok, type: 'ticker' },
  ];
})();

export default defineBench({
  name: 'collector-validate',
  title: `zod validation of the domain Trade, ${N} candidates per op`,
  unit: 'msg',
  unitsPerOp: N,
  reference: { name: 'JSON.parse of the frames', fn: () => parseFrames(frames) },
  cases: [
    ...perItem.map(([name, schema, note]) => ({ name, fn: each(schema), ...(note ? { note } : {}) })),
    ...perBatch.map(([name, schema]) => ({ name, fn: batch(schema) })),
  ],
  check() {
    const want = each(TradeSchema)();
    const wantJson = JSON.stringify(want);
    if (want.length !== N) throw new Error(`TradeSchema accepted ${want.length} of ${N} candidates`);
    for (const [name, schema] of [...perItem, ...perBatch]) {
      const got = perBatch.some(([n]) => n === name) ? batch(schema)() : each(schema)();
      if (JSON.stringify(got) !== wantJson) throw new Error(`${name}: different output`);
    }
    for (const [name, schema] of perItem) {
      const frozen = Object.isFrozen(schema.safeParse(candidates[0]).success && (schema.safeParse(candidates[0]) as { data: object }).data);
      const readonly = schema === S.current || schema === S.strictObject || schema === S.positiveAmount || schema === S.compiled || schema === handSchema;
      if (frozen !== readonly) throw new Error(`${name}: output ${frozen ? 'is' : 'is not'} frozen`);
      for (const bad of INVALID) {
        if (schema.safeParse(bad).success !== TradeSchema.safeParse(bad).success) throw new Error(`${name}: disagrees with TradeSchema on ${JSON.stringify(bad)}`);
      }
    }
    for (const [name, schema] of perBatch) {
      if (validateBatch(schema, [...candidates.slice(0, 3), ...INVALID]).events.length !== 3) throw new Error(`${name}: fallback kept the wrong events`);
    }
  },
});
