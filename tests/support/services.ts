/**
 * Real backing services for tests (see local/services/services.sh).
 *
 * Each service is known by one environment variable, set by `source /tmp/qicore-services/env`
 * after `bash local/services/services.sh start`. A suite written with `describeWithService` runs
 * when its service's variable is set and the service accepts a TCP connection; otherwise it is
 * skipped with the reason in its title, or, when QICORE_REQUIRE_SERVICES=1 (as in CI), it fails.
 *
 * Reachability is probed once, when this module is first imported (top-level await), so that
 * `describeWithService` can decide synchronously while vitest collects the tests.
 */
import { Socket } from 'node:net';
import { describe, it } from 'vitest';

export type ServiceName = 'postgres' | 'redis' | 'clickhouse' | 'kinesis' | 'kafka';

/** The environment variable that holds each service's URL (KAFKA_BROKERS: `host:port[,host:port...]`). */
export const SERVICE_ENV: Readonly<Record<ServiceName, string>> = {
  postgres: 'DATABASE_URL',
  redis: 'REDIS_URL',
  clickhouse: 'CLICKHOUSE_URL',
  kinesis: 'KINESIS_ENDPOINT',
  kafka: 'KAFKA_BROKERS',
};

const SERVICE_NAMES = Object.keys(SERVICE_ENV) as ServiceName[];
const DEFAULT_PORTS: Readonly<Record<ServiceName, number>> = {
  postgres: 5432,
  redis: 6379,
  clickhouse: 8123,
  kinesis: 4567,
  kafka: 9092,
};
const PROBE_TIMEOUT_MS = 1_000;

/** `url` when the service can be used; otherwise `reason` says why not and how to fix it. */
export type ServiceUrl = { url: string; reason?: undefined } | { url?: undefined; reason: string };

interface Endpoint {
  host: string;
  port: number;
}

function startHint(name: ServiceName): string {
  const dir = process.env.QICORE_SERVICES_DIR || '/tmp/qicore-services';
  return `run: bash local/services/services.sh start ${name} && . ${dir}/env`;
}

/** The value without a password, for messages. */
function redact(value: string): string {
  return value.replace(/(\/\/[^:/@]*:)[^@/]*@/, '$1***@');
}

function endpointOf(name: ServiceName, value: string): Endpoint | undefined {
  if (name === 'kafka') {
    const first = value.split(',')[0]?.trim() ?? '';
    const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(first);
    return match?.[1] && match[2] ? { host: match[1], port: Number(match[2]) } : undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) return undefined;
  const fallback = url.protocol === 'https:' ? 443 : url.protocol === 'http:' ? 80 : DEFAULT_PORTS[name];
  return { host, port: url.port ? Number(url.port) : fallback };
}

/** Resolves to undefined when a TCP connection opens, else to the error's code or message. */
function tcpProbe({ host, port }: Endpoint, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (error?: string) => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
    socket.connect(port, host, () => done());
  });
}

/** Checks one service now: its variable is set, parses, and its first endpoint accepts a TCP connection. */
export async function probeService(name: ServiceName): Promise<ServiceUrl> {
  const variable = SERVICE_ENV[name];
  const value = process.env[variable]?.trim();
  if (!value) return { reason: `${variable} not set - ${startHint(name)}` };
  const endpoint = endpointOf(name, value);
  if (!endpoint) return { reason: `${variable}=${redact(value)} is not a valid ${name} address` };
  const error = await tcpProbe(endpoint);
  if (error) {
    return {
      reason: `${variable}=${redact(value)} is not reachable (${error}) - ${startHint(name)}`,
    };
  }
  return { url: value };
}

const probed = new Map<ServiceName, ServiceUrl>(
  await Promise.all(SERVICE_NAMES.map(async (name) => [name, await probeService(name)] as const)),
);

/** The service's URL as probed when the test file was loaded, or why it cannot be used. */
export function serviceUrl(name: ServiceName): ServiceUrl {
  const result = probed.get(name);
  if (!result) throw new Error(`unknown service ${String(name)}`);
  return result;
}

/** True when CI (or a developer) asked for every service-backed suite to run. */
export function servicesRequired(): boolean {
  return process.env.QICORE_REQUIRE_SERVICES === '1';
}

/**
 * `describe(title, () => fn(url))` when the service is there. Otherwise the suite is skipped with the
 * reason in its title, or, with QICORE_REQUIRE_SERVICES=1, replaced by one failing test naming what is missing.
 */
export function describeWithService(name: ServiceName, title: string, fn: (url: string) => void): void {
  const { url, reason } = serviceUrl(name);
  if (url !== undefined) {
    describe(title, () => fn(url));
  } else if (servicesRequired()) {
    describe(title, () => {
      it(`needs ${name}`, () => {
        throw new Error(`${name} is required (QICORE_REQUIRE_SERVICES=1) but ${reason}`);
      });
    });
  } else {
    // Skipped with its reason and the command that starts the service in the title; fn is not
    // called, since a suite may use its URL while it is being defined.
    // skip reason: the service is not running here (and nothing requires it); the title says which and how to start it
    describe.skip(`${title} [skipped: ${reason}]`, () => {
      it.skip(`needs ${name}: ${reason}`, () => undefined);
    });
  }
}
