/**
 * The whole collector path (raw frames -> records of <= 500 events, as MemoryStream cuts them) with
 * the candidate changes combined, each against the goal (>= 0.6 of JSON.parse). All produce
 * the same bytes as the current path.
 *
 *   ccxt      frames through ccxt's Client.onMessage and handleMessage, as today
 *   ccxt+int  frames through ccxt's Client.onMessage; handleMessage overridden so `trade` events go
 *             to the dedicated parser (ccxt keeps the socket, subscriptions and all other events)
 *   own       JSON.parse + dedicated parser, ccxt's Client bypassed (own frame handling)
 */
import type { Trade } from '../layers/shared/src/domain/index.js';
import type { CcxtTradeLike } from '../layers/shared/src/normalize/ccxt-normalizer.js';
import { encodeEvents } from '../layers/shared/src/stream/event-codec.js';
import { binanceTradeFrames, EXCHANGE_ID, MARKET_ID, offlineBinance, SYMBOL } from './fixtures/binance-trades.js';
import { MAX_EVENTS_PER_RECORD, normalizeBatch, parseFrames, recordsOf } from './fixtures/collector-steps.js';
import { interceptedBinance } from './fixtures/intercepted-binance.js';
import { defineBench } from './lib/measure.js';
import { parseBinanceTrade } from './variants/binance-trade-parser.js';
import { stringifyOnly } from './variants/encoders.js';
import { handSchema, normalizeTradeWith, TRADE_SCHEMAS } from './variants/trade-schemas.js';

const N = 1000;
const { frames, localTs } = binanceTradeFrames(N);
const ccxt = offlineBinance();
const intercepted = interceptedBinance();
const symbols = new Map([[MARKET_ID, SYMBOL]]);

type Normalize = (t: CcxtTradeLike, localTs: number) => Trade;
const zodCurrent: Normalize | undefined = undefined; // normalizeBatch's default: normalizeTrade
const compiled = normalizeTradeWith(TRADE_SCHEMAS.compiled);
const zodCompiled: Normalize = (t, ts) => compiled(EXCHANGE_ID, t, ts);
const handChecked = normalizeTradeWith(handSchema);
const hand: Normalize = (t, ts) => handChecked(EXCHANGE_ID, t, ts);

function viaCcxt(): CcxtTradeLike[] {
  for (let i = 0; i < frames.length; i++) ccxt.client.onMessage({ data: frames[i]! });
  return ccxt.takeNewTrades();
}
function viaIntercepted(): CcxtTradeLike[] {
  for (let i = 0; i < frames.length; i++) intercepted.client.onMessage({ data: frames[i]! });
  return intercepted.take();
}
function viaOwn(): CcxtTradeLike[] {
  const out: CcxtTradeLike[] = new Array(frames.length);
  for (let i = 0; i < frames.length; i++) out[i] = parseBinanceTrade(JSON.parse(frames[i]!), symbols);
  return out;
}

/** Raw frames -> records of <= 500 events (MemoryStream's cut), each encoded. */
const path =
  (parse: () => CcxtTradeLike[], normalize: Normalize | undefined, encode: (events: readonly Trade[]) => Uint8Array | string = encodeEvents) =>
  () =>
    recordsOf(normalizeBatch(parse(), localTs, normalize) as Trade[]).map(encode);

const cases: [string, () => (Uint8Array | string)[], string?][] = [
  ['ccxt + zod (current path)', path(viaCcxt, zodCurrent)],
  ['ccxt + z.compile', path(viaCcxt, zodCompiled)],
  ['ccxt+int + zod', path(viaIntercepted, zodCurrent)],
  ['ccxt+int + z.compile', path(viaIntercepted, zodCompiled)],
  ['own + zod', path(viaOwn, zodCurrent)],
  ['own + z.compile', path(viaOwn, zodCompiled)],
  ['own + hand check, JSON text only (floor)', path(viaOwn, hand, stringifyOnly), 'no validation library, no UTF-8 bytes: JSON.parse + a little + JSON.stringify'],
];

/** JSON in, JSON out, nothing between: the frames parsed and stringified back in records of 500. */
function parseAndStringify() {
  const parsed = parseFrames(frames);
  const out: string[] = [];
  for (let i = 0; i < parsed.length; i += MAX_EVENTS_PER_RECORD) out.push(JSON.stringify({ v: 1, events: parsed.slice(i, i + MAX_EVENTS_PER_RECORD) }));
  return out;
}

export default defineBench({
  name: 'collector-variants',
  title: `the whole path with candidate changes, ${N} frames per op`,
  unit: 'msg',
  unitsPerOp: N,
  reference: { name: 'JSON.parse of the frames', fn: () => parseFrames(frames) },
  cases: [
    ...cases.map(([name, fn, note]) => ({ name, fn, goal: { minRatio: 0.6 }, ...(note ? { note } : {}) })),
    { name: 'JSON.parse + JSON.stringify, nothing else', fn: parseAndStringify, goal: { minRatio: 0.6 }, note: 'the ceiling of any JSON-in, JSON-out path' },
  ],
  check() {
    const bytes = (records: readonly (Uint8Array | string)[]) => Buffer.concat(records.map((r) => (typeof r === 'string' ? Buffer.from(r) : r)));
    const want = bytes(cases[0]![1]());
    for (const [name, fn] of cases) {
      if (Buffer.compare(want, bytes(fn())) !== 0) throw new Error(`${name}: different record bytes from the current path`);
    }
  },
});
