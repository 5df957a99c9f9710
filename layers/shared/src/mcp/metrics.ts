import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of the MCP server: tool calls, their latency and errors, HTTP answers by status. */
export class McpMetrics {
  readonly registry = new Registry();
  private readonly calls = new Counter({
    name: 'mcp_tool_calls_total',
    help: 'MCP tool calls by tool and outcome (ok, error: an isError answer, internal: an unexpected failure).',
    labelNames: ['tool', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'mcp_tool_duration_seconds',
    help: 'MCP tool call duration in seconds, by tool.',
    labelNames: ['tool'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly http = new Counter({
    name: 'mcp_http_responses_total',
    help: 'HTTP responses of the MCP endpoint by status code.',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  toolCall(tool: string, outcome: 'ok' | 'error' | 'internal', seconds: number): void {
    this.calls.inc({ tool, outcome });
    this.latency.observe({ tool }, seconds);
  }

  httpResponse(status: number): void {
    this.http.inc({ status: String(status) });
  }

  /** Text exposition format. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
