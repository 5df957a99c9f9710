import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { BACKFILL_FLAGS, BACKFILL_USAGE, parseBackfillOptions, parseTime, type BackfillCommand } from '../../local/backfill/cli-options.js';

const base = ['--exchange', 'binance', '--symbol', 'BTC/USDT', '--since', '2024-01-01'];

function options(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Exclude<BackfillCommand, { help: true }> {
  const command = parseBackfillOptions(argv, env);
  if (command.help) throw new Error('unexpected --help');
  return command;
}

describe('npm run backfill options', () => {
  it('documents every flag in --help', () => {
    for (const [flag, spec] of Object.entries(BACKFILL_FLAGS)) {
      expect(BACKFILL_USAGE).toContain(`--${flag}`);
      if ('short' in spec) expect(BACKFILL_USAGE).toContain(`-${spec.short}, --${flag}`);
    }
    // and documents no flag the parser does not take
    const documented = [...BACKFILL_USAGE.matchAll(/^ {2}(?:-\w, )?--([a-z-]+)/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(BACKFILL_FLAGS).sort());
    expect(parseBackfillOptions(['--help'], {})).toEqual({ help: true });
    expect(parseBackfillOptions(['-h', '--exchange', 'nope'], {})).toEqual({ help: true });
  });

  it('defaults: candles 1m until now, embedded database in ./.data, checkpoints beside it, live exchange', () => {
    const o = options(base);
    expect(o).toEqual({
      help: false,
      exchange: 'binance',
      symbols: ['BTC/USDT'],
      since: Date.UTC(2024, 0, 1),
      until: undefined,
      what: 'candles',
      timeframe: '1m',
      databaseUrl: undefined,
      dataDir: resolve('.data'),
      clickhouseUrl: undefined,
      clickhouseDatabase: undefined,
      retention: { ticksDays: 7, candlesDays: 30 },
      source: 'live',
      simSeed: 42,
      stateDir: resolve('.data', 'backfill'),
      maxPages: undefined,
      dryRun: false,
    });
  });

  it('parses every flag', () => {
    const o = options([
      '--exchange', 'okx',
      '--symbol', 'btc/usdt', '--symbol', 'ETH/USDT, SOL/USDT,BTC/USDT',
      '--since', '1704067200000',
      '--until', '2024-01-02T12:30:00+02:00',
      '--what', 'both',
      '--timeframe', '5m',
      '--database-url', 'postgres://u:p@127.0.0.1:5432/db',
      '--data-dir', '/tmp/d',
      '--clickhouse-url', 'http://127.0.0.1:8123',
      '--clickhouse-database', 'history_1',
      '--retention-ticks-days', '3',
      '--retention-candles-days', '90',
      '--source', 'sim',
      '--sim-seed', '7',
      '--state-dir', '/tmp/s',
      '--max-pages', '12',
      '--dry-run',
    ]);
    expect(o).toEqual({
      help: false,
      exchange: 'okx',
      symbols: ['BTC/USDT', 'ETH/USDT', 'SOL/USDT'],
      since: 1704067200000,
      until: Date.UTC(2024, 0, 2, 10, 30),
      what: 'both',
      timeframe: '5m',
      databaseUrl: 'postgres://u:p@127.0.0.1:5432/db',
      dataDir: '/tmp/d',
      clickhouseUrl: 'http://127.0.0.1:8123',
      clickhouseDatabase: 'history_1',
      retention: { ticksDays: 3, candlesDays: 90 },
      source: 'sim',
      simSeed: 7,
      stateDir: '/tmp/s',
      maxPages: 12,
      dryRun: true,
    });
  });

  it('reads connections and retention from the environment, flags winning', () => {
    const env = {
      DATABASE_URL: 'postgres://env/db',
      DATA_DIR: '/tmp/env-data',
      CLICKHOUSE_URL: 'http://env:8123',
      CLICKHOUSE_DATABASE: 'envdb',
      RETENTION_TICKS_DAYS: '2',
      RETENTION_CANDLES_DAYS: '10',
    };
    expect(options(base, env)).toMatchObject({
      databaseUrl: 'postgres://env/db',
      dataDir: '/tmp/env-data',
      stateDir: '/tmp/env-data/backfill',
      clickhouseUrl: 'http://env:8123',
      clickhouseDatabase: 'envdb',
      retention: { ticksDays: 2, candlesDays: 10 },
    });
    expect(options([...base, '--database-url', 'postgres://flag/db', '--retention-ticks-days', '5'], env)).toMatchObject({
      databaseUrl: 'postgres://flag/db',
      retention: { ticksDays: 5, candlesDays: 10 },
    });
  });

  it('names the missing or bad flag', () => {
    const bad: [readonly string[], RegExp][] = [
      [['--symbol', 'BTC/USDT', '--since', '2024-01-01'], /--exchange is required/],
      [['--exchange', 'binance', '--since', '2024-01-01'], /--symbol is required/],
      [['--exchange', 'binance', '--symbol', 'BTC/USDT'], /--since is required/],
      [['--exchange', 'Binance!', '--symbol', 'BTC/USDT', '--since', '2024-01-01'], /--exchange must be a ccxt exchange id/],
      [[...base, '--symbol', 'BTCUSDT'], /--symbol BTCUSDT is not a ccxt unified symbol/],
      [[...base, '--what', 'books'], /--what must be candles, trades or both/],
      [[...base, '--timeframe', '7m'], /--timeframe must be one of 1m, 3m/],
      [[...base, '--until', '2023-12-31'], /--until .* must be after --since/],
      [[...base, '--until', 'tomorrow'], /--until must be an ISO date/],
      [[...base, '--until', '2024-01-02T25:00Z'], /--until is not a valid date/],
      [['--exchange', 'binance', '--symbol', 'BTC/USDT', '--since', '1704067200'], /looks like seconds/],
      [['--exchange', 'binance', '--symbol', 'BTC/USDT', '--since', '2008-12-31'], /--since must be between 2009 and 2100/],
      [['--exchange', 'binance', '--symbol', 'BTC/USDT', '--since', '2024-02-30'], /--since is not a valid date/],
      [[...base, '--database-url', 'mysql://x'], /--database-url must be a postgres:\/\/ URL/],
      [[...base, '--clickhouse-url', 'tcp://x'], /--clickhouse-url must be an http\(s\):\/\/ URL/],
      [[...base, '--clickhouse-database', 'a-b'], /--clickhouse-database must be a ClickHouse database name/],
      [[...base, '--retention-ticks-days', '0'], /--retention-ticks-days must be at least 1/],
      [[...base, '--retention-candles-days', '1.5'], /--retention-candles-days must be a whole number/],
      [[...base, '--source', 'paper'], /--source must be live or sim/],
      [['--exchange', 'kraken', '--symbol', 'BTC/USD', '--since', '2024-01-01', '--source', 'sim'], /--source sim serves binance and okx, not kraken/],
      [[...base, '--sim-seed=-1'], /--sim-seed must be at least 0/],
      [[...base, '--max-pages', '0'], /--max-pages must be at least 1/],
      [[...base, '--symbl', 'ETH/USDT'], /Unknown option '--symbl'/],
      [[...base, 'extra'], /positional/],
      [[...base, '--since'], /argument missing/],
    ];
    for (const [argv, message] of bad) {
      expect(() => parseBackfillOptions(argv, {}), argv.join(' ')).toThrow(ConfigError);
      expect(() => parseBackfillOptions(argv, {}), argv.join(' ')).toThrow(message);
    }
  });

  it('reads times as UTC unless an offset is given', () => {
    expect(parseTime('--since', '2024-01-01')).toBe(Date.UTC(2024, 0, 1));
    expect(parseTime('--since', '2024-01-01T12:00')).toBe(Date.UTC(2024, 0, 1, 12));
    expect(parseTime('--since', '2024-01-01 12:00:30.5')).toBe(Date.UTC(2024, 0, 1, 12, 0, 30, 500));
    expect(parseTime('--since', '2024-01-01T12:00:00Z')).toBe(Date.UTC(2024, 0, 1, 12));
    expect(parseTime('--since', '2024-01-01T12:00:00-0130')).toBe(Date.UTC(2024, 0, 1, 13, 30));
    expect(parseTime('--since', ' 1704067200000 ')).toBe(1704067200000);
  });
});
