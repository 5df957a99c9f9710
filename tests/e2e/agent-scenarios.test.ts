/**
 * The agents end to end over scripted markets (issue #9): the simulator plays a breakout, a crash,
 * a stale feed and a breakout meant to breach a limit; the store is filled through the real
 * pipeline (a backfill of the recent history over ccxt, then the live ccxt.pro collector ->
 * stream -> timescale-writer -> PGlite); the agents reach it only through the embedded MCP server
 * (SDK client, in memory) and runAgentCycle runs monitor -> analyst -> risk -> paper execution,
 * with the rules and with a fake OpenAI-compatible model server scripting the model steps.
 *
 * All in real time: the simulator's history ends at START, where its live market starts trading;
 * the scripted moves are placed around START so that while the runs happen (the first minutes
 * after it) the breakouts are still rising and the crash is falling or just fell.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Exchange } from 'ccxt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { PostgresAgentStore } from '../../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { runAgentCycle, type AgentCycleResult } from '../../layers/shared/src/agents/agent-flow.js';
import {
  RiskLimitsSchema,
  RunBudgetSchema,
  type AgentTools,
  type AgentToolResult,
  type MarketRef,
  type RiskLimits,
} from '../../layers/shared/src/agents/contracts.js';
import { connectInMemoryAgentTools } from '../../layers/shared/src/agents/mcp-agent-tools.js';
import { agentStepsFromEnv } from '../../layers/shared/src/agents/model/agent-steps.js';
import { createMarketMonitor } from '../../layers/shared/src/agents/rules/market-monitor.js';
import { paperExecutor } from '../../layers/shared/src/agents/rules/paper-executor.js';
import { riskManager } from '../../layers/shared/src/agents/rules/risk-manager.js';
import { technicalAnalyst } from '../../layers/shared/src/agents/rules/technical-analyst.js';
import { bucketStart } from '../../layers/shared/src/domain/index.js';
import { buildServer, type McpDeps } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { runBackfill, type BackfillJob } from '../../local/backfill/backfill.js';
import { CheckpointStore } from '../../local/backfill/checkpoint.js';
import { connectBackfillExchange } from '../../local/backfill/exchange.js';
import { BackfillStoreRouter, DEFAULT_RETENTION_DAYS } from '../../local/backfill/store-router.js';
import { binanceProtocol } from '../../local/sim/protocols/binance.js';
import { armScenarioFeeds, SCENARIO_SCRIPTS, type ScenarioOptions } from '../../local/sim/scenarios.js';
import { startSimulatedExchange, type SimulatedExchange } from '../../local/sim/server.js';
import { binanceTradeStream, startCollectorPipeline, type CollectorPipeline } from '../support/collector-pipeline.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { forEachStoreBackend } from '../support/store-backends.js';
import { startFakeOpenAiServer, type ChatRequest, type FakeOpenAiServer, type ScriptedReply } from '../support/fake-openai-server.js';

// a day of candles paged over HTTP and a few agent runs, on a machine shared with other tests
vi.setConfig({ testTimeout: 120_000, hookTimeout: 240_000 });

const MIN = 60_000;
const HOUR = 60 * MIN;
const BTC = 'BTC/USDT';
const ETH = 'ETH/USDT';
const SOL = 'SOL/USDT';
const BNB = 'BNB/USDT';
const SYMBOLS = [BTC, ETH, SOL, BNB];
const market = (symbol: string): MarketRef => ({ exchange: 'binance', symbol });

/** The scenarios around `start`, where the simulator's history ends and its live market begins. */
function scenariosAround(start: number): ScenarioOptions[] {
  return [
    // 30 of its 45 minutes of rise are in the history: still rising for the runs' quarter hour
    { name: 'breakout', symbol: BTC, endsAt: start + 15 * MIN },
    // the five-minute fall began a minute before the start; the 1m view stays short for ten more minutes
    { name: 'crash', symbol: ETH, endsAt: start - MIN + SCENARIO_SCRIPTS.crash.durationMs },
    // stopped half an hour before the start: the store's newest SOL trade is that old
    { name: 'stale_feed', symbol: SOL },
    { name: 'limit_breach', symbol: BNB, endsAt: start + 15 * MIN },
  ];
}

