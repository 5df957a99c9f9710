/**
 * The agent flow against the real MCP server over streamable HTTP with a JWT, its agent toolset
 * on PGlite: the rules agents read market data, publish signals, pass risk (with a real backtest),
 * fill paper orders against the stored book, and record every decision in the audit log.
 *
 * The store holds 30 hours of 1m candles ending now: BTC/USDT rises and breaks out at the end,
 * ETH/USDT drifts sideways, SOL/USDT's feed stopped half an hour ago. The ledger reports the feeds
 * as a collector would (feed_status), so data health and backtests judge them as in production.
 */
import { randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runMigrations } from '../../layers/shared/src/adapters/stores/migrations.js';
import { openPglite } from '../../layers/shared/src/adapters/stores/pglite-client.js';
import { PostgresAgentStore } from '../../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { AGENT_SCOPES } from '../../layers/shared/src/agents/agent-config.js';
import { runAgentCycle } from '../../layers/shared/src/agents/agent-flow.js';
import { createAgentSteps } from '../../layers/shared/src/agents/agent-steps.js';
import { BudgetExceededError, KillSwitchEngagedError, RiskLimitsSchema, RunBudgetSchema, type AgentTools } from '../../layers/shared/src/agents/contracts.js';
import { connectHttpAgentTools, fixedToken } from '../../layers/shared/src/agents/mcp-agent-tools.js';
import { createRulesSteps } from '../../layers/shared/src/agents/rules/index.js';
import { createRunContext, createRunUsage } from '../../layers/shared/src/agents/run-context.js';
import type { Candle, FeedStatus, MarketEvent } from '../../layers/shared/src/domain/index.js';
import { createJwtVerifier, issueDevToken } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer, type McpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { book, trade } from '../fixtures/events.js';

const MIN = 60_000;
const HISTORY = 1_800;
const BTC = { exchange: 'binance', symbol: 'BTC/USDT' };
const ETH = { exchange: 'binance', symbol: 'ETH/USDT' };
const SOL = { exchange: 'binance', symbol: 'SOL/USDT' };
/** one day of backtest: 1440 1m candles, inside the 5000 a backtest may span */
const limits = RiskLimitsSchema.parse({ backtestDays: 1 });
const budget = RunBudgetSchema.parse({});
const steps = createRulesSteps({ timeframe: '1m' });

/** Prices of the history, oldest first: a rise with waves (trades for the backtest) and a breakout at the end. */
export function btcPrices(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 100 * (1 + 0.0003 * i) + 0.6 * Math.sin(i / 30) + (i >= n - 15 ? 0.25 * (i - (n - 15)) ** 1.3 : 0));
}
const ethPrices = (n: number) => Array.from({ length: n }, (_, i) => 50 + 0.2 * Math.sin(i / 4));

function candlesOf(m: { exchange: string; symbol: string }, prices: readonly number[], end: number): Candle[] {
  return prices.map((close, i) => {
    const open = i === 0 ? close : prices[i - 1]!;
    return {
      type: 'candle',
      ...m,
      timeframe: '1m',
      ts: end - (prices.length - i) * MIN,
      open,
      high: Math.max(open, close) * 1.0005,
      low: Math.min(open, close) * 0.9995,
      close,
      volume: 10 + (i % 5),
      closed: true,
      source: 'exchange',
    };
  });
}

function feedStatus(m: { exchange: string; symbol: string }, lastLocalTs: number, now: number): FeedStatus {
  return {
    type: 'feed_status',
    ...m,
    channel: 'trades',
    runId: 'collector-1',
    startedAt: now - 3 * 3_600_000,
    ts: now,
    messages: 1000,
    events: 1000,
    rejected: 0,
    malformed: 0,
    duplicates: 0,
    reordered: 0,
    gapsDetected: 0,
    gapsFilled: 0,
    gapsUnfilled: 0,
    tradesRecovered: 0,
    reconnects: 0,
    resubscribes: 0,
    watchErrors: 0,
    lastMessageTs: lastLocalTs - 50,
    lastMessageLocalTs: lastLocalTs,
    lastError: null,
    malformedSample: null,
  };
}

