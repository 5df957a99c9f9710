// Fargate entry of the MCP server in service mode: configuration from the environment, the
// store on PostgreSQL/TimescaleDB, JWTs from the configured issuer.
import { createServer } from 'node:http';
import { openClickHouse } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { ClickHouseMarketStore } from '../../layers/shared/src/adapters/stores/clickhouse-market-store.js';
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
import { PostgresAgentStore } from '../../layers/shared/src/adapters/stores/postgres-agent-store.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { PostgresSignalReader } from '../../layers/shared/src/adapters/stores/postgres-signal-reader.js';
import { RedisMemory } from '../../layers/shared/src/adapters/memory/redis-memory.js';
import { RedisUpdates } from '../../layers/shared/src/adapters/updates/redis-updates.js';
import { streamBusFromEnv } from '../../layers/shared/src/adapters/stream/stream-from-env.js';
import { McpServerEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { createJwtVerifier } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { McpMetrics } from '../../layers/shared/src/mcp/metrics.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { createLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { cacheCandles, cacheFeeds, cacheLedger } from '../../layers/shared/src/query/read-cache.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';
import { RoutedMarketReader } from '../../layers/shared/src/query/routed-market-reader.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';

const VERSION = process.env.npm_package_version ?? '0.1.0';

const env = parseEnv(McpServerEnvSchema);
const logger = createLogger({ level: env.LOG_LEVEL, fields: { fn: 'mcp-server' } });
const pg = openPostgres(env.DATABASE_URL, { max: 8, onConnectionError: (error) => logger.warn('database connection lost', { error }) });
const store = new PostgresMarketStore(pg);
// the collectors' completeness ledger (feed status, gaps), written by the store writer next to the market data
const ledger = cacheLedger(new PostgresLedgerStore(pg), systemClock);
const history = env.CLICKHOUSE_URL
  ? new ClickHouseMarketStore(openClickHouse(env.CLICKHOUSE_URL, env.CLICKHOUSE_DATABASE ? { database: env.CLICKHOUSE_DATABASE } : {}))
  : undefined;
// recent ranges from TimescaleDB, older ones from ClickHouse, stitched at the retention handover
const reader = history
  ? new RoutedMarketReader(store, history, systemClock, {
      ticksMs: env.RETENTION_TICKS_DAYS * 86_400_000,
      candlesMs: env.RETENTION_CANDLES_DAYS * 86_400_000,
    })
  : store;
// candle pages and feeds reused for up to 1 s: popular series cost one database read a second
const query = new MarketQueryService(cacheCandles(cacheFeeds(reader, systemClock), systemClock), systemClock);
const verifier = env.JWT_JWKS_URL
  ? createJwtVerifier({
      kind: 'jwks',
      jwksUrl: env.JWT_JWKS_URL,
      issuer: env.JWT_ISSUER,
      ...(env.JWT_AUDIENCE && { audience: env.JWT_AUDIENCE }),
      ...(env.JWT_CLIENT_IDS?.length && { clientIds: env.JWT_CLIENT_IDS }),
    })
  : createJwtVerifier({
      kind: 'hs256',
      secret: new TextEncoder().encode(env.JWT_HS256_SECRET),
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE!,
    });

// new data announced by the store writers (other tasks) through Redis pub/sub; resources are not subscribable without it
const updates = env.REDIS_URL ? new RedisUpdates({ url: env.REDIS_URL, logger: logger.child({ component: 'market-updates' }) }) : undefined;
void updates?.ready().then(() => logger.info('market updates subscribed'));
// stored at once (get_signals sees it) and, with STREAM_NAME, put on the stream for its consumers (ClickHouse, alerts)
const signalBus = env.STREAM_NAME ? streamBusFromEnv({ ...env, STREAM_NAME: env.STREAM_NAME }, 'qicore-mcp-server') : undefined;
const signals = new SignalService({ writer: store, reader: new PostgresSignalReader(pg), clock: systemClock, bus: signalBus, logger });
// agents' memory, shared by every task; the memory tools are left out without Redis
const memory = env.REDIS_URL ? new RedisMemory({ url: env.REDIS_URL, logger: logger.child({ component: 'agent-memory' }) }) : undefined;
// agents' kill switch, audit log and paper trading, in the operational database (paper defaults: 10 bps, 10 000 cash)
const agents = { store: new PostgresAgentStore(pg), clock: systemClock };
const metrics = new McpMetrics();
const http = await startMcpHttpServer({
  host: env.MCP_HOST,
  port: env.MCP_PORT,
  buildServer: (caller) => buildServer({ query, version: VERSION, logger, metrics, ledger, signals, agents, toolsets: env.MCP_TOOLSETS, updates, ...(memory && { memory }) }, caller),
  verifier,
  logger,
  metrics,
  authorizationServers: [env.JWT_ISSUER],
  rateLimit: { limit: env.MCP_RATE_LIMIT_PER_MINUTE, windowMs: 60_000 },
  ...(env.MCP_PUBLIC_URL && { publicUrl: env.MCP_PUBLIC_URL }),
  ...(env.MCP_SESSION_SECRET && { sessionSecret: new TextEncoder().encode(env.MCP_SESSION_SECRET) }),
  ...(env.MCP_ALLOWED_HOSTS && { allowedHosts: env.MCP_ALLOWED_HOSTS }),
  ...(env.MCP_ALLOWED_ORIGINS && { allowedOrigins: env.MCP_ALLOWED_ORIGINS }),
});
// Metrics on a port of their own, which the load balancer does not route to.
const metricsServer = env.MCP_METRICS_PORT
  ? createServer((req, res) => {
      if (req.url !== '/metrics') return void res.writeHead(404).end();
      metrics.render().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    }).listen(env.MCP_METRICS_PORT, env.MCP_HOST)
  : undefined;
logger.info('mcp server listening', { url: http.url });

const shutdown = async () => {
  metricsServer?.close();
  await http.close();
  await updates?.close();
  await memory?.close();
  await signalBus?.close();
  await store.close();
  await history?.close();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
