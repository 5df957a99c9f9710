import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../layers/shared/src/domain/errors.js';
import { parseMarkets } from '../layers/shared/src/config/markets.js';
import { formatShard, parseShard, shardMarkets, type Shard } from '../layers/shared/src/config/shards.js';
import { formatIssues, TimeframeSchema, type Timeframe } from '../layers/shared/src/domain/index.js';
import { parseToolsets, type ToolsetName } from '../layers/shared/src/mcp/toolsets.js';
import { parseAlertRules, type AlertRule } from '../layers/shared/src/alerts/alert-rules.js';

export { parseMarkets };

export const USAGE = `Usage: npm start -- [options]

Runs the whole platform in one process: collector, in-process stream, timescale-writer,
embedded Postgres (PGlite) and the MCP server.

Options (each also readable from the environment variable in brackets):
  --source live|sim        live: real exchanges through ccxt.pro; sim: the simulated exchange,
                           fully offline                                   [SOURCE] (live)
  --markets SPEC           exchanges and symbols, e.g.
                           "binance:BTC/USDT,ETH/USDT;kraken:BTC/USD"      [MARKETS]
                           (live: binance, coinbase and kraken BTC and ETH; sim: binance
                           BTC/USDT, ETH/USDT, SOL/USDT)
  --shard INDEX/COUNT      collect only this shard's part of the markets, INDEX from 0:
                           0/2 and 1/2 split them in two (docs/scale-out.md). Run one
                           process per shard with a shared --database-url and its own
                           --port (0: any)                                [SHARD] (0/1: all)
  --host HOST              MCP server address                             [MCP_HOST] (127.0.0.1)
  --port PORT              MCP server port, 0 for any free one           [MCP_PORT] (8787)
  --data-dir DIR           database, dev JWT secret                       [DATA_DIR] (./.data)
  --database-url URL       PostgreSQL/TimescaleDB instead of the embedded
                           database, e.g. postgres://user@127.0.0.1:5432/db [DATABASE_URL]
  --toolsets LIST          MCP tool groups to expose: all, or some of
                           market,analysis,signals,memory,agents       [MCP_TOOLSETS] (all)
  --alert-rules JSON|@FILE alert rules (price_cross, volume_spike, spread_blowout, stale_feed)
                           evaluated as data arrives; firings become signals [ALERT_RULES] (none)
  --stdio                  serve MCP on stdin/stdout instead of HTTP (desktop clients);
                           everything else goes to stderr
  --agents                 also run the scheduled agents (market monitor -> technical
                           analyst per market -> risk manager -> paper executor) as MCP
                           clients of the embedded server, over HTTP with a locally minted
                           token; rules only unless AGENT_MODEL_PROVIDER is set. Risk
                           limits and run budget from AGENT_RISK_LIMITS / AGENT_BUDGET
                           (JSON); markets from AGENT_MARKETS (all held)      [AGENTS] (off)
  --agents-every DURATION  time between agent runs, e.g. 30s, 5m, 1h; the first run
                           starts one interval after start-up              [AGENTS_EVERY] (5m)
  --agents-timeframe TF    candles the analyst reads and its strategies are backtested
                           on (the simulator's history is short: 1m)  [AGENT_TIMEFRAME] (1m)
  --status-interval SEC    seconds between status lines, 0 for none      [STATUS_INTERVAL] (5)
  --sim-seed N             simulator seed                                 [SIM_SEED] (42)
  --sim-tps N              simulated trades per second per symbol         [SIM_TPS] (5)
  --sim-history HOURS      with --source sim: fill the store with this many hours of the
                           simulator's history (1m candles) before the live market opens,
                           so indicators and backtests have data at once [SIM_HISTORY_HOURS]
                           (96 with --agents: enough for the risk manager's backtests; else 0)
  --log-level LEVEL        debug|info|warn|error                          [LOG_LEVEL] (warn)
  -h, --help               this text
`;

const DEFAULT_MARKETS = {
  live: 'binance:BTC/USDT,ETH/USDT;coinbase:BTC/USD,ETH/USD;kraken:BTC/USD,ETH/USD',
  sim: 'binance:BTC/USDT,ETH/USDT,SOL/USDT',
} as const;

const int = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .min(min, `${name} must be at least ${min}`)
    .max(max, `${name} must be at most ${max}`);