/** Counts the calls going through, and runs `before` ahead of each (to act between steps). */
function watched(tools: AgentTools, before?: (name: string) => Promise<void>): AgentTools & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    list: () => tools.list(),
    close: () => tools.close(),
    async call(name, args) {
      await before?.(name);
      calls.push(name);
      return tools.call(name, args);
    },
  };
}

interface AuditEntry {
  runId: string;
  agent: string;
  kind: string;
  market: { exchange: string; symbol: string } | null;
  summary: string;
  inputs: { tool: string; isError: boolean }[];
  output: Record<string, unknown>;
}

describe('agent flow over the MCP server', () => {
  let http: McpHttpServer;
  let tools: AgentTools;
  let agentStore: PostgresAgentStore;
  let closeDb: () => Promise<void>;
  let ledger: PostgresLedgerStore;
  let store: PostgresMarketStore;
  let lastPrices: { btc: number; eth: number };
  let trades = 0;
  let agentToken: string;

  beforeAll(async () => {
    const db = await openPglite();
    await runMigrations(db);
    closeDb = () => db.close();
    store = new PostgresMarketStore(db);
    ledger = new PostgresLedgerStore(db);
    agentStore = new PostgresAgentStore(db);
    const now = Date.now();
    const end = Math.floor(now / MIN) * MIN;
    const btc = btcPrices(HISTORY);
    const eth = ethPrices(HISTORY);
    lastPrices = { btc: btc.at(-1)!, eth: eth.at(-1)! };
    const events: MarketEvent[] = [
      ...candlesOf(BTC, btc, end),
      ...candlesOf(ETH, eth, end),
      ...candlesOf(SOL, ethPrices(HISTORY - 30), end - 30 * MIN),
      trade({ ...BTC, id: 'b1', ts: now - 2_000, localTs: now - 1_990, price: btc.at(-1)!, amount: 0.01 }),
      trade({ ...ETH, id: 'e1', ts: now - 2_000, localTs: now - 1_990, price: eth.at(-1)!, amount: 0.01 }),
      trade({ ...SOL, id: 's1', ts: now - 30 * MIN, localTs: now - 30 * MIN + 10, price: 50, amount: 1 }),
      ...[BTC, ETH].map((m, k) => {
        const p = (k === 0 ? btc : eth).at(-1)!;
        return book({ ...m, ts: now - 1_000, localTs: now - 990, depth: 2, bids: [[p * 0.9999, 500], [p * 0.999, 500]], asks: [[p * 1.0001, 500], [p * 1.001, 500]] });
      }),
    ];
    await store.writeEvents(events);
    await ledger.writeLedger([feedStatus(BTC, now - 1_990, now), feedStatus(ETH, now - 1_990, now), feedStatus(SOL, now - 30 * MIN + 10, now)]);

    const clock = { now: () => Date.now() };
    const query = new MarketQueryService(store, clock);
    const signals = new SignalService({ writer: store, reader: new PostgresSignalReader(db), clock, logger: silentLogger });
    const secret = new Uint8Array(randomBytes(32));
    http = await startMcpHttpServer({
      // books are a minute old by the end of the suite: the paper broker may trade against them
      buildServer: (caller) =>
        buildServer({ query, ledger, signals, agents: { store: agentStore, clock, paper: { maxBookAgeMs: 3_600_000 } }, version: 'test', logger: silentLogger }, caller),
      verifier: createJwtVerifier({ kind: 'hs256', secret, issuer: 'test', audience: 'mcp' }),
      logger: silentLogger,
    });
    agentToken = await issueDevToken(secret, { subject: 'agents', scopes: [...AGENT_SCOPES], issuer: 'test', audience: 'mcp' });
    tools = await connectHttpAgentTools({ url: http.url, token: fixedToken(agentToken) });
  }, 120_000);

  // the live feeds go on reporting, as a collector's would: BTC and ETH stay fresh whenever a test runs
  beforeEach(async () => {
    const now = Date.now();
    trades += 1;
    await store.writeEvents([
      trade({ ...BTC, id: `b-live-${trades}`, ts: now - 500, localTs: now - 490, price: lastPrices.btc, amount: 0.01 }),
      trade({ ...ETH, id: `e-live-${trades}`, ts: now - 500, localTs: now - 490, price: lastPrices.eth, amount: 0.01 }),
    ]);
    await ledger.writeLedger([feedStatus(BTC, now - 490, now), feedStatus(ETH, now - 490, now)]);
  });

  afterAll(async () => {
    for (const k of ['MCP_URL', 'AGENT_TOKEN', 'AGENT_TIMEFRAME', 'AGENT_RISK_LIMITS', 'AGENT_MARKETS', 'LOG_LEVEL']) delete process.env[k];
    await tools?.close();
    await http?.close();
    await closeDb?.();
  });

  async function audit(runId: string): Promise<AuditEntry[]> {
    const r = await tools.call('get_audit_log', { runId, limit: 200 });
    expect(r.isError, r.text).toBe(false);
    return ((r.structured as { entries: AuditEntry[] }).entries ?? []).slice().reverse();
  }

  it('leaves no listener per request on the HTTP transport\'s abort signal, which would grow with every call', async () => {
    const transport = (tools as unknown as { client: Client }).client.transport as unknown as { _abortController: AbortController };
    const signal = transport._abortController.signal;
    const before = getEventListeners(signal, 'abort').length;
    for (let i = 0; i < 40; i++) expect((await tools.call('get_agent_controls', {})).isError).toBe(false);
    expect(getEventListeners(signal, 'abort').length - before).toBeLessThan(5);
  });

  it('runs a whole cycle: monitor, analysts, risk with a backtest, a paper fill, and an audit entry for every decision', async () => {
    const result = await runAgentCycle({ tools, limits, budget, steps, logger: silentLogger });
    const { summary, report } = result;
    expect(summary.status, summary.detail).toBe('completed');

    // the stale market is left out, with why
    expect(report!.excluded.map((e) => e.market)).toEqual([SOL]);
    expect(report!.excluded[0]!.reason).toMatch(/^stale: newest trade \d+ s old/);
    expect(report!.markets).toContainEqual(BTC);
    expect(report!.markets).toContainEqual(ETH);

    const btc = result.analyses.find((a) => a.market.symbol === 'BTC/USDT')!;
    const eth = result.analyses.find((a) => a.market.symbol === 'ETH/USDT')!;
    expect(btc.proposal, btc.note).not.toBeNull();
    expect(btc.proposal!.direction).toBe('long');
    expect(btc.proposal!.rationale).toMatch(/EMA20 [\d.]+ > EMA50 [\d.]+/);
    expect(eth.proposal).toBeNull();

    expect(result.decisions).toHaveLength(1);
    const decision = result.decisions[0]!;
    expect(decision.verdict, decision.reason).toBe('approve');
    expect(decision.checks.find((c) => c.name === 'backtest')!.detail).toMatch(/^1440 1m candles: \d+ trades/);
    expect(result.executions).toHaveLength(1);
    const fill = result.executions[0]!;
    expect(fill).toMatchObject({ status: 'filled', side: 'buy', signalId: btc.proposal!.signalId });
    expect(fill.notional).toBeCloseTo(decision.notional, 6);
    expect(summary).toMatchObject({ proposals: 1, decisions: { approve: 1, resize: 0, reject: 0 }, executions: 1 });

    const entries = await audit(summary.runId);
    const kinds = entries.map((e) => e.kind);
    expect(kinds[0]).toBe('run_start');
    expect(kinds.at(-1)).toBe('run_end');
    for (const k of ['observation', 'proposal', 'no_proposal', 'risk_decision', 'execution']) expect(kinds).toContain(k);
    // every decision carries the tool calls it rests on
    const proposal = entries.find((e) => e.kind === 'proposal')!;
    expect(proposal.inputs.map((i) => i.tool)).toEqual(['get_candles', 'compute_indicators', 'publish_signal']);
    const risk = entries.find((e) => e.kind === 'risk_decision')!;
    expect(risk.inputs.map((i) => i.tool)).toEqual(['get_data_health', 'backtest_strategy', 'get_paper_portfolio']);
    expect(entries.find((e) => e.kind === 'execution')!.inputs.map((i) => i.tool)).toEqual(['place_paper_order']);
    expect(entries.find((e) => e.kind === 'observation')!.inputs.map((i) => i.tool)).toEqual(
      expect.arrayContaining(['list_markets', 'get_data_health', 'compare_exchanges', 'get_candles']),
    );
    expect(entries.at(-1)!.output).toMatchObject({ status: 'completed', executions: 1 });

    // a retried execute step finds its first order: nothing is traded twice
    const before = await tools.call('get_paper_portfolio', { account: limits.account });
    const again = await createAgentSteps({ tools, limits, budget, steps }).executeStep({ runId: summary.runId, decisions: result.decisions });
    expect(again.executions[0]!.detail).toContain('already placed by an earlier attempt');
    const after = await tools.call('get_paper_portfolio', { account: limits.account });
    expect((after.structured as { positions: unknown[] }).positions).toEqual((before.structured as { positions: unknown[] }).positions);
  }, 120_000);

  it('stops before the next step when the kill switch is engaged between steps, and records the stop', async () => {
    const stepFns = createAgentSteps({ tools, limits, budget, steps, logger: silentLogger });
    const { runId, report } = await stepFns.monitorStep({});
    await agentStore.setKillSwitch({ engaged: true, reason: 'test: market halted', by: 'test', ts: Date.now() });
    try {
      const error = await stepFns.analystStep({ runId, market: report.markets[0] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KillSwitchEngagedError);
      expect((error as Error).message).toBe('kill switch engaged: test: market halted');
      const entries = await audit(runId);
      expect(entries.map((e) => e.kind)).not.toContain('proposal');
      expect(entries.at(-1)).toMatchObject({ kind: 'run_end', agent: 'technical_analyst', output: { status: 'killed' } });
    } finally {
      await agentStore.setKillSwitch({ engaged: false, reason: 'test over', by: 'test', ts: Date.now() });
    }
  }, 60_000);

  it('stops mid-run before the next action: engaged while the analysts read, no signal is published and nothing traded', async () => {
    let engaged = false;
    const hooked = watched(tools, async (name) => {
      if (name === 'compute_indicators' && !engaged) {
        engaged = true;
        await agentStore.setKillSwitch({ engaged: true, reason: 'test: mid-run', by: 'test', ts: Date.now() });
      }
    });
    try {
      const { summary, executions } = await runAgentCycle({ tools: hooked, limits, budget, steps, logger: silentLogger, maxParallel: 1 });
      expect(summary.status).toBe('killed');
      expect(summary.detail).toContain('test: mid-run');
      expect(executions).toEqual([]);
      expect(hooked.calls).not.toContain('publish_signal');
      expect(hooked.calls).not.toContain('place_paper_order');
      const entries = await audit(summary.runId);
      expect(entries.at(-1)).toMatchObject({ kind: 'run_end', output: { status: 'killed' } });
    } finally {
      await agentStore.setKillSwitch({ engaged: false, reason: 'test over', by: 'test', ts: Date.now() });
    }
  }, 60_000);

  it('ends cleanly when the tool call budget runs out, recording the end', async () => {
    const counted = watched(tools);
    const { summary } = await runAgentCycle({ tools: counted, limits, budget: { ...budget, maxToolCalls: 4 }, steps, logger: silentLogger });
    expect(summary.status).toBe('budget_exhausted');
    expect(summary.detail).toContain('maxToolCalls 4');
    // the budget counts the agents' own calls; kill switch reads and audit writes are plumbing
    const work = counted.calls.filter((n) => n !== 'get_agent_controls' && n !== 'record_decision');
    expect(work).toHaveLength(4);
    const entries = await audit(summary.runId);
    expect(entries.at(-1)).toMatchObject({ kind: 'run_end', output: { status: 'budget_exhausted' } });
  }, 60_000);

  it('gives a tool error in one analyst to that analyst as an error result, while the others go on', async () => {
    const stepFns = createAgentSteps({ tools, limits, budget, steps, logger: silentLogger });
    const runId = `run-tool-error-${Date.now()}`;
    const [missing, btc] = await Promise.all([
      stepFns.analystStep({ runId, market: { exchange: 'binance', symbol: 'NOPE/USDT' } }),
      stepFns.analystStep({ runId, market: BTC }),
    ]);
    expect(missing.proposal).toBeNull();
    expect(missing.note).toMatch(/^candles unavailable: get_candles: No data for symbol 'NOPE\/USDT' on binance/);
    expect(btc.proposal).not.toBeNull();
    const entries = await audit(runId);
    const noProposal = entries.find((e) => e.kind === 'no_proposal')!;
    expect(noProposal.market).toEqual({ exchange: 'binance', symbol: 'NOPE/USDT' });
    expect(noProposal.inputs).toEqual([expect.objectContaining({ tool: 'get_candles', isError: true })]);
  }, 60_000);

  it('runs the same flow through the four Lambda handlers, configured from the environment as Step Functions runs them', async () => {
    Object.assign(process.env, {
      MCP_URL: http.url,
      AGENT_TOKEN: agentToken,
      AGENT_TIMEFRAME: '1m',
      AGENT_RISK_LIMITS: JSON.stringify({ backtestDays: 1, account: 'lambda' }),
      AGENT_MARKETS: 'binance:BTC/USDT,ETH/USDT,SOL/USDT',
      LOG_LEVEL: 'error',
    });
    const [monitor, analyst, risk, execute] = await Promise.all(
      ['monitor', 'analyst', 'risk', 'execute'].map(async (s) => (await import(`../../functions/agents/${s}/main.ts`)) as { handler: (e: unknown) => Promise<any> }),
    );
    const started = await monitor!.handler({ runId: 'sfn-execution-1' });
    expect(started.runId).toBe('sfn-execution-1');
    // the Map state: one analyst invocation per market
    const analyses = await Promise.all(started.report.markets.map((market: unknown) => analyst!.handler({ runId: started.runId, market })));
    const { decisions } = await risk!.handler({ runId: started.runId, analyses });
    const done = await execute!.handler({ runId: started.runId, decisions });
    expect(done.summary).toMatchObject({ runId: 'sfn-execution-1', status: 'completed', proposals: 1, executions: 1 });
    expect(done.executions[0]).toMatchObject({ status: 'filled', side: 'buy' });
    const portfolio = await tools.call('get_paper_portfolio', { account: 'lambda' });
    expect((portfolio.structured as { positions: { symbol: string }[] }).positions.map((p) => p.symbol)).toEqual(['BTC/USDT']);
    const kinds = (await audit('sfn-execution-1')).map((e) => e.kind);
    expect([kinds[0], kinds.at(-1)]).toEqual(['run_start', 'run_end']);
    // a payload off the contract is a named error, before any tool call
    await expect(analyst!.handler({ runId: started.runId, market: { exchange: 'binance' } })).rejects.toThrow(/analyst input: market.symbol/);
    await expect(risk!.handler({ runId: started.runId, analyses: [{ bogus: true }] })).rejects.toMatchObject({ name: 'StepPayloadError' });
  }, 120_000);

  it('counts model tokens and wall time against the budget', async () => {
    let t = 1_000;
    const ctx = createRunContext({ runId: 'r-budget', tools, limits, agent: 'technical_analyst', usage: createRunUsage({ ...budget, maxModelTokens: 100, maxWallMs: 50 }, t), clock: () => t });
    ctx.spendTokens(60);
    expect(() => ctx.spendTokens(41)).toThrow(BudgetExceededError);
    t += 51;
    await expect(ctx.tools.call('list_markets', {})).rejects.toThrow('run budget exhausted: maxWallMs 50');
  });
});
