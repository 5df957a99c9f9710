/**
 * Standalone simulated exchange:
 *   npx tsx local/sim/main.ts --port 8090 --seed 42 --symbols BTC/USDT,ETH/USDT --tps 5
 * Prints the REST and WebSocket base URLs; Ctrl-C stops it.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { DEFAULT_SYMBOLS, resolveSymbolSpec } from './market.js';
import { startSimulatedExchange } from './server.js';

export interface SimCliOptions {
  readonly host: string;
  readonly port: number;
  readonly seed: number;
  readonly symbols: readonly string[];
  readonly tradesPerSecond: number;
  readonly warmupMinutes: number;
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
  let values: Record<string, string | boolean | undefined>;
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
  return {
    host: str('host') ?? '127.0.0.1',
    port: integer('port', str('port') ?? '8090', 0, 65535),
    seed: integer('seed', str('seed') ?? '42', -(2 ** 31), 2 ** 32 - 1),
    symbols,
    tradesPerSecond: tps,
    warmupMinutes: integer('warmup-minutes', str('warmup-minutes') ?? '0', 0, 7 * 24 * 60),
    verbose: values['verbose'] === true,
    help: values['help'] === true,
  };
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
    ...(options.warmupMinutes > 0
      ? { warmup: { orders: Math.ceil(options.warmupMinutes * 60 * options.tradesPerSecond), spanMs: options.warmupMinutes * 60_000 } }
      : {}),
    ...(options.verbose ? { log: (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`) } : {}),
  });
  process.stdout.write(
    [
      `simulated exchange (seed ${options.seed}, ${options.tradesPerSecond} orders/s per symbol): ${options.symbols.join(', ')}`,
      `  binance REST  ${sim.httpUrl}   (e.g. ${sim.httpUrl}/api/v3/exchangeInfo)`,
      `  binance WS    ${sim.wsUrl}`,
      `  ccxt:         await applyEndpointOverride(exchange, { rest: '${sim.httpUrl}', ws: '${sim.wsUrl}' })`,
      '',
    ].join('\n'),
  );
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
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
