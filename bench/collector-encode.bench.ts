/**
 * encodeEvents alone and its variants, on the batch of Trade events the path produces, cut into
 * records as MemoryStream.publish cuts them (<= 500 events, ~85 KB of JSON), and as one record.
 */
import type { Trade } from '../layers/shared/src/domain/index.js';
import { encodeEvents } from '../layers/shared/src/stream/event-codec.js';
import { binanceTradeFrames, offlineBinance } from './fixtures/binance-trades.js';
import { normalizeBatch, parseFrames, recordsOf } from './fixtures/collector-steps.js';
import { defineBench } from './lib/measure.js';
import { encodeEventsBuffer, encodeTradesTemplate, stringifyOnly } from './variants/encoders.js';

const N = 1000;
const { frames, localTs } = binanceTradeFrames(N);
const ccxt = offlineBinance();
for (const f of frames) ccxt.client.onMessage({ data: f });
const events = normalizeBatch(ccxt.takeNewTrades(), localTs) as Trade[];
const jsonBytes = stringifyOnly(events).length;

export default defineBench({
  name: 'collector-encode',
  title: `encodeEvents of ${N} Trade events (${Math.round(jsonBytes / 1024)} KB of JSON)`,
  unit: 'msg',
  unitsPerOp: N,
  reference: { name: 'JSON.parse of the frames', fn: () => parseFrames(frames) },
  cases: [
    { name: 'encodeEvents, records of 500 (current)', fn: () => recordsOf(events).map(encodeEvents) },
    { name: 'encodeEvents, records of 250', fn: () => recordsOf(events, 250).map(encodeEvents) },
    { name: 'encodeEvents, one record of 1000', fn: () => encodeEvents(events), note: 'a JSON string over ~128 KB lands in V8\'s large-object space; see the ns' },
    { name: 'Buffer.from for TextEncoder, records of 500', fn: () => recordsOf(events).map(encodeEventsBuffer) },
    { name: 'Buffer.from for TextEncoder, one record', fn: () => encodeEventsBuffer(events) },
    { name: 'hand-written JSON + Buffer.from, records of 500', fn: () => recordsOf(events).map(encodeTradesTemplate) },
    { name: 'JSON.stringify only, records of 500', fn: () => recordsOf(events).map(stringifyOnly), note: 'no bytes: the floor of a JSON.stringify-based encoder' },
  ],
  check() {
    const records = recordsOf(events);
    const want = Buffer.concat(records.map(encodeEvents));
    for (const [name, got] of [
      ['Buffer', records.map(encodeEventsBuffer)],
      ['template', records.map(encodeTradesTemplate)],
      ['stringify', records.map((r) => Buffer.from(stringifyOnly(r)))],
    ] as const) {
      if (Buffer.compare(want, Buffer.concat(got)) !== 0) throw new Error(`${name}: different bytes from encodeEvents`);
    }
    if (Buffer.compare(Buffer.from(encodeEvents(events)), encodeEventsBuffer(events)) !== 0) throw new Error('one record: Buffer bytes differ');
  },
});
