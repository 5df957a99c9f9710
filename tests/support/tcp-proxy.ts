/**
 * A TCP proxy for fault tests: listens on 127.0.0.1 (a free port) and pipes every connection to a
 * target (e.g. the PostgreSQL server). `cut()` destroys every open connection and resets new ones
 * as soon as they arrive, as a server that went away would; `restore()` lets connections through
 * again. The listening port stays the same throughout, so clients never need a new address.
 */
import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port` of the proxy */
  readonly address: string;
  /** connections accepted and piped so far */
  readonly accepted: number;
  /** connections reset while cut (open ones destroyed by cut() and new ones refused) */
  readonly refused: number;
  /** connections open now */
  readonly open: number;
  readonly isCut: boolean;
  /** Destroys every open connection (both sides) and resets new ones until restore(). */
  cut(): void;
  /** Accepts and pipes connections again. */
  restore(): void;
  /** Destroys every connection and stops listening. */
  close(): Promise<void>;
}

/** The URL with host and port replaced by the proxy's (for a connection string such as DATABASE_URL). */
export function viaProxy(url: string, proxy: Pick<TcpProxy, 'host' | 'port'>): string {
  const u = new URL(url);
  u.hostname = proxy.host;
  u.port = String(proxy.port);
  return u.toString();
}

/** Starts a proxy to `target` (`host:port`, or a URL whose host and port are taken). */
export async function startTcpProxy(target: string | { host: string; port: number }): Promise<TcpProxy> {
  const { host: targetHost, port: targetPort } = typeof target === 'string' ? parseTarget(target) : target;
  const pairs = new Set<readonly [Socket, Socket]>();
  let isCut = false;
  let accepted = 0;
  let refused = 0;

  const kill = (socket: Socket) => {
    // a reset, as a crashed or unreachable server gives, rather than an orderly FIN
    if (!socket.destroyed) socket.resetAndDestroy();
  };

  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (isCut) {
      refused += 1;
      kill(client);
      return;
    }
    accepted += 1;
    const upstream = connect({ host: targetHost, port: targetPort });
    upstream.on('error', () => undefined);
    const pair = [client, upstream] as const;
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address: host, port } = server.address() as AddressInfo;

  const destroyAll = () => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      kill(pair[0]);
      kill(pair[1]);
    }
  };

  return {
    host,
    port,
    address: `${host}:${port}`,
    get accepted() {
      return accepted;
    },
    get refused() {
      return refused;
    },
    get open() {
      return pairs.size;
    },
    get isCut() {
      return isCut;
    },
    cut() {
      isCut = true;
      refused += pairs.size;
      destroyAll();
    },
    restore() {
      isCut = false;
    },
    async close() {
      isCut = true;
      destroyAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function parseTarget(target: string): { host: string; port: number } {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    const url = new URL(target);
    const port = Number(url.port);
    if (!port) throw new Error(`proxy target ${target} has no port`);
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
  }
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (!match) throw new Error(`proxy target ${target} is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}
