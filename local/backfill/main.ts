// `npm run backfill`: history from an exchange into the store that holds each range (see --help).
import { pathToFileURL } from 'node:url';
import type { Exchange } from 'ccxt';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { okxProtocol } from '../sim/protocols/okx.js';
import { binanceProtocol } from '../sim/protocols/binance.js';
import { startSimulatedExchange, type SimulatedExchange } from '../sim/server.js';
import { planBackfill, runBackfill, type BackfillJob } from './backfill.js';
import { CheckpointStore, type BackfillKind } from './checkpoint.js';
import { BACKFILL_USAGE, parseBackfillOptions, type BackfillCliOptions } from './cli-options.js';
import { candleRecipe, connectBackfillExchange, tradeRecipe } from './exchange.js';
import { ProgressDisplay, type ProgressStream } from './progress.js';
import { BackfillStoreRouter, describeRouting } from './store-router.js';
import { openBackfillStores, storeNames } from './stores.js';

export interface BackfillIo {
  readonly stdout: ProgressStream;
  readonly stderr: ProgressStream;
  readonly env?: NodeJS.ProcessEnv;
  /** Ctrl-C: stop after the page in flight is stored */
  readonly signal?: AbortSignal;
}

/** Exit codes: 0 done, 1 failed, 2 bad options, 3 stopped early (resumable). */
export const EXIT = { ok: 0, failed: 1, usage: 2, stopped: 3 } as const;

const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

/** Runs `npm run backfill` with `argv`; returns the exit code. */
export async function backfillMain(argv: readonly string[], io: BackfillIo): Promise<number> {
  const say = (line: string) => io.stderr.write(`${line}\n`);
  let command;
  try {
    command = parseBackfillOptions(argv, io.env ?? process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    say(error.message);
    return EXIT.usage;
  }
  if (command.help) {
    io.stdout.write(BACKFILL_USAGE);
    return EXIT.ok;
  }
  const options: BackfillCliOptions = command;
  const until = options.until ?? Date.now();
  if (until <= options.since) {
    say(`--since ${iso(options.since)} is not before --until (now, ${iso(until)})`);
    return EXIT.usage;
  }

  let sim: SimulatedExchange | undefined;
  let exchange: Exchange | undefined;
  let stores: Awaited<ReturnType<typeof openBackfillStores>> | undefined;
  try {
    if (options.source === 'sim') {
      sim = await startSimulatedExchange({
        seed: options.simSeed,
        symbols: options.symbols,
        protocols: [binanceProtocol(), okxProtocol()],
        history: true,
        enforceRateLimits: true,
        autoRun: false,
      });
      say(`backfill: simulated exchange at ${sim.origin} (seed ${options.simSeed}, synthetic history before ${iso(Date.now())})`);
    }
    exchange = await connectBackfillExchange(options.exchange, options.symbols, sim ? { endpoint: sim.endpoints[options.exchange]! } : {});
    const kinds: readonly BackfillKind[] = options.what === 'both' ? ['candles', 'trades'] : [options.what];
    if (kinds.includes('candles')) candleRecipe(exchange);
    if (kinds.includes('trades')) tradeRecipe(exchange.id);
    const jobs: BackfillJob[] = options.symbols.flatMap((symbol) =>
      kinds.map((kind) => ({
        exchange: options.exchange,
        symbol,
        kind,
        ...(kind === 'candles' ? { timeframe: options.timeframe } : {}),
        since: options.since,
        until,
      })),
    );
    const names = storeNames(options);
    const checkpoints = new CheckpointStore(options.stateDir);
    const routing = describeRouting(options.retention, names.history !== undefined, names);
    if (options.timeframe !== '1m' && kinds.includes('candles')) {
      say(`backfill: note: ${options.timeframe} candles are stored as they are, but the read API serves every timeframe rolled up from 1m`);
    }

    if (options.dryRun) {
      const plans = await planBackfill(jobs, { exchange, checkpoints, target: names.target, clock: systemClock });
      io.stdout.write(`dry run: nothing is fetched or written\nstores: ${routing}\ncheckpoints: ${options.stateDir}\n`);
      for (const p of plans) {
        const from = p.resumeFrom === null ? 'from the start' : `resuming at ${p.key.kind === 'candles' ? iso(p.resumeFrom) : `trade id ${p.resumeFrom}`}`;
        const left = p.upToDate ? 'up to date' : p.pagesLeft === null ? `pages of ${p.pageSize}` : `${p.pagesLeft} pages of ${p.pageSize} left`;
        io.stdout.write(`  ${p.label}: ${iso(p.since)} .. ${iso(p.end)}, ${from}, ${left}\n`);
      }
      return EXIT.ok;
    }

    stores = await openBackfillStores(options);
    say(`backfill: ${jobs.length} job(s) from ${options.exchange}, ${iso(options.since)} .. ${iso(until)}; ${routing}`);
    say(`backfill: checkpoints in ${options.stateDir}`);
    const router = new BackfillStoreRouter(stores.recent, stores.history, options.retention, systemClock);
    const report = await runBackfill(jobs, {
      exchange,
      writer: router,
      checkpoints,
      target: names.target,
      progress: new ProgressDisplay(io.stderr),
      ...(io.signal ? { signal: io.signal } : {}),
      ...(options.maxPages !== undefined ? { maxPages: options.maxPages } : {}),
    });
    const rows = report.jobs.reduce((n, j) => n + j.rows, 0);
    if (report.stopped) {
      say(`backfill: stopped early after ${rows} rows; run the same command again to resume`);
      return EXIT.stopped;
    }
    say(`backfill: done, ${rows} rows this run`);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConfigError) {
      say(`backfill: ${error.message}`);
      return EXIT.usage;
    }
    say(`backfill: failed: ${(error as Error)?.message ?? String(error)}`);
    say('backfill: what was stored is kept; run the same command again to resume');
    return EXIT.failed;
  } finally {
    await exchange?.close().catch(() => undefined);
    await stores?.close();
    await sim?.close();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\nbackfill: stopping after the page in flight is stored (Ctrl-C again to quit at once)\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  backfillMain(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, signal: controller.signal }).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`backfill: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
