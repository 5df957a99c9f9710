/**
 * Where ccxt's share of the collector path goes: raw `@trade` frames -> unified trades, by
 * increasingly direct routes. Every case starts from the raw strings and includes a JSON.parse.
 */
import type { CcxtTradeLike } from '../layers/shared/src/normalize/ccxt-normalizer.js';
import { binanceTradeFrames, MARKET_ID, offlineBinance, SYMBOL } from './fixtures/binance-trades.js';
import { interceptedBinance } from './fixtures/intercepted-binance.js';
import { parseFrames } from './fixtures/collector-steps.js';
import { defineBench } from './lib/measure.js';
import { parseBinanceTrade } from './variants/binance-trade-parser.js';

const N = 1000;
const { frames } = binanceTradeFrames(N);
const ccxt = offlineBinance();
const intercepted = interceptedBinance();
const symbols = new Map([[MARKET_ID, SYMBOL]]);
// what ccxt's Client.onMessage does to a text frame before JSON.parse (quotes 15+ digit integers)
const BIG_INT = /:(\d{15,}),/g;

function viaClient() {
  for (let i = 0; i < frames.length; i++) ccxt.client.onMessage({ data: frames[i]! });
  return ccxt.takeNewTrades();
}

function viaHandleMessage() {
  for (let i = 0; i < frames.length; i++) ccxt.handleMessage(JSON.parse(frames[i]!));
  return ccxt.takeNewTrades();
}

function viaHandleTrade() {
  for (let i = 0; i < frames.length; i++) ccxt.handleTrade(JSON.parse(frames[i]!));
  return ccxt.takeNewTrades();
}

// ccxt's trade cache alone: the ArrayCache class handleTrade appends to, filled as in steady state
const unified = viaParseWsTrade();
const TradeCache = ccxt.tradeCacheClass();
function fullCache(limit: number) {
  const cache = new TradeCache(limit);
  for (const t of unified) cache.append(t);
  return () => {
    for (let i = 0; i < unified.length; i++) cache.append(unified[i]!);
    return cache;
  };
}

function viaParseWsTrade() {
  const out: CcxtTradeLike[] = new Array(frames.length);
  for (let i = 0; i < frames.length; i++) out[i] = ccxt.parseWsTrade(JSON.parse(frames[i]!));
  return out;
}

function viaIntercepted() {
  for (let i = 0; i < frames.length; i++) intercepted.client.onMessage({ data: frames[i]! });
  return intercepted.take();
}

function viaDedicated() {
  const out: CcxtTradeLike[] = new Array(frames.length);
  for (let i = 0; i < frames.length; i++) out[i] = parseBinanceTrade(JSON.parse(frames[i]!), symbols);
  return out;
}

function ccxtPreParse() {
  const out = new Array<unknown>(frames.length);
  for (let i = 0; i < frames.length; i++) out[i] = JSON.parse(frames[i]!.replace(BIG_INT, ':"$1",'));
  return out;
}

const FIELDS = ['id', 'symbol', 'timestamp', 'price', 'amount', 'side'] as const;
const pick = (t: CcxtTradeLike) => FIELDS.map((f) => t[f]);

export default defineBench({
  name: 'collector-parse',
  title: `raw @trade frames -> unified trades by route, ${N} frames per op`,
  unit: 'msg',
  unitsPerOp: N,
  reference: { name: 'JSON.parse of the frames', fn: () => parseFrames(frames) },
  cases: [
    { name: "ccxt's regex pre-pass + JSON.parse", fn: ccxtPreParse, note: "Client.onMessage's replace(/:(\\d{15,}),/g) before JSON.parse" },
    { name: 'ccxt Client.onMessage (real path)', fn: viaClient },
    { name: 'JSON.parse + ccxt handleMessage', fn: viaHandleMessage },
    { name: 'JSON.parse + ccxt handleTrade', fn: viaHandleTrade, note: 'handleMessage minus its dispatch' },
    { name: 'trade cache append only, tradesLimit 1000', fn: fullCache(1000), note: "no parsing: a full ArrayCache shifts all its rows on every append (ccxt's default limit)" },
    { name: 'trade cache append only, tradesLimit 100', fn: fullCache(100) },
    { name: 'JSON.parse + ccxt parseWsTrade', fn: viaParseWsTrade, note: 'no dispatch, market lookup or trade cache: not usable alone' },
    { name: 'ccxt Client, trades intercepted', fn: viaIntercepted, note: 'handleMessage override: trade events -> dedicated parser, the rest -> ccxt' },
    { name: 'JSON.parse + dedicated parser', fn: viaDedicated },
  ],
  check() {
    const want = JSON.stringify(viaClient().map(pick));
    for (const [name, fn] of [['handleMessage', viaHandleMessage], ['handleTrade', viaHandleTrade], ['parseWsTrade', viaParseWsTrade], ['intercepted', viaIntercepted], ['dedicated', viaDedicated]] as const) {
      const got = fn();
      if (got.length !== N || JSON.stringify(got.map(pick)) !== want) throw new Error(`${name} parses the frames differently from ccxt`);
    }
  },
});
