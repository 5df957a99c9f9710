import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { formatIssues, TIMEFRAMES, type Timeframe } from '../../layers/shared/src/domain/index.js';
import { UNIFIED_SYMBOL } from '../../layers/shared/src/domain/symbols.js';
import { DEFAULT_RETENTION_DAYS, type RetentionDays } from './store-router.js';

export const BACKFILL_USAGE = `Usage: npm run backfill -- --exchange ID --symbol SYMBOL --since DATE [options]

Fetches history from an exchange (ccxt, REST) and stores it where the platform reads it:
candles (the exchange's OHLCV, stored with source 'exchange') and/or trades (by raw trade id,
the ids the live collector stores, so the two never duplicate). Pages are as large as the
exchange allows, requests stay within its rate limits (ccxt's limiter; on 429 or a network
error the request is retried with backoff, after at least the Retry-After it sent).

Resumable: after each stored page a checkpoint per job (exchange, symbol, kind, timeframe) is
written under --state-dir; run the same command again after an interruption (Ctrl-C, a crash,
--max-pages) and it continues after the last stored page. A range already stored is not fetched
again, and writes are idempotent on the stores' natural keys, so a re-run adds no duplicates.

Where rows go: with --clickhouse-url, rows older than the recent store's retention (trades:
--retention-ticks-days, candles: --retention-candles-days, counted back from now) go to
ClickHouse only; newer rows go to PostgreSQL/TimescaleDB and to ClickHouse (as the live writers
do, so ClickHouse still has them after PostgreSQL's retention drops them). Without ClickHouse,
every row goes to PostgreSQL (--database-url) or to the embedded database in --data-dir.

Options (some also readable from the environment variable in brackets; flags win):
  --exchange ID              ccxt exchange id, e.g. binance, okx (trades: binance and okx only)
  --symbol SYMBOL            ccxt unified symbol, e.g. BTC/USDT; repeat the flag or give a
                             comma-separated list for several
  --since DATE               start, inclusive: ISO date/time (UTC unless it has an offset), e.g.
                             2024-01-01 or 2024-01-01T12:00:00Z, or ms since the epoch
  --until DATE               end, exclusive, same forms (default: now); candles still forming
                             are left for a later run
  --what candles|trades|both what to fetch (default: candles)
  --timeframe TF             candle timeframe (default: 1m), one of
                             ${TIMEFRAMES.join(', ')};
                             the read API serves every timeframe rolled up from 1m
  --database-url URL         PostgreSQL/TimescaleDB, postgres://...           [DATABASE_URL]
  --data-dir DIR             embedded database (PGlite) when no --database-url; the one
                             \`npm start\` uses (stop it first: one process at a time)
                                                                         [DATA_DIR] (./.data)
  --clickhouse-url URL       ClickHouse for history, http(s)://...            [CLICKHOUSE_URL]
  --clickhouse-database DB   ClickHouse database                        [CLICKHOUSE_DATABASE]
  --retention-ticks-days N   days the recent store keeps trades    [RETENTION_TICKS_DAYS] (7)
  --retention-candles-days N days it keeps candles               [RETENTION_CANDLES_DAYS] (30)
  --source live|sim          live: the real exchange; sim: start the simulated exchange in this
                             process (binance or okx, offline, with a synthetic history before
                             its start and the exchange's rate limits) and backfill from it
                                                                                   (live)
  --sim-seed N               simulator seed: the same seed serves the same history    (42)
  --state-dir DIR            checkpoint files                        (<data-dir>/backfill)
  --max-pages N              stop after N pages in all (run again to resume)
  --dry-run                  check the exchange and symbols, show each job's range, resume
                             point and where its rows would go; fetch and write nothing
  -h, --help                 this text

Exit status: 0 done, 1 failed (run again to resume), 2 bad options, 3 stopped early
(Ctrl-C or --max-pages; run again to resume).

Examples:
  npm run backfill -- --exchange binance --symbol BTC/USDT --timeframe 1m --since 2024-01-01
  npm run backfill -- --exchange okx --symbol BTC/USDT,ETH/USDT --what both --since 2024-06-01 \\
    --until 2024-06-02 --database-url postgres://127.0.0.1:5432/qicore --clickhouse-url http://127.0.0.1:8123
  npm run backfill -- --source sim --exchange binance --symbol BTC/USDT --what both --since 2024-01-01
`;

