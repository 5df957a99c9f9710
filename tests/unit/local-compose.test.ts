// local/docker-compose.yml, its Prometheus and Grafana files, checked against the code: Docker cannot run
// here, so the file is parsed and every port, credential, environment and metric name it relies on is
// compared with what the platform's code defines. The one-shot services' scripts are run for real.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createClickHouseDatabase, dropClickHouseDatabase } from '../../layers/shared/src/adapters/stores/clickhouse-client.js';
import { CollectorEnvSchema, McpServerEnvSchema, parseEnv } from '../../layers/shared/src/config/env.js';
import { createJwtVerifier, DEV_TOKEN_AUDIENCE, DEV_TOKEN_ISSUER } from '../../layers/shared/src/mcp/auth.js';
import { ALL_SCOPES } from '../../layers/shared/src/mcp/scopes.js';
import { parseLocalOptions } from '../../local/cli-options.js';
import { describeWithService } from '../support/services.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LOCAL = join(ROOT, 'local');

// ---------------------------------------------------------------- compose file, as compose reads it

type Env = Record<string, string>;
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Env;
  ports?: string[];
  volumes?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  restart?: string;
  profiles?: string[];
}
interface Compose {
  name: string;
  services: Record<string, ComposeService>;
  networks?: Record<string, { name?: string }>;
}

/** Compose's variable substitution with nothing set: `${X:-default}` and `${X-default}` give the default, `$$` a `$`. */
function interpolate(value: string, env: Env = {}): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}/g, (whole, name: string | undefined, colon: string, fallback: string | undefined) => {
    if (name === undefined) return '$';
    const set = env[name];
    if (set !== undefined && (colon !== ':' || set !== '')) return set;
    if (fallback === undefined) throw new Error(`${whole} has no default: compose would need ${name} set`);
    return fallback;
  });
}

function interpolateAll(node: unknown): unknown {
  if (typeof node === 'string') return interpolate(node);
  if (Array.isArray(node)) return node.map(interpolateAll);
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateAll(v)]));
  return node;
}

function loadCompose(): Compose {
  // merge keys (`<<: *anchor`) as compose resolves them
  const raw = parse(readFileSync(join(LOCAL, 'docker-compose.yml'), 'utf8'), { merge: true }) as Compose;
  return interpolateAll(raw) as Compose;
}

interface Published {
  hostIp: string;
  host: number;
  container: number;
}

function published(service: ComposeService): Published[] {
  return (service.ports ?? []).map((spec) => {
    const m = /^(?:([\d.]+):)?(\d+):(\d+)(?:\/tcp)?$/.exec(spec);
    if (!m) throw new Error(`unreadable port mapping ${spec}`);
    return { hostIp: m[1] ?? '0.0.0.0', host: Number(m[2]), container: Number(m[3]) };
  });
}

/** The service publishing `hostPort`, with the container port it maps to. */
function publisherOf(compose: Compose, hostPort: number): { name: string; container: number } {
  const found = Object.entries(compose.services).flatMap(([name, s]) =>
    published(s).filter((p) => p.host === hostPort).map((p) => ({ name, container: p.container })),
  );
  expect(found, `host port ${hostPort} published once`).toHaveLength(1);
  return found[0]!;
}

const portOf = (url: URL) => Number(url.port || { 'postgres:': 5432, 'redis:': 6379, 'http:': 80 }[url.protocol]);

// ---------------------------------------------------------------- services.sh defaults, read from the script

/** `PG_PORT=${QICORE_PG_PORT:-55432}` lines of local/services/services.sh: the defaults the tests' URLs use. */
function servicesShDefaults(): { vars: Env; urls: Record<'postgres' | 'redis' | 'clickhouse' | 'kinesis', string> } {
  const script = readFileSync(join(LOCAL, 'services/services.sh'), 'utf8');
  const vars: Env = {};
  for (const m of script.matchAll(/^([A-Z_]+)=\$\{QICORE_[A-Z_]+:-([^}]*)\}$/gm)) vars[m[1]!] = m[2]!;
  const urlOf = /^url_of\(\) \{\n([\s\S]*?)\n\}/m.exec(script)?.[1];
  if (!urlOf) throw new Error('url_of() not found in services.sh');
  const urls: Env = {};
  for (const m of urlOf.matchAll(/^\s*(\w+)\) echo "([^"]+)" ;;$/gm)) {
    urls[m[1]!] = m[2]!.replace(/\$([A-Z_]+)/g, (_, v: string) => {
      if (vars[v] === undefined) throw new Error(`services.sh: no default for ${v}`);
      return vars[v];
    });
  }
  return { vars, urls: urls as Record<'postgres' | 'redis' | 'clickhouse' | 'kinesis', string> };
}

