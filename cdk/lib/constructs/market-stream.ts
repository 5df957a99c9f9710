import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Stream, StreamEncryption, StreamMode, type IStream } from 'aws-cdk-lib/aws-kinesis';
import { Construct } from 'constructs';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';

export interface MarketStreamProps {
  /**
   * Capacity mode: provisioned shards (predictable cost) or on-demand (no shard planning).
   * @default StreamMode.PROVISIONED
   */
  readonly streamMode?: StreamMode;
  /**
   * Shards of a provisioned stream (1 MB/s or 1000 records/s of writes each). Not allowed on demand.
   * @default 1
   */
  readonly shardCount?: number;
  /**
   * How long records stay readable, 24 to 8760 hours; consumers can replay within it.
   * @default Duration.hours(24)
   */
  readonly retentionPeriod?: Duration;
  /**
   * Physical name of the stream; fixed names suit a stream other tools already point at (the local stage's).
   * @default - a name CloudFormation generates
   */
  readonly streamName?: string;
  /**
   * What happens to the stream when it leaves the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/** The Kinesis Data Stream that carries normalized market events from collectors to consumers. */
export class MarketStream extends Construct {
  /** the stream, for grants and event sources */
  readonly stream: IStream;

  constructor(scope: Construct, id: string, props: MarketStreamProps = {}) {
    super(scope, id);
    const mode = props.streamMode ?? StreamMode.PROVISIONED;
    const retentionPeriod = props.retentionPeriod ?? Duration.hours(24);
    requireIntegerInRange(`${id} retentionPeriod (hours)`, retentionPeriod.toHours({ integral: false }), 24, 8760, 'the Kinesis retention limits');
    if (mode === StreamMode.ON_DEMAND && props.shardCount !== undefined) {
      throw new InvalidPropsError(
        `${id} shardCount is ${props.shardCount} but streamMode is ON_DEMAND, which has no shards: drop shardCount or use StreamMode.PROVISIONED`,
      );
    }
    const shardCount = mode === StreamMode.PROVISIONED ? (props.shardCount ?? 1) : undefined;
    if (shardCount !== undefined) {
      requireIntegerInRange(`${id} shardCount`, shardCount, 1, 10_000, 'at least one shard; more needs a quota increase');
    }

    if (props.streamName !== undefined && !/^[a-zA-Z0-9_.-]{1,128}$/.test(props.streamName)) {
      throw new InvalidPropsError(`${id} streamName '${props.streamName}' is not a Kinesis stream name (1 to 128 of a-z A-Z 0-9 _ . -)`);
    }
    this.stream = new Stream(this, 'Stream', {
      ...(props.streamName !== undefined && { streamName: props.streamName }),
      streamMode: mode,
      ...(shardCount !== undefined && { shardCount }),
      // AWS-managed key (alias/aws/kinesis): encrypted at rest, no key policy to manage or pay for.
      encryption: StreamEncryption.MANAGED,
      retentionPeriod,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
  }
}
