import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildServer } from '../../layers/shared/src/mcp/server.js';
import { toolSuccess } from '../../layers/shared/src/mcp/tool-result.js';
import type { MarketQueryService } from '../../layers/shared/src/query/market-query.js';

/**
 * The server skips the SDK's second parse of each answer against the tool's output schema (a
 * tenth of a large call's CPU); a wrong answer must still never be taken as right: the SDK's
 * Client parses structuredContent on receipt and rejects it.
 */
describe('output schema checks', () => {
  it('are left to the client, which rejects an answer that breaks the schema', async () => {
    const server = buildServer({ query: {} as MarketQueryService, version: 'test', toolsets: [] });
    let answered = 0;
    server.registerTool('odd', { description: 'answers the wrong type', outputSchema: { n: z.number() } }, () => {
      answered += 1;
      return toolSuccess({ n: 'not a number' });
    });
    server.registerTool('even', { description: 'answers the right type', outputSchema: { n: z.number() } }, () => toolSuccess({ n: 2 }));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'test', version: '1' });
    await client.connect(clientSide);

    // the Client learns each tool's output schema from tools/list, as clients do before calling
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['odd', 'even']);
    expect((await client.callTool({ name: 'even', arguments: {} })).structuredContent).toEqual({ n: 2 });
    // the server sent it (no server-side parse turned it into an error)...
    await expect(client.callTool({ name: 'odd', arguments: {} })).rejects.toThrow(/structured content does not match the tool's output schema/i);
    expect(answered).toBe(1);
    await client.close();
  });
});
