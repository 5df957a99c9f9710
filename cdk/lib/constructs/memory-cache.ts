import { RemovalPolicy, SecretValue, Validations } from 'aws-cdk-lib';
import { Port, SecurityGroup, SubnetType, type IConnectable, type IVpc } from 'aws-cdk-lib/aws-ec2';
import { CfnReplicationGroup, CfnSubnetGroup } from 'aws-cdk-lib/aws-elasticache';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { InvalidPropsError, requireIntegerInRange } from '../prop-checks.js';

export interface MemoryCacheProps {
  /** VPC whose private subnets hold the nodes. */
  readonly vpc: IVpc;
  /**
   * Node type; Graviton burstable nodes are plenty for agent memory and pub/sub announcements.
   * @default 'cache.t4g.micro'
   */
  readonly nodeType?: string;
  /**
   * Read replicas, each in another AZ than the primary; one or more turns on automatic failover and Multi-AZ.
   * @default 0
   */
  readonly replicas?: number;
  /**
   * TCP port of the nodes.
   * @default 6379
   */
  readonly port?: number;
  /**
   * What happens to the cache and its secrets when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Redis-compatible ElastiCache (Valkey) for agent memory and the writers' new-data announcements:
 * TLS in transit (required), encrypted at rest, an AUTH token held in Secrets Manager, private subnets,
 * and a security group that admits only the clients given to `allowFrom`. Its clients get `urlSecret`,
 * whose value is the whole `rediss://` URL (token included), never the URL itself.
 */
export class MemoryCache extends Construct {
  readonly securityGroup: SecurityGroup;
  /** the AUTH token (64 letters and digits) */
  readonly authTokenSecret: ISecret;
  /** `rediss://:<token>@<primary endpoint>:<port>`, what REDIS_URL takes */
  readonly urlSecret: ISecret;
  readonly replicationGroup: CfnReplicationGroup;
  readonly port: number;

  constructor(scope: Construct, id: string, props: MemoryCacheProps) {
    super(scope, id);
    const replicas = props.replicas ?? 0;
    this.port = props.port ?? 6379;
    requireIntegerInRange(`${id} replicas`, replicas, 0, 5, 'the ElastiCache limit of a shard');
    requireIntegerInRange(`${id} port`, this.port, 1024, 65535, 'an unprivileged port');
    const nodeType = props.nodeType ?? 'cache.t4g.micro';
    if (!/^cache\.[a-z0-9]+\.[a-z0-9]+$/.test(nodeType)) {
      throw new InvalidPropsError(`${id} nodeType '${nodeType}' is not an ElastiCache node type: pass e.g. 'cache.t4g.micro'`);
    }
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'ElastiCache: only the platform services that use Redis',
      // a cache never opens connections
      allowAllOutbound: false,
    });
    const subnets = new CfnSubnetGroup(this, 'Subnets', {
      description: 'Private subnets of the memory cache',
      subnetIds: props.vpc.selectSubnets({ subnetType: SubnetType.PRIVATE_WITH_EGRESS }).subnetIds,
    });
    // ElastiCache takes 16-128 printable characters without @ " /: letters and digits are safe in a URL too.
    const authToken = new Secret(this, 'AuthToken', {
      description: 'AUTH token of the memory cache (ElastiCache)',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy,
    });
    this.authTokenSecret = authToken;
    this.replicationGroup = new CfnReplicationGroup(this, 'ReplicationGroup', {
      replicationGroupDescription: 'qicore agent memory and resource fan-out',
      engine: 'valkey',
      engineVersion: '8.0',
      cacheNodeType: nodeType,
      numCacheClusters: 1 + replicas,
      automaticFailoverEnabled: replicas > 0,
      multiAzEnabled: replicas > 0,
      port: this.port,
      cacheSubnetGroupName: subnets.ref,
      securityGroupIds: [this.securityGroup.securityGroupId],
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      atRestEncryptionEnabled: true,
      // A dynamic reference: CloudFormation reads the token at deploy time; the template holds only the secret's ARN.
      authToken: authToken.secretValue.unsafeUnwrap(),
      snapshotRetentionLimit: removalPolicy === RemovalPolicy.RETAIN ? 7 : 0,
    });
    this.replicationGroup.applyRemovalPolicy(removalPolicy === RemovalPolicy.RETAIN ? RemovalPolicy.SNAPSHOT : removalPolicy);

    const host = this.replicationGroup.attrPrimaryEndPointAddress;
    this.urlSecret = new Secret(this, 'Url', {
      description: 'rediss:// URL of the memory cache, AUTH token included (REDIS_URL)',
      // again only references: the token by dynamic reference, the endpoint by attribute
      secretStringValue: SecretValue.unsafePlainText(`rediss://:${authToken.secretValue.unsafeUnwrap()}@${host}:${this.port}`),
      removalPolicy,
    });

    for (const secret of [authToken, this.urlSecret]) {
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'Rotating the AUTH token needs a rotation Lambda doing ElastiCache ModifyReplicationGroup (ROTATE then SET) in step with every ' +
          'client; clients read the URL at start only. Rotate by redeploying a new token (docs/deployment.md).',
      });
    }
    if (this.port === 6379) {
      Validations.of(this.replicationGroup).acknowledge({
        id: 'AwsSolutions-AEC5',
        reason: 'A non-default port hides nothing from a scanner that is already inside the VPC; the security group, TLS and the AUTH token are the controls.',
      });
    }
  }

  /** Lets `client` (a task or function in the VPC) open connections to the cache, and nothing else. */
  allowFrom(client: IConnectable, description: string): void {
    this.securityGroup.connections.allowFrom(client, Port.tcp(this.port), description);
  }
}
