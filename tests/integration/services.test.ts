/**
 * Smoke tests of the real backing services (local/services/services.sh): each one answers
 * and does one small round trip. Skipped, with the reason in the title, when a service's
 * variable is not set; failing instead when QICORE_REQUIRE_SERVICES=1.
 */
import { randomUUID } from 'node:crypto';
import { Socket } from 'node:net';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { expect, it } from 'vitest';
import { describeWithService } from '../support/services.js';

const unique = (prefix: string) => `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describeWithService('postgres', 'PostgreSQL service', (url) => {
  it('answers SELECT version() and round-trips a row', async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const version = await client.query<{ version: string }>('SELECT version()');
      expect(version.rows[0]?.version).toMatch(/^PostgreSQL \d+/);
      await client.query('CREATE TEMP TABLE smoke (id int PRIMARY KEY, note text)');
      await client.query('INSERT INTO smoke VALUES ($1, $2)', [1, 'hello']);
      const row = await client.query<{ note: string }>('SELECT note FROM smoke WHERE id = $1', [1]);
      expect(row.rows).toEqual([{ note: 'hello' }]);
    } finally {
      await client.end();
    }
  });
});

// ---------------------------------------------------------------- Redis, over raw RESP

type RespValue = string | number | null | RespValue[];

/** Parses one RESP2 reply at `offset`; undefined when the buffer does not hold all of it yet. */
function parseResp(buffer: Buffer, offset = 0): { value: RespValue; end: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset] ?? 0);
  const line = buffer.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      throw new Error(`redis error: ${line}`);
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let end = next;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buffer, end);
        if (!item) return undefined;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

/** Sends the commands in one write and resolves with their replies, in order. */
function redisCommands(url: string, commands: string[][]): Promise<RespValue[]> {
  const { hostname, port } = new URL(url);
  const payload = commands
    .map((args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
    .join('');
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let buffer = Buffer.alloc(0);
    socket.setTimeout(5_000, () => socket.destroy(new Error('redis: no reply within 5 s')));
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        const replies: RespValue[] = [];
        let offset = 0;
        while (replies.length < commands.length) {
          const reply = parseResp(buffer, offset);
          if (!reply) return;
          replies.push(reply.value);
          offset = reply.end;
        }
        socket.end();
        resolve(replies);
      } catch (error) {
        socket.destroy();
        reject(error as Error);
      }
    });
    socket.connect(Number(port || 6379), hostname.replace(/^\[(.*)\]$/, '$1'), () => socket.write(payload));
  });
}

describeWithService('redis', 'Redis service', (url) => {
  it('answers PING and round-trips a key', async () => {
    const key = unique('qicore_smoke');
    const [pong, set, get, del, info] = await redisCommands(url, [
      ['PING'],
      ['SET', key, 'v1', 'PX', '60000'],
      ['GET', key],
      ['DEL', key],
      ['INFO', 'server'],
    ]);
    expect(pong).toBe('PONG');
    expect(set).toBe('OK');
    expect(get).toBe('v1');
    expect(del).toBe(1);
    expect(String(info)).toMatch(/redis_version:\d+\.\d+/);
  });
});

// ---------------------------------------------------------------- ClickHouse, over HTTP

async function clickhouse(url: string, query: string, body?: string): Promise<string> {
  const target = new URL(url);
  target.searchParams.set('query', query);
  const response = await fetch(target, { method: 'POST', body: body ?? '' });
  const text = await response.text();
  if (!response.ok) throw new Error(`ClickHouse ${response.status}: ${text}`);
  return text;
}

describeWithService('clickhouse', 'ClickHouse service', (url) => {
  it('answers SELECT version()', async () => {
    const version = await clickhouse(url, 'SELECT version()');
    expect(version.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('round-trips rows through a MergeTree table with a LowCardinality column', async () => {
    const table = `default.${unique('smoke')}`;
    await clickhouse(
      url,
      `CREATE TABLE ${table} (ts DateTime, symbol LowCardinality(String), price Float64)
       ENGINE = MergeTree ORDER BY (symbol, ts)`,
    );
    try {
      const rows = [
        { ts: '2024-01-01 00:00:00', symbol: 'BTC/USDT', price: 42000.5 },
        { ts: '2024-01-01 00:00:01', symbol: 'BTC/USDT', price: 42001.5 },
        { ts: '2024-01-01 00:00:00', symbol: 'ETH/USDT', price: 2300 },
      ];
      await clickhouse(url, `INSERT INTO ${table} FORMAT JSONEachRow`, rows.map((r) => JSON.stringify(r)).join('\n'));
      const result = await clickhouse(
        url,
        `SELECT symbol, count() AS n, max(price) AS high FROM ${table} GROUP BY symbol ORDER BY symbol FORMAT JSONEachRow`,
      );
      const parsed = result
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { symbol: string; n: string | number; high: number });
      expect(parsed.map((r) => [r.symbol, Number(r.n), r.high])).toEqual([
        ['BTC/USDT', 2, 42001.5],
        ['ETH/USDT', 1, 2300],
      ]);
    } finally {
      await clickhouse(url, `DROP TABLE IF EXISTS ${table}`);
    }
  });
});

// ---------------------------------------------------------------- Kinesis (kinesalite), JSON protocol

async function kinesis<T = Record<string, unknown>>(endpoint: string, operation: string, body: object): Promise<T> {
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `Kinesis_20131202.${operation}`,
      'X-Amz-Date': amzDate,
      // kinesalite checks the header's shape, not the signature
      Authorization: `AWS4-HMAC-SHA256 Credential=test/${amzDate.slice(0, 8)}/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0`,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`Kinesis ${operation} ${response.status}: ${text}`);
  return (text ? JSON.parse(text) : {}) as T;
}

describeWithService('kinesis', 'Kinesis service (kinesalite)', (endpoint) => {
  it('creates a stream, lists it and round-trips a record', async () => {
    const stream = unique('qicore-smoke');
    await kinesis(endpoint, 'CreateStream', { StreamName: stream, ShardCount: 1 });
    try {
      let status = '';
      for (let i = 0; i < 100 && status !== 'ACTIVE'; i++) {
        const summary = await kinesis<{ StreamDescriptionSummary: { StreamStatus: string } }>(
          endpoint,
          'DescribeStreamSummary',
          { StreamName: stream },
        );
        status = summary.StreamDescriptionSummary.StreamStatus;
        if (status !== 'ACTIVE') await sleep(50);
      }
      expect(status).toBe('ACTIVE');

      const listed = await kinesis<{ StreamNames: string[] }>(endpoint, 'ListStreams', { Limit: 10_000 });
      expect(listed.StreamNames).toContain(stream);

      const payload = JSON.stringify({ symbol: 'BTC/USDT', price: 42000.5 });
      const put = await kinesis<{ ShardId: string; SequenceNumber: string }>(endpoint, 'PutRecord', {
        StreamName: stream,
        PartitionKey: 'BTC/USDT',
        Data: Buffer.from(payload).toString('base64'),
      });
      const iterator = await kinesis<{ ShardIterator: string }>(endpoint, 'GetShardIterator', {
        StreamName: stream,
        ShardId: put.ShardId,
        ShardIteratorType: 'TRIM_HORIZON',
      });
      const records = await kinesis<{ Records: { Data: string; PartitionKey: string; SequenceNumber: string }[] }>(
        endpoint,
        'GetRecords',
        { ShardIterator: iterator.ShardIterator, Limit: 10 },
      );
      expect(records.Records).toHaveLength(1);
      expect(records.Records[0]?.SequenceNumber).toBe(put.SequenceNumber);
      expect(records.Records[0]?.PartitionKey).toBe('BTC/USDT');
      expect(Buffer.from(records.Records[0]?.Data ?? '', 'base64').toString()).toBe(payload);
    } finally {
      await kinesis(endpoint, 'DeleteStream', { StreamName: stream }).catch(() => undefined);
    }
  });
});

// ---------------------------------------------------------------- Kafka protocol (librdkafka mock cluster)

describeWithService('kafka', 'Kafka-protocol broker', (brokerList) => {
  const brokers = brokerList.split(',').map((b) => b.trim());

  it('accepts TCP connections on every bootstrap broker', async () => {
    for (const broker of brokers) {
      const separator = broker.lastIndexOf(':');
      await new Promise<void>((resolve, reject) => {
        const socket = new Socket();
        socket.setTimeout(2_000, () => socket.destroy(new Error(`${broker}: no answer within 2 s`)));
        socket.once('error', reject);
        socket.connect(Number(broker.slice(separator + 1)), broker.slice(0, separator), () => {
          socket.destroy();
          resolve();
        });
      });
    }
  });

  it('round-trips messages with kafkajs: produce, then consume in a consumer group', async () => {
    const kafka = new Kafka({ clientId: 'qicore-smoke', brokers, logLevel: logLevel.NOTHING });
    // the mock has no CreateTopics API: the topic is created on first use, with 4 partitions
    const topic = unique('qicore.smoke');
    const sent = ['m1', 'm2', 'm3'].map((value) => ({ key: 'BTC/USDT', value }));

    const producer = kafka.producer({ allowAutoTopicCreation: true });
    await producer.connect();
    try {
      await producer.send({ topic, messages: sent });
    } finally {
      await producer.disconnect();
    }

    // the mock answers the first JoinGroup after ~3 s; a short fetch wait makes disconnect() quick
    const consumer = kafka.consumer({ groupId: unique('qicore-smoke-group'), maxWaitTimeInMs: 100 });
    const received: string[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          received.push(message.value?.toString() ?? '');
        },
      });
      const deadline = Date.now() + 20_000;
      while (received.length < sent.length && Date.now() < deadline) await sleep(100);
    } finally {
      await consumer.disconnect();
    }
    // one key: one partition, so the order is kept
    expect(received).toEqual(['m1', 'm2', 'm3']);
  });
});
