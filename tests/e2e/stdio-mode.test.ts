import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** What a desktop client does: start the platform as a child process and speak MCP over its stdio. */
describe('npm start -- --stdio (desktop clients)', () => {
  let dataDir: string;
  let client: Client;
  let stderr = '';

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'qicore-stdio-'));
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', 'local/start.ts', '--stdio', '--source', 'sim', '--data-dir', dataDir, '--status-interval', '1', '--sim-tps', '20'],
      cwd: process.cwd(),
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    client = new Client({ name: 'desktop', version: '1.0.0' });
    // any stray byte on stdout (a banner, a console.log) would break the JSON-RPC stream here
    await client.connect(transport);
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the tools and data collected in the same process; status goes to stderr', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('get_candles');
    let answer: { isError?: boolean; structuredContent?: { candles?: unknown[] } } = {};
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      answer = (await client.callTool({ name: 'get_candles', arguments: { exchange: 'binance', symbol: 'BTC/USDT' } })) as typeof answer;
      if (!answer.isError && (answer.structuredContent?.candles?.length ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(answer.isError).toBeFalsy();
    expect(answer.structuredContent!.candles!.length).toBeGreaterThan(0);
    expect(stderr).toMatch(/MCP on stdio/);
    const statusDeadline = Date.now() + 5_000;
    while (!/feeds \d+\/\d+ live/.test(stderr) && Date.now() < statusDeadline) await new Promise((r) => setTimeout(r, 100));
    expect(stderr).toMatch(/feeds \d+\/\d+ live/);
  });
});
