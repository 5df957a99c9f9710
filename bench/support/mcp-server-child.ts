/**
 * The MCP HTTP server as a process of its own for load benchmarks, so the load generator does not
 * share its event loop: PostgreSQL store at DATABASE_URL, HS256 JWTs with BENCH_JWT_SECRET, and a
 * rate limit high enough not to throttle the load. Prints `listening <url>` on stdout.
 */
import { openPostgres } from '../../layers/shared/src/adapters/stores/pg-client.js';
import { PostgresLedgerStore } from '../../layers/shared/src/adapters/stores/postgres-ledger-store.js';
import { PostgresMarketStore } from '../../layers/shared/src/adapters/stores/postgres-market-store.js';
import { createJwtVerifier } from '../../layers/shared/src/mcp/auth.js';
import { startMcpHttpServer } from '../../layers/shared/src/mcp/http.js';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { systemClock } from '../../layers/shared/src/ports/index.js';
import { cacheCandles, cacheFeeds, cacheLedger } from '../../layers/shared/src/query/read-cache.js';
import { MarketQueryService } from '../../layers/shared/src/query/market-query.js';

const pg = openPostgres(process.env.DATABASE_URL!, { max: 8 });
const store = new PostgresMarketStore(pg);
// as in service mode: get_candles asks the ledger about gaps in its window, get_data_health serves it
const ledger = cacheLedger(new PostgresLedgerStore(pg), systemClock);
const query = new MarketQueryService(cacheCandles(cacheFeeds(store, systemClock), systemClock), systemClock);
const http = await startMcpHttpServer({
  buildServer: () => buildServer({ query, ledger, version: 'bench', logger: silentLogger }),
  verifier: createJwtVerifier({ kind: 'hs256', secret: new TextEncoder().encode(process.env.BENCH_JWT_SECRET!), issuer: 'bench', audience: 'mcp' }),
  rateLimit: { limit: 1_000_000, windowMs: 60_000 },
  logger: silentLogger,
});
process.stdout.write(`listening ${http.url}\n`);
process.once('SIGTERM', () => {
  void http.close().then(() => store.close()).then(() => process.exit(0));
});
