import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local server speaking the OpenAI-compatible chat completions API (non-streaming: the agents
 * call generateText), answering from a script, so the model path runs offline with the real AI SDK
 * and provider. It records every request so a test can check the tools offered and the tool
 * results the model was sent.
 */

/** One tool call of a scripted reply; `arguments` as a string is sent verbatim (e.g. malformed JSON). */
export interface ScriptedToolCall {
  readonly name: string;
  readonly arguments: Record<string, unknown> | string;
}

/** One scripted reply: tool calls and/or text, with the token usage reported for it. */
export interface ScriptedReply {
  readonly text?: string;
  readonly toolCalls?: readonly ScriptedToolCall[];
  readonly usage?: { readonly prompt: number; readonly completion: number };
}

/** A reply, or one computed from the request (e.g. to echo a figure a tool returned). */
export type ScriptStep = ScriptedReply | ((request: ChatRequest) => ScriptedReply);

/** The parts of a chat completions request the tests look at. */
export interface ChatRequest {
  readonly model: string;
  readonly messages: readonly { role: string; content?: unknown; tool_calls?: unknown; tool_call_id?: string }[];
  readonly tools?: readonly { type: string; function: { name: string; description?: string; parameters?: unknown } }[];
  readonly temperature?: number;
  readonly stream?: boolean;
  readonly [key: string]: unknown;
}

export interface FakeOpenAiServer {
  /** base URL including /v1, as AGENT_MODEL_BASE_URL takes it */
  readonly baseURL: string;
  /** requests received, in order */
  readonly requests: ChatRequest[];
  /** authorization headers received (to check a key was sent; tests never print them) */
  readonly authorizations: (string | undefined)[];
  /** replaces the script; the next request gets its first reply */
  script(steps: readonly ScriptStep[]): void;
  /** replies not used yet */
  remaining(): number;
  /** tool results the model was sent in request `i` (role tool), by tool call id */
  toolResults(i: number): { id: string; content: string }[];
  close(): Promise<void>;
}

const DEFAULT_USAGE = { prompt: 100, completion: 20 };

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts the server on a free loopback port. */
export async function startFakeOpenAiServer(): Promise<FakeOpenAiServer> {
  let queue: ScriptStep[] = [];
  const requests: ChatRequest[] = [];
  const authorizations: (string | undefined)[] = [];
  let callSeq = 0;

  const server: Server = createServer((req, res) => {
    void (async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        send(404, { error: { message: `fake server: no route ${req.method} ${req.url}`, type: 'invalid_request_error' } });
        return;
      }
      const request = JSON.parse(await readBody(req)) as ChatRequest;
      requests.push(request);
      authorizations.push(req.headers.authorization);
      if (request.stream === true) {
        send(400, { error: { message: 'fake server: streaming is not scripted', type: 'invalid_request_error' } });
        return;
      }
      const step = queue.shift();
      if (step === undefined) {
        // 400 is not retried by the SDK: an unexpected extra call fails at once
        send(400, { error: { message: 'fake server: script exhausted', type: 'invalid_request_error' } });
        return;
      }
      const reply = typeof step === 'function' ? step(request) : step;
      const usage = reply.usage ?? DEFAULT_USAGE;
      const toolCalls = (reply.toolCalls ?? []).map((c) => ({
        id: `call_${++callSeq}`,
        type: 'function',
        function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments) },
      }));
      send(200, {
        id: `chatcmpl-${requests.length}`,
        object: 'chat.completion',
        created: 1_767_614_400,
        model: request.model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: reply.text ?? null, ...(toolCalls.length > 0 && { tool_calls: toolCalls }) },
            finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop',
          },
        ],
        usage: { prompt_tokens: usage.prompt, completion_tokens: usage.completion, total_tokens: usage.prompt + usage.completion },
      });
    })().catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `fake server: ${(error as Error).message}` } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    authorizations,
    script(steps) {
      queue = [...steps];
    },
    remaining: () => queue.length,
    toolResults(i) {
      return (requests[i]?.messages ?? [])
        .filter((m) => m.role === 'tool')
        .map((m) => ({ id: m.tool_call_id ?? '', content: typeof m.content === 'string' ? m.content : JSON.stringify(m.content) }));
    },
    close: () => new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve()))),
  };
}
