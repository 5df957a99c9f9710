/**
 * MCP tool calls over Streamable HTTP with JWT, at 1 and 20 concurrent clients: p50/p99 latency and
 * calls/s of get_candles and compute_indicators (goal: p99 < 50 ms at 20 clients), with MCP `ping`
 * through the same stack (HTTP, JWT check, session, SDK) as the reference floor.
 *
 * The server runs in a child process (bench/support/mcp-server-child.ts) on PostgreSQL
 * (DATABASE_URL; skipped when unset) holding 30 days of 1m candles for one symbol plus hourly and
 * daily rollups; each client has its own token principal and session. Two load generators, one
 * table each: a raw JSON-RPC client on a keep-alive connection (the goal's figures: it measures the
 * server, not a client sharing its 2 cores), and the MCP SDK's Client (what an agent runs; it
 * validates every answer against the tool's output schema, about a core's worth of CPU here; with the
 * agents' fetch, agentFetch). Calls:
 * - get_candles: BTC/USDT 1h, the newest 200 candles;
 * - compute_indicators: BTC/USDT 1h, RSI(14) + MACD(12,26,9) + Bollinger(20,2), the last 50 values
 *   (it reads ~250 candles of warm-up for the recursive ones).
 * Each case runs MCP_BENCH_SECONDS (default 5) per concurrency level after a 1 s warm-up.
 * MCP_BENCH_ONLY=name runs only the cases whose name starts with it (and ping).
 * MCP_BENCH_PROFILE=dir writes a V8 CPU profile of the server process there (where its time goes).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { PostgresMarketStore } from '../layers/shared/src/adapters/stores/postgres-market-store.js';
import { agentFetch, fixedToken } from '../layers/shared/src/agents/mcp-agent-tools.js';
import { issueDevToken } from '../layers/shared/src/mcp/auth.js';
import { createTestDatabase } from '../tests/support/databases.js';
import { loadCandleHistory } from './support/candle-history.js';
import { RawMcpClient } from './support/raw-mcp-client.js';
import { figuresOnly, formatMs, latencySummary, printTable } from './lib/latency.js';

const EXCHANGE = 'binance';
const SYMBOL = 'BTC/USDT';
const DAYS = 30;
const SECONDS = Number(process.env.MCP_BENCH_SECONDS ?? 5);
const LEVELS = [1, 20];
const GOAL_P99_MS = 50;

/** What a case needs of a client: the SDK's Client and the raw load generator both have it. */
interface McpCaller {
  ping(): Promise<unknown>;
  callTool(params: { name: string; arguments: Record<string, unknown> }): Promise<unknown>;
}

interface Case {
  readonly name: string;
  readonly reference?: boolean;
  call(client: McpCaller): Promise<unknown>;
}

