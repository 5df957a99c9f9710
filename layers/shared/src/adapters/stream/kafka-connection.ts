import type { ConnectionOptions } from 'node:tls';
import { generateAuthToken, type GenerateAuthTokenResponse } from 'aws-msk-iam-sasl-signer-js';
import type { KafkaConfig, OauthbearerProviderResponse } from 'kafkajs';
import { ConfigError, PlatformError } from '../../domain/errors.js';
import { systemClock, type Clock } from '../../ports/index.js';

/**
 * How a Kafka client proves who it is: not at all (librdkafka's mock, Redpanda, a plaintext cluster),
 * or with AWS IAM (MSK: SASL/OAUTHBEARER over TLS, port 9098 on MSK Serverless).
 */
export type KafkaAuth = { readonly mechanism: 'none' } | { readonly mechanism: 'iam'; readonly region: string };

/** Where a Kafka client connects and how it authenticates; shared by KafkaStreamBus and KafkaSubscription. */
export interface KafkaConnectionOptions {
  /** `host:port` of the bootstrap brokers */
  readonly brokers: readonly string[];
  /** default `{ mechanism: 'none' }` */
  readonly auth?: KafkaAuth;
  /** TLS to the brokers: true, or Node TLS options (e.g. a private CA); default on with IAM, off otherwise */
  readonly ssl?: boolean | ConnectionOptions;
}

/** A Kafka connection setting that cannot work (e.g. IAM without TLS). */
export class KafkaConnectionConfigError extends ConfigError {}

/** No MSK IAM token could be signed (no AWS credentials found, or the signer failed). */
export class MskIamTokenError extends PlatformError {}

/** Signs a token: the signer's generateAuthToken by default. */
export type MskTokenSigner = (options: { region: string }) => Promise<GenerateAuthTokenResponse>;

export interface MskIamTokenProviderOptions {
  readonly region: string;
  /** a token is re-signed this long before it expires; default 60 s */
  readonly refreshBeforeMs?: number;
  readonly clock?: Clock;
  readonly sign?: MskTokenSigner;
}

/**
 * The OAUTHBEARER token source of an MSK IAM client: a SigV4-presigned `kafka-cluster:Connect` URL from
 * AWS's signer (credentials from the default provider chain: env, ECS task role, ...). kafkajs asks on
 * every connection and re-authentication; the token is signed once and reused until `refreshBeforeMs`
 * before its expiry (at most 15 min, less when the credentials expire sooner). Concurrent callers share
 * one signing; a failed signing is not cached.
 */
export class MskIamTokenProvider {
  private readonly region: string;
  private readonly refreshBeforeMs: number;
  private readonly clock: Clock;
  private readonly sign: MskTokenSigner;
  private cached: { readonly value: string; readonly expiresAt: number } | null = null;
  private signing: Promise<OauthbearerProviderResponse> | null = null;

  constructor(options: MskIamTokenProviderOptions) {
    this.region = options.region;
    this.refreshBeforeMs = options.refreshBeforeMs ?? 60_000;
    this.clock = options.clock ?? systemClock;
    this.sign = options.sign ?? generateAuthToken;
  }

  /** The current token, in the shape kafkajs's oauthBearerProvider returns. */
  token(): Promise<OauthbearerProviderResponse> {
    if (this.cached && this.clock.now() < this.cached.expiresAt - this.refreshBeforeMs) {
      return Promise.resolve({ value: this.cached.value });
    }
    this.signing ??= this.sign({ region: this.region })
      .then(
        ({ token, expiryTime }) => {
          this.cached = { value: token, expiresAt: expiryTime };
          return { value: token };
        },
        (error: unknown) => {
          throw new MskIamTokenError(`cannot sign an MSK IAM token for region ${this.region}: ${(error as Error).message}`, {
            cause: error,
          });
        },
      )
      .finally(() => {
        this.signing = null;
      });
    return this.signing;
  }
}

/** The connection part of a kafkajs client config: brokers, TLS and, for IAM, SASL/OAUTHBEARER with a cached signer token. */
export function kafkaConnectionConfig(options: KafkaConnectionOptions): Pick<KafkaConfig, 'brokers' | 'ssl' | 'sasl'> {
  const auth = options.auth ?? { mechanism: 'none' };
  const brokers = [...options.brokers];
  if (auth.mechanism === 'none') {
    return options.ssl ? { brokers, ssl: options.ssl } : { brokers };
  }
  if (options.ssl === false) {
    throw new KafkaConnectionConfigError('Kafka IAM authentication needs TLS: drop ssl=false (MSK takes IAM on its TLS listener, port 9098)');
  }
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(auth.region)) {
    throw new KafkaConnectionConfigError(`'${auth.region}' is not an AWS region (e.g. eu-west-1): the MSK IAM token is signed for the cluster's region`);
  }
  const provider = new MskIamTokenProvider({ region: auth.region });
  return {
    brokers,
    ssl: options.ssl ?? true,
    sasl: { mechanism: 'oauthbearer', oauthBearerProvider: () => provider.token() },
  };
}
