/**
 * Events per Kinesis record and bytes per record at steady load, as the collector produces them:
 * the collector's EventBatcher (default maxEvents 500, maxDelayMs 100) publishing to
 * KinesisStreamBus on kinesalite, fed a steady flow of trades over KEYS partition keys
 * (exchange:symbol) at 50, 500 and 5,000 events/s. Counted: records and events from the batcher's
 * own counters, PutRecords calls and record bytes (data) from a middleware on the Kinesis client.
 *
 * Reference, same run: the same flow through the in-process MemoryStream (what embedded mode uses;
 * it cuts a record per key per publish, at most 500 events).
 *
 * Then a sweep of the batcher's maxDelayMs at 500 events/s: what delay reaches >= 50 events per
 * record (each record holds one key's events, so roughly rate x delay / keys, capped by maxEvents).
 *
 * Needs KINESIS_ENDPOINT for the Kinesis part (bash local/services/services.sh start kinesis &&
 * . /tmp/qicore-services/env); without it only the MemoryStream reference runs. Figures are
 * printed to stderr at import time; the harness entry is a placeholder (see bench/lib/latency.ts).
 */
import { randomUUID } from 'node:crypto';
import { CreateStreamCommand, DeleteStreamCommand, DescribeStreamSummaryCommand, type PutRecordsCommandInput } from '@aws-sdk/client-kinesis';
import { createKinesisClient, KinesisStreamBus } from '../layers/shared/src/adapters/stream/kinesis-stream-bus.js';
import { MemoryStream } from '../layers/shared/src/adapters/stream/memory-stream-bus.js';
import { EventBatcher, type BatcherCounter } from '../layers/shared/src/collector/event-batcher.js';
import type { MarketEvent } from '../layers/shared/src/domain/index.js';
import { Counters } from '../layers/shared/src/observability/counters.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import type { StreamBus } from '../layers/shared/src/ports/index.js';
import { figuresOnly, formatMs, latencySummary, printTable, sleep } from './lib/latency.js';

const KEYS = Number(process.env.KINESIS_RECORDS_KEYS ?? 8);
const RATES = [50, 500, 5_000];
const RUN_MS = Number(process.env.KINESIS_RECORDS_RUN_MS ?? 5_000);
const TICK_MS = 10;
const SWEEP_RATE = 500;
const SWEEP_DELAYS = [100, 250, 500, 800, 1_000, 2_000];
const SYMBOLS = ['BTC', 'ETH', 'SOL', 'XRP', 'BNB', 'DOGE', 'ADA', 'TRX', 'AVAX', 'LINK', 'DOT', 'LTC', 'BCH', 'NEAR', 'UNI', 'APT'];

interface FlowResult {
  readonly events: number;
  readonly records: number;
  /** data bytes of the records */
  readonly bytes: number;
  /** PutRecords calls (Kinesis) or publish calls (MemoryStream) */
  readonly calls: number;
  readonly seconds: number;
  /** add() -> the publish carrying the event resolved, ms */
  readonly publishLag: ReturnType<typeof latencySummary>;
}

let seq = 0;
function trade(key: number): MarketEvent {
  const n = seq++;
  const ts = Date.now();
  return {
    type: 'trade',
    exchange: 'binance',
    symbol: `${SYMBOLS[key % SYMBOLS.length]!}${key >= SYMBOLS.length ? key : ''}/USDT`,
    ts,
    localTs: ts + 3,
    id: String(4_000_000_000 + n),
    price: Number((60_000 + Math.sin(n / 50) * 300).toFixed(2)),
    amount: Number((0.0001 + ((n * 7919) % 1000) / 997).toFixed(5)),
    side: n % 3 === 0 ? 'sell' : 'buy',
  };
}

/** Feeds `rate` events/s for RUN_MS through a batcher to `bus`, round robin over KEYS keys. */
async function flow(bus: StreamBus, rate: number, maxDelayMs: number, calls: () => number, bytes: () => number): Promise<FlowResult> {
  const counters = new Counters<BatcherCounter>();
  const lags: number[] = [];
  // the publish lag of an event: the batcher publishes in order, so the k-th event lands with the publish that brings published_events past k
  const addedAt: number[] = [];
  let landed = 0;
  const inner = bus;
  const timed: StreamBus = {
    publish: async (events) => {
      const receipt = await inner.publish(events);
      const now = performance.now();
      for (let i = 0; i < events.length; i++) lags.push(now - addedAt[landed + i]!);
      landed += events.length;
      return receipt;
    },
    close: () => inner.close(),
  };
  const batcher = new EventBatcher({ bus: timed, logger: silentLogger, counters, maxDelayMs });
  const calls0 = calls();
  const bytes0 = bytes();
  const t0 = performance.now();
  let due = 0;
  let added = 0;
  let key = 0;
  while (performance.now() - t0 < RUN_MS) {
    due = Math.floor(((performance.now() - t0) * rate) / 1000);
    const batch: MarketEvent[] = [];
    while (added < due) {
      batch.push(trade(key));
      key = (key + 1) % KEYS;
      added += 1;
    }
    if (batch.length > 0) {
      const now = performance.now();
      for (let i = 0; i < batch.length; i++) addedAt.push(now);
      batcher.add(batch);
    }
    await sleep(TICK_MS);
  }
  const seconds = (performance.now() - t0) / 1000;
  await batcher.flush(30_000);
  batcher.stop();
  if (counters.get('published_events') !== added) throw new Error(`published ${counters.get('published_events')} of ${added} events`);
  return {
    events: counters.get('published_events'),
    records: counters.get('published_records'),
    bytes: bytes() - bytes0,
    calls: calls() - calls0,
    seconds,
    publishLag: latencySummary(lags),
  };
}

