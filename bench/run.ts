/**
 * Runs every bench/*.bench.ts, each in its own child process (a fresh JIT and heap per file), and
 * prints one table per benchmark. Exit code 0 whatever the goals say; 1 only when a benchmark
 * could not run (it threw, or its correctness check failed).
 *
 *   npm run bench                          # table on stdout, progress on stderr
 *   npm run bench -- --json                # the JSON document on stdout instead of the table
 *   npm run bench -- --out=bench.json      # table on stdout, JSON written to the file
 *   npm run bench -- --filter=path --rounds=15 --round-ms=60 --warmup-ms=500 --quick --in-process
 *   npm run bench -- collector-memory      # by name; the only way to run an opt-in bench (OPT_IN_BENCHES)
 *
 * Run it with `node --expose-gc --import tsx` (the npm script does) so GC can be forced between runs.
 */
import { fork } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { consumedChecksum, measureBench, nodeHooks, type BenchDefinition, type MeasureOptions } from './lib/measure.js';
import { formatReport, jsonReport, summarize, type BenchFailure, type BenchSummary, type RunEnvironment } from './lib/report.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** Benches that run only when named (`npm run bench -- collector-memory`): they take minutes. */
export const OPT_IN_BENCHES: readonly string[] = ['collector-memory'];

export interface CliOptions {
  /** bench names given as arguments (file names without `.bench.ts`); undefined when none */
  readonly names?: readonly string[];
  readonly json: boolean;
  readonly out: string | undefined;
  readonly filter: string | undefined;
  readonly inProcess: boolean;
  readonly child: string | undefined;
  readonly measure: Partial<MeasureOptions>;
}

export function parseCli(argv: readonly string[]): CliOptions {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      filter: { type: 'string' },
      rounds: { type: 'string' },
      'round-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      quick: { type: 'boolean', default: false },
      'in-process': { type: 'boolean', default: false },
      child: { type: 'string' },
    },
    strict: true,
  });
  const num = (name: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!(Number.isFinite(n) && n > 0)) throw new RangeError(`--${name} must be a positive number, got '${raw}'`);
    return n;
  };
  const quick: Partial<MeasureOptions> = values.quick ? { rounds: 5, roundMs: 20, warmupMs: 100 } : {};
  const rounds = num('rounds', values.rounds);
  const roundMs = num('round-ms', values['round-ms']);
  const warmupMs = num('warmup-ms', values['warmup-ms']);
  return {
    ...(positionals.length > 0 && { names: positionals }),
    json: values.json === true,
    out: values.out,
    filter: values.filter,
    inProcess: values['in-process'] === true,
    child: values.child,
    measure: {
      ...quick,
      ...(rounds !== undefined ? { rounds: Math.round(rounds) } : {}),
      ...(roundMs !== undefined ? { roundMs } : {}),
      ...(warmupMs !== undefined ? { warmupMs } : {}),
    },
  };
}

/**
 * `*.bench.ts` files of the bench folder, sorted: those named (exactly, without `.bench.ts`) when `named`
 * is given, else all but the opt-in ones; then those whose name contains `filter`. A name that matches
 * no file throws, listing the names there are.
 */
export function benchFiles(names: readonly string[], filter?: string, named?: readonly string[]): string[] {
  const benches = names.filter((n) => n.endsWith('.bench.ts'));
  const stem = (n: string) => n.slice(0, -'.bench.ts'.length);
  if (named !== undefined) {
    const unknown = named.filter((x) => !benches.some((n) => stem(n) === x));
    if (unknown.length > 0) {
      throw new RangeError(`no bench named ${unknown.join(', ')}; there are: ${benches.map(stem).sort().join(', ')}`);
    }
  }
  return benches
    .filter((n) => (named !== undefined ? named.includes(stem(n)) : !OPT_IN_BENCHES.includes(stem(n))))
    .filter((n) => filter === undefined || n.includes(filter))
    .sort();
}

type ChildMessage = { ok: true; summary: BenchSummary; checksum: number } | { ok: false; error: string };

async function measureFile(file: string, measure: Partial<MeasureOptions>): Promise<ChildMessage> {
  try {
    const mod = (await import(pathToFileURL(resolve(BENCH_DIR, file)).href)) as { default?: BenchDefinition };
    if (!mod.default) throw new Error('the file has no default export (a defineBench(...) result)');
    const summary = summarize(measureBench(mod.default, measure, nodeHooks()));
    return { ok: true, summary, checksum: consumedChecksum() };
  } catch (error) {
    return { ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
}

function measureInChild(file: string, argv: readonly string[]): Promise<ChildMessage> {
  return new Promise((done) => {
    const child = fork(fileURLToPath(import.meta.url), [...argv, `--child=${file}`], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    let message: ChildMessage | undefined;
    child.on('message', (m) => (message = m as ChildMessage));
    child.on('error', (error) => done({ ok: false, error: error.message }));
    child.on('exit', (code, signal) => done(message ?? { ok: false, error: `child exited (${signal ?? code}) without a result` }));
  });
}

function environment(): RunEnvironment {
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu: cpus()[0]?.model.trim() ?? 'unknown cpu',
    cores: availableParallelism(),
    gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function',
    date: new Date().toISOString(),
  };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const cli = parseCli(argv);
  if (cli.child !== undefined) {
    const message = await measureFile(cli.child, cli.measure);
    // exit once the parent has the result: a library may leave a timer or handle open
    process.send?.(message, () => process.exit(0));
    return 0;
  }
  const files = benchFiles(readdirSync(BENCH_DIR), cli.filter, cli.names);
  const skipped = cli.names === undefined ? OPT_IN_BENCHES.filter((b) => cli.filter === undefined || `${b}.bench.ts`.includes(cli.filter)) : [];
  if (skipped.length > 0) process.stderr.write(`opt-in, not run unless named: ${skipped.join(', ')} (npm run bench -- ${skipped[0]})\n`);
  const passOn = argv.filter((a) => !a.startsWith('--json') && !a.startsWith('--out') && a !== '--in-process');
  const benches: BenchSummary[] = [];
  const failures: BenchFailure[] = [];
  let checksum = 0;
  for (const file of files) {
    const result = cli.inProcess ? await measureFile(file, cli.measure) : await measureInChild(file, passOn);
    if (result.ok) {
      benches.push(result.summary);
      checksum = (checksum + result.checksum) | 0;
    } else {
      failures.push({ file, error: result.error });
      process.stderr.write(`FAILED ${file}:\n${result.error}\n`);
    }
  }
  const env = environment();
  const doc = jsonReport(env, benches, failures, checksum);
  if (cli.out !== undefined) writeFileSync(cli.out, `${JSON.stringify(doc, null, 2)}\n`);
  process.stdout.write(cli.json ? `${JSON.stringify(doc, null, 2)}\n` : formatReport(env, benches, failures));
  return failures.length > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