const OptionsSchema = z.object({
  source: z.enum(['live', 'sim'], { error: '--source must be live or sim' }),
  markets: z.string().optional(),
  host: z.string().min(1),
  port: int('--port', 0, 65535),
  dataDir: z.string().min(1),
  databaseUrl: z.string().regex(/^postgres(ql)?:\/\//, '--database-url must be a postgres:// URL').optional(),
  stdio: z.boolean(),
  statusInterval: int('--status-interval', 0, 3600),
  simSeed: int('--sim-seed', 0, 2 ** 31 - 1),
  simTps: int('--sim-tps', 1, 1000),
  simHistoryHours: int('--sim-history', 0, 24 * 400).optional(),
  logLevel: z.enum(['debug', 'info', 'warn', 'error'], { error: '--log-level must be debug, info, warn or error' }),
});

export interface LocalOptions extends Omit<z.infer<typeof OptionsSchema>, 'markets' | 'simHistoryHours'> {
  /** --sim-history: hours of the simulator's synthetic history backfilled (1m candles) before the start */
  readonly simHistoryHours: number;
  /** exchange id -> ccxt unified symbols: this shard's part of --markets */
  readonly markets: ReadonlyMap<string, readonly string[]>;
  /** --alert-rules: rules the embedded alerts consumer evaluates; none by default */
  readonly alertRules: readonly AlertRule[];
  /** --toolsets: the MCP tool groups served */
  readonly toolsets: readonly ToolsetName[];
  /** --shard: which part of --markets this process collects */
  readonly shard: Shard;
  /** --agents: run the agent flow on an interval against the embedded MCP server */
  readonly agents: boolean;
  /** --agents-every: ms between agent runs */
  readonly agentsEveryMs: number;
  /** --agents-timeframe: the analyst's candles */
  readonly agentsTimeframe: Timeframe;
  readonly help: boolean;
}

/** Parses the local runner's flags and environment; throws ConfigError naming the bad one. */
export function parseLocalOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): LocalOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        source: { type: 'string' },
        markets: { type: 'string' },
        shard: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        stdio: { type: 'boolean' },
        toolsets: { type: 'string' },
        'alert-rules': { type: 'string' },
        'status-interval': { type: 'string' },
        'sim-seed': { type: 'string' },
        'sim-tps': { type: 'string' },
        'sim-history': { type: 'string' },
        'log-level': { type: 'string' },
        agents: { type: 'boolean' },
        'agents-every': { type: 'string' },
        'agents-timeframe': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${USAGE}`, { cause: error });
  }
  const parsed = OptionsSchema.safeParse({
    source: values.source ?? env.SOURCE ?? 'live',
    markets: values.markets ?? env.MARKETS,
    host: values.host ?? env.MCP_HOST ?? '127.0.0.1',
    port: values.port ?? env.MCP_PORT ?? 8787,
    dataDir: values['data-dir'] ?? env.DATA_DIR ?? '.data',
    databaseUrl: values['database-url'] ?? env.DATABASE_URL,
    stdio: values.stdio ?? false,
    statusInterval: values['status-interval'] ?? env.STATUS_INTERVAL ?? 5,
    simSeed: values['sim-seed'] ?? env.SIM_SEED ?? 42,
    simTps: values['sim-tps'] ?? env.SIM_TPS ?? 5,
    simHistoryHours: values['sim-history'] ?? env.SIM_HISTORY_HOURS,
    logLevel: values['log-level'] ?? env.LOG_LEVEL ?? 'warn',
  });
  if (!parsed.success) throw new ConfigError(`invalid option: ${formatIssues(parsed.error.issues)}`);
  const o = parsed.data;
  const shardText = values.shard ?? env.SHARD;
  const shard = shardText === undefined ? { index: 0, count: 1 } : parseShard(String(shardText));
  const all = parseMarkets(o.markets ?? DEFAULT_MARKETS[o.source]);
  const markets = shardMarkets(all, shard);
  if (markets.size === 0) {
    throw new ConfigError(`--shard ${formatShard(shard)} gets none of the ${[...all.values()].flat().length} markets: use fewer shards or more markets`);
  }
  const agents = values.agents === true || truthy(env.AGENTS);
  if (agents && o.stdio) throw new ConfigError('--agents needs the MCP server on HTTP: leave out --stdio');
  const timeframe = TimeframeSchema.safeParse(values['agents-timeframe'] ?? env.AGENT_TIMEFRAME ?? '1m');
  if (!timeframe.success) throw new ConfigError(`--agents-timeframe must be a ccxt timeframe (1m, 5m, 1h, ...), got '${String(values['agents-timeframe'] ?? env.AGENT_TIMEFRAME)}'`);
  // a backtest reads at most 5000 candles (3.5 days of 1m) after a warm-up: 4 days serve the agents
  const simHistoryHours = o.source === 'sim' ? (o.simHistoryHours ?? (agents ? 4 * 24 : 0)) : 0;
  return {
    ...o,
    simHistoryHours,
    agents,
    agentsEveryMs: parseDuration('--agents-every', String(values['agents-every'] ?? env.AGENTS_EVERY ?? '5m')),
    agentsTimeframe: timeframe.data,
    dataDir: resolve(o.dataDir),
    markets,
    shard,
    toolsets: parseToolsets(values.toolsets === undefined ? env.MCP_TOOLSETS : String(values.toolsets)),
    alertRules: alertRulesOf(values['alert-rules'] === undefined ? env.ALERT_RULES : String(values['alert-rules'])),
    help: values.help === true,
  };
}

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** `30s`, `5m`, `1h`, `500ms`, or a bare number of seconds -> ms; at least 1 s, at most a day. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  const ms = m ? Number(m[1]) * DURATION_UNITS[m[2] ?? 's']! : NaN;
  if (!Number.isFinite(ms) || ms < 1_000 || ms > 86_400_000) {
    throw new ConfigError(`${flag} must be a duration from 1s to 24h such as 30s, 5m or 1h, got '${text}'`);
  }
  return Math.round(ms);
}

/** `--alert-rules`: JSON text, or `@path` of a file holding it; unset or empty: no rules. */
function alertRulesOf(value: string | undefined): AlertRule[] {
  if (value === undefined || value.trim() === '') return [];
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (error) {
      throw new ConfigError(`--alert-rules: cannot read ${value.slice(1)}: ${(error as Error).message}`, { cause: error });
    }
  }
  try {
    return parseAlertRules(text);
  } catch (error) {
    throw new ConfigError(`--alert-rules: ${(error as Error).message}`, { cause: error });
  }
}
