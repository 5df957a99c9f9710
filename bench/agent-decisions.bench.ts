/**
 * Agent decisions, rules path: decisions/s and p50/p99 latency per symbol of the technical analyst
 * plus the risk manager for one market (goal: p99 < 100 ms per symbol), through the step entry
 * points the Lambdas and the local runner use: kill switch checks, get_candles + compute_indicators
 * + publish_signal, then get_data_health + backtest_strategy + get_paper_portfolio, and the audit
 * entries (record_decision) of both.
 *
 * The MCP server is the real one (buildServer, agent toolset) on PGlite, reached in memory through
 * the SDK's Client (InMemoryTransport: no socket, the whole protocol path). The store holds 9
 * days of 1m candles per symbol with their hourly rollups (a rise, a breakout at the end: every
 * analysis proposes, so risk runs its full backtest), books and feed health as a collector writes them.
 * Two cases: 1h candles with a 7-day backtest (the deployed default), 1m with a 1-day one (local).
 *
 * Reference, same run, same store: the same six tool calls made raw, one after the other, without
 * the agent logic (no kill switch reads, no audit writes, no decision): the ratio says what the
 * agents add to the data access they cannot avoid.
 *
 *   npm run bench -- agent-decisions       (AGENT_BENCH_SECONDS=10 for more samples)
 */
import { runMigrations } from '../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresAgentStore } from '../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresLedgerStore } from '../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { createAgentSteps } from '../layers/shared/src/agents/agent-steps.js';
import { RiskLimitsSchema, RunBudgetSchema, type MarketRef, type RiskLimits } from '../layers/shared/src/agents/contracts.js';
import { connectInMemoryAgentTools } from '../layers/shared/src/agents/mcp-agent-tools.js';
import { createRulesSteps } from '../layers/shared/src/agents/rules/index.js';
import { backtestArgs } from '../layers/shared/src/agents/rules/risk-manager.js';
import type { FeedStatus, MarketEvent, OrderBook, Timeframe, Trade } from '../layers/shared/src/domain/index.js';
import { buildServer } from '../layers/shared/src/mcp/server.js';
import { silentLogger } from '../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../layers/shared/src/query/market-query.js';
import { SignalService } from '../layers/shared/src/query/signal-service.js';
import { figuresOnly, formatMs, latencySummary, printTable } from './lib/latency.js';

const MIN = 60_000;
/** 9 days of 1m candles: 7 days of 1h backtest plus warm-up */
const HISTORY = 9 * 1440;
const SYMBOLS = ['BTC/USDT', 'ETH/USDT', 'SOL/USDT', 'XRP/USDT'];
const SECONDS = Number(process.env.AGENT_BENCH_SECONDS ?? 5);
const GOAL_P99_MS = 100;
const budget = RunBudgetSchema.parse({ maxToolCalls: 1_000_000, maxWallMs: 86_400_000 });
// size and backtest limits loose enough that every decision is an approval, sized alike
const loose = { maxDailyNotional: 1e12, minBacktestReturnPct: -100, minBacktestTrades: 0 };

interface Case {
  readonly name: string;
  readonly timeframe: Timeframe;
  readonly limits: RiskLimits;
}
const CASES: readonly Case[] = [
  // the deployed default (AGENT_TIMEFRAME 1h): 168 candles backtested
  { name: '1h candles, 7-day backtest', timeframe: '1h', limits: RiskLimitsSchema.parse({ ...loose, backtestDays: 7 }) },
  // what the local runner does on the simulator's short history: 1440 candles backtested
  { name: '1m candles, 1-day backtest', timeframe: '1m', limits: RiskLimitsSchema.parse({ ...loose, backtestDays: 1 }) },
];

/** The trade feeds' health as a collector reports it at `now`. */
function feedHealth(now: number): FeedStatus[] {
  return SYMBOLS.map((symbol) => ({
    type: 'feed_status', exchange: 'binance', symbol, channel: 'trades', runId: 'bench', startedAt: now - 3_600_000, ts: now,
    messages: 1, events: 1, rejected: 0, malformed: 0, duplicates: 0, reordered: 0, gapsDetected: 0, gapsFilled: 0, gapsUnfilled: 0,
    tradesRecovered: 0, reconnects: 0, resubscribes: 0, watchErrors: 0, lastMessageTs: now - 10, lastMessageLocalTs: now, lastError: null, malformedSample: null,
  }));
}

/** Price of minute i of n: a rise, a slow wave, and a breakout over the last 15 hours (every timeframe proposes long). */
const PRICE_SQL = `($4 * (1 + 0.000005 * i) + 0.006 * $4 * sin(i / 1800.0) + CASE WHEN i >= $5 - 900 THEN 0.0025 * $4 * power((i - ($5 - 900)) / 60.0, 1.3) ELSE 0 END)`;
const priceAt = (i: number, n: number, base: number) => base * (1 + 0.000005 * i) + 0.006 * base * Math.sin(i / 1800) + (i >= n - 900 ? 0.0025 * base * ((i - (n - 900)) / 60) ** 1.3 : 0);

