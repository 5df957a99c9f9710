import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PostgresAgentStore } from '../../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { createAgentSteps } from '../../layers/shared/src/agents/agent-steps.js';
import {
  BudgetExceededError,
  RiskLimitsSchema,
  RunBudgetSchema,
  type AgentTools,
  type MarketRef,
  type Proposal,
  type RiskDecision,
  type RiskStep,
} from '../../layers/shared/src/agents/contracts.js';
import { connectInMemoryAgentTools } from '../../layers/shared/src/agents/mcp-agent-tools.js';
import { agentStepsFromEnv } from '../../layers/shared/src/agents/model/agent-steps.js';
import { createLanguageModel, resolveModelConfig } from '../../layers/shared/src/agents/model/model-config.js';
import { modelAnalyst, modelMonitor, modelRiskReview } from '../../layers/shared/src/agents/model/model-steps.js';
import { marketMonitor } from '../../layers/shared/src/agents/rules/market-monitor.js';
import { technicalAnalyst } from '../../layers/shared/src/agents/rules/technical-analyst.js';
import { createRunContext, createRunUsage } from '../../layers/shared/src/agents/run-context.js';
import type { Candle } from '../../layers/shared/src/domain/index.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import type { AuditEntry } from '../../layers/shared/src/ports/agent-store.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { T0, candle, trade } from '../fixtures/events.js';
import { createTestDatabase, type TestDatabase } from '../support/databases.js';
import { startFakeOpenAiServer, type FakeOpenAiServer, type ScriptedReply } from '../support/fake-openai-server.js';

const MIN = 60_000;
const BARS = 150;
/** Server time: just after the last seeded candle closed. */
const NOW = T0 + BARS * MIN + 5_000;
const BTC: MarketRef = { exchange: 'binance', symbol: 'BTC/USDT' };
const ETH: MarketRef = { exchange: 'binance', symbol: 'ETH/USDT' };

/** A steady climb with a wobble: 150 closed 1m candles. */
function climb(market: MarketRef, base: number): Candle[] {
  return Array.from({ length: BARS }, (_, i) => {
    const close = base + i * 0.5 + (i % 5 === 0 ? -0.8 : 0.3);
    const open = close - 0.4;
    return candle({ ...market, ts: T0 + i * MIN, open, high: close + 0.6, low: open - 0.6, close, volume: 10 + (i % 7) });
  });
}
const LAST_CLOSE = climb(BTC, 100).at(-1)!.close;

const submitProposal = (overrides: Record<string, unknown> = {}): ScriptedReply => ({
  toolCalls: [
    {
      name: 'submit_proposal',
      arguments: {
        market: BTC,
        direction: 'long',
        strength: 0.6,
        confidence: 0.7,
        horizon: '15m',
        strategy: {
          name: 'model-trend-long',
          timeframe: '1m',
          side: 'long',
          entry: { conditions: ['ema:20 > ema:50', 'rsi:14 > 50'], match: 'all' },
          exit: { conditions: ['ema:20 < ema:50'], match: 'any' },
          stopLossPct: 1.5,
        },
        rationale: 'EMA20 above EMA50 and RSI14 above 60 on 1m: trend up',
        ...overrides,
      },
    },
  ],
});