const ALL_CASES: readonly Case[] = [
  { name: 'ping', reference: true, call: (c) => c.ping() },
  {
    name: 'get_candles 1h x200',
    call: (c) => c.callTool({ name: 'get_candles', arguments: { exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1h', limit: 200 } }),
  },
  {
    name: 'compute_indicators 1h rsi+macd+bbands x50',
    call: (c) =>
      c.callTool({
        name: 'compute_indicators',
        arguments: { exchange: EXCHANGE, symbol: SYMBOL, timeframe: '1h', limit: 50, indicators: [{ name: 'rsi' }, { name: 'macd' }, { name: 'bbands' }] },
      }),
  },
];

/** CPU time (user + system) the server process has used so far, ms; from /proc, so load elsewhere barely moves it. */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5); after the command name they are at 11 and 12
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100;

// MCP_BENCH_ONLY=get_candles: the reference and the cases whose name starts with it (profiling one tool)
const only = process.env.MCP_BENCH_ONLY?.trim();
const CASES = only ? ALL_CASES.filter((c) => c.reference || c.name.startsWith(only)) : ALL_CASES;

type ClientKind = 'raw' | 'sdk';

async function connectClients(kind: ClientKind, url: string, secret: Uint8Array, count: number): Promise<{ clients: McpCaller[]; close(): Promise<void> }> {
  const clients: McpCaller[] = [];
  const closers: (() => Promise<void> | void)[] = [];
  for (let i = 0; i < count; i++) {
    const token = await issueDevToken(secret, { subject: `bench-${kind}-${i}`, scopes: ['market:read'], issuer: 'bench', audience: 'mcp' });
    if (kind === 'raw') {
      const client = await RawMcpClient.connect(url, token);
      clients.push(client);
      closers.push(() => client.close());
    } else {
      const client = new Client({ name: `bench-${i}`, version: '0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: agentFetch(fixedToken(token)) }));
      clients.push(client);
      closers.push(() => client.close());
    }
  }
  return { clients, close: async () => void (await Promise.all(closers.map((c) => c()))) };
}

async function run(kind: ClientKind, url: string, secret: Uint8Array, serverPid: number): Promise<void> {
  const { clients, close } = await connectClients(kind, url, secret, Math.max(...LEVELS));
  // correctness: the tools answer without error
  for (const c of CASES) {
    const r = (await c.call(clients[0]!)) as { isError?: boolean; content?: unknown };
    if (r && r.isError) throw new Error(`${c.name} failed: ${JSON.stringify(r.content)}`);
  }
  const rows: string[][] = [];
  for (const level of LEVELS) {
    const refP99: number[] = [];
    for (const c of CASES) {
      const samples: number[] = [];
      const loop = async (client: McpCaller, until: number, keep: boolean) => {
        while (performance.now() < until) {
          const t0 = performance.now();
          const r = (await c.call(client)) as { isError?: boolean };
          if (r?.isError) throw new Error(`${c.name} answered isError under load`);
          if (keep) samples.push(performance.now() - t0);
        }
      };
      await Promise.all(clients.slice(0, level).map((cl) => loop(cl, performance.now() + 1_000, false)));
      const started = performance.now();
      const cpuBefore = cpuMsOf(serverPid);
      const clientBefore = process.cpuUsage();
      await Promise.all(clients.slice(0, level).map((cl) => loop(cl, started + SECONDS * 1_000, true)));
      const elapsed = (performance.now() - started) / 1000;
      const serverCpuMs = (cpuMsOf(serverPid) - cpuBefore) / samples.length;
      const clientUsage = process.cpuUsage(clientBefore);
      const clientCpuMs = (clientUsage.user + clientUsage.system) / 1000 / samples.length;
      const s = latencySummary(samples);
      if (c.reference) refP99.push(s.p99);
      rows.push([
        c.reference ? `${c.name} [reference]` : c.name,
        String(level),
        String(s.count),
        (s.count / elapsed).toFixed(0),
        formatMs(s.p50),
        formatMs(s.p99),
        formatMs(s.max),
        serverCpuMs.toFixed(2),
        clientCpuMs.toFixed(2),
        c.reference ? '' : `${(s.p99 / refP99[0]!).toFixed(1)}x`,
        c.reference || level !== 20 ? '' : s.p99 < GOAL_P99_MS ? 'met' : 'NOT met',
      ]);
    }
  }
  const how =
    kind === 'raw'
      ? 'load generator: JSON-RPC over keep-alive HTTP (bench/support/raw-mcp-client.ts), the figures for the goal'
      : "load generator: the MCP SDK's Client (output schema validation, SSE over web streams), sharing the 2 cores with the server";
  printTable(
    `mcp-tools - PostgreSQL, server in its own process, ${kind === 'raw' ? 'raw' : 'SDK'} clients over HTTP with JWT, ${SECONDS} s per case and level`,
    ['case', 'clients', 'calls', 'calls/s', 'p50 ms', 'p99 ms', 'max ms', 'server CPU ms/call', 'clients CPU ms/call', 'p99 / ping p99', `p99 < ${GOAL_P99_MS} ms @20`],
    rows,
    [
      how,
      `store: ${DAYS} days of 1m candles of ${SYMBOL} with hourly/daily rollups; each client has its own token principal and session`,
      'ping goes through the same HTTP, JWT, session and SDK path: the floor for any tool call',
      "server CPU ms/call: the server process's user+system CPU time over the case / calls (from /proc; load elsewhere barely moves it)",
      'clients CPU ms/call: the same for this process, which runs every client',
    ],
  );
  await close();
}

const dbUrl = process.env.DATABASE_URL?.trim();
if (!dbUrl) {
  process.stderr.write('mcp-tools: skipped: DATABASE_URL not set (bash local/services/services.sh start postgres && . /tmp/qicore-services/env)\n');
} else {
  const database = await createTestDatabase('postgres', dbUrl);
  const secret = randomBytes(32).toString('hex');
  const profile = process.env.MCP_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.MCP_BENCH_PROFILE}`] : [];
  // MCP_BENCH_NODE_FLAGS: extra V8/Node flags for the server (e.g. --max-semi-space-size=32)
  const flags = (process.env.MCP_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, ...profile, '--import', 'tsx', 'bench/support/mcp-server-child.ts'], {
    env: { PATH: process.env.PATH, DATABASE_URL: database.url!, BENCH_JWT_SECRET: secret },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const end = Date.UTC(2026, 0, 1);
    await loadCandleHistory(database.db, { exchange: EXCHANGE, symbol: SYMBOL, end, minutes: DAYS * 1440 });
    // one trade so the feeds table knows the market for the trades channel too
    await new PostgresMarketStore(database.db).writeEvents([
      { type: 'trade', exchange: EXCHANGE, symbol: SYMBOL, id: '1', ts: end - 1_000, localTs: end - 900, price: 30000, amount: 1, side: 'buy' },
    ]);
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /listening (\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`mcp server exited with ${code}`)));
    });
    // MCP_BENCH_CLIENTS=raw,sdk (default both): which load generators to run
    const kinds = (process.env.MCP_BENCH_CLIENTS ?? 'raw,sdk').split(',').map((k) => k.trim()) as ClientKind[];
    for (const kind of kinds) await run(kind, url, new TextEncoder().encode(secret), child.pid!);
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    await database.dispose();
  }
}

export default figuresOnly('mcp-tools', 'get_candles and compute_indicators over HTTP+JWT at 1 and 20 clients: figures on stderr above');