async function fillStore(now: number) {
  const db = await openPglite();
  await runMigrations(db);
  const store = new PostgresMarketStore(db);
  const ledger = new PostgresLedgerStore(db);
  const end = Math.floor(now / MIN) * MIN;
  const events: MarketEvent[] = [];
  for (const [k, symbol] of SYMBOLS.entries()) {
    const base = 100 * (k + 1);
    // generated in the database (as bench/support/candle-history.ts does): 13k rows a symbol
    await db.query(
      `INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
       SELECT 'binance', $1, '1m', ms_to_ts($2::bigint + i::bigint * 60000), 'exchange', p, p * 1.0005, p * 0.9995, p, 10 + (i % 5), 0
       FROM (SELECT i, ${PRICE_SQL}::float8 AS p FROM generate_series(0, $3::int - 1) AS i) s`,
      [symbol, end - HISTORY * MIN, HISTORY, base, HISTORY],
    );
    const last = priceAt(HISTORY - 1, HISTORY, base);
    const t: Trade = { type: 'trade', exchange: 'binance', symbol, id: `t${k}`, ts: now - 2_000, localTs: now - 1_990, price: last, amount: 0.01, side: 'buy' };
    const b: OrderBook = { type: 'book', exchange: 'binance', symbol, ts: now - 1_000, localTs: now - 990, seq: 1, health: 'healthy', depth: 2, bids: [[last * 0.9999, 1e6], [last * 0.999, 1e6]], asks: [[last * 1.0001, 1e6], [last * 1.001, 1e6]] };
    events.push(t, b);
  }
  // rows inserted behind the store's back: the hourly and daily rollups it keeps on write
  await db.query('SELECT rebuild_candle_rollups()');
  await store.writeEvents(events);
  await ledger.writeLedger(feedHealth(now));
  return { db, store, ledger };
}

const started = Date.now();
process.stderr.write(`agent-decisions: filling PGlite with ${HISTORY} 1m candles x ${SYMBOLS.length} symbols...\n`);
const { db, store, ledger } = await fillStore(started);
const clock = { now: () => Date.now() };
const query = new MarketQueryService(store, clock);
const signals = new SignalService({ writer: store, reader: new PostgresSignalReader(db), clock, logger: silentLogger, limits: { perPublisher: 10_000_000 } });
const deps = { query, ledger, signals, agents: { store: new PostgresAgentStore(db), clock, paper: { maxBookAgeMs: 3_600_000 } }, version: 'bench', logger: silentLogger };
const tools = await connectInMemoryAgentTools(buildServer(deps), 'bench-agents');
const markets: MarketRef[] = SYMBOLS.map((symbol) => ({ exchange: 'binance', symbol }));

let n = 0;
/** Analyst + risk for one market, as the flow runs them; throws when the rules path did not decide. */
function agentDecision(c: Case): (market: MarketRef) => Promise<void> {
  const stepFns = createAgentSteps({ tools, limits: c.limits, budget, steps: createRulesSteps({ timeframe: c.timeframe }), clock: clock.now });
  return async (market) => {
    const runId = `bench-${n++}`;
    const analysis = await stepFns.analystStep({ runId, market });
    if (!analysis.proposal) throw new Error(`agent-decisions: no proposal for ${market.symbol} (${c.name}): ${analysis.note}`);
    const { decisions } = await stepFns.riskStep({ runId, analyses: [analysis] });
    if (decisions.length !== 1 || decisions[0]!.verdict !== 'approve') throw new Error(`agent-decisions: unexpected verdict ${decisions[0]?.reason}`);
  };
}