export type BackfillWhat = 'candles' | 'trades' | 'both';

export interface BackfillCliOptions {
  readonly exchange: string;
  readonly symbols: readonly string[];
  readonly since: number;
  /** undefined: now, when the run starts */
  readonly until: number | undefined;
  readonly what: BackfillWhat;
  readonly timeframe: Timeframe;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly clickhouseUrl: string | undefined;
  readonly clickhouseDatabase: string | undefined;
  readonly retention: RetentionDays;
  readonly source: 'live' | 'sim';
  readonly simSeed: number;
  readonly stateDir: string;
  readonly maxPages: number | undefined;
  readonly dryRun: boolean;
}

/** `--help`, or what to run. */
export type BackfillCommand = { readonly help: true } | ({ readonly help: false } & BackfillCliOptions);

/** Flags of `npm run backfill`, in USAGE order (tests check each one is documented). */
export const BACKFILL_FLAGS = {
  exchange: { type: 'string' },
  symbol: { type: 'string', multiple: true },
  since: { type: 'string' },
  until: { type: 'string' },
  what: { type: 'string' },
  timeframe: { type: 'string' },
  'database-url': { type: 'string' },
  'data-dir': { type: 'string' },
  'clickhouse-url': { type: 'string' },
  'clickhouse-database': { type: 'string' },
  'retention-ticks-days': { type: 'string' },
  'retention-candles-days': { type: 'string' },
  source: { type: 'string' },
  'sim-seed': { type: 'string' },
  'state-dir': { type: 'string' },
  'max-pages': { type: 'string' },
  'dry-run': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** ms epochs the platform accepts (events carry 2009..2100). */
const MIN_TS = Date.UTC(2009, 0, 1);
const MAX_TS = Date.UTC(2100, 0, 1);

/**
 * `2024-01-01`, `2024-01-01T12:00`, `2024-01-01T12:00:00.5+02:00` (UTC unless an offset is
 * given) or ms since the epoch, to ms; ConfigError naming the flag otherwise.
 */
export function parseTime(flag: string, raw: string): number {
  const text = raw.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text);
    if (text.length === 10) throw new ConfigError(`${flag} ${text} looks like seconds; give ms since the epoch (${text}000) or an ISO date`);
  } else {
    const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?)(Z|[+-]\d{2}:?\d{2})?)?$/.exec(text);
    if (!m) throw new ConfigError(`${flag} must be an ISO date (2024-01-01, 2024-01-01T12:00:00Z) or ms since the epoch, got "${raw}"`);
    const [y, mo, d] = m[1]!.split('-').map(Number) as [number, number, number];
    const day = new Date(Date.UTC(y, mo - 1, d));
    ms = Date.parse(`${m[1]}T${m[2] ?? '00:00'}${m[3] ?? 'Z'}`);
    // Date.parse rolls 2024-02-30 over to March: the calendar date is checked on its own
    if (Number.isNaN(ms) || day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) {
      throw new ConfigError(`${flag} is not a valid date: "${raw}"`);
    }
  }
  if (ms < MIN_TS || ms >= MAX_TS) throw new ConfigError(`${flag} must be between 2009 and 2100, got ${new Date(ms).toISOString()}`);
  return ms;
}

const int = (name: string, min: number, max: number) =>
  z.coerce
    .number({ error: `${name} must be a number` })
    .int(`${name} must be a whole number`)
    .min(min, `${name} must be at least ${min}`)
    .max(max, `${name} must be at most ${max}`);

