/**
 * Standalone simulated exchange:
 *   npx tsx local/sim/main.ts --port 8090 --seed 42 --symbols BTC/USDT,ETH/USDT --tps 5 --exchanges binance,okx
 *   npm run sim -- --history-ms 10000 --scenario breakout:BTC/USDT --scenario stale_feed:ETH/USDT
 * Prints the REST and WebSocket base URLs of each mounted exchange; Ctrl-C stops it.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { checkChaosOptions, type ChaosOptions, type MalformedShape } from './faults.js';
import { checkHistoryOptions } from './history.js';
import { DEFAULT_SYMBOLS, resolveSymbolSpec } from './market.js';
import { armScenarioFeeds, parseScenario, SCENARIO_NAMES, SCENARIO_SCRIPTS, type ScenarioOptions } from './scenarios.js';
import { binanceProtocol } from './protocols/binance.js';
import { okxProtocol } from './protocols/okx.js';
import { startSimulatedExchange, type SimProtocolFactory } from './server.js';

/** Exchange protocols the simulator can mount, by mount id. */
export const SIM_EXCHANGES: Readonly<Record<string, () => SimProtocolFactory>> = {
  binance: () => binanceProtocol(),
  okx: () => okxProtocol(),
};

const CHAOS_NUMBER_KEYS = [
  'seed',
  'dropEveryMs',
  'tradeSkipRate',
  'bookGapRate',
  'duplicateRate',
  'reorderRate',
  'malformedRate',
  'badChecksumRate',
  'stallEveryMs',
  'stallMs',
  'restErrorRate',
  'rest429Rate',
] as const;

export interface SimCliOptions {
  readonly host: string;
  readonly port: number;
  readonly seed: number;
  readonly symbols: readonly string[];
  readonly tradesPerSecond: number;
  readonly warmupMinutes: number;
  /** mount ids in mount order (the first one is the primary endpoint) */
  readonly exchanges: readonly string[];
  /** continuous faults from the start, if given */
  readonly chaos?: ChaosOptions;
  /** synthetic trade history before the start: one trade per symbol every this many ms; 0 = none */
  readonly historyIntervalMs: number;
  /** answer 429 to REST clients over the exchange's rate limits */
  readonly rateLimits: boolean;
  /** scripted scenarios, at most one per symbol */
  readonly scenarios: readonly ScenarioOptions[];
  readonly verbose: boolean;
  readonly help: boolean;
}

export const SIM_USAGE = `Usage: npx tsx local/sim/main.ts [options]

  --port <n>             TCP port, 0 = any free port (default 8090)
  --host <addr>          listen address (default 127.0.0.1)
  --seed <int>           PRNG seed; same seed, same trade sequence (default 42)
  --symbols <list>       comma-separated spot symbols (default ${DEFAULT_SYMBOLS.join(',')})
  --tps <n>              taker orders per second per symbol, each 1+ trades (default 2)
  --warmup-minutes <n>   back-fill this many minutes of trades at start (default 0)
  --exchanges <list>     protocols to mount, comma-separated: binance, okx or both (default binance,okx);
                         each is served under /<id> on the same port
  --chaos <k=v,...>      continuous seeded faults from the start, e.g.
                         tradeSkipRate=0.01,duplicateRate=0.01,reorderRate=0.01,malformedRate=0.005,
                         bookGapRate=0.01,badChecksumRate=0.01,restErrorRate=0.02,rest429Rate=0.02,
                         dropEveryMs=60000,stallEveryMs=45000,stallMs=3000,seed=7,malformedShapes=schema|text
                         (rates are per frame / per request in [0, 1]; periods in ms)
  --history-ms <n>       serve a synthetic trade history before the start (klines, historical and
                         aggregate trades, OKX history endpoints): one trade per symbol every <n> ms,
                         <n> dividing a minute, e.g. 10000; same seed, same history (default 0: none)
  --scenario <name:sym>  script one symbol's market, repeatable (one per symbol), e.g. breakout:BTC/USDT;
${SCENARIO_NAMES.map((n) => `                           ${n.padEnd(13)}${SCENARIO_SCRIPTS[n].description}`).join('\n')}
                         With --history-ms the move is complete at the start (a backfill sees it);
                         without, it plays live from the start
  --rate-limits          answer 429 (in the exchange's format) to REST clients over its rate limits
  --verbose              log every request and connection
  --help                 show this help`;

