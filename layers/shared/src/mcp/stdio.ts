import type { Readable, Writable } from 'node:stream';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

/** A running stdio session. */
export interface StdioSession {
  /** resolves once the session ended (stdin closed or close() called) */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Serves `server` over stdin/stdout until stdin ends. stdout carries only protocol messages, so
 * console.log/info/debug are sent to stderr for the rest of the process.
 */
export async function serveStdio(
  server: McpServer,
  io: { stdin?: Readable; stdout?: Writable } = {},
): Promise<StdioSession> {
  const stdin = io.stdin ?? process.stdin;
  const stdout = io.stdout ?? process.stdout;
  if (stdout === process.stdout) keepConsoleOffStdout();
  const transport = new StdioServerTransport(stdin, stdout);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  transport.onclose = () => resolveClosed();
  await server.connect(transport);
  // The SDK transport does not watch for end of input; a client closing the pipe ends the session.
  const onEnd = () => void server.close().catch(() => undefined);
  stdin.once('end', onEnd);
  stdin.once('close', onEnd);
  void closed.then(() => {
    stdin.off('end', onEnd);
    stdin.off('close', onEnd);
  });
  return {
    closed,
    close: async () => {
      await server.close();
      await closed;
    },
  };
}

function keepConsoleOffStdout(): void {
  const toStderr = (...args: unknown[]) => console.error(...args);
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
}