// ---------------------------------------------------------------- metric names

/** Metric names registered with prom-client anywhere in the code (`new Counter({ name: '...' })` and the like). */
function registeredMetrics(): Set<string> {
  const names = new Set<string>();
  let defaults = false;
  const scan = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') scan(path);
      } else if (entry.name.endsWith('.ts')) {
        const text = readFileSync(path, 'utf8');
        if (!text.includes('prom-client')) continue;
        if (/collectDefaultMetrics\(/.test(text)) defaults = true;
        for (const m of text.matchAll(/new (Counter|Gauge|Histogram|Summary)\(\{\s*name:\s*'([a-zA-Z_:][a-zA-Z0-9_:]*)'/g)) {
          names.add(m[2]!);
          // the series a histogram or summary exposes besides its name
          if (m[1] === 'Histogram') ['_bucket', '_sum', '_count'].forEach((s) => names.add(m[2]! + s));
          if (m[1] === 'Summary') ['_sum', '_count'].forEach((s) => names.add(m[2]! + s));
        }
      }
    }
  };
  for (const dir of ['layers', 'functions', 'local']) scan(join(ROOT, dir));
  if (defaults) {
    // the process metrics collectDefaultMetrics registers, as this prom-client version names them
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    for (const metric of registry.getMetricsAsArray()) {
      names.add(metric.name);
      if (metric instanceof Histogram) ['_bucket', '_sum', '_count'].forEach((s) => names.add(metric.name + s));
    }
    registry.clear();
  }
  return names;
}

/** Series Prometheus records itself for every target. */
const PROMETHEUS_BUILTIN = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression (or a Grafana label_values query) reads. */
function metricsInPromQL(expr: string): string[] {
  const stripped = expr
    .replace(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)/g, '$1') // label_values(metric, label)
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // string literals
    .replace(/\{[^}]*\}/g, '') // label matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '') // label lists
    .replace(/\[[^\]]*\]/g, '') // ranges
    .replace(/\$\{?\w+\}?/g, ''); // Grafana variables
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
    const [, word, call] = m;
    if (call || PROMQL_WORDS.has(word!.toLowerCase())) continue; // functions and aggregations
    names.add(word!);
  }
  return [...names];
}

interface Panel {
  title?: string;
  type: string;
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  datasource?: { uid?: string };
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating?: { list: { query?: string | { query?: string }; datasource?: { uid?: string } }[] };
}

function dashboardQueries(d: Dashboard): { where: string; expr: string; uid: string | undefined }[] {
  const out: { where: string; expr: string; uid: string | undefined }[] = [];
  const visit = (p: Panel) => {
    for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr, uid: t.datasource?.uid ?? p.datasource?.uid });
    (p.panels ?? []).forEach(visit);
  };
  d.panels.forEach(visit);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (q) out.push({ where: 'a template variable', expr: q, uid: v.datasource?.uid });
  }
  return out;
}

// ---------------------------------------------------------------- tests