type Json = Record<string, unknown>;
interface AuditRow {
  id: string;
  runId: string;
  agent: string;
  kind: string;
  market: MarketRef | null;
  summary: string;
  output: unknown;
  inputs: { tool: string; isError: boolean }[] | null;
}

forEachStoreBackend('agents over scripted market scenarios', (backend, serverUrl) => {
  let START = 0;
  let sim: SimulatedExchange;
  let disarm: () => void;
  let database: TestDatabase;
  let pipeline: CollectorPipeline;
  let backfillExchange: Exchange;
  let checkpointDir: string;
  let deps: McpDeps;
  let admin: AgentTools;
  let model: FakeOpenAiServer;
  const opened: AgentTools[] = [];

  /** A fresh MCP server and in-memory client over the shared stores (one server per client). */
  async function connectTools(): Promise<AgentTools> {
    const tools = await connectInMemoryAgentTools(buildServer(deps), 'agent-scenarios');
    opened.push(tools);
    return tools;
  }

  beforeAll(async () => {
    START = Date.now();
    sim = await startSimulatedExchange({
      seed: 9,
      symbols: SYMBOLS,
      tradesPerSecond: 2,
      protocols: [binanceProtocol()],
      history: { tradeIntervalMs: 10_000 },
      scenarios: scenariosAround(START),
    });
    disarm = armScenarioFeeds(sim);
    database = await createTestDatabase(backend, serverUrl);
    pipeline = await startCollectorPipeline({
      markets: new Map([['binance', SYMBOLS]]),
      endpoints: { binance: { rest: sim.httpUrl, ws: sim.wsUrl } },
      database,
      bookIntervalMs: 100,
    });
    await sim.waitForStreams(SYMBOLS.filter((s) => s !== SOL).map(binanceTradeStream), { timeoutMs: 20_000 });

    // the recent history, as `npm run backfill` would fetch it: 28 h of 1m candles (a day to
    // backtest and warm-up before it), the last hour of trades
    checkpointDir = await mkdtemp(join(tmpdir(), 'qicore-agent-scenarios-'));
    backfillExchange = await connectBackfillExchange('binance', SYMBOLS, { endpoint: sim.endpoints['binance']! });
    const jobs: BackfillJob[] = SYMBOLS.flatMap((symbol) => [
      { exchange: 'binance', symbol, kind: 'candles' as const, timeframe: '1m', since: bucketStart(START - 28 * HOUR, '1m'), until: START },
      { exchange: 'binance', symbol, kind: 'trades' as const, since: START - HOUR, until: START },
    ]);
    const report = await runBackfill(jobs, {
      exchange: backfillExchange,
      writer: new BackfillStoreRouter(pipeline.store, null, DEFAULT_RETENTION_DAYS, systemClock),
      checkpoints: new CheckpointStore(checkpointDir),
      target: 'agent-scenarios',
      retry: { attempts: 10, baseMs: 20, maxMs: 200 },
    });
    expect(report.jobs.map((j) => j.status)).toEqual(jobs.map(() => 'complete'));

    // the live market since START, through the collector: everything printed so far stored
    const live = SYMBOLS.filter((s) => s !== SOL);
    const printed = new Map(live.map((s) => [s, sim.printedTrades(s).length]));
    for (const deadline = Date.now() + 30_000; ; ) {
      await pipeline.settle();
      const stored = await Promise.all(live.map(async (s) => ({ s, stored: (await pipeline.store.trades({ exchange: 'binance', symbol: s, since: START, limit: 100_000 })).length, printed: printed.get(s)! })));
      // the monitor reads feed health from the ledger: each live trade feed's stored status must
      // already count a message, or it reads as silent (the first snapshot can precede any trade)
      const heard = await Promise.all(live.map(async (s) => (await pipeline.health('binance', s))?.lastMessageLocalTs != null));
      if (stored.every((m) => m.stored >= m.printed) && heard.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error(`live trades not stored, or feeds not heard, in 30 s: ${JSON.stringify({ stored, heard })}`);
      await new Promise((r) => setTimeout(r, 200));
    }

    const query = new MarketQueryService(pipeline.store, systemClock);
    deps = {
      query,
      ledger: pipeline.ledger,
      signals: new SignalService({ writer: pipeline.store, reader: new PostgresSignalReader(database.db), clock: systemClock, logger: silentLogger }),
      agents: { store: new PostgresAgentStore(database.db) },
      version: 'e2e',
      logger: silentLogger,
    };
    admin = await connectTools();
    model = await startFakeOpenAiServer();
  });

  afterAll(async () => {
    for (const t of opened.splice(0)) await t.close().catch(() => undefined);
    await model?.close();
    await backfillExchange?.close().catch(() => undefined);
    disarm?.();
    await pipeline?.close();
    await sim?.close();
    await database?.dispose();
    if (checkpointDir) await rm(checkpointDir, { recursive: true, force: true });
  });

  async function call<T = Json>(tools: AgentTools, name: string, args: Json): Promise<T> {
    const r = await tools.call(name, args);
    expect(r.isError, `${name}: ${r.text}`).toBe(false);
    return r.structured as T;
  }

  /** Every audit entry of a run, oldest first, paged through get_audit_log. */
  async function auditOf(runId: string): Promise<AuditRow[]> {
    const rows: AuditRow[] = [];
    let cursor: string | undefined;
    do {
      const page = await call<{ entries: AuditRow[]; nextCursor: string | null }>(admin, 'get_audit_log', { runId, limit: 100, ...(cursor && { cursor }) });
      rows.push(...page.entries);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return rows.reverse();
  }

  /**
   * Limits of one paper account: a day of backtest; and a floor on its return below the -5%
   * default, because the strategies here trade 1m candles with tight stops and pay fees and
   * slippage on every whipsaw of the synthetic day (30-50 trades, -5% to -11% measured).
   */
  const limitsOf = (account: string, extra: Partial<RiskLimits> = {}): RiskLimits =>
    RiskLimitsSchema.parse({ account, backtestDays: 1, minBacktestReturnPct: -20, ...extra });
  const budget = RunBudgetSchema.parse({});
  const rules = { analyst: technicalAnalyst, risk: riskManager, execute: paperExecutor };

  /** The steps of one run over `markets`: the rules, or the model (the fake server) in front of them. */
  async function stepsFor(path: 'rules' | 'model', markets: readonly MarketRef[]) {
    const steps = { monitor: createMarketMonitor({ markets }), ...rules };
    if (path === 'rules') return steps;
    const env = { AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'fake-analyst', AGENT_MODEL_BASE_URL: model.baseURL, AGENT_MODEL_API_KEY: 'test-key' };
    const withModel = await agentStepsFromEnv(env, steps);
    expect(withModel.by).toBe('model');
    return withModel;
  }

  async function run(path: 'rules' | 'model', markets: readonly MarketRef[], limits: RiskLimits, tools?: AgentTools): Promise<AgentCycleResult> {
    if (path === 'model') model.script(Array.from({ length: 40 }, () => scriptedModel));
    return runAgentCycle({ tools: tools ?? (await connectTools()), limits, budget, steps: await stepsFor(path, markets), logger: silentLogger });
  }

  /**
   * Every decision the run made is in the audit log, once: run_start, the monitor's report, a
   * proposal or no_proposal per market analysed, a risk_decision per proposal, an execution per
   * decision, run_end with the run's summary.
   */
  async function expectAudited(result: AgentCycleResult): Promise<AuditRow[]> {
    const rows = await auditOf(result.summary.runId);
    const kinds = rows.map((r) => r.kind);
    expect(kinds[0]).toBe('run_start');
    expect(kinds.at(-1)).toBe('run_end');
    expect(rows.at(-1)!.output).toMatchObject({ status: result.summary.status, decisions: result.summary.decisions });
    const of = (kind: string, symbol: string) => rows.filter((r) => r.kind === kind && r.market?.symbol === symbol);
    // with the tool calls each rests on
    const tools = (r: AuditRow) => (r.inputs ?? []).map((i) => i.tool);
    for (const a of result.analyses) {
      const entries = of(a.proposal ? 'proposal' : 'no_proposal', a.market.symbol);
      expect(entries, `${a.market.symbol} analysis`).toHaveLength(1);
      expect(tools(entries[0]!)).toContain('get_candles');
      if (a.proposal) expect(tools(entries[0]!)).toContain('publish_signal');
    }
    for (const d of result.decisions) {
      const entries = of('risk_decision', d.proposal.market.symbol);
      expect(entries.length, `${d.proposal.market.symbol} risk decision`).toBeGreaterThanOrEqual(1);
      expect(entries.at(-1)!.output).toMatchObject({ verdict: d.verdict, notional: d.notional });
      expect(tools(entries[0]!)).toEqual(expect.arrayContaining(['get_data_health', 'backtest_strategy', 'get_paper_portfolio']));
    }
    for (const e of result.executions) {
      const entries = of('execution', e.market.symbol);
      expect(entries, `${e.market.symbol} execution`).toHaveLength(1);
      expect(entries[0]!.output).toMatchObject({ status: e.status, signalId: e.signalId });
      // a buy is one order; a sell reads the position it reduces first
      const expected = e.status === 'skipped' ? [] : e.side === 'sell' ? ['get_paper_portfolio', 'place_paper_order'] : ['place_paper_order'];
      expect(tools(entries[0]!)).toEqual(expected);
    }
    if (result.report) {
      const report = rows.find((r) => r.kind === 'observation' && r.agent === 'market_monitor' && r.market === null);
      expect((report?.output as { markets: MarketRef[] }).markets).toEqual(expect.arrayContaining([...result.report.markets]));
    }
    return rows;
  }

  const failed = (checks: readonly { name: string; passed: boolean }[]) => checks.filter((c) => !c.passed).map((c) => c.name);

  for (const path of ['rules', 'model'] as const) {
    describe(`${path}`, () => {
      it('breakout: a long signal, approved, filled with a paper buy', async () => {
        const result = await run(path, [market(BTC)], limitsOf(`${path}-breakout`));
        expect(result.summary.status).toBe('completed');
        expect(result.report!.markets, JSON.stringify(result.report!.excluded)).toEqual([market(BTC)]);
        const [analysis] = result.analyses;
        expect(analysis!.proposal, analysis!.note).toMatchObject({ direction: 'long', by: path, market: market(BTC) });
        const [decision] = result.decisions;
        expect(decision!.verdict, decision!.reason).toBe('approve');
        expect(failed(decision!.checks)).toEqual([]);
        expect(decision!.checks.find((c) => c.name === 'backtest')!.detail).toMatch(/candles: \d+ trades/);
        const [execution] = result.executions;
        expect(execution).toMatchObject({ status: 'filled', side: 'buy', market: market(BTC) });
        expect(execution!.notional).toBeCloseTo(decision!.notional, 0);
        const portfolio = await call<{ positions: { symbol: string; quantity: number }[] }>(admin, 'get_paper_portfolio', { account: `${path}-breakout` });
        expect(portfolio.positions.find((p) => p.symbol === BTC)!.quantity).toBeCloseTo(execution!.quantity, 8);
        const signals = await call<{ signals: { id: string; direction: string }[] }>(admin, 'get_signals', { symbol: BTC });
        expect(signals.signals.find((s) => s.id === analysis!.proposal!.signalId)?.direction).toBe('long');
        const rows = await expectAudited(result);
        if (path === 'model') {
          // the model read the candles and cited them; its invalid monitor review was refused and recorded
          expect(analysis!.proposal!.rationale).toMatch(/^1m close [\d.]+ vs [\d.]+ 30 candles earlier: \d+\.\d+%$/);
          expect(analysis!.proposal!.strategy.name).toBe('model-momentum-long');
          expect(rows.filter((r) => r.kind === 'rejected_model_output')).toEqual([
            expect.objectContaining({ agent: 'market_monitor', summary: expect.stringContaining('binance:NOPE/USDT is not a candidate') }),
          ]);
        }
      });

      it('crash: a short signal, rejected by the direction check (paper trading is long only), nothing traded', async () => {
        const result = await run(path, [market(ETH)], limitsOf(`${path}-crash`));
        expect(result.summary.status).toBe('completed');
        expect(result.report!.observations.some((o) => o.kind === 'anomaly' && o.market?.symbol === ETH)).toBe(true);
        const [analysis] = result.analyses;
        expect(analysis!.proposal, analysis!.note).toMatchObject({ direction: 'short', by: path });
        const [decision] = result.decisions;
        expect(decision!.verdict).toBe('reject');
        expect(failed(decision!.checks), decision!.reason).toEqual(['direction']);
        expect(result.executions).toEqual([expect.objectContaining({ status: 'skipped', quantity: 0, notional: 0 })]);
        const portfolio = await call<{ positions: unknown[] }>(admin, 'get_paper_portfolio', { account: `${path}-crash` });
        expect(portfolio.positions).toEqual([]);
        await expectAudited(result);
      });

      it('crash while holding a long: the short signal is approved to sell it, filled with a paper sell', async () => {
        const account = `${path}-crash-held`;
        const bought = await call<{ order: { quantity: number } }>(admin, 'place_paper_order', {
          account,
          exchange: 'binance',
          symbol: ETH,
          side: 'buy',
          notional: 500,
          clientOrderId: `${path}-crash-held-seed`,
        });
        const result = await run(path, [market(ETH)], limitsOf(account));
        expect(result.summary.status).toBe('completed');
        const [analysis] = result.analyses;
        expect(analysis!.proposal, analysis!.note).toMatchObject({ direction: 'short', by: path });
        const [decision] = result.decisions;
        expect(decision!.verdict, decision!.reason).not.toBe('reject');
        expect(failed(decision!.checks), decision!.reason).toEqual([]);
        expect(decision!.checks.find((c) => c.name === 'direction')!.detail).toMatch(/sells the open long/);
        const [execution] = result.executions;
        expect(execution, execution!.detail).toMatchObject({ status: 'filled', side: 'sell', market: market(ETH) });
        expect(execution!.quantity).toBeGreaterThan(0);
        expect(execution!.quantity).toBeLessThanOrEqual(bought.order.quantity + 1e-9);
        const portfolio = await call<{ positions: { symbol: string; quantity: number }[] }>(admin, 'get_paper_portfolio', { account });
        const left = portfolio.positions.find((p) => p.symbol === ETH)?.quantity ?? 0;
        expect(left).toBeCloseTo(bought.order.quantity - execution!.quantity, 8);
        await expectAudited(result);
      });

      it('stale feed: the market is left out of analysis with the reason, no signal, no order', async () => {
        const result = await run(path, [market(SOL)], limitsOf(`${path}-stale`));
        expect(result.summary.status).toBe('completed');
        expect(result.report!.markets).toEqual([]);
        expect(result.report!.excluded).toEqual([{ market: market(SOL), reason: expect.stringMatching(/^stale: newest trade \d+ s old/) }]);
        expect(result.report!.observations).toContainEqual(expect.objectContaining({ kind: 'data_health', severity: 'critical', market: market(SOL) }));
        expect([result.analyses, result.decisions, result.executions]).toEqual([[], [], []]);
        const rows = await expectAudited(result);
        expect(rows.filter((r) => r.kind === 'observation' && r.market?.symbol === SOL)).toHaveLength(1);
      });

      it('limit breach: the daily notional cuts the order, then refuses the next one', async () => {
        const account = `${path}-breach`;
        const limits = limitsOf(account, { maxDailyNotional: 600 });
        const first = await run(path, [market(BNB)], limits);
        expect(first.analyses[0]!.proposal, first.analyses[0]!.note).toMatchObject({ direction: 'long', by: path });
        const [resized] = first.decisions;
        expect(resized, resized!.reason).toMatchObject({ verdict: 'resize', notional: 600 });
        expect(failed(resized!.checks)).toEqual([]);
        expect(resized!.checks.find((c) => c.name === 'daily_volume')!.detail).toMatch(/traded today 0 of 600; room 600/);
        expect(first.executions).toEqual([expect.objectContaining({ status: 'filled', side: 'buy' })]);
        expect(first.executions[0]!.notional).toBeCloseTo(600, 0);
        await expectAudited(first);

        // the same signal again: today's 600 are used up
        const second = await run(path, [market(BNB)], limits);
        const [rejected] = second.decisions;
        expect(rejected!.verdict).toBe('reject');
        expect(failed(rejected!.checks)).toEqual(['daily_volume']);
        expect(second.executions).toEqual([expect.objectContaining({ status: 'skipped' })]);
        const portfolio = await call<{ dailyNotional: number }>(admin, 'get_paper_portfolio', { account });
        expect(portfolio.dailyNotional).toBeCloseTo(600, 0);
        await expectAudited(second);
      });
    });
  }

  it('the kill switch engaged after the monitor stops the run before any signal or order', async () => {
    const tools = await connectTools();
    const calls: string[] = [];
    /** The agents' tools, engaging the kill switch (as an operator would) once the monitor has reported. */
    const tripping: AgentTools = {
      list: () => tools.list(),
      close: () => tools.close(),
      async call(name, args): Promise<AgentToolResult> {
        calls.push(name);
        const result = await tools.call(name, args);
        if (name === 'record_decision' && args['agent'] === 'market_monitor' && args['kind'] === 'observation' && args['market'] === undefined) {
          await call(admin, 'set_kill_switch', { engaged: true, reason: 'e2e: operator stop mid-run' });
        }
        return result;
      },
    };
    try {
      const result = await run('rules', SYMBOLS.map(market), limitsOf('killed'), tripping);
      expect(result.summary.status).toBe('killed');
      expect(result.summary.detail).toMatch(/e2e: operator stop mid-run/);
      expect(result.report!.markets.length).toBeGreaterThan(0);
      expect([result.analyses, result.decisions, result.executions]).toEqual([[], [], []]);
      expect(calls).not.toContain('publish_signal');
      expect(calls).not.toContain('place_paper_order');
      const portfolio = await call<{ positions: unknown[]; dailyNotional: number }>(admin, 'get_paper_portfolio', { account: 'killed' });
      expect(portfolio).toMatchObject({ positions: [], dailyNotional: 0 });
      const rows = await expectAudited(result);
      expect(rows.map((r) => r.kind).filter((k) => k !== 'observation')).toEqual(['run_start', 'run_end']);
      expect(rows.at(-1)!.output).toMatchObject({ status: 'killed' });
    } finally {
      await call(admin, 'set_kill_switch', { engaged: false, reason: 'e2e: released' });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The fake model's part: it reads candles like an analyst would and answers from what it read.

const system = (r: ChatRequest): string => {
  const first = r.messages.find((m) => m.role === 'system');
  return typeof first?.content === 'string' ? first.content : JSON.stringify(first?.content ?? '');
};

/** Tool results the model has been sent so far in this turn. */
const toolTexts = (r: ChatRequest): string[] =>
  r.messages.filter((m) => m.role === 'tool').map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content)));

/** Closes (oldest first) from a get_candles answer as text (JSON or CSV with a close column). */
function closesOf(text: string): number[] {
  try {
    const json = JSON.parse(text) as { candles?: { close: number; closed: boolean }[] };
    if (Array.isArray(json.candles)) return json.candles.filter((c) => c.closed).map((c) => c.close);
  } catch {
    // CSV
  }
  const lines = text.split('\n').filter((l) => l.includes(','));
  const header = lines.findIndex((l) => l.split(',').includes('close'));
  if (header < 0) return [];
  const cols = lines[header]!.split(',');
  const close = cols.indexOf('close');
  const closed = cols.indexOf('closed');
  return lines
    .slice(header + 1)
    .map((l) => l.split(','))
    .filter((c) => closed < 0 || c[closed] === 'true')
    .map((c) => Number(c[close]))
    .filter((n) => Number.isFinite(n));
}

/**
 * One reply of the fake model, from the request: the monitor review keeps the rules' list (and
 * once submits an invalid review, which must be refused and recorded); the analyst reads 1m
 * candles, then proposes the way the last half hour moved, citing the closes; the risk review keeps
 * the rules' verdict.
 */
function scriptedModel(r: ChatRequest): ScriptedReply {
  const sys = system(r);
  if (sys.includes('market monitor')) {
    // a review naming a market that is not a candidate: refused, the rules' report stands
    return { toolCalls: [{ name: 'submit_review', arguments: { observations: [], markets: [{ exchange: 'binance', symbol: 'NOPE/USDT' }], dropped: [] } }] };
  }
  if (sys.includes('risk reviewer')) {
    return { toolCalls: [{ name: 'submit_review', arguments: { verdict: 'keep', reason: 'the limits already sized it; nothing to add' } }] };
  }
  const m = /Analyse one market: (\S+) on (\S+)\./.exec(sys);
  if (!m) return { text: 'I do not know what to do.' };
  const [, symbol, exchange] = m;
  const texts = toolTexts(r);
  if (texts.length === 0) {
    return { toolCalls: [{ name: 'get_candles', arguments: { exchange: exchange!.replace(/\.$/, ''), symbol, timeframe: '1m', limit: 40 } }] };
  }
  const closes = closesOf(texts.at(-1)!);
  if (closes.length < 31) return { toolCalls: [{ name: 'submit_no_proposal', arguments: { market: { exchange, symbol }, note: `only ${closes.length} closed candles read` } }] };
  const last = closes.at(-1)!;
  const before = closes.at(-31)!;
  const movePct = (last / before - 1) * 100;
  const long = movePct > 0;
  return {
    toolCalls: [
      {
        name: 'submit_proposal',
        arguments: {
          market: { exchange, symbol },
          direction: long ? 'long' : 'short',
          strength: 0.75,
          confidence: 0.7,
          horizon: '1m',
          strategy: {
            name: `model-momentum-${long ? 'long' : 'short'}`,
            timeframe: '1m',
            side: long ? 'long' : 'short',
            entry: { conditions: long ? ['ema:20 > ema:50', 'rsi:14 > 50'] : ['ema:20 < ema:50', 'rsi:14 < 50'], match: 'all' },
            exit: { conditions: [long ? 'ema:20 < ema:50' : 'ema:20 > ema:50'], match: 'any' },
            stopLossPct: 1,
            takeProfitPct: 2,
          },
          rationale: `1m close ${last} vs ${before} 30 candles earlier: ${movePct.toFixed(2)}%`,
        },
      },
    ],
  };
}