function row(name: string, r: FlowResult): string[] {
  return [
    name,
    String(r.events),
    String(r.records),
    (r.events / r.records).toFixed(1),
    Math.round(r.bytes / r.records).toLocaleString('en'),
    (r.calls / r.seconds).toFixed(1),
    formatMs(r.publishLag.p50),
    formatMs(r.publishLag.p99),
  ];
}

const HEADER = ['flow', 'events', 'records', 'events/record', 'bytes/record', 'calls/s', 'add->published p50', 'p99'];

// ---- reference: MemoryStream -------------------------------------------------------------------

const memoryRows: string[][] = [];
{
  let calls = 0;
  let bytes = 0;
  const stream = new MemoryStream({ capacity: 1_000_000 });
  const counted: StreamBus = {
    publish: async (events) => {
      const receipt = await stream.publish(events);
      calls += 1;
      bytes += receipt.bytes;
      return receipt;
    },
    close: () => stream.close(),
  };
  for (const rate of RATES) {
    process.stderr.write(`kinesis-records: MemoryStream, ${rate} events/s for ${RUN_MS / 1000} s...\n`);
    memoryRows.push(row(`[reference] MemoryStream, ${rate}/s`, await flow(counted, rate, 100, () => calls, () => bytes)));
  }
  await stream.close();
}

// ---- Kinesis (kinesalite) ----------------------------------------------------------------------

const endpoint = process.env.KINESIS_ENDPOINT?.trim();
const kinesisRows: string[][] = [];
const sweepRows: string[][] = [];
let skipped: string | null = null;
if (endpoint) {
  const region = 'us-east-1';
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
  const client = createKinesisClient({ endpoint, region, credentials }, false);
  let calls = 0;
  let bytes = 0;
  client.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as Partial<PutRecordsCommandInput>;
      if (Array.isArray(input.Records)) {
        calls += 1;
        for (const r of input.Records) bytes += r.Data?.byteLength ?? 0;
      }
      return next(args);
    },
    { step: 'initialize', name: 'benchCountPutRecords' },
  );
  const streamName = `qicore-records-${randomUUID().slice(0, 8)}`;
  await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: 2 }));
  for (let i = 0; i < 200; i++) {
    const s = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
    if (s.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
    await sleep(50);
  }
  // failed records are retried and would be counted again: the results' bytes count what was sent
  const bus = new KinesisStreamBus({ streamName, client });
  try {
    for (const rate of RATES) {
      process.stderr.write(`kinesis-records: kinesalite, ${rate} events/s for ${RUN_MS / 1000} s...\n`);
      kinesisRows.push(row(`KinesisStreamBus, ${rate}/s`, await flow(bus, rate, 100, () => calls, () => bytes)));
    }
    for (const delay of SWEEP_DELAYS) {
      process.stderr.write(`kinesis-records: kinesalite, ${SWEEP_RATE} events/s, maxDelayMs ${delay}...\n`);
      sweepRows.push(row(`KinesisStreamBus, ${SWEEP_RATE}/s, maxDelayMs ${delay}`, await flow(bus, SWEEP_RATE, delay, () => calls, () => bytes)));
    }
  } finally {
    await bus.close();
    await client.send(new DeleteStreamCommand({ StreamName: streamName })).catch(() => undefined);
    client.destroy();
  }
} else {
  skipped = 'Kinesis part skipped: KINESIS_ENDPOINT not set (bash local/services/services.sh start kinesis && . /tmp/qicore-services/env)';
  process.stderr.write(`kinesis-records: ${skipped}\n`);
}

printTable(
  `kinesis-records - EventBatcher (maxEvents 500, maxDelayMs 100) -> stream, ${KEYS} partition keys, ${RUN_MS / 1000} s per flow`,
  HEADER,
  [...memoryRows, ...kinesisRows],
  [
    'events/record and bytes/record: per record written (data bytes, JSON envelope included); calls/s: PutRecords calls (Kinesis) or publish calls (MemoryStream) per second',
    'add->published: from batcher.add to the resolved publish that carried the event (includes the batcher wait), ms',
    `a record holds one key's events: at rate r over ${KEYS} keys with delay d, about r x d / ${KEYS} events per record (at most 500 per batch)`,
    ...(skipped ? [skipped] : []),
  ],
);
if (sweepRows.length > 0) {
  printTable(`kinesis-records - maxDelayMs sweep at ${SWEEP_RATE} events/s, ${KEYS} keys`, HEADER, sweepRows, [
    `>= 50 events/record needs ${SWEEP_RATE} x d / ${KEYS} >= 50, i.e. d >= ${Math.ceil((50 * KEYS * 1000) / SWEEP_RATE)} ms (the cost: about d/2 more lag on average, d at worst)`,
  ]);
}

export default figuresOnly('kinesis-records', 'events and bytes per Kinesis record at steady load: figures on stderr above');
