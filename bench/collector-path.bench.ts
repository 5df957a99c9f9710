/**
 * The collector's own path for a batch of Binance `@trade` frames, raw strings as they come off the
 * socket, stage by stage (each stage includes the ones before it):
 *
 *   JSON.parse only                      the reference, timed again (its ratio shows the noise)
 *   + ccxt                               ccxt's Client.onMessage per frame (ccxt's own JSON.parse,
 *                                        handleMessage -> handleTrade -> parseWsTrade -> trade cache),
 *                                        then what watchTrades resolves with (newUpdates)
 *   + normalizeTrade                     domain event + zod validation, as MarketCollector does
 *   + encodeEvents = collector path      the records the stream gets (JSON + UTF-8 bytes), cut as
 *                                        MemoryStream.publish cuts them: <= 500 events per record
 *   (alt) one record of the whole batch  encodeEvents of all 1000 events at once (~160 KB of JSON)
 *
 * Goal (the issue's): the whole path at >= 0.6 of plain JSON.parse's throughput.
 */
import { decodeEvents, encodeEvents } from '../layers/shared/src/stream/event-codec.js';
import { binanceTradeFrames, offlineBinance } from './fixtures/binance-trades.js';
import { encodeRecords, MAX_EVENTS_PER_RECORD, normalizeBatch, parseFrames, rejected } from './fixtures/collector-steps.js';
import { defineBench } from './lib/measure.js';

const N = 1000;
const { frames, localTs } = binanceTradeFrames(N);
const ccxt = offlineBinance();

function ccxtStage() {
  for (let i = 0; i < frames.length; i++) ccxt.client.onMessage({ data: frames[i]! });
  return ccxt.takeNewTrades();
}

const normalizeStage = () => normalizeBatch(ccxtStage(), localTs);
const fullPath = () => encodeRecords(normalizeStage());
const oneRecord = () => encodeEvents(normalizeStage());

export default defineBench({
  name: 'collector-path',
  title: `Binance @trade frames -> ccxt -> domain Trade (zod) -> stream record, ${N} frames per op`,
  unit: 'msg',
  unitsPerOp: N,
  reference: { name: 'JSON.parse of the frames', fn: () => parseFrames(frames) },
  cases: [
    { name: 'stage 0: JSON.parse only', fn: () => parseFrames(frames), note: 'the reference timed as a case: how far a ratio of 1 can wander on this machine' },
    { name: 'stage 1: + ccxt parse (Client.onMessage)', fn: ccxtStage },
    { name: 'stage 2: + normalizeTrade (zod)', fn: normalizeStage },
    { name: 'stage 3: + encodeEvents (full path)', fn: fullPath, goal: { minRatio: 0.6 }, note: `records of <= ${MAX_EVENTS_PER_RECORD} events, as MemoryStream.publish cuts them` },
    { name: 'stage 3 alt: one record per batch', fn: oneRecord, note: `encodeEvents of all ${N} events in one record (~160 KB): see collector-encode` },
  ],
  check() {
    const trades = ccxtStage();
    if (trades.length !== N) throw new Error(`ccxt gave ${trades.length} trades for ${N} frames`);
    const records = fullPath().map(decodeEvents);
    const events = records.flatMap((r) => r.events);
    const bad = records.flatMap((r) => r.rejected);
    if (records.length !== Math.ceil(N / MAX_EVENTS_PER_RECORD)) throw new Error(`${records.length} records`);
    if (decodeEvents(oneRecord()).events.length !== N) throw new Error('the one-record variant lost events');
    if (events.length !== N || bad.length > 0 || rejected > 0) throw new Error(`the path lost events: ${events.length} of ${N}, ${bad.length} rejected`);
    const first = JSON.parse(frames[0]!) as { t: number; p: string; q: string; T: number; m: boolean };
    const e = events[0]!;
    const want = { type: 'trade', exchange: 'binance', symbol: 'BTC/USDT', ts: first.T, localTs, id: String(first.t), price: Number(first.p), amount: Number(first.q), side: first.m ? 'sell' : 'buy' };
    if (JSON.stringify(e) !== JSON.stringify(want)) throw new Error(`first event ${JSON.stringify(e)} is not ${JSON.stringify(want)}`);
  },
});