const OptionsSchema = z.object({
  exchange: z
    .string({ error: '--exchange is required, e.g. --exchange binance' })
    .regex(/^[a-z][a-z0-9]*$/, '--exchange must be a ccxt exchange id such as binance'),
  what: z.enum(['candles', 'trades', 'both'], { error: '--what must be candles, trades or both' }),
  timeframe: z.enum(TIMEFRAMES as [Timeframe, ...Timeframe[]], { error: `--timeframe must be one of ${TIMEFRAMES.join(', ')}` }),
  databaseUrl: z.string().regex(/^postgres(ql)?:\/\//, '--database-url must be a postgres:// URL').optional(),
  dataDir: z.string().min(1),
  clickhouseUrl: z.string().regex(/^https?:\/\//, '--clickhouse-url must be an http(s):// URL').optional(),
  clickhouseDatabase: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, '--clickhouse-database must be a ClickHouse database name').optional(),
  ticksDays: int('--retention-ticks-days', 1, 36_500),
  candlesDays: int('--retention-candles-days', 1, 36_500),
  source: z.enum(['live', 'sim'], { error: '--source must be live or sim' }),
  simSeed: int('--sim-seed', 0, 2 ** 31 - 1),
  maxPages: int('--max-pages', 1, Number.MAX_SAFE_INTEGER).optional(),
});

/** Parses `npm run backfill` flags (and the environment for connections); throws ConfigError naming the bad one. */
export function parseBackfillOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BackfillCommand {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: BACKFILL_FLAGS }));
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${BACKFILL_USAGE}`, { cause: error });
  }
  if (values.help === true) return { help: true };
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const parsed = OptionsSchema.safeParse({
    exchange: str('exchange'),
    what: str('what') ?? 'candles',
    timeframe: str('timeframe') ?? '1m',
    databaseUrl: str('database-url') ?? (env.DATABASE_URL || undefined),
    dataDir: str('data-dir') ?? (env.DATA_DIR || '.data'),
    clickhouseUrl: str('clickhouse-url') ?? (env.CLICKHOUSE_URL || undefined),
    clickhouseDatabase: str('clickhouse-database') ?? (env.CLICKHOUSE_DATABASE || undefined),
    ticksDays: str('retention-ticks-days') ?? env.RETENTION_TICKS_DAYS ?? DEFAULT_RETENTION_DAYS.ticksDays,
    candlesDays: str('retention-candles-days') ?? env.RETENTION_CANDLES_DAYS ?? DEFAULT_RETENTION_DAYS.candlesDays,
    source: str('source') ?? 'live',
    simSeed: str('sim-seed') ?? 42,
    maxPages: str('max-pages'),
  });
  if (!parsed.success) throw new ConfigError(`invalid option: ${formatIssues(parsed.error.issues)}`);
  const o = parsed.data;

  const symbols = [...new Set(((values.symbol as string[] | undefined) ?? []).flatMap((v) => v.split(',')).map((s) => s.trim().toUpperCase()).filter(Boolean))];
  if (symbols.length === 0) throw new ConfigError('--symbol is required, e.g. --symbol BTC/USDT');
  for (const s of symbols) {
    if (!UNIFIED_SYMBOL.test(s)) throw new ConfigError(`--symbol ${s} is not a ccxt unified symbol such as BTC/USDT`);
  }
  const sinceRaw = str('since');
  if (sinceRaw === undefined) throw new ConfigError('--since is required, e.g. --since 2024-01-01');
  const since = parseTime('--since', sinceRaw);
  const untilRaw = str('until');
  const until = untilRaw === undefined ? undefined : parseTime('--until', untilRaw);
  if (until !== undefined && until <= since) throw new ConfigError(`--until (${untilRaw}) must be after --since (${sinceRaw})`);
  if (o.source === 'sim' && o.exchange !== 'binance' && o.exchange !== 'okx') {
    throw new ConfigError(`--source sim serves binance and okx, not ${o.exchange}`);
  }
  const dataDir = resolve(o.dataDir);
  return {
    help: false,
    exchange: o.exchange,
    symbols,
    since,
    until,
    what: o.what,
    timeframe: o.timeframe,
    databaseUrl: o.databaseUrl,
    dataDir,
    clickhouseUrl: o.clickhouseUrl,
    clickhouseDatabase: o.clickhouseDatabase,
    retention: { ticksDays: o.ticksDays, candlesDays: o.candlesDays },
    source: o.source,
    simSeed: o.simSeed,
    stateDir: resolve(str('state-dir') ?? join(dataDir, 'backfill')),
    maxPages: o.maxPages,
    dryRun: values['dry-run'] === true,
  };
}