describe('local/docker-compose.yml', () => {
  const compose = loadCompose();
  const sh = servicesShDefaults();
  const services = compose.services;

  it('parses, and runs the platform and its backing services', () => {
    expect(Object.keys(services)).toEqual(
      expect.arrayContaining(['timescaledb', 'clickhouse', 'redis', 'redpanda', 'localstack', 'prometheus', 'grafana', 'collector', 'mcp-server', 'migrate']),
    );
    expect(services.timescaledb!.image).toMatch(/^timescale\/timescaledb:/);
  });

  it('gives every service a pinned image tag or a build from a Dockerfile in the repository', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) {
        const dockerfile = resolve(LOCAL, s.build.context, s.build.dockerfile);
        expect(existsSync(dockerfile), `${name}: ${dockerfile}`).toBe(true);
        continue;
      }
      expect(s.image, `${name} has an image or a build`).toBeDefined();
      const tag = /:([^:/@]+)$/.exec(s.image!)?.[1];
      expect(tag, `${name}: ${s.image} names a tag`).toBeDefined();
      expect(tag, `${name}: ${s.image}`).not.toMatch(/^(latest|stable|main|edge)$/);
      expect(tag, `${name}: ${s.image} names a version`).toMatch(/\d+\.\d+/);
    }
  });

  it('has a healthcheck on every service others wait for; a disabled one only where nothing waits for it healthy', () => {
    const waitedHealthy = new Set(
      Object.values(services).flatMap((s) => Object.entries(s.depends_on ?? {}).filter(([, d]) => d.condition === 'service_healthy').map(([n]) => n)),
    );
    for (const [name, s] of Object.entries(services)) {
      expect(s.healthcheck, `${name} declares its healthcheck`).toBeDefined();
      if (s.healthcheck!.disable) {
        expect(waitedHealthy.has(name), `${name} is waited for healthy but has no healthcheck`).toBe(false);
      } else {
        expect(s.healthcheck!.test?.[0], `${name}`).toMatch(/^CMD(-SHELL)?$/);
        expect(s.healthcheck!.test!.length, `${name}`).toBeGreaterThan(1);
      }
    }
    // every depends_on names a real service with a condition compose can wait for
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, d] of Object.entries(s.depends_on ?? {})) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        expect(['service_healthy', 'service_completed_successfully']).toContain(d.condition);
        if (d.condition === 'service_completed_successfully') expect(services[dep]!.restart, `${dep} is one-shot`).toBe('no');
      }
    }
  });

  it('starts in order: databases healthy, then migrations, then the MCP server; the collector after the stream', () => {
    expect(services.migrate!.depends_on).toEqual({ timescaledb: { condition: 'service_healthy' }, clickhouse: { condition: 'service_healthy' } });
    expect(services['mcp-server']!.depends_on).toMatchObject({ migrate: { condition: 'service_completed_successfully' }, redis: { condition: 'service_healthy' } });
    expect(services.collector!.depends_on).toMatchObject({ localstack: { condition: 'service_healthy' } });
    expect(services.grafana!.depends_on).toMatchObject({ prometheus: { condition: 'service_healthy' } });
  });

  it('publishes every port on 127.0.0.1 only', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const p of published(s)) expect(p.hostIp, `${name} ${p.host}`).toBe('127.0.0.1');
    }
  });

  it("publishes the databases on services.sh's default ports with its users, passwords and database names", () => {
    const mcpEnv = services['mcp-server']!.environment!;
    const migrateEnv = services.migrate!.environment!;
    // PostgreSQL: the URL `. /tmp/qicore-services/env` gives, and the containers' URL, name one database and user
    const hostPg = new URL(sh.urls.postgres);
    const innerPg = new URL(mcpEnv.DATABASE_URL!);
    const pgService = publisherOf(compose, portOf(hostPg));
    expect(pgService.name).toBe('timescaledb');
    expect(innerPg.hostname).toBe('timescaledb');
    expect(pgService.container).toBe(portOf(innerPg));
    expect(innerPg.username).toBe(hostPg.username);
    expect(innerPg.password).toBe(hostPg.password);
    expect(innerPg.pathname).toBe(hostPg.pathname);
    const tsEnv = services.timescaledb!.environment!;
    expect(tsEnv.POSTGRES_USER).toBe(hostPg.username);
    expect(`/${tsEnv.POSTGRES_DB}`).toBe(hostPg.pathname);
    // no password in the URL: the server must trust connections, as services.sh's does (initdb -A trust)
    if (hostPg.password === '') expect(tsEnv.POSTGRES_HOST_AUTH_METHOD).toBe('trust');
    else expect(tsEnv.POSTGRES_PASSWORD).toBe(hostPg.password);
    expect(migrateEnv.DATABASE_URL).toBe(mcpEnv.DATABASE_URL);

    const hostRedis = new URL(sh.urls.redis);
    const innerRedis = new URL(mcpEnv.REDIS_URL!);
    const redis = publisherOf(compose, portOf(hostRedis));
    expect(redis.name).toBe(innerRedis.hostname);
    expect(redis.container).toBe(portOf(innerRedis));

    const hostCh = new URL(sh.urls.clickhouse);
    const innerCh = new URL(mcpEnv.CLICKHOUSE_URL!);
    const ch = publisherOf(compose, portOf(hostCh));
    expect(ch.name).toBe(innerCh.hostname);
    expect(ch.container).toBe(portOf(innerCh));
    expect(innerCh.username + innerCh.password).toBe(hostCh.username + hostCh.password);
    expect(migrateEnv.CLICKHOUSE_URL).toBe(mcpEnv.CLICKHOUSE_URL);
    // the native protocol port too (clickhouse-client)
    expect(publisherOf(compose, Number(sh.vars.CH_TCP_PORT)).name).toBe(innerCh.hostname);

    // KINESIS_ENDPOINT of services.sh reaches LocalStack's Kinesis, where the collector publishes
    const hostKinesis = new URL(sh.urls.kinesis);
    const innerKinesis = new URL(services.collector!.environment!.KINESIS_ENDPOINT!);
    const kinesis = publisherOf(compose, portOf(hostKinesis));
    expect(kinesis.name).toBe('localstack');
    expect(innerKinesis.hostname).toBe('localstack');
    expect(kinesis.container).toBe(portOf(innerKinesis));
  });

  it("gives the MCP server an environment its schema accepts: development issuer and audience, default port published where npm start serves", () => {
    const s = services['mcp-server']!;
    const env = parseEnv(McpServerEnvSchema, s.environment!);
    expect(env.JWT_ISSUER).toBe(DEV_TOKEN_ISSUER);
    expect(env.JWT_AUDIENCE).toBe(DEV_TOKEN_AUDIENCE);
    expect(env.JWT_HS256_SECRET).toBeDefined();
    expect(env.MCP_HOST).toBe('0.0.0.0');
    const mcp = published(s).find((p) => p.container === env.MCP_PORT);
    expect(mcp, `port ${env.MCP_PORT} published`).toBeDefined();
    expect(mcp!.host).toBe(parseLocalOptions([], {}).port);
    expect(env.MCP_METRICS_PORT).toBeDefined();
    // the metrics port stays inside the compose network
    expect(published(s).map((p) => p.container)).not.toContain(env.MCP_METRICS_PORT);
    // the token tool signs with the same settings
    expect(services.token!.environment).toMatchObject({
      JWT_ISSUER: s.environment!.JWT_ISSUER,
      JWT_AUDIENCE: s.environment!.JWT_AUDIENCE,
      JWT_HS256_SECRET: s.environment!.JWT_HS256_SECRET,
    });
  });

  it("gives the collector an environment its schema accepts, with the journal on a volume", () => {
    const s = services.collector!;
    const env = parseEnv(CollectorEnvSchema, s.environment!);
    expect(env.STREAM_KIND).toBe('kinesis');
    expect(s.volumes!.map((v) => v.split(':')[1])).toContain(env.COLLECTOR_JOURNAL_DIR);
    expect(s.command!.join(' ')).toContain('functions/collector/main.ts');
  });

  it('serves the collector\'s metrics inside the compose network, on all interfaces, with its healthcheck on /healthz there', () => {
    const s = services.collector!;
    const env = parseEnv(CollectorEnvSchema, s.environment!);
    expect(env.COLLECTOR_METRICS_PORT).toBeDefined();
    // Prometheus reaches it by service name: it must not listen on loopback only
    expect(env.COLLECTOR_METRICS_HOST).toBe('0.0.0.0');
    expect(published(s).map((p) => p.container)).not.toContain(env.COLLECTOR_METRICS_PORT);
    expect(s.healthcheck!.disable).toBeUndefined();
    expect(s.healthcheck!.test!.join(' ')).toContain(`http://127.0.0.1:${env.COLLECTOR_METRICS_PORT}/healthz`);
  });

  it('attaches LocalStack\'s Lambda containers to the compose network by its fixed name', () => {
    expect(compose.networks?.default?.name).toBe(services.localstack!.environment!.LAMBDA_DOCKER_NETWORK);
    const enabled = services.localstack!.environment!.SERVICES!.split(',');
    expect(enabled).toEqual(expect.arrayContaining(['kinesis', 'lambda', 'stepfunctions', 'secretsmanager', 'sqs']));
  });

  it('mounts Prometheus and Grafana files that exist here', () => {
    for (const name of ['prometheus', 'grafana']) {
      for (const v of services[name]!.volumes ?? []) {
        const [source] = v.split(':');
        if (source!.startsWith('./')) expect(existsSync(join(LOCAL, source!)), `${name}: ${source}`).toBe(true);
      }
    }
  });
});