/** The same data calls, raw: what any client deciding on this market must at least read and write. */
function rawCalls(c: Case, perTool: Map<string, number[]>): (market: MarketRef) => Promise<void> {
  const call = async (name: string, args: Record<string, unknown>) => {
    const t0 = performance.now();
    const r = await tools.call(name, args);
    perTool.set(name, [...(perTool.get(name) ?? []), performance.now() - t0]);
    if (r.isError) throw new Error(`${name}: ${r.text}`);
    return r.structured as Record<string, unknown>;
  };
  const tf = c.timeframe;
  return async (market) => {
    const candles = (await call('get_candles', { ...market, timeframe: tf, limit: 5 })) as { candles: { ts: number; closed: boolean; close: number }[] };
    const last = candles.candles.filter((x) => x.closed).at(-1)!;
    await call('compute_indicators', {
      ...market, timeframe: tf, limit: 1, until: last.ts + 1,
      indicators: [{ name: 'ema', params: { period: 20 } }, { name: 'ema', params: { period: 50 } }, { name: 'rsi', params: { period: 14 } }, { name: 'macd' }, { name: 'bbands', params: { period: 20, stdDev: 2 } }, { name: 'adx', params: { period: 14 } }, { name: 'atr', params: { period: 14 } }],
    });
    const s = (await call('publish_signal', { ...market, direction: 'long', strength: 0.5, confidence: 0.5, horizon: tf, rationale: 'bench reference' })) as { signal: { id: string } };
    await call('get_data_health', { ...market, gapLimit: 0 });
    const strategy = { name: 'ref', timeframe: tf, side: 'long' as const, entry: { conditions: ['ema:20 > ema:50', 'macd.histogram > 0', 'rsi:14 > 50'], match: 'all' as const }, exit: { conditions: ['ema:20 < ema:50'], match: 'any' as const }, stopLossPct: 1 };
    await call('backtest_strategy', backtestArgs({ runId: 'ref', market, signalId: s.signal.id, direction: 'long', strength: 0.5, confidence: 0.5, horizon: tf, price: last.close, strategy, rationale: 'ref', by: 'rules' }, c.limits, clock.now()));
    await call('get_paper_portfolio', { account: c.limits.account });
  };
}

async function measure(fn: (m: MarketRef) => Promise<void>, seconds: number): Promise<{ samples: number[]; elapsedS: number }> {
  // the feeds report in as a live collector's would, so data health stays ok however long the bench runs
  await ledger.writeLedger(feedHealth(Date.now()));
  const samples: number[] = [];
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  for (let i = 0; performance.now() < until; i++) {
    const s = performance.now();
    await fn(markets[i % markets.length]!);
    samples.push(performance.now() - s);
  }
  return { samples, elapsedS: (performance.now() - t0) / 1000 };
}

try {
  const rows: string[][] = [];
  for (const c of CASES) {
    const agent = agentDecision(c);
    const perTool = new Map<string, number[]>();
    const raw = rawCalls(c, perTool);
    // correctness first: each symbol proposes and is approved
    for (const m of markets) await agent(m);
    await measure(agent, 1);
    await measure(raw, 1);
    perTool.clear();
    // interleaved halves, so machine load falls on both alike
    const agentRuns = [await measure(agent, SECONDS / 2)];
    const rawRuns = [await measure(raw, SECONDS / 2)];
    agentRuns.push(await measure(agent, SECONDS / 2));
    rawRuns.push(await measure(raw, SECONDS / 2));
    const merge = (runs: { samples: number[]; elapsedS: number }[]) => ({ samples: runs.flatMap((r) => r.samples), elapsedS: runs.reduce((a, r) => a + r.elapsedS, 0) });
    const ag = merge(agentRuns);
    const rw = merge(rawRuns);
    const a = latencySummary(ag.samples);
    const r = latencySummary(rw.samples);
    rows.push(
      [`${c.name}: analyst + risk (steps, audit, kill switch)`, String(a.count), (a.count / ag.elapsedS).toFixed(1), formatMs(a.p50), formatMs(a.p99), formatMs(a.max), `${(a.p50 / r.p50).toFixed(2)}x`, a.p99 < GOAL_P99_MS ? 'met' : 'NOT met'],
      [`${c.name}: [reference] the same 6 tool calls, raw`, String(r.count), (r.count / rw.elapsedS).toFixed(1), formatMs(r.p50), formatMs(r.p99), formatMs(r.max), '', ''],
      ...[...perTool].map(([name, ms]) => {
        const t = latencySummary(ms);
        return [`    reference: ${name}`, String(t.count), '', formatMs(t.p50), formatMs(t.p99), formatMs(t.max), '', ''];
      }),
    );
  }
  printTable(
    `agent-decisions - rules path, analyst + risk per symbol, real MCP server in memory on PGlite, ${SECONDS} s per case`,
    ['case', 'decisions', 'decisions/s', 'p50 ms', 'p99 ms', 'max ms', 'p50 / reference', `p99 < ${GOAL_P99_MS} ms`],
    rows,
    [
      `${SYMBOLS.length} symbols round-robin, one decision at a time; a decision = get_candles, compute_indicators (7 series), publish_signal, ` +
        'get_data_health, backtest_strategy, get_paper_portfolio, plus 2 audit writes and 3 kill switch reads (before each step and before publish_signal)',
      'the SDK Client validates every structured answer against its output schema, as an agent in production does',
      'store: 9 days of 1m candles per symbol with hourly/daily rollups, books and feed health as a collector writes them',
    ],
  );
} finally {
  await tools.close();
  await db.close();
}

export default figuresOnly('agent-decisions', 'rules path decisions/s and p99 per symbol: figures on stderr above');
