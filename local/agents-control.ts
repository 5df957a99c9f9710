// `npm run agents:kill -- --reason "..."` / `npm run agents:resume` / `npm run agents:status`: the
// operator's kill switch of the agents, straight on the database, for when MCP is not at hand.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { openPglite } from '../layers/shared/src/adapters/stores/pglite-client.js';
import { openPostgres } from '../layers/shared/src/adapters/stores/pg-client.js';
import { PostgresAgentStore } from '../layers/shared/src/adapters/stores/postgres-agent-store.js';
import type { SqlClient } from '../layers/shared/src/adapters/stores/sql-client.js';
import { ConfigError } from '../layers/shared/src/domain/errors.js';
import type { KillSwitchState } from '../layers/shared/src/ports/agent-store.js';

export const AGENTS_CONTROL_USAGE = `Usage: tsx local/agents-control.ts <command> [options]

Commands:
  kill --reason TEXT     engage the agents' kill switch: runs stop, paper orders are refused
  resume [--reason TEXT] release it
  status                 show it

Options:
  --database-url URL     PostgreSQL/TimescaleDB of the platform          [DATABASE_URL]
  --data-dir DIR         the embedded database's directory, without URL  [DATA_DIR] (./.data)
  --by NAME              who is recorded as changing it (default operator:<login>)
  --force                open the embedded database although its pid file is there
                         (only after a crash: it is there while a platform runs)
  -h, --help             this text

With the embedded database (PGlite) the platform must be stopped first: one process opens it at a
time. While it runs, use the set_kill_switch MCP tool with the dev token instead.
`;

/** Exit codes: 0 done, 1 failed, 2 bad options. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface AgentsControlIo {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  readonly env?: NodeJS.ProcessEnv;
}

type Command = { readonly help: true } | {
  readonly help: false;
  readonly action: 'kill' | 'resume' | 'status';
  readonly reason: string | undefined;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly by: string;
  readonly force: boolean;
};

/** argv (without node and script) -> what to do; ConfigError names a bad option. */
export function parseAgentsControlOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: {
        reason: { type: 'string' },
        'database-url': { type: 'string' },
        'data-dir': { type: 'string' },
        by: { type: 'string' },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n\n${AGENTS_CONTROL_USAGE}`, { cause: error });
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  const [action, ...extra] = positionals;
  if (action !== 'kill' && action !== 'resume' && action !== 'status') {
    throw new ConfigError(`expected one command, kill, resume or status${action ? `, not '${action}'` : ''}\n\n${AGENTS_CONTROL_USAGE}`);
  }
  if (extra.length > 0) throw new ConfigError(`unexpected argument '${extra[0]}'; quote a reason with spaces: --reason "why"`);
  const reason = values.reason?.trim();
  if (action === 'kill' && !reason) throw new ConfigError('kill needs --reason "why": agents and operators see it with the switch');
  if (reason !== undefined && (reason.length === 0 || reason.length > 500)) throw new ConfigError('--reason must be 1 to 500 characters');
  return {
    help: false,
    action,
    reason,
    databaseUrl: values['database-url'] ?? (env['DATABASE_URL'] || undefined),
    dataDir: resolve(values['data-dir'] ?? env['DATA_DIR'] ?? '.data'),
    by: values.by ?? `operator:${safeLogin()}`,
    force: values.force ?? false,
  };
}

function safeLogin(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

const iso = (ms: number | null) => (ms === null ? 'never' : new Date(ms).toISOString());

function describe(state: KillSwitchState): string {
  const head = state.engaged ? 'kill switch ENGAGED: agents do not act' : 'kill switch released: agents may run';
  return state.since === null ? `${head}\n` : `${head}\n  reason: ${state.reason ?? ''}\n  since:  ${iso(state.since)}\n  by:     ${state.by ?? ''}\n`;
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function agentsControlMain(argv: readonly string[], io: AgentsControlIo): Promise<number> {
  let command: Command;
  try {
    command = parseAgentsControlOptions(argv, io.env ?? process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr.write(`${error.message}\n`);
    return EXIT.usage;
  }
  if (command.help) {
    io.stdout.write(AGENTS_CONTROL_USAGE);
    return EXIT.ok;
  }
  let db: SqlClient | undefined;
  try {
    if (command.databaseUrl) {
      db = openPostgres(command.databaseUrl, { max: 1 });
    } else {
      const pgdata = join(command.dataDir, 'pgdata');
      if (!existsSync(pgdata)) {
        io.stderr.write(`no embedded database in ${command.dataDir}: start the platform once (npm start), or give --database-url\n`);
        return EXIT.failed;
      }
      if (existsSync(join(pgdata, 'postmaster.pid')) && !command.force) {
        io.stderr.write(
          `the embedded database in ${command.dataDir} is open (pgdata/postmaster.pid): a platform is running. Stop it first, or engage the ` +
            'switch through MCP (set_kill_switch with the dev token). After a crash, --force opens it anyway.\n',
        );
        return EXIT.failed;
      }
      db = await openPglite(pgdata);
    }
    const table = await db.query<{ t: string | null }>(`SELECT to_regclass('agent_controls')::text AS t`);
    if (!table.rows[0]?.t) {
      io.stderr.write('this database has no agent tables yet: start the platform (it applies the migrations) and retry\n');
      return EXIT.failed;
    }
    const store = new PostgresAgentStore(db);
    const state =
      command.action === 'status'
        ? await store.killSwitch()
        : await store.setKillSwitch({
            engaged: command.action === 'kill',
            reason: command.reason ?? 'resumed by the operator',
            by: command.by,
            ts: Date.now(),
          });
    io.stdout.write(describe(state));
    return EXIT.ok;
  } catch (error) {
    // the message only: a driver error may carry the connection string in other fields
    io.stderr.write(`agents-control failed: ${(error as Error).message}\n`);
    return EXIT.failed;
  } finally {
    await db?.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await agentsControlMain(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
}