describe('Prometheus and Grafana configuration', () => {
  const compose = loadCompose();
  const prometheus = parse(readFileSync(join(LOCAL, 'prometheus/prometheus.yml'), 'utf8')) as {
    scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
  };
  const dashboard = JSON.parse(readFileSync(join(LOCAL, 'grafana/dashboards/platform.json'), 'utf8')) as Dashboard;

  it("scrapes each compose service that serves metrics, on its metrics port, and nothing that is not there", () => {
    const metricsPorts = new Map<string, number>();
    for (const [name, s] of Object.entries(compose.services)) {
      for (const [k, v] of Object.entries(s.environment ?? {})) if (/_METRICS_PORT$/.test(k)) metricsPorts.set(name, Number(v));
    }
    expect(metricsPorts.get('mcp-server')).toBe(parseEnv(McpServerEnvSchema, compose.services['mcp-server']!.environment!).MCP_METRICS_PORT);
    expect(metricsPorts.get('collector')).toBe(parseEnv(CollectorEnvSchema, compose.services.collector!.environment!).COLLECTOR_METRICS_PORT);
    const targets = prometheus.scrape_configs.flatMap((c) => c.static_configs.flatMap((sc) => sc.targets.map((t) => ({ job: c.job_name, target: t, path: c.metrics_path ?? '/metrics' }))));
    const scraped = new Set<string>();
    for (const { job, target, path } of targets) {
      const [host, port] = target.split(':');
      if (host === 'localhost') {
        expect(job).toBe('prometheus'); // Prometheus scraping itself
        continue;
      }
      expect(compose.services[host!], `${job}: ${target} is a compose service`).toBeDefined();
      expect(Number(port), `${job}: ${target}`).toBe(metricsPorts.get(host!));
      // the MCP server and the collector serve their metrics on /metrics (functions/*/main.ts)
      expect(path).toBe('/metrics');
      scraped.add(host!);
    }
    expect([...scraped].sort()).toEqual([...metricsPorts.keys()].sort());
  });

  it("provisions the data source the dashboard uses and loads dashboards from where compose mounts them", () => {
    const datasources = parse(readFileSync(join(LOCAL, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
      datasources: { uid: string; type: string; url: string }[];
    };
    const [ds] = datasources.datasources;
    expect(ds!.type).toBe('prometheus');
    expect(new URL(ds!.url).hostname).toBe('prometheus');
    expect(Number(new URL(ds!.url).port)).toBe(published(compose.services.prometheus!)[0]!.container);
    for (const q of dashboardQueries(dashboard)) expect(q.uid, q.where).toBe(ds!.uid);

    const providers = parse(readFileSync(join(LOCAL, 'grafana/provisioning/dashboards/platform.yml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    const mount = compose.services.grafana!.volumes!.find((v) => v.startsWith('./grafana/dashboards:'))!;
    expect(mount.split(':')[1]).toBe(providers.providers[0]!.options.path);
  });

  it('queries only metrics the code registers with prom-client', () => {
    const registered = registeredMetrics();
    // the scan finds the MCP server's own metrics (layers/shared/src/mcp/metrics.ts) and the collector's (collector-metrics.ts)
    expect([...registered]).toEqual(
      expect.arrayContaining(['mcp_tool_calls_total', 'mcp_tool_duration_seconds_bucket', 'mcp_http_responses_total', 'process_cpu_seconds_total', 'collector_feed_age_seconds', 'collector_events_total']),
    );
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(5);
    const used = new Set<string>();
    for (const { where, expr } of queries) {
      const metrics = metricsInPromQL(expr);
      expect(metrics.length, `${where}: ${expr}`).toBeGreaterThan(0);
      for (const m of metrics) {
        expect(registered.has(m) || PROMETHEUS_BUILTIN.has(m), `${where} queries ${m}, which no code registers`).toBe(true);
        used.add(m);
      }
    }
    // calls, latency and errors per tool, and HTTP answers are all on it; so are the collector's events, feed age and stale feeds
    expect([...used]).toEqual(
      expect.arrayContaining(['mcp_tool_calls_total', 'mcp_tool_duration_seconds_bucket', 'mcp_http_responses_total', 'collector_events_total', 'collector_feed_age_seconds', 'collector_feed_stale', 'collector_stream_total']),
    );
  });

  it('graphs the collector per shard: max feed age and stale feeds by shard, process panels on the collector job', () => {
    const exprs = dashboardQueries(dashboard).map((q) => q.expr.replace(/\s+/g, ' '));
    expect(exprs).toEqual(expect.arrayContaining([expect.stringMatching(/^max by \(shard\) \(collector_feed_age_seconds\{/), expect.stringMatching(/^sum by \(shard\) \(collector_feed_stale\{/)]));
    // a job a panel filters on is a scrape job of prometheus.yml
    const jobs = new Set(prometheus.scrape_configs.map((c) => c.job_name));
    for (const { where, expr } of dashboardQueries(dashboard)) {
      for (const m of expr.matchAll(/job="([^"]+)"/g)) expect(jobs.has(m[1]!), `${where} filters on job ${m[1]}`).toBe(true);
    }
    expect(exprs.some((e) => e.includes('job="collector"'))).toBe(true);
  });

  it('reads metric names out of PromQL, so an unknown metric is caught', () => {
    expect(metricsInPromQL('sum by (tool, le) (rate(foo_seconds_bucket{tool=~"$tool", x="a b"}[$__rate_interval]))')).toEqual(['foo_seconds_bucket']);
    expect(metricsInPromQL('sum(rate(a_total[5m])) / on (job) group_left sum(rate(b_total[5m]))').sort()).toEqual(['a_total', 'b_total']);
    expect(metricsInPromQL('label_values(mcp_tool_calls_total, tool)')).toEqual(['mcp_tool_calls_total']);
    // a panel over a metric no code registers would fail the check above
    const registered = registeredMetrics();
    expect(metricsInPromQL('rate(collector_made_up_total[5m])').filter((m) => !registered.has(m))).toEqual(['collector_made_up_total']);
  });
});

describe('compose one-shot services run the platform code', () => {
  const compose = loadCompose();

  /** Runs a compose service's command here, from the repository root (the image's WORKDIR holds the same tree). */
  async function runService(name: string, env: Env): Promise<string> {
    const [file, ...args] = compose.services[name]!.command!;
    const { stdout } = await run(file!, args, { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, timeout: 60_000 });
    return stdout;
  }

  it('token: prints a token the MCP server, configured as in compose, accepts with every scope', async () => {
    const env = compose.services.token!.environment!;
    const token = (await runService('token', env)).trim();
    const mcpEnv = parseEnv(McpServerEnvSchema, compose.services['mcp-server']!.environment!);
    const verifier = createJwtVerifier({
      kind: 'hs256',
      secret: new TextEncoder().encode(mcpEnv.JWT_HS256_SECRET),
      issuer: mcpEnv.JWT_ISSUER,
      audience: mcpEnv.JWT_AUDIENCE!,
    });
    const auth = await verifier.verifyAccessToken(token);
    expect([...auth.scopes].sort()).toEqual([...ALL_SCOPES].sort());
    // a different secret does not verify it
    const other = createJwtVerifier({ kind: 'hs256', secret: new TextEncoder().encode('x'.repeat(40)), issuer: DEV_TOKEN_ISSUER, audience: DEV_TOKEN_AUDIENCE });
    await expect(other.verifyAccessToken(token)).rejects.toThrow();
  });

  describeWithService('postgres', 'migrate (PostgreSQL)', (pgUrl) => {
    describeWithService('clickhouse', 'migrate (ClickHouse)', (chUrl) => {
      const pgName = `qicore_compose_${randomBytes(5).toString('hex')}`;
      const chName = `qicore_compose_${randomBytes(5).toString('hex')}`;
      const dbUrl = new URL(pgUrl);
      dbUrl.pathname = `/${pgName}`;

      beforeAll(async () => {
        const admin = new pg.Client({ connectionString: pgUrl });
        await admin.connect();
        await admin.query(`CREATE DATABASE ${pgName}`);
        await admin.end();
        await createClickHouseDatabase(chUrl, chName);
      });
      afterAll(async () => {
        const admin = new pg.Client({ connectionString: pgUrl });
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS ${pgName} WITH (FORCE)`);
        await admin.end();
        await dropClickHouseDatabase(chUrl, chName);
      });

      it("applies every migration of sql/timescale and sql/clickhouse once, and nothing on a second run", async () => {
        const env = { DATABASE_URL: dbUrl.toString(), CLICKHOUSE_URL: chUrl, CLICKHOUSE_DATABASE: chName };
        const first = JSON.parse(await runService('migrate', env)) as { timescale: { applied: string[] }; clickhouse: { applied: string[] } };
        const files = (dir: string) => readdirSync(join(ROOT, 'sql', dir)).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort();
        expect(first.timescale.applied).toEqual(files('timescale'));
        expect(first.clickhouse.applied).toEqual(files('clickhouse'));
        const db = new pg.Client({ connectionString: dbUrl.toString() });
        await db.connect();
        const { rows } = await db.query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations');
        await db.end();
        expect(Number(rows[0]!.n)).toBe(files('timescale').length);
        const second = JSON.parse(await runService('migrate', env)) as typeof first;
        expect(second.timescale.applied).toEqual([]);
        expect(second.clickhouse.applied).toEqual([]);
      });
    });
  });
});
