/**
 * MSK IAM authentication of the Kafka clients: the kafkajs config built for `iam`, the token provider
 * (AWS's signer, run offline: it presigns a URL locally with the credentials from the environment) and,
 * end to end, what KafkaStreamBus and KafkaSubscription put on the wire to a TLS broker that speaks
 * just enough of the Kafka protocol to take SASL/OAUTHBEARER (MSK itself cannot run here).
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { generateAuthToken, generateAuthTokenFromCredentialsProvider } from 'aws-msk-iam-sasl-signer-js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  KafkaConnectionConfigError,
  kafkaConnectionConfig,
  MskIamTokenError,
  MskIamTokenProvider,
  type MskTokenSigner,
} from '../../layers/shared/src/adapters/stream/kafka-connection.js';
import { KafkaPublishError, KafkaStreamBus } from '../../layers/shared/src/adapters/stream/kafka-stream-bus.js';
import { KafkaConsumerError, KafkaSubscription } from '../../layers/shared/src/adapters/stream/kafka-subscription.js';
import { startCollectorFromEnv } from '../../layers/shared/src/collector/collector-runtime.js';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { Trade } from '../../layers/shared/src/domain/index.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { startSimulatedExchange } from '../../local/sim/server.js';

const REGION = 'eu-west-1';
const ACCESS_KEY_ID = 'AKIAQICORETESTKEY01';

// Self-signed certificate for 127.0.0.1 (valid to 2126), used only by the loopback broker below.
const BROKER_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/KTyb3eFodndvmnV
EHSx01qLHlSPx0CmvuwTUCtE49ShRANCAAT3/4lcM8xK69mUJlxhNAPiI2vM7SHV
A2P386cTtATPiceuY/c3HpOjt3OpHMVy8QV3oKp19mOO0ljh9xLxDLw8
-----END PRIVATE KEY-----`;
const BROKER_CERT = `-----BEGIN CERTIFICATE-----
MIIBrTCCAVOgAwIBAgIUGIQdLs/37eLOptSR/MkJzNqaLXswCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwScWljb3JlIHRlc3QgYnJva2VyMCAXDTI2MTEyNDAzMDYwOFoY
DzIxMjYxMDMxMDMwNjA4WjAdMRswGQYDVQQDDBJxaWNvcmUgdGVzdCBicm9rZXIw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT3/4lcM8xK69mUJlxhNAPiI2vM7SHV
A2P386cTtATPiceuY/c3HpOjt3OpHMVy8QV3oKp19mOO0ljh9xLxDLw8o28wbTAd
BgNVHQ4EFgQUkqO3QYHxoOCyxhftiMu4yrZdicgwHwYDVR0jBBgwFoAUkqO3QYHx
oOCyxhftiMu4yrZdicgwDwYDVR0TAQH/BAUwAwEB/zAaBgNVHREEEzARhwR/AAAB
gglsb2NhbGhvc3QwCgYIKoZIzj0EAwIDSAAwRQIgaG7+4NOhS3bC5efNrUvoomZJ
525lcATSUO4wl7jiOZQCIQCYvhSSX0dHEfnRM+26PI3M9mjBxQ0NE1IGgO4BxtUY
Gg==
-----END CERTIFICATE-----`;

beforeEach(() => {
  // the default credential chain takes these first: signing runs offline
  vi.stubEnv('AWS_ACCESS_KEY_ID', ACCESS_KEY_ID);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'qicore-test-secret-access-key');
  vi.stubEnv('AWS_SESSION_TOKEN', '');
});
afterEach(() => {
  vi.unstubAllEnvs();
});

/** The presigned URL inside an MSK IAM token, checked for what MSK verifies. */
function expectMskToken(token: string, region = REGION): URL {
  // base64url without padding
  expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
  const url = new URL(Buffer.from(token, 'base64url').toString('utf8'));
  expect(url.origin).toBe(`https://kafka.${region}.amazonaws.com`);
  const q = url.searchParams;
  expect(q.get('Action')).toBe('kafka-cluster:Connect');
  expect(q.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
  expect(q.get('X-Amz-Credential')).toMatch(new RegExp(`^${ACCESS_KEY_ID}/\\d{8}/${region}/kafka-cluster/aws4_request$`));
  expect(q.get('X-Amz-SignedHeaders')).toBe('host');
  expect(Number(q.get('X-Amz-Expires'))).toBeGreaterThan(0);
  expect(Number(q.get('X-Amz-Expires'))).toBeLessThanOrEqual(900);
  expect(q.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
  return url;
}

/** The real signer, counting its calls. */
function countingSigner(): { sign: MskTokenSigner; calls: () => number } {
  let calls = 0;
  return {
    sign: (options) => {
      calls++;
      return generateAuthToken(options);
    },
    calls: () => calls,
  };
}

describe('kafkaConnectionConfig', () => {
  it('for iam: TLS on and SASL/OAUTHBEARER whose provider returns the signer token as { value }', async () => {
    const config = kafkaConnectionConfig({ brokers: ['boot-abc.c1.kafka-serverless.eu-west-1.amazonaws.com:9098'], auth: { mechanism: 'iam', region: REGION } });
    expect(config.brokers).toEqual(['boot-abc.c1.kafka-serverless.eu-west-1.amazonaws.com:9098']);
    expect(config.ssl).toBe(true);
    expect(config.sasl?.mechanism).toBe('oauthbearer');
    const sasl = config.sasl as { mechanism: 'oauthbearer'; oauthBearerProvider: () => Promise<{ value: string }> };
    const token = await sasl.oauthBearerProvider();
    expect(Object.keys(token)).toEqual(['value']);
    expectMskToken(token.value);
    // cached: the next connection gets the same token
    expect(await sasl.oauthBearerProvider()).toEqual(token);
  });

  it('for none: no SASL, TLS only when asked', () => {
    expect(kafkaConnectionConfig({ brokers: ['a:9092'] })).toEqual({ brokers: ['a:9092'] });
    expect(kafkaConnectionConfig({ brokers: ['a:9094'], auth: { mechanism: 'none' }, ssl: true })).toEqual({ brokers: ['a:9094'], ssl: true });
  });

  it('refuses IAM without TLS and a region that is not one, naming the fix', () => {
    const noTls = () => kafkaConnectionConfig({ brokers: ['a:9098'], auth: { mechanism: 'iam', region: REGION }, ssl: false });
    expect(noTls).toThrow(KafkaConnectionConfigError);
    expect(noTls).toThrow(/IAM authentication needs TLS/);
    expect(() => kafkaConnectionConfig({ brokers: ['a:9098'], auth: { mechanism: 'iam', region: 'Ireland' } })).toThrow(ConfigError);
    expect(() => kafkaConnectionConfig({ brokers: ['a:9098'], auth: { mechanism: 'iam', region: 'Ireland' } })).toThrow(/'Ireland' is not an AWS region/);
  });
});

describe('MskIamTokenProvider', () => {
  it('signs once and reuses the token until shortly before it expires', async () => {
    const clock = { t: Date.now(), now() { return this.t; } };
    const signer = countingSigner();
    const provider = new MskIamTokenProvider({ region: REGION, clock, sign: signer.sign, refreshBeforeMs: 60_000 });
    const [a, b] = await Promise.all([provider.token(), provider.token()]);
    expect(signer.calls()).toBe(1);
    expect(b).toEqual(a);
    const url = expectMskToken(a.value);
    // the token lives X-Amz-Expires seconds from its X-Amz-Date
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(url.searchParams.get('X-Amz-Date')!)!;
    const expiresAt = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) + Number(url.searchParams.get('X-Amz-Expires')) * 1000;

    clock.t = expiresAt - 60_001;
    expect(await provider.token()).toEqual(a);
    expect(signer.calls()).toBe(1);

    clock.t = expiresAt - 60_000;
    expectMskToken((await provider.token()).value);
    expect(signer.calls()).toBe(2);
  });

  it('wraps a signing failure in MskIamTokenError and tries again on the next call', async () => {
    let calls = 0;
    // the real signer, given credentials that are empty: it refuses before signing
    const sign: MskTokenSigner = (options) => {
      calls++;
      return generateAuthTokenFromCredentialsProvider({ ...options, awsCredentialsProvider: async () => ({ accessKeyId: '', secretAccessKey: '' }) });
    };
    const provider = new MskIamTokenProvider({ region: REGION, sign });
    const failure = await provider.token().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(MskIamTokenError);
    expect((failure as Error).message).toMatch(/cannot sign an MSK IAM token for region eu-west-1: AWS credentials cannot be empty/);
    expect((failure as Error).cause).toBeInstanceOf(Error);
    await expect(provider.token()).rejects.toThrow(MskIamTokenError);
    expect(calls).toBe(2);
  });
});

// ---- a loopback TLS broker that takes SASL/OAUTHBEARER --------------------------------------------

const API = { Produce: 0, Metadata: 3, SaslHandshake: 17, ApiVersions: 18, SaslAuthenticate: 36 } as const;

interface BrokerLog {
  /** mechanisms asked for in SaslHandshake */
  readonly mechanisms: string[];
  /** bearer tokens presented in SaslAuthenticate */
  readonly tokens: string[];
  /** api keys of requests that arrived before authentication succeeded */
  readonly beforeAuth: number[];
  /** records per produced batch */
  readonly produced: { topic: string; partition: number; records: number }[];
}

interface FakeBroker extends BrokerLog {
  readonly address: string;
  /** client connections still open */
  openConnections(): number;
  close(): Promise<void>;
}

/** Kafka wire encoding, enough for the responses below. */
class Out {
  private readonly parts: Buffer[] = [];
  int8(n: number) { const b = Buffer.alloc(1); b.writeInt8(n); return this.push(b); }
  int16(n: number) { const b = Buffer.alloc(2); b.writeInt16BE(n); return this.push(b); }
  int32(n: number) { const b = Buffer.alloc(4); b.writeInt32BE(n); return this.push(b); }
  int64(n: bigint) { const b = Buffer.alloc(8); b.writeBigInt64BE(n); return this.push(b); }
  string(s: string | null) { if (s === null) return this.int16(-1); const b = Buffer.from(s); this.int16(b.length); return this.push(b); }
  bytes(b: Buffer) { this.int32(b.length); return this.push(b); }
  array<T>(items: readonly T[], each: (o: Out, item: T) => void) { this.int32(items.length); for (const i of items) each(this, i); return this; }
  buffer(): Buffer { return Buffer.concat(this.parts); }
  private push(b: Buffer) { this.parts.push(b); return this; }
}

class In {
  constructor(private readonly b: Buffer, private at = 0) {}
  int16() { const v = this.b.readInt16BE(this.at); this.at += 2; return v; }
  int32() { const v = this.b.readInt32BE(this.at); this.at += 4; return v; }
  string() { const n = this.int16(); if (n < 0) return null; const s = this.b.toString('utf8', this.at, this.at + n); this.at += n; return s; }
  bytes() { const n = this.int32(); const s = this.b.subarray(this.at, this.at + n); this.at += n; return s; }
}

/**
 * Answers ApiVersions, SaslHandshake (OAUTHBEARER only), SaslAuthenticate (accepting any token, or none),
 * and after authentication Metadata v0 (every topic asked for: one partition led by itself) and Produce v3
 * (counting records). Anything else before authentication is logged and the connection closed, as MSK does.
 */
async function startFakeMskBroker(options: { acceptAuth: boolean }): Promise<FakeBroker> {
  const log: BrokerLog = { mechanisms: [], tokens: [], beforeAuth: [], produced: [] };
  let port = 0;
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ key: BROKER_KEY, cert: BROKER_CERT }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    let authenticated = false;
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
        const frame = pending.subarray(4, 4 + pending.readInt32BE(0));
        pending = pending.subarray(4 + frame.length);
        const req = new In(frame);
        const apiKey = req.int16();
        const apiVersion = req.int16();
        const correlationId = req.int32();
        req.string(); // client id
        const out = new Out().int32(correlationId);
        const reply = () => {
          const body = out.buffer();
          socket.write(Buffer.concat([new Out().int32(body.length).buffer(), body]));
        };
        if (apiKey === API.ApiVersions) {
          out.int16(0).array(
            [[API.Produce, 3, 3], [API.Metadata, 0, 0], [API.SaslHandshake, 0, 1], [API.ApiVersions, 0, 2], [API.SaslAuthenticate, 0, 0]] as const,
            (o, [key, min, max]) => o.int16(key).int16(min).int16(max),
          );
          if (apiVersion >= 1) out.int32(0);
          reply();
        } else if (apiKey === API.SaslHandshake) {
          const mechanism = req.string() ?? '';
          log.mechanisms.push(mechanism);
          out.int16(mechanism === 'OAUTHBEARER' ? 0 : 33).array(['OAUTHBEARER'], (o, m) => o.string(m));
          reply();
        } else if (apiKey === API.SaslAuthenticate) {
          // RFC 7628 client first message: n,,\x01auth=Bearer <token>\x01\x01
          const message = req.bytes().toString('utf8');
          const token = /^n,[^,]*,\x01auth=Bearer ([^\x01]+)\x01/.exec(message)?.[1];
          log.tokens.push(token ?? `(not a bearer message: ${JSON.stringify(message)})`);
          authenticated = options.acceptAuth && token !== undefined;
          out.int16(authenticated ? 0 : 58).string(authenticated ? null : 'fake broker: token recorded, access denied').bytes(Buffer.alloc(0));
          reply();
        } else if (!authenticated) {
          log.beforeAuth.push(apiKey);
          socket.destroy();
        } else if (apiKey === API.Metadata) {
          const topics = [];
          for (let n = req.int32(); n > 0; n--) topics.push(req.string() ?? '');
          out.array([1], (o) => o.int32(1).string('127.0.0.1').int32(port));
          out.array(topics, (o, t) => o.int16(0).string(t).array([0], (p) => p.int16(0).int32(0).int32(1).array([1], (r) => r.int32(1)).array([1], (r) => r.int32(1))));
          reply();
        } else if (apiKey === API.Produce) {
          req.string(); // transactional id
          req.int16(); // acks
          req.int32(); // timeout
          const acks: { topic: string; partitions: number[] }[] = [];
          for (let t = req.int32(); t > 0; t--) {
            const topic = req.string() ?? '';
            const partitions: number[] = [];
            for (let p = req.int32(); p > 0; p--) {
              const partition = req.int32();
              const batch = req.bytes();
              // RecordBatch v2: the record count sits at byte 57
              log.produced.push({ topic, partition, records: batch.readInt32BE(57) });
              partitions.push(partition);
            }
            acks.push({ topic, partitions });
          }
          out.array(acks, (o, a) => o.string(a.topic).array(a.partitions, (p, n) => p.int32(n).int16(0).int64(0n).int64(-1n)));
          out.int32(0);
          reply();
        } else {
          log.beforeAuth.push(apiKey);
          socket.destroy();
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  return {
    ...log,
    address: `127.0.0.1:${port}`,
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

const trade = (i: number): Trade => ({
  type: 'trade',
  exchange: 'binance',
  symbol: 'BTC/USDT',
  ts: 1_700_000_000_000 + i,
  localTs: 1_700_000_000_005 + i,
  id: String(i),
  price: 50_000 + i,
  amount: 0.01,
  side: i % 2 === 0 ? 'buy' : 'sell',
});

describe('Kafka clients with IAM auth against a TLS broker', () => {
  const brokers: FakeBroker[] = [];
  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });

  it('KafkaStreamBus authenticates with the signer token over TLS before anything else, then publishes', async () => {
    const broker = await startFakeMskBroker({ acceptAuth: true });
    brokers.push(broker);
    const bus = new KafkaStreamBus({
      brokers: [broker.address],
      topic: 'market-events',
      auth: { mechanism: 'iam', region: REGION },
      ssl: { ca: BROKER_CERT },
      retries: 0,
    });
    try {
      const receipt = await bus.publish([trade(1), trade(2), trade(3)]);
      expect(receipt).toMatchObject({ records: 1, events: 3 });
    } finally {
      await bus.close();
    }
    expect(broker.beforeAuth).toEqual([]);
    expect(broker.mechanisms.length).toBeGreaterThanOrEqual(1);
    expect(new Set(broker.mechanisms)).toEqual(new Set(['OAUTHBEARER']));
    // every connection (bootstrap, then the partition leader) presented the same cached token
    expect(broker.tokens.length).toBeGreaterThanOrEqual(1);
    expect(new Set(broker.tokens).size).toBe(1);
    expectMskToken(broker.tokens[0]!);
    expect(broker.produced).toEqual([{ topic: 'market-events', partition: 0, records: 1 }]);
  });

  it('KafkaStreamBus reports a refused token as KafkaPublishError, having sent nothing but the handshake', async () => {
    const broker = await startFakeMskBroker({ acceptAuth: false });
    brokers.push(broker);
    const bus = new KafkaStreamBus({ brokers: [broker.address], topic: 'market-events', auth: { mechanism: 'iam', region: REGION }, ssl: { ca: BROKER_CERT }, retries: 0 });
    try {
      await expect(bus.publish([trade(1)])).rejects.toThrow(KafkaPublishError);
    } finally {
      await bus.close();
    }
    expect(broker.tokens.length).toBeGreaterThanOrEqual(1);
    expectMskToken(broker.tokens[0]!);
    expect(broker.produced).toEqual([]);
    // close() also ends the connections of the refused handshake
    await vi.waitFor(() => expect(broker.openConnections()).toBe(0), { timeout: 5_000 });
  });

  it('KafkaSubscription presents the same kind of token when it joins', async () => {
    const broker = await startFakeMskBroker({ acceptAuth: false });
    brokers.push(broker);
    const opened = KafkaSubscription.open({
      brokers: [broker.address],
      topic: 'market-events',
      groupId: 'writers',
      auth: { mechanism: 'iam', region: REGION },
      ssl: { ca: BROKER_CERT },
      joinTimeoutMs: 5_000,
    });
    await expect(opened).rejects.toThrow(KafkaConsumerError);
    expect(broker.mechanisms[0]).toBe('OAUTHBEARER');
    expectMskToken(broker.tokens[0]!);
  });

  it('a plaintext client (auth none) never starts TLS: the TLS broker sees no Kafka request', async () => {
    const broker = await startFakeMskBroker({ acceptAuth: true });
    brokers.push(broker);
    const bus = new KafkaStreamBus({ brokers: [broker.address], topic: 't', retries: 0, requestTimeoutMs: 1_000 });
    try {
      await expect(bus.publish([trade(1)])).rejects.toThrow(KafkaPublishError);
    } finally {
      await bus.close();
    }
    expect(broker.tokens).toEqual([]);
    expect(broker.produced).toEqual([]);
  });

  it('the service-mode collector with KAFKA_AUTH=iam publishes through IAM over TLS', async () => {
    const broker = await startFakeMskBroker({ acceptAuth: true });
    brokers.push(broker);
    // the environment has no CA variable (MSK's certificates are public), so this test's self-signed
    // broker is trusted the only way an env-configured client allows: for this test's connections
    vi.stubEnv('NODE_TLS_REJECT_UNAUTHORIZED', '0');
    const sim = await startSimulatedExchange({ seed: 5, symbols: ['BTC/USDT'], autoRun: false });
    const runtime = await startCollectorFromEnv(
      {
        MARKETS: 'binance:BTC/USDT',
        STREAM_KIND: 'kafka',
        STREAM_NAME: 'market-events',
        KAFKA_BROKERS: broker.address,
        KAFKA_AUTH: 'iam',
        AWS_REGION: 'us-east-2',
        EXCHANGE_REST_URL: sim.httpUrl,
        EXCHANGE_WS_URL: sim.wsUrl,
      },
      silentLogger,
    );
    try {
      await sim.waitForStreams(['btcusdt@trade'], { timeoutMs: 15_000 });
      const printed = sim.market.printTrades(5, 'BTC/USDT');
      const batcher = runtime.service.counters.batcher;
      await vi.waitFor(() => expect(batcher.get('published_events')).toBeGreaterThanOrEqual(printed.length), { timeout: 15_000 });
      expect(batcher.get('publish_failures')).toBe(0);
    } finally {
      await runtime.stop();
      await sim.close();
    }
    expect(broker.beforeAuth).toEqual([]);
    expect(broker.produced.length).toBeGreaterThan(0);
    expect(broker.produced.every((p) => p.topic === 'market-events')).toBe(true);
    expect(new Set(broker.tokens).size).toBe(1);
    expectMskToken(broker.tokens[0]!, 'us-east-2');
  }, 30_000);
});