function integer(flag: string, raw: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(`--${flag} must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min) throw new ConfigError(`--${flag} must be at least ${min}, got ${n}`);
  if (n > max) throw new ConfigError(`--${flag} must be at most ${max}, got ${n}`);
  return n;
}

/** Parses and validates the simulator's CLI flags (throws ConfigError naming the bad flag). */
export function parseSimArgs(argv: readonly string[]): SimCliOptions {
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        seed: { type: 'string' },
        symbols: { type: 'string' },
        tps: { type: 'string' },
        'warmup-minutes': { type: 'string' },
        exchanges: { type: 'string' },
        chaos: { type: 'string' },
        'history-ms': { type: 'string' },
        scenario: { type: 'string', multiple: true },
        'rate-limits': { type: 'boolean' },
        verbose: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (cause) {
    // node's messages name the flag ("Unknown option '--prot'", "Option '--port <value>' argument missing")
    throw new ConfigError(cause instanceof Error ? cause.message : String(cause), { cause });
  }
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const tpsRaw = str('tps') ?? '2';
  const tps = Number(tpsRaw);
  if (!/^\d+(\.\d+)?$/.test(tpsRaw) || !(tps > 0) || tps > 1000) {
    throw new ConfigError(`--tps must be a number in (0, 1000], got "${tpsRaw}"`);
  }
  const symbols = (str('symbols') ?? DEFAULT_SYMBOLS.join(','))
    .split(',')
    .map((s) => s.trim().toUpperCase())
    .filter((s) => s.length > 0);
  if (symbols.length === 0) throw new ConfigError('--symbols needs at least one symbol, e.g. BTC/USDT');
  for (const s of symbols) {
    try {
      resolveSymbolSpec(s);
    } catch (cause) {
      throw new ConfigError(`--symbols: ${(cause as Error).message}`, { cause });
    }
  }
  if (new Set(symbols).size !== symbols.length) throw new ConfigError('--symbols lists a symbol twice');
  const exchanges = (str('exchanges') ?? 'binance,okx')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  if (exchanges.length === 0) throw new ConfigError(`--exchanges needs at least one of ${Object.keys(SIM_EXCHANGES).join(', ')}`);
  for (const e of exchanges) {
    if (!Object.hasOwn(SIM_EXCHANGES, e)) throw new ConfigError(`--exchanges: unknown exchange "${e}", expected ${Object.keys(SIM_EXCHANGES).join(', ')}`);
  }
  if (new Set(exchanges).size !== exchanges.length) throw new ConfigError('--exchanges lists an exchange twice');
  const historyIntervalMs = integer('history-ms', str('history-ms') ?? '0', 0, 60_000);
  if (historyIntervalMs > 0) {
    try {
      checkHistoryOptions({ tradeIntervalMs: historyIntervalMs });
    } catch (cause) {
      throw new ConfigError(`--history-ms: ${(cause as Error).message}`, { cause });
    }
  }
  const scenarioSpecs = values['scenario'];
  const scenarios = (Array.isArray(scenarioSpecs) ? scenarioSpecs : []).map((spec) => {
    let scenario: ScenarioOptions;
    try {
      scenario = parseScenario(String(spec));
    } catch (cause) {
      throw new ConfigError(`--scenario: ${(cause as Error).message}`, { cause });
    }
    if (!symbols.includes(scenario.symbol)) throw new ConfigError(`--scenario ${spec}: ${scenario.symbol} is not in --symbols (${symbols.join(',')})`);
    return scenario;
  });
  if (new Set(scenarios.map((s) => s.symbol)).size !== scenarios.length) throw new ConfigError('--scenario: at most one scenario per symbol');
  const chaosSpec = str('chaos');
  const chaos = chaosSpec === undefined ? undefined : parseChaos(chaosSpec);
  return {
    host: str('host') ?? '127.0.0.1',
    port: integer('port', str('port') ?? '8090', 0, 65535),
    seed: integer('seed', str('seed') ?? '42', -(2 ** 31), 2 ** 32 - 1),
    symbols,
    tradesPerSecond: tps,
    warmupMinutes: integer('warmup-minutes', str('warmup-minutes') ?? '0', 0, 7 * 24 * 60),
    exchanges,
    ...(chaos ? { chaos } : {}),
    historyIntervalMs,
    rateLimits: values['rate-limits'] === true,
    scenarios,
    verbose: values['verbose'] === true,
    help: values['help'] === true,
  };
}

/** Parses and range-checks `--chaos key=value,...` into ChaosOptions. */
export function parseChaos(spec: string): ChaosOptions {
  const out: Record<string, unknown> = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (key === 'malformedShapes') {
      const shapes = value.split('|').map((v) => v.trim());
      if (shapes.some((x) => x !== 'text' && x !== 'schema')) throw new ConfigError(`--chaos malformedShapes must be text, schema or text|schema, got "${value}"`);
      out[key] = shapes as MalformedShape[];
      continue;
    }
    if (!(CHAOS_NUMBER_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(`--chaos: unknown key "${key}", expected ${[...CHAOS_NUMBER_KEYS, 'malformedShapes'].join(', ')}`);
    }
    if (!/^\d+(\.\d+)?$/.test(value)) throw new ConfigError(`--chaos ${key} must be a non-negative number, got "${value}"`);
    out[key] = Number(value);
  }
  if (Object.keys(out).length === 0) throw new ConfigError('--chaos needs at least one key=value, e.g. tradeSkipRate=0.01');
  try {
    checkChaosOptions(out as ChaosOptions);
  } catch (cause) {
    throw new ConfigError(`--chaos: ${(cause as Error).message}`, { cause });
  }
  return out as ChaosOptions;
}

async function main(): Promise<void> {
  let options: SimCliOptions;
  try {
    options = parseSimArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${SIM_USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (options.help) {
    process.stdout.write(`${SIM_USAGE}\n`);
    return;
  }
  const sim = await startSimulatedExchange({
    host: options.host,
    port: options.port,
    seed: options.seed,
    symbols: options.symbols,
    tradesPerSecond: options.tradesPerSecond,
    protocols: options.exchanges.map((e) => SIM_EXCHANGES[e]!()),
    ...(options.historyIntervalMs > 0 ? { history: { tradeIntervalMs: options.historyIntervalMs } } : {}),
    enforceRateLimits: options.rateLimits,
    ...(options.scenarios.length > 0 ? { scenarios: options.scenarios } : {}),
    ...(options.warmupMinutes > 0
      ? { warmup: { orders: Math.ceil(options.warmupMinutes * 60 * options.tradesPerSecond), spanMs: options.warmupMinutes * 60_000 } }
      : {}),
    ...(options.verbose ? { log: (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`) } : {}),
  });
  if (options.chaos) sim.faults.chaos(options.chaos);
  const disarm = armScenarioFeeds(sim);
  const examples: Record<string, string> = { binance: '/api/v3/exchangeInfo', okx: '/api/v5/public/instruments?instType=SPOT' };
  const lines = [`simulated exchange (seed ${options.seed}, ${options.tradesPerSecond} orders/s per symbol): ${options.symbols.join(', ')}`];
  for (const [id, endpoint] of Object.entries(sim.endpoints)) {
    lines.push(
      `  ${id.padEnd(8)} REST  ${endpoint.rest}   (e.g. ${endpoint.rest}${examples[id] ?? ''})`,
      `  ${id.padEnd(8)} WS    ${endpoint.ws}`,
      `  ${id.padEnd(8)} ccxt  await applyEndpointOverride(exchange, { rest: '${endpoint.rest}', ws: '${endpoint.ws}' })`,
    );
  }
  if (options.chaos) lines.push(`  chaos: ${JSON.stringify(options.chaos)}`);
  for (const s of sim.market.placedScenarios()) {
    lines.push(`  scenario ${s.name} on ${s.symbol}: ${s.script.description}, ${new Date(s.startsAt).toISOString()} .. ${new Date(s.endsAt).toISOString()}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    disarm();
    void sim.close().then(() => process.stdout.write('simulated exchange stopped\n'));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}
