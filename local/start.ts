// `npm start`: the whole platform on one laptop, embedded, no cloud and no Docker.
import { ConfigError } from '../layers/shared/src/domain/errors.js';
import { ExchangesUnreachableError } from '../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { createLogger } from '../layers/shared/src/observability/logger.js';
import { USAGE, parseLocalOptions } from './cli-options.js';
import { startLocalPlatform, type StatusFigures } from './platform.js';

async function main(): Promise<number> {
  let options;
  try {
    options = parseLocalOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  // In stdio mode stdout carries MCP frames: everything for people goes to stderr.
  const say = (line: string) => (options.stdio ? process.stderr : process.stdout).write(`${line}\n`);
  const logger = createLogger({ level: options.logLevel });
  const markets = [...options.markets].map(([ex, syms]) => `${ex}: ${syms.join(', ')}`).join('; ');
  say(`qicore: starting (${options.source === 'sim' ? 'simulated exchange, offline' : 'live exchanges'}) - ${markets}`);

  let platform;
  try {
    platform = await startLocalPlatform({ ...options, logger });
  } catch (error) {
    if (error instanceof ExchangesUnreachableError || error instanceof ConfigError) {
      process.stderr.write(`qicore: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  const where = options.databaseUrl ? `PostgreSQL at ${redactUrl(options.databaseUrl)}` : `PGlite in ${options.dataDir}`;
  say(`qicore: store: ${where} (${platform.migrations.path} schema)`);
  if (platform.sim) say(`qicore: simulated exchange at ${platform.sim.httpUrl} (seed ${options.simSeed})`);
  if (platform.mcpUrl) {
    say(`\nMCP endpoint:  ${platform.mcpUrl}`);
    say(`Bearer token:  ${platform.devToken}`);
    say('(development token, valid 7 days, signed with the secret in the data folder; shown here only)\n');
  } else {
    say('qicore: MCP on stdio');
  }

  let last = { at: Date.now(), messages: 0 };
  const timer =
    options.statusInterval > 0
      ? setInterval(() => {
          const s = platform.status();
          const now = Date.now();
          const rate = ((s.messages - last.messages) * 1000) / Math.max(1, now - last.at);
          last = { at: now, messages: s.messages };
          say(statusLine(s, rate));
        }, options.statusInterval * 1000)
      : null;

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
    if (options.stdio) process.stdin.once('close', resolve);
  });
  if (timer) clearInterval(timer);
  say('qicore: stopping (flushing the stream to the store)...');
  await platform.stop();
  say('qicore: stopped');
  return 0;
}

/** The URL without its password, for the console. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

function statusLine(s: StatusFigures, rate: number): string {
  const lag = s.lagMs === null ? '-' : `${s.lagMs}ms`;
  const problems = [s.deadLettered && `${s.deadLettered} dead-lettered`, s.rejected && `${s.rejected} rejected`]
    .filter(Boolean)
    .join(', ');
  return (
    `[${new Date().toISOString().slice(11, 19)}] feeds ${s.feedsLive}/${s.feedsTotal} live | ` +
    `${rate.toFixed(1)} msg/s | ${s.rowsStored} rows stored | lag ${lag} | ` +
    `stream backlog ${s.backlog + s.pendingPublish}${problems ? ` | ${problems}` : ''}`
  );
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`qicore: failed to start: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