describe('agents with a model over the AI SDK (fake OpenAI-compatible server)', () => {
  let database: TestDatabase;
  let agentStore: PostgresAgentStore;
  let fake: FakeOpenAiServer;
  let tools: AgentTools;
  let auditTick = NOW;

  const modelConfig = (extra: Record<string, string> = {}) =>
    resolveModelConfig({ AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'scripted', AGENT_MODEL_BASE_URL: fake.baseURL, ...extra });
  const model = async (extra: Record<string, string> = {}) => createLanguageModel((await modelConfig(extra))!);

  let runSeq = 0;
  function context(agent: 'market_monitor' | 'technical_analyst' | 'risk_manager', budget: Partial<Record<'maxToolCalls' | 'maxModelTokens' | 'maxWallMs', number>> = {}) {
    return createRunContext({
      runId: `run-model-${++runSeq}`,
      tools,
      limits: RiskLimitsSchema.parse({}),
      agent,
      usage: createRunUsage(RunBudgetSchema.parse(budget), NOW),
      clock: () => NOW,
    });
  }
  const audit = async (runId: string): Promise<AuditEntry[]> => [...(await agentStore.queryAudit({ runId, limit: 100 }))].sort((a, b) => a.ts - b.ts);
  const offered = (i: number) => (fake.requests[i]?.tools ?? []).map((t) => t.function.name).sort();

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    const market = new PostgresMarketStore(database.db);
    // a trade each in the last seconds: the monitor takes only markets with fresh trades
    const fresh = [trade({ ...BTC, id: 'b1', ts: NOW - 4_000, price: LAST_CLOSE }), trade({ ...ETH, id: 'e1', ts: NOW - 4_000, price: climb(ETH, 50).at(-1)!.close })];
    await market.writeEvents([...climb(BTC, 100), ...climb(ETH, 50), ...fresh]);
    agentStore = new PostgresAgentStore(database.db);
    fake = await startFakeOpenAiServer();
  }, 60_000);

  beforeEach(async () => {
    const market = new PostgresMarketStore(database.db);
    const clock = { now: () => NOW };
    const server = buildServer({
      query: new MarketQueryService(market, clock),
      signals: new SignalService({ writer: market, reader: new PostgresSignalReader(database.db), clock, limits: { perPublisher: 10_000 } }),
      agents: { store: agentStore, clock: { now: () => ++auditTick } },
      version: 'agent-model',
      logger: silentLogger,
    });
    tools = await connectInMemoryAgentTools(server);
    fake.requests.length = 0;
  });

  afterEach(async () => {
    await tools.close();
  });

  afterAll(async () => {
    await fake?.close();
    await database?.dispose();
  });

  it('runs a scripted analysis through the MCP tools and returns the model\'s proposal', async () => {
    fake.script([
      { toolCalls: [{ name: 'get_candles', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 30 } }], usage: { prompt: 300, completion: 20 } },
      {
        toolCalls: [
          { name: 'compute_indicators', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 1, indicators: [{ name: 'rsi', params: { period: 14 } }] } },
        ],
        usage: { prompt: 600, completion: 30 },
      },
      { ...submitProposal(), usage: { prompt: 800, completion: 90 } },
    ]);
    const ctx = context('technical_analyst');
    const analysis = await modelAnalyst(await model(), technicalAnalyst)(ctx, BTC);

    expect(analysis.proposal).toMatchObject({ by: 'model', direction: 'long', strength: 0.6, confidence: 0.7, horizon: '15m', market: BTC, runId: ctx.runId });
    // the reference price is the last closed candle the step read, not a figure the model typed
    expect(analysis.proposal!.price).toBe(LAST_CLOSE);
    expect(fake.remaining()).toBe(0);
    expect(ctx.usage.modelTokens).toBe(320 + 630 + 890);

    // the model was offered read-only tools and its answer tools, never a write action
    expect(offered(0)).toEqual(expect.arrayContaining(['get_candles', 'compute_indicators', 'submit_proposal', 'submit_no_proposal']));
    for (const write of ['publish_signal', 'place_paper_order', 'record_decision', 'set_kill_switch', 'remember']) expect(offered(0)).not.toContain(write);
    expect(fake.requests[0]!.temperature).toBe(0);
    // the tool results went back to the model: candle rows, then the RSI
    expect(fake.toolResults(1)).toHaveLength(1);
    expect(fake.toolResults(1)[0]!.content).toContain(String(LAST_CLOSE));
    expect(fake.toolResults(2)[1]!.content.toLowerCase()).toContain('rsi');

    // the signal was published through publish_signal and the decision audited with its tool calls
    const signals = await tools.call('get_signals', { symbol: 'BTC/USDT' });
    const listed = (signals.structured as { signals: { id: string; direction: string }[] }).signals;
    expect(listed.map((s) => s.id)).toContain(analysis.proposal!.signalId);
    const entries = await audit(ctx.runId);
    expect(entries.map((e) => e.kind)).toEqual(['proposal']);
    expect((entries[0]!.inputs as { tool: string }[]).map((c) => c.tool)).toEqual(['get_candles', 'compute_indicators', 'get_candles', 'publish_signal']);
    expect(entries[0]!.output).toMatchObject({ by: 'model', signalId: analysis.proposal!.signalId });
  });

  it('takes a scripted no-proposal answer, and a tool error reaches the model as the tool\'s answer', async () => {
    fake.script([
      { toolCalls: [{ name: 'get_candles', arguments: { exchange: 'nowhere', symbol: 'BTC/USDT', timeframe: '1m' } }] },
      { toolCalls: [{ name: 'submit_no_proposal', arguments: { market: BTC, note: 'no candles from that exchange' } }] },
    ]);
    const ctx = context('technical_analyst');
    const analysis = await modelAnalyst(await model({ AGENT_MODEL_API_KEY: 'local-key-1' }), technicalAnalyst)(ctx, BTC);
    expect(analysis).toEqual({ runId: ctx.runId, market: BTC, proposal: null, note: 'no candles from that exchange' });
    expect(fake.authorizations.slice(-2)).toEqual(['Bearer local-key-1', 'Bearer local-key-1']);
    const [result] = fake.toolResults(1);
    expect(result!.content).toMatch(/^ERROR: /);
    expect(result!.content).toContain('binance');
    expect((await audit(ctx.runId)).map((e) => e.kind)).toEqual(['no_proposal']);
  });

  it.each([
    ['a strength out of range', [submitProposal({ strength: 7 })], /submit_proposal\.strength: /],
    ['an unknown direction', [submitProposal({ direction: 'sideways' })], /submit_proposal\.direction: /],
    ['a signal for another market', [submitProposal({ market: ETH })], /market binance:ETH\/USDT is not the one analysed/],
    ['a strategy condition the backtest cannot read', [submitProposal({ strategy: { name: 'vibes', timeframe: '1m', side: 'long', entry: { conditions: ['EMA20 looks strong'], match: 'all' }, stopLossPct: 1 } })], /strategy condition 'EMA20 looks strong'/],
    ['a field that is not in the answer', [submitProposal({ leverage: 50 })], /submit_proposal: .*leverage/],
    ['plain text instead of an answer', [{ text: 'BTC looks bullish to me!' }], /ended without calling submit_proposal or submit_no_proposal/],
    ['an unknown tool', [{ toolCalls: [{ name: 'place_paper_order', arguments: { exchange: 'binance', symbol: 'BTC/USDT', side: 'buy', notional: 1e6 } }] }], /place_paper_order: .*(not found|unavailable|No such tool)/i],
    ['malformed tool arguments', [{ toolCalls: [{ name: 'get_candles', arguments: '{"exchange": "binance", "symbol": ' }] }], /get_candles: /],
    [
      'no answer within the step limit',
      [1, 2, 3].map(() => ({ toolCalls: [{ name: 'get_ticker', arguments: { exchange: 'binance', symbol: 'BTC/USDT' } }] })),
      /no answer \(submit_proposal or submit_no_proposal\) within 3 model steps/,
    ],
  ] as [string, ScriptedReply[], RegExp][])('refuses %s, records it and falls back to the rules', async (_case, script, error) => {
    fake.script(script);
    const ctx = context('technical_analyst');
    const rulesCtx = context('technical_analyst');
    const expected = await technicalAnalyst(rulesCtx, BTC);
    const analysis = await modelAnalyst(await model(), technicalAnalyst, { maxSteps: 3 })(ctx, BTC);

    expect(fake.remaining()).toBe(0);
    // the seeded climb gives the rules a long proposal: the fallback's answer is recognisable
    expect(expected.proposal?.by).toBe('rules');
    // what the rules decide on the same data (the signal id aside: each publish is a new signal)
    expect(analysis.proposal?.by).toBe('rules');
    expect({ ...analysis, runId: null, proposal: analysis.proposal && { ...analysis.proposal, runId: null, signalId: null } }).toEqual({
      ...expected,
      runId: null,
      proposal: expected.proposal && { ...expected.proposal, runId: null, signalId: null },
    });
    const entries = await audit(ctx.runId);
    expect(entries.map((e) => e.kind)).toEqual(['rejected_model_output', 'proposal']);
    const rejected = entries[0]!.output as { reply: unknown; errors: string[] };
    expect(rejected.errors.join('\n')).toMatch(error);
    expect(entries[0]!.market).toEqual(BTC);
    // the model's reply is on record, and nothing it asked for was done
    expect(JSON.stringify(rejected.reply ?? null)).toContain(script.at(-1)!.text ?? script.at(-1)!.toolCalls![0]!.name);
    expect(entries.flatMap((e) => (e.inputs as { tool: string }[]).map((c) => c.tool))).not.toContain('place_paper_order');
    expect(await agentStore.fills('default')).toEqual([]);
  });

  it('ends cleanly without a fallback when the answer is refused', async () => {
    fake.script([submitProposal({ confidence: -1 })]);
    const ctx = context('technical_analyst');
    const analysis = await modelAnalyst(await model(), null)(ctx, BTC);
    expect(analysis.proposal).toBeNull();
    expect(analysis.note).toMatch(/model output refused/);
    expect((await audit(ctx.runId)).map((e) => e.kind)).toEqual(['rejected_model_output', 'no_proposal']);
  });

  it('falls back to the rules when the model server cannot be reached', async () => {
    const ctx = context('technical_analyst');
    const unreachable = createLanguageModel((await resolveModelConfig({ AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'x', AGENT_MODEL_BASE_URL: 'http://127.0.0.1:9/v1' }))!);
    const analysis = await modelAnalyst(unreachable, technicalAnalyst, { maxRetries: 0 })(ctx, BTC);
    expect(analysis.proposal?.by ?? 'rules').toBe('rules');
    const entries = await audit(ctx.runId);
    expect(entries[0]!.kind).toBe('rejected_model_output');
    expect((entries[0]!.output as { errors: string[] }).errors[0]).toMatch(/^model call failed: /);
  });

  it('ends the run on the token budget: the analyst step stops as budget_exhausted', async () => {
    fake.script([
      { toolCalls: [{ name: 'get_candles', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 5 } }], usage: { prompt: 200, completion: 50 } },
      submitProposal(),
    ]);
    const env = { AGENT_MODEL_PROVIDER: 'openai-compatible', AGENT_MODEL: 'scripted', AGENT_MODEL_BASE_URL: fake.baseURL };
    const steps = await agentStepsFromEnv(env, {
      monitor: marketMonitor,
      analyst: technicalAnalyst,
      risk: async () => [],
      execute: async () => [],
    });
    const budget = RunBudgetSchema.parse({ maxModelTokens: 200 });
    const fns = createAgentSteps({ tools, limits: RiskLimitsSchema.parse({}), budget, steps, clock: () => NOW, logger: silentLogger });
    await expect(fns.analystStep({ runId: 'run-model-budget', market: BTC })).rejects.toBeInstanceOf(BudgetExceededError);
    // the loop stopped at the first call over budget: the proposal was never asked for
    expect(fake.requests).toHaveLength(1);
    expect(fake.remaining()).toBe(1);
    const entries = await audit('run-model-budget');
    expect(entries.map((e) => e.kind)).toEqual(['run_end']);
    expect(entries[0]!.output).toMatchObject({ status: 'budget_exhausted' });
    expect(entries[0]!.summary).toMatch(/maxModelTokens 200/);
  });

  it('stops the model turn when a tool call finds the tool budget spent, and starts none on a spent token budget', async () => {
    const candles = { name: 'get_candles', arguments: { exchange: 'binance', symbol: 'BTC/USDT', timeframe: '1m', limit: 5 } };
    fake.script([{ toolCalls: [candles] }, { toolCalls: [candles] }, submitProposal()]);
    const ctx = context('technical_analyst', { maxToolCalls: 1 });
    const error = await modelAnalyst(await model(), technicalAnalyst)(ctx, BTC).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BudgetExceededError);
    expect((error as BudgetExceededError).budget).toBe('maxToolCalls');
    // the second call was refused by the budget, and the model was not asked again
    expect(fake.requests).toHaveLength(2);
    expect(ctx.usage.toolCalls).toBe(1);

    fake.script([submitProposal()]);
    fake.requests.length = 0;
    const spent = context('technical_analyst', { maxModelTokens: 10 });
    expect(() => spent.spendTokens(11)).toThrow(BudgetExceededError);
    await expect(modelAnalyst(await model(), technicalAnalyst)(spent, BTC)).rejects.toBeInstanceOf(BudgetExceededError);
    expect(fake.requests).toHaveLength(0);
  });

  describe('risk review', () => {
    const proposal = (market: MarketRef): Proposal => ({
      runId: 'r',
      market,
      signalId: `sig-${market.symbol}`,
      direction: 'long',
      strength: 0.5,
      confidence: 0.6,
      horizon: '1h',
      price: 100,
      strategy: { name: 's', timeframe: '1m', side: 'long', entry: { conditions: ['rsi:14 > 50'], match: 'all' }, stopLossPct: 2 },
      rationale: 'test',
      by: 'model',
    });
    /** The deterministic limits' verdicts this test starts from: BTC approved at 1000, ETH rejected. */
    const rules: RiskStep = async (ctx, proposals) =>
      proposals.map((p): RiskDecision => {
        const approve = p.market.symbol === 'BTC/USDT';
        return { runId: ctx.runId, proposal: p, verdict: approve ? 'approve' : 'reject', notional: approve ? 1000 : 0, reason: approve ? 'within limits' : 'drawdown limit', checks: [] };
      });
    const review = (verdict: string, extra: Record<string, unknown> = {}): ScriptedReply => ({ toolCalls: [{ name: 'submit_review', arguments: { verdict, reason: 'volatility spike', ...extra } }] });

    it('lets the model reject or shrink an approved decision, and never asks about a rejected one', async () => {
      for (const [reply, verdict, notional] of [
        [review('reject'), 'reject', 0],
        [review('resize', { notional: 250 }), 'resize', 250],
        [review('keep'), 'approve', 1000],
      ] as const) {
        fake.script([reply]);
        fake.requests.length = 0;
        const ctx = context('risk_manager');
        const decisions = await modelRiskReview(await model(), rules)(ctx, [proposal(BTC), proposal(ETH)]);
        expect(decisions.map((d) => [d.proposal.market.symbol, d.verdict, d.notional])).toEqual([
          ['BTC/USDT', verdict, notional],
          ['ETH/USDT', 'reject', 0],
        ]);
        // one model call: the rejected ETH decision is the rules' alone
        expect(fake.requests).toHaveLength(1);
        expect(JSON.stringify(fake.requests[0]!.messages)).not.toContain('ETH/USDT');
        const kinds = (await audit(ctx.runId)).map((e) => e.kind);
        expect(kinds).toEqual(verdict === 'approve' ? [] : ['risk_decision']);
      }
    });

    it.each([
      ['a larger size', review('resize', { notional: 5000 }), /not below the rules' notional 1000/],
      ['the same size', review('resize', { notional: 1000 }), /not below the rules' notional 1000/],
      ['a resize without a size', review('resize'), /resize without a notional/],
      ['an approval verdict', review('approve'), /submit_review\.verdict: /],
    ] as [string, ScriptedReply, RegExp][])('refuses %s and keeps the rules\' decision', async (_case, reply, error) => {
      fake.script([reply]);
      const ctx = context('risk_manager');
      const decisions = await modelRiskReview(await model(), rules)(ctx, [proposal(BTC)]);
      expect(decisions.map((d) => [d.verdict, d.notional])).toEqual([['approve', 1000]]);
      const entries = await audit(ctx.runId);
      expect(entries.map((e) => e.kind)).toEqual(['rejected_model_output']);
      expect((entries[0]!.output as { errors: string[] }).errors.join('\n')).toMatch(error);
    });
  });

  it('lets the model monitor order and drop candidates but never add a market', async () => {
    fake.script([{ toolCalls: [{ name: 'submit_review', arguments: { observations: [], markets: [{ exchange: 'kraken', symbol: 'DOGE/USD' }], dropped: [] } }] }]);
    const ctx = context('market_monitor');
    const rulesReport = await marketMonitor(context('market_monitor'));
    const report = await modelMonitor(await model(), marketMonitor)(ctx);
    expect({ ...report, runId: null }).toEqual({ ...rulesReport, runId: null });
    const kinds = (await audit(ctx.runId)).map((e) => e.kind);
    expect(kinds.at(-1)).toBe('rejected_model_output');

    const candidates = rulesReport.markets;
    expect(candidates.length).toBeGreaterThan(1);
    fake.script([
      {
        toolCalls: [
          {
            name: 'submit_review',
            arguments: {
              observations: [{ kind: 'anomaly', market: candidates[1], severity: 'warning', detail: 'volume spike', figures: { volumeRatio: 4.2 } }],
              markets: [candidates[1]],
              dropped: [{ market: candidates[0], reason: 'too quiet' }],
            },
          },
        ],
      },
    ]);
    const ctx2 = context('market_monitor');
    const reviewed = await modelMonitor(await model(), marketMonitor)(ctx2);
    expect(reviewed.markets[0]).toEqual(candidates[1]);
    expect(reviewed.markets).not.toContainEqual(candidates[0]);
    expect(reviewed.excluded).toContainEqual({ market: candidates[0], reason: 'model: too quiet' });
    expect(reviewed.observations.at(-1)).toMatchObject({ detail: 'volume spike' });
  });
});
