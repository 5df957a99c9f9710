/**
 * A small HTTP proxy in front of kinesalite that injects the faults real Kinesis produces and
 * kinesalite never does: records of a PutRecords call rejected with ProvisionedThroughputExceededException
 * (and really not written), and whole calls failing with 500 or throttling. It also logs every
 * PutRecords call it sees, so tests can check what the producer sent.
 */
import { createServer, request } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What one PutRecords entry looked like on the wire. */
export interface ObservedEntry {
  readonly partitionKey: string;
  /** decoded Data bytes */
  readonly data: Buffer;
  /** true when the proxy rejected it */
  readonly failed: boolean;
}

/** One PutRecords call as the proxy saw it. */
export interface ObservedCall {
  /** 0-based, counting every PutRecords call */
  readonly index: number;
  readonly entries: readonly ObservedEntry[];
  /** the whole call was failed by the proxy */
  readonly callFault?: CallFault;
}

export type CallFault = 'internal' | 'throttle';

/** Decides whether entry `entryIndex` of PutRecords call `callIndex` is rejected. */
export type EntryFault = (callIndex: number, entryIndex: number, partitionKey: string) => boolean;

export interface KinesisFaultProxy {
  /** endpoint to give the Kinesis client */
  readonly url: string;
  readonly calls: ObservedCall[];
  /** rejects entries chosen by `fault` (null: none) */
  failEntries(fault: EntryFault | null): void;
  /** fails the next `count` PutRecords calls as a whole */
  failCalls(count: number, kind?: CallFault): void;
  close(): Promise<void>;
}

const PUT_RECORDS = 'Kinesis_20131202.PutRecords';
const JSON_TYPE = 'application/x-amz-json-1.1';

interface PutRecordsBody {
  StreamName: string;
  Records: { Data: string; PartitionKey: string }[];
}
interface PutRecordsResult {
  FailedRecordCount: number;
  Records: { SequenceNumber?: string; ShardId?: string; ErrorCode?: string; ErrorMessage?: string }[];
}

/** Starts the proxy on 127.0.0.1 (a free port) in front of `target` (kinesalite's URL). */
export async function startKinesisFaultProxy(target: string): Promise<KinesisFaultProxy> {
  const upstream = new URL(target);
  const calls: ObservedCall[] = [];
  let entryFault: EntryFault | null = null;
  let callFaults: CallFault[] = [];

  const forward = (method: string, path: string, headers: IncomingHttpHeaders, body: Buffer) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const out = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method,
          path,
          headers: { ...headers, host: upstream.host, 'content-length': String(body.byteLength) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 502, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      out.on('error', reject);
      out.end(body);
    });

  const reply = (res: ServerResponse, status: number, body: Buffer, headers: IncomingHttpHeaders = {}) => {
    const { 'content-length': _length, 'transfer-encoding': _te, connection: _connection, ...rest } = headers;
    res.writeHead(status, { ...rest, 'content-type': headers['content-type'] ?? JSON_TYPE, 'content-length': body.byteLength });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const method = req.method ?? 'POST';
    const path = req.url ?? '/';
    if (req.headers['x-amz-target'] !== PUT_RECORDS) {
      const up = await forward(method, path, req.headers, body);
      return reply(res, up.status, up.body, up.headers);
    }

    const index = calls.length;
    const parsed = JSON.parse(body.toString('utf8')) as PutRecordsBody;
    const callFault = callFaults.shift();
    if (callFault) {
      calls.push({
        index,
        callFault,
        entries: parsed.Records.map((r) => ({ partitionKey: r.PartitionKey, data: Buffer.from(r.Data, 'base64'), failed: true })),
      });
      const [status, type] = callFault === 'internal' ? [500, 'InternalFailure'] : [400, 'ProvisionedThroughputExceededException'];
      return reply(res, status, Buffer.from(JSON.stringify({ __type: type, message: 'injected by the fault proxy' })));
    }

    const failed = parsed.Records.map((r, i) => entryFault?.(index, i, r.PartitionKey) ?? false);
    calls.push({
      index,
      entries: parsed.Records.map((r, i) => ({ partitionKey: r.PartitionKey, data: Buffer.from(r.Data, 'base64'), failed: failed[i]! })),
    });
    const kept = parsed.Records.filter((_, i) => !failed[i]);
    let upstreamResult: PutRecordsResult = { FailedRecordCount: 0, Records: [] };
    if (kept.length > 0) {
      // the rejected entries are not sent on: the stream must really lack them
      const up = await forward(method, path, req.headers, Buffer.from(JSON.stringify({ ...parsed, Records: kept })));
      if (up.status !== 200) return reply(res, up.status, up.body, up.headers);
      upstreamResult = JSON.parse(up.body.toString('utf8')) as PutRecordsResult;
    }
    let next = 0;
    const result: PutRecordsResult = {
      FailedRecordCount: upstreamResult.FailedRecordCount,
      Records: failed.map((f) => {
        if (!f) return upstreamResult.Records[next++]!;
        return { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'Rate exceeded for shard (injected by the fault proxy)' };
      }),
    };
    result.FailedRecordCount += failed.filter(Boolean).length;
    return reply(res, 200, Buffer.from(JSON.stringify(result)));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) reply(res, 502, Buffer.from(JSON.stringify({ __type: 'ProxyError', message: String(error) })));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    failEntries(fault) {
      entryFault = fault;
    },
    failCalls(count, kind = 'internal') {
      callFaults = Array.from({ length: count }, () => kind);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
